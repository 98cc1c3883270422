"""The vendor's data as frozen attrs classes.

Decoding from the wire lives in ``_converter``; these classes only describe the data.
"""

from __future__ import annotations

import enum
import functools
import re
from datetime import datetime
from typing import Generic, TypeVar

import attrs

__all__ = ["GroupCallRecord", "GroupCallStatus", "Page"]

T = TypeVar("T")

#: How many distinct undocumented status values keep a shared member at once.
UNKNOWN_STATUSES_CACHED = 128


class GroupCallStatus(enum.IntEnum):
    """State of a group-call task (``status`` in replies, ``statusList`` in queries).

    The vendor may add states: an unknown value decodes to a member that keeps its number
    (``int(status) == 9``, ``status.name == "UNKNOWN_9"``) instead of breaking a stream.
    Such members compare and hash as their number (compare them with ``==``, not ``is``);
    they are not added to the enum, so unknown values cost no memory for good.
    Queries accept only the documented values below, as members, numbers or names (see
    ``parse``).
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
        return _unknown_status(cls, int(value))

    @classmethod
    def parse(cls, value: GroupCallStatus | int | str) -> GroupCallStatus:
        """The documented state ``value`` names: a member, its number, or its name.

        A name is case-insensitive, with ``-`` and ``_`` alike (``"completed"``,
        ``"Submission-Failed"``), or one of the short forms ``waiting``, ``failed`` and
        ``canceled``; a str of digits is a number (``"2"``). The command line's
        ``--statuses`` takes the same spellings.

        Raises:
            TypeError: ``value`` is not a ``GroupCallStatus``, an ``int`` or a ``str``
                (a ``bool`` is refused too).
            ValueError: an undocumented number, or an unknown name; the message lists the
                accepted names.
        """
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(
                f"a status must be a GroupCallStatus, an int or a str, got {type(value).__name__}"
            )
        if isinstance(value, str):
            text = value.strip()
            key = text.lower().replace("-", "_")
            if _NUMBER.fullmatch(text):
                value = int(text)
            elif key in _STATUS_NAMES:
                return _STATUS_NAMES[key]
            else:
                raise ValueError(f"unknown status {text!r}: {_ACCEPTED}")
        member = _STATUS_NUMBERS.get(int(value))
        if member is None:
            raise ValueError(f"{int(value)} is not a documented status: {_ACCEPTED}")
        return member

    @property
    def is_known(self) -> bool:
        """Whether this is one of the documented states."""
        return self._name_ in type(self).__members__


#: Names ``GroupCallStatus.parse`` accepts (lower case, ``_``): the members', and short forms.
_STATUS_NAMES: dict[str, GroupCallStatus] = {
    **{member.name.lower(): member for member in GroupCallStatus},
    "waiting": GroupCallStatus.WAITING_FOR_SUBMISSION,
    "failed": GroupCallStatus.SUBMISSION_FAILED,
    "canceled": GroupCallStatus.CANCELLED,
}
#: The documented states by number.
_STATUS_NUMBERS: dict[int, GroupCallStatus] = {int(m): m for m in GroupCallStatus}
_NUMBER = re.compile(r"[+-]?[0-9]+")
_ACCEPTED = "use 0-6 or a name (" + ", ".join(_STATUS_NAMES) + ")"


@functools.lru_cache(maxsize=UNKNOWN_STATUSES_CACHED)
def _unknown_status(cls: type[GroupCallStatus], value: int) -> GroupCallStatus:
    """A pseudo-member for an undocumented value: equal to its number, named ``UNKNOWN_<n>``.

    Never put in the enum's own value map, which keeps what it holds forever (200,000
    distinct values once kept 77 MB after the client was gone); this small cache lets the
    records of one future state share a member, and forgets the rarest.
    """
    member = int.__new__(cls, value)
    member._name_ = f"UNKNOWN_{value}".replace("-", "MINUS_")
    member._value_ = value
    return member


@attrs.frozen(slots=True)
class GroupCallRecord:
    """One group-call task as the query returns it.

    Attributes (also the constructor's arguments, in this order):
        job_id: Task id (``jobId``), unique within the account.
        task_name: Task name (``taskName``).
        status: Task state (``status``); may be an unknown, future value (see
            ``GroupCallStatus``).
        rate: Call progress as the vendor formats it (``rate``, e.g. ``"87"``).
        num_cnt: Numbers in the task (``numCnt``).
        call_num: Calls made so far (``callNum``).
        success: Successful calls (``success``).
        fail: Failed calls (``fail``).
        created_time: Submission time (``createdTime``): naive, or aware in the client's
            ``server_timezone``.
    """

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
    """One page of a paged query.

    Attributes (also the constructor's arguments, in this order):
        records: The page's records, in the server's order.
        total: Records in the whole result (every page).
        size: Records per page that were asked for.
        current: This page's number, from 1.
        pages: Pages in the whole result.
    """

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
