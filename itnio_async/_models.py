"""The vendor's data as frozen attrs classes.

Decoding from the wire lives in ``_converter``; these classes only describe the data.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Generic, TypeVar

import attrs

__all__ = ["GroupCallRecord", "GroupCallStatus", "Page"]

T = TypeVar("T")


class GroupCallStatus(enum.IntEnum):
    """State of a group-call task (``status`` in replies, ``statusList`` in queries).

    The vendor may add states: an unknown value decodes to a member that keeps its number
    (``int(status) == 9``, ``status.name == "UNKNOWN_9"``) instead of breaking a stream.
    Queries accept only the documented values below.
    """

    WAITING_FOR_SUBMISSION = 0
    CALLING = 1
    COMPLETED = 2
    SUBMISSION_FAILED = 3
    CANCELLED = 4
    SUSPENDED = 5
    SUBMITTING = 6

    @classmethod
    def _missing_(cls, value: object) -> GroupCallStatus | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        # A pseudo-member, cached in the value map so each unknown value is made once.
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}".replace("-", "MINUS_")
        member._value_ = value
        return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]

    @property
    def is_known(self) -> bool:
        """Whether this is one of the documented states."""
        return self._name_ in type(self).__members__


@attrs.frozen(slots=True)
class GroupCallRecord:
    """One group-call task as the query returns it."""

    #: Task id (``jobId``), unique within the account.
    job_id: int
    #: Task name (``taskName``).
    task_name: str
    #: Task state (``status``); may be an unknown, future value (see ``GroupCallStatus``).
    status: GroupCallStatus
    #: Call progress as the vendor formats it (``rate``, e.g. ``"87"``).
    rate: str
    #: Numbers in the task (``numCnt``).
    num_cnt: int
    #: Calls made so far (``callNum``).
    call_num: int
    #: Successful calls (``success``).
    success: int
    #: Failed calls (``fail``).
    fail: int
    #: Submission time (``createdTime``): naive, or aware in the client's ``server_timezone``.
    created_time: datetime


@attrs.frozen(slots=True)
class Page(Generic[T]):
    """One page of a paged query."""

    #: The page's records, in the server's order.
    records: tuple[T, ...]
    #: Records in the whole result (every page).
    total: int
    #: Records per page that were asked for.
    size: int
    #: This page's number, from 1.
    current: int
    #: Pages in the whole result.
    pages: int
