"""The call-record query's arguments and the vendor's window rules, as pure code.

The vendor keeps call records for two months and answers at most 31 days at a time
(``/voice/recordGroupQuery``). Every rule is checked here before any request: a window
that reaches further back is refused (or clamped, when asked), and a longer window is cut
into consecutive slices of at most 31 days (see :func:`slice_window`).

Times are kept naive in UTC inside: an offset on the wire is exact, and UTC has no
daylight-saving gaps or repeats, so a time cursor over it is monotone. They go on the
wire as ISO 8601 with the offset of ``server_timezone`` (UTC's without one).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

import attrs

from ._checks import kind_of
from ._converter import format_iso_time

__all__ = [
    "MAX_WINDOW",
    "RETENTION_MONTHS",
    "CallRecordQuery",
    "earliest_allowed",
    "slice_window",
]

#: The longest window one request may ask for (``endTime - strTime``).
MAX_WINDOW: Final = timedelta(days=31)
#: How far back the vendor keeps call records, in calendar months.
RETENTION_MONTHS: Final = 2

#: How far inside the two months a clamped start goes: the boundary moves on while a
#: stream runs, and the oldest slice is read last, so a start right on it would be refused
#: by the time it is asked for.
CLAMP_MARGIN: Final = timedelta(days=1)

_SECOND: Final = timedelta(seconds=1)


def earliest_allowed(now: datetime) -> datetime:
    """The oldest time the vendor still answers for: ``now`` two calendar months back,
    the day clamped to the month's length (30 April for 31 June). Naive in, naive out."""
    month = now.month - RETENTION_MONTHS
    year = now.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    day = min(now.day, calendar.monthrange(year, month)[1])
    return now.replace(year=year, month=month, day=day, microsecond=0)


def slice_window(start: datetime, end: datetime) -> tuple[tuple[datetime, datetime], ...]:
    """``[start, end]`` (inclusive, whole seconds) cut into consecutive slices of at most
    31 days, from ``start`` on; returned newest first, as a stream reads them."""
    slices: list[tuple[datetime, datetime]] = []
    lo = start
    while True:
        hi = min(lo + MAX_WINDOW, end)
        slices.append((lo, hi))
        if hi >= end:
            break
        lo = hi + _SECOND
    slices.reverse()
    return tuple(slices)


def _to_utc(name: str, value: object, server_timezone: tzinfo | None) -> datetime:
    """A naive UTC datetime, whole seconds: aware values converted, naive ones read in
    ``server_timezone`` (refused without one: the offset would be a guess)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        if server_timezone is None:
            raise ValueError(
                f"{name} is naive but the client has no server_timezone: pass an aware "
                "datetime (call records are queried with an offset), or set "
                "AsyncVoiceClient(server_timezone=...)"
            )
        value = value.replace(tzinfo=server_timezone)
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def _shown(value: datetime) -> str:
    return value.replace(tzinfo=UTC).isoformat()


@attrs.frozen(slots=True)
class CallRecordQuery:
    """A checked call-record window, naive in UTC, inside the vendor's two months."""

    #: Window start and end, inclusive, naive UTC.
    start: datetime = attrs.field(validator=kind_of(datetime, "a datetime"))
    end: datetime = attrs.field(validator=kind_of(datetime, "a datetime"))
    #: The zone the wire's times are written in.
    wire_zone: tzinfo = UTC

    @classmethod
    def build(
        cls,
        start: object,
        end: object,
        *,
        now: datetime,
        server_timezone: tzinfo | None = None,
        clamp_start: object = False,
        single: bool = False,
    ) -> CallRecordQuery:
        """Check a window against the vendor's rules, or raise naming the argument.

        ``now`` is the vendor's current time, naive UTC. ``clamp_start`` moves a start
        older than two months up to one day after the oldest allowed (``CLAMP_MARGIN``)
        instead of refusing it; ``single``
        refuses a window over 31 days (one request cannot ask for more).
        """
        if not isinstance(clamp_start, bool):
            raise TypeError(f"clamp_start must be a bool, got {type(clamp_start).__name__}")
        lo = _to_utc("start", start, server_timezone)
        hi = _to_utc("end", end, server_timezone)
        if hi < lo:
            raise ValueError(f"end ({_shown(hi)}) is before start ({_shown(lo)})")
        earliest = earliest_allowed(now)
        if lo < earliest:
            if not clamp_start:
                raise ValueError(
                    f"start ({_shown(lo)}) reaches further back than the vendor keeps call "
                    f"records: only the last {RETENTION_MONTHS} months can be queried (the "
                    f"earliest start now is {_shown(earliest)}); pass clamp_start=True to "
                    "begin there instead"
                )
            lo = earliest + CLAMP_MARGIN
            if hi < lo:
                raise ValueError(
                    f"end ({_shown(hi)}) is older than the last {RETENTION_MONTHS} months "
                    f"the vendor keeps call records for (since {_shown(earliest)}, and a "
                    f"clamped start keeps {CLAMP_MARGIN.days} day inside them): nothing of "
                    "the window can be queried"
                )
        if single and hi - lo > MAX_WINDOW:
            raise ValueError(
                f"the window from start ({_shown(lo)}) to end ({_shown(hi)}) is longer "
                "than the 31 days the vendor answers in one query: narrow it, or use "
                "iter_call_records, which splits it"
            )
        return cls(lo, hi, server_timezone or UTC)

    def with_window(self, start: datetime, end: datetime) -> CallRecordQuery:
        """The same query over another (naive UTC) window."""
        return attrs.evolve(self, start=start, end=end)

    def slices(self) -> tuple[tuple[datetime, datetime], ...]:
        """The window cut into slices of at most 31 days, newest first."""
        return slice_window(self.start, self.end)

    def wire_time(self, value: datetime) -> str:
        """A naive UTC time as the wire wants it: ISO 8601 with the wire zone's offset."""
        return format_iso_time(value.replace(tzinfo=UTC).astimezone(self.wire_zone))

    def body(self, page: int, size: int) -> dict[str, Any]:
        """The request body for one page, as the vendor documents it."""
        return {
            "current": page,
            "size": size,
            "params": {"strTime": self.wire_time(self.start), "endTime": self.wire_time(self.end)},
        }
