"""How the examples write group-call records: plain JSON values, one object per line.

Each record is the library's ``itnio_async.record_row``, the very format of
``itnio-async export`` (lower-case ``status_name``, ISO 8601 ``created_time``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from itnio_async import GroupCallRecord, Page, record_row

__all__ = ["json_lines", "page_json", "record_json"]


def record_json(record: GroupCallRecord) -> dict[str, Any]:
    """A record as plain JSON values: ``itnio_async.record_row``."""
    return record_row(record)


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
