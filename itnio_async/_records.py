"""The one flat form of a record, and the one reading of a time typed by a person.

The command line's exports and the examples' apps and workers write records with
``record_row`` and read ``--start``/``--end`` (or ``?start=&end=``) with ``parse_time``,
so a file of one and the answer of another have the same fields, spelled the same way,
and the same window means the same seconds everywhere.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Final

from ._models import GroupCallRecord

__all__ = ["RECORD_COLUMNS", "parse_time", "record_row"]

#: The keys of ``record_row``, in order: ``GroupCallRecord``'s fields with the status's
#: lower-case name after its number (a CSV export's header row).
RECORD_COLUMNS: Final = (
    "job_id",
    "task_name",
    "status",
    "status_name",
    "rate",
    "num_cnt",
    "call_num",
    "success",
    "fail",
    "created_time",
)

#: The last second of a day: a bare date as the end of a window means all of that day.
_END_OF_DAY: Final = time(23, 59, 59)


def record_row(record: GroupCallRecord) -> dict[str, object]:
    """One record as plain JSON values, keyed by ``RECORD_COLUMNS``.

    Args:
        record: a record of ``query_group_calls`` or a stream.

    Returns:
        ``{"job_id": int, "task_name": str, "status": int, "status_name": str, "rate":
        str, "num_cnt": int, "call_num": int, "success": int, "fail": int,
        "created_time": str}``: ``status`` is the vendor's number and ``status_name`` its
        ``GroupCallStatus`` name in lower case (``"completed"``, ``"unknown_9"`` for a
        value the vendor added later), as ``GroupCallStatus.parse`` reads it back;
        ``created_time`` is ISO 8601 (``2024-06-04T14:49:36``, with the offset when the
        client has a ``server_timezone``).
    """
    status = record.status
    return {
        "job_id": record.job_id,
        "task_name": record.task_name,
        "status": int(status),
        "status_name": status.name.lower(),
        "rate": record.rate,
        "num_cnt": record.num_cnt,
        "call_num": record.call_num,
        "success": record.success,
        "fail": record.fail,
        "created_time": record.created_time.isoformat(),
    }


def parse_time(text: str, *, end: bool = False) -> datetime:
    """A time as a person types it, for one end of a window.

    Args:
        text: ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS`` or ISO 8601 (``T`` between date and
            time, an optional UTC offset); spaces around it are ignored.
        end: whether it is the end of a window (default: the start). Both ends are
            inclusive, so a bare date as the end means the last second of that day
            (``2024-06-30`` is ``2024-06-30 23:59:59``) and as the start its first.

    Returns:
        The time: naive, or aware when ``text`` has an offset (the client then needs a
        ``server_timezone`` to convert it).

    Raises:
        TypeError: ``text`` is not a ``str``.
        ValueError: ``text`` is not such a time; the message quotes it.
    """
    if not isinstance(text, str):
        raise TypeError(f"a time must be a str, got {type(text).__name__}")
    stripped = text.strip()
    try:
        day = date.fromisoformat(stripped)
    except ValueError:
        pass
    else:
        return datetime.combine(day, _END_OF_DAY if end else time())
    try:
        return datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use YYYY-MM-DD, 'YYYY-MM-DD HH:MM:SS' or ISO 8601)"
        ) from None
