"""How the examples write group-call records: plain JSON values, one object per line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from itnio_async import GroupCallRecord, Page

__all__ = ["json_lines", "page_json", "record_json"]


def record_json(record: GroupCallRecord) -> dict[str, Any]:
    """A record as plain JSON values."""
    return {
        "job_id": record.job_id,
        "task_name": record.task_name,
        "status": int(record.status),
        "status_name": record.status.name,
        "rate": record.rate,
        "num_cnt": record.num_cnt,
        "call_num": record.call_num,
        "success": record.success,
        "fail": record.fail,
        "created_time": record.created_time.isoformat(sep=" "),
    }


def json_lines(records: Iterable[GroupCallRecord]) -> str:
    """The records as JSON Lines: one object per line, each line ended."""
    return "".join(json.dumps(record_json(record)) + "\n" for record in records)


def page_json(page: Page[GroupCallRecord]) -> dict[str, Any]:
    """A page as the apps answer it: its counts and its records."""
    return {
        "total": page.total,
        "pages": page.pages,
        "current": page.current,
        "size": page.size,
        "records": [record_json(record) for record in page.records],
    }
