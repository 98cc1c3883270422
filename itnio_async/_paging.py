"""The paging engine's decisions, as plain code with no I/O.

A *plan* says which pages to fetch, takes each reply as it comes, checks it, and says what
to hand out next. A thin task layer (``_stream``) runs the fetches; nothing here awaits,
sleeps or knows an endpoint. Any paged query whose result is ordered newest first by a
time that the window bounds can be driven by it: records are seen only through two key
functions, ``time_of`` (naive, whole seconds, the zone of the window) and ``id_of``.

**Cursor mode** (:class:`CursorPlan`) never trusts offsets to stay put. A *slice* is a
range of whole seconds ``[lo, top]``; its *position* ``(time, seen)`` says that
everything newer than ``time``, and the records ``seen`` at ``time``, are done. Its next
request asks for page 1 of ``[lo, time]``: records created or moved anywhere above the
position cannot shift what is below it, so a record that stays in the result is reached
exactly once, whatever happens elsewhere. Repeats from the boundary second are dropped by
id. When more records share one second than a page holds, that second alone is paged by
offset (its total checked on every page).

Slices run concurrently. They are cut from the *frontier* (the not yet planned rest of
the window) with offset pages: page ``p`` of the frontier's window is a contiguous run of
the result at the moment it was answered, so the records it holds below its first second
are exactly what the result had there; the slice above it owns that first second. A cut
splits whichever slice holds its first second as soon as it is in, whatever order the
cuts of a batch come in, and the slice below is paged from it at once. The
offset page is a real page, not a probe: cutting costs no extra request, only the last,
partial page of each slice. Slices are cut lazily, near the consumer, so read-ahead (and
memory) is bounded whatever the size of the result.

Whether the vendor's ``endTime`` is inclusive is not documented. Until a reply shows a
record at the second a request ended on (proof that the end is inclusive), requests end
one second past the position, and what comes from above the position is dropped: correct
either way, and it costs nothing once proven.

**Offset mode** (:class:`OffsetPlan`) pages by number, as the vendor documents. It is the
fallback when replies show that records are not ordered newest first or not bounded by the
window, and what ``start_page`` asks for. When the total changes it re-reads from before
the first page not yet handed out (a bounded number of times) and drops repeats by id.

Every reply is checked against what was asked (page number, size, record count against
``total``, ``pages``) and against the order and window; a reply that contradicts itself is
a :class:`MalformedResponseError`, never silent loss. Every plan has a request budget: a
result that keeps changing ends in :class:`ResultUnstableError`, never an endless loop.
"""

from __future__ import annotations

import base64
import binascii
import enum
import itertools
import json
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Generic, TypeVar

import attrs

from ._errors import MalformedResponseError, ResultUnstableError
from ._models import Page

__all__ = [
    "Batch",
    "CursorPlan",
    "Fallback",
    "Fetch",
    "OffsetPlan",
    "PagingMode",
    "Range",
    "StreamCursor",
]

T = TypeVar("T")

_SECOND: Final = timedelta(seconds=1)

#: Times one stream may find the result changed (offset mode) or one second's total
#: changed (cursor mode) before it gives up with ``ResultUnstableError``.
MAX_REREADS: Final = 8
#: Job ids remembered in offset mode to drop repeats after a re-read, at least.
MIN_REMEMBERED: Final = 10_000
#: Slices are cut at least this many pages long: each costs about one partial page.
MIN_SLICE_PAGES: Final = 3


class PagingMode(enum.Enum):
    """How a stream pages (see the README's "Guarantees")."""

    #: By time cursor: exactly once under any churn.
    CURSOR = "cursor"
    #: By page number: exactly once while the result holds still.
    OFFSET = "offset"


def _malformed(reason: str) -> MalformedResponseError:
    return MalformedResponseError(reason, status_code=200, body="")


# -- what a plan asks for and hands out ------------------------------------------------------


@attrs.frozen(slots=True)
class Fetch:
    """One request a plan wants: page ``page`` of ``size`` records of ``[start, end]``."""

    #: Unique within the plan; the reply is handed back with it.
    key: int
    #: Window start and end (inclusive as sent), naive, whole seconds.
    start: datetime
    end: datetime
    page: int
    size: int


@attrs.frozen(slots=True)
class Batch(Generic[T]):
    """Records to hand out, in order, with what a page stream reports for them."""

    records: tuple[T, ...]
    #: The page number in offset mode; in cursor mode the count of batches handed out.
    number: int
    #: Records in the window, as the stream knows it.
    total: int


class Fallback(Exception):
    """Raised by a cursor plan when replies show the vendor orders or bounds records
    differently, while falling back is still exact: the task layer switches to offset
    mode with the plan that ``offset_plan()`` gives."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- positions and cursors -------------------------------------------------------------------


@attrs.frozen(slots=True)
class Range:
    """What is left of a window: ``lo <= time <= top``, without the ids ``seen`` at ``top``."""

    lo: datetime
    top: datetime
    seen: frozenset[Hashable] = frozenset()


def _wire_time(value: datetime) -> str:
    # By hand: strftime("%Y") does not pad years before 1000 on glibc, and strptime
    # then refused the cursor of a window from datetime.min.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError("time is not a string")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")


_CURSOR_PREFIX: Final = "itc1."


@attrs.frozen(slots=True)
class StreamCursor:
    """Where a stream stands: small, immutable, and serialisable with ``str()``.

    Pass it as ``resume_from=`` to the same stream (same window and filters) to go on
    exactly where it stopped: nothing lost, nothing repeated, whether the result changed
    meanwhile or not. ``StreamCursor.from_string(str(cursor))`` gives it back.

    Attributes (also the constructor's arguments, in this order):
        endpoint: The stream it belongs to (``"group_calls"``, ...).
        start: The window's start as queried, naive in the vendor's zone.
        end: The window's end as queried (frozen at the first run's start when the client
            has a ``server_timezone``), naive in the vendor's zone.
        requested_end: The end the first run was asked for (before freezing).
        filters: The filters, canonical JSON.
        mode: How the stream pages.
        ranges: Cursor mode: what is left, newest first. Default ``()``.
        page: Offset mode: the first page not yet handed out. Default ``1``.
        page_size: Offset mode: the page size that page number counts in. Default ``100``.
        exclude: Offset mode: ids at the top of a resumed range, still to be dropped. Default
            ``frozenset()``.
    """

    #: The stream it belongs to (``"group_calls"``, ...).
    endpoint: str
    #: The window as queried: start and end (the end frozen at the first run's start
    #: when the client has a ``server_timezone``), naive in the vendor's zone.
    start: datetime
    end: datetime
    #: The end the first run was asked for (before freezing).
    requested_end: datetime
    #: The filters, canonical JSON.
    filters: str
    #: How the stream pages.
    mode: PagingMode
    #: Cursor mode: what is left, newest first. Offset mode: what is left after the
    #: window being paged (a stream over consecutive windows, such as call records').
    ranges: tuple[Range, ...] = ()
    #: Offset mode: the first page not yet handed out, and the page size.
    page: int = 1
    page_size: int = 100
    #: Offset mode: ids at the top of a resumed range, still to be dropped.
    exclude: frozenset[Hashable] = frozenset()

    @property
    def done(self) -> bool:
        """Whether nothing is left (a stream resumed from it sends no request)."""
        return self.mode is PagingMode.CURSOR and not self.ranges

    def to_string(self) -> str:
        """A compact, URL-safe string (also ``str(cursor)``)."""
        payload: dict[str, Any] = {
            "e": self.endpoint,
            "s": _wire_time(self.start),
            "t": _wire_time(self.end),
            "r": _wire_time(self.requested_end),
            "f": self.filters,
            "m": self.mode.value,
        }
        if self.mode is PagingMode.CURSOR or self.ranges:
            payload["g"] = [
                [_wire_time(r.lo), _wire_time(r.top), sorted(r.seen, key=repr)] for r in self.ranges
            ]
        if self.mode is PagingMode.OFFSET:
            payload["p"] = self.page
            payload["z"] = self.page_size
            payload["x"] = sorted(self.exclude, key=repr)
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()
        return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def from_string(cls, text: object) -> StreamCursor:
        """Read a cursor back from its string.

        Args:
            text: what ``str(cursor)`` (or ``cursor.to_string()``) gave, ``itc1.…``.

        Returns:
            The cursor.

        Raises:
            ValueError: ``text`` is not a stream cursor (another type, another prefix, or
                a damaged body), naming ``resume_from``.
        """
        if not isinstance(text, str) or not text.startswith(_CURSOR_PREFIX):
            raise ValueError("resume_from: not a stream cursor (expected 'itc1.…')")
        body = text[len(_CURSOR_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            data = json.loads(raw)
            mode = PagingMode(data["m"])
            ranges: tuple[Range, ...] = ()
            if mode is PagingMode.CURSOR or "g" in data:
                ranges = tuple(
                    Range(_parse_time(lo), _parse_time(top), frozenset(_ids(seen)))
                    for lo, top, seen in data["g"]
                )
            cursor = cls(
                endpoint=_str(data["e"]),
                start=_parse_time(data["s"]),
                end=_parse_time(data["t"]),
                requested_end=_parse_time(data["r"]),
                filters=_str(data["f"]),
                mode=mode,
                ranges=ranges,
                page=_int(data.get("p", 1)),
                page_size=_int(data.get("z", 100)),
                exclude=frozenset(_ids(data.get("x", ()))),
            )
        # RecursionError: JSON nested deeper than the decoder goes is not a cursor either.
        except (
            binascii.Error,
            UnicodeDecodeError,
            ValueError,
            KeyError,
            TypeError,
            RecursionError,
        ) as exc:
            raise ValueError(f"resume_from: not a valid stream cursor ({exc})") from None
        if cursor.page < 1 or not 1 <= cursor.page_size <= 100:
            raise ValueError("resume_from: not a valid stream cursor (page out of range)")
        return cursor


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an int")
    return value


def _ids(values: object) -> Iterator[Hashable]:
    if not isinstance(values, list | tuple):
        raise TypeError("expected a list of ids")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError("an id is not an int or a string")
        yield value


# -- checks shared by both modes -------------------------------------------------------------


def check_reply(fetch: Fetch, page: Page[Any]) -> None:
    """Raise ``MalformedResponseError`` if ``page`` contradicts itself or the request."""
    where = f"page {fetch.page} of [{fetch.start}, {fetch.end}]"
    if page.current != fetch.page:
        raise _malformed(f"asked for {where}, got page {page.current}")
    if page.size != fetch.size:
        raise _malformed(f"asked for {fetch.size} records a page, the reply says {page.size}")
    if page.total < 0:
        raise _malformed(f"negative total {page.total} for {where}")
    expected = min(fetch.size, max(0, page.total - (fetch.page - 1) * fetch.size))
    if len(page.records) != expected:
        raise _malformed(
            f"{where} holds {len(page.records)} records, but total {page.total} with "
            f"{fetch.size} a page means {expected}"
        )
    if page.pages != math.ceil(page.total / fetch.size):
        raise _malformed(
            f"{where}: pages {page.pages} does not match total {page.total} / size {fetch.size}"
        )


# -- cursor mode -------------------------------------------------------------------------


@attrs.define(slots=True)
class _Ready(Generic[T]):
    """Records fetched for a slice, not yet handed out, with the position they lead to."""

    records: tuple[T, ...]
    times: tuple[datetime, ...]
    before: tuple[datetime, frozenset[Hashable]]
    after: tuple[datetime, frozenset[Hashable]]


@attrs.define(slots=True)
class _Second:
    """One second paged by offset: more records share it than a page holds.

    Offsets inside it shift when one of its records leaves and another enters (its total
    unchanged), so it is read in passes until a whole pass brings nothing new: a record
    that stayed, and that one pass was shifted past, is found by the next.
    """

    time: datetime
    start: datetime
    end: datetime
    page: int = 1
    total: int | None = None
    #: Whole passes over the second done, and whether the current one found new records.
    passes: int = 0
    found: bool = False


@attrs.define(slots=True, eq=False)
class _Slice(Generic[T]):
    """A range of whole seconds fetched by cursor, newest first."""

    #: Lowest second it owns (the window's start while it is the frontier).
    lo: datetime
    #: Highest second it owns.
    top: datetime
    #: Position after everything fetched and accepted.
    time: datetime
    seen: frozenset[Hashable]
    #: Position after everything handed out (what a cursor records).
    out_time: datetime
    out_seen: frozenset[Hashable]
    #: Fetched, checked, not yet handed out, oldest last.
    ready: deque[_Ready[T]] = attrs.field(factory=deque)
    #: The one request of this slice in flight, if any.
    in_flight: Fetch | None = None
    #: Everything it owns is fetched.
    done: bool = False
    #: The not yet planned rest of the window: cut by offset pages, never fetched by cursor.
    frontier: bool = False
    #: Set while one crowded second is paged by offset.
    second: _Second | None = None
    #: A limit cut its records short: what it fetched past the limit is still to do.
    cut: bool = False

    @classmethod
    def new(cls, lo: datetime, top: datetime, seen: frozenset[Hashable] = frozenset()) -> _Slice[T]:
        return cls(lo, top, top, seen, top, seen)

    @property
    def finished(self) -> bool:
        return self.done and not self.ready and self.in_flight is None

    @property
    def untouched(self) -> bool:
        """Nothing of it handed out yet."""
        return self.out_time == self.top and not self.out_seen


def _advance(
    time: datetime, seen: frozenset[Hashable], pairs: Iterable[tuple[datetime, Hashable]]
) -> tuple[datetime, frozenset[Hashable]]:
    """The position after records ``(time, id)``, newest first, read from ``(time, seen)``."""
    grown: set[Hashable] | None = None
    for at, ident in pairs:
        if at < time:
            time, grown = at, {ident}
        else:
            if grown is None:
                grown = set(seen)
            grown.add(ident)
    return time, (seen if grown is None else frozenset(grown))


class CursorPlan(Generic[T]):
    """Fetch what is left of a window by time cursor, in concurrent slices.

    ``ranges`` are what is left, newest first (one range ``[start, end]`` for a new
    stream). ``read_ahead`` bounds the pages fetched or in flight ahead of the consumer.
    """

    def __init__(
        self,
        ranges: Sequence[Range],
        *,
        window: tuple[datetime, datetime],
        page_size: int,
        concurrency: int,
        ordered: bool,
        limit: int | None,
        read_ahead: int,
        time_of: Callable[[T], datetime],
        id_of: Callable[[T], Hashable],
        max_page_size: int = 100,
    ) -> None:
        self._size = page_size
        self._max_size = max(page_size, max_page_size)
        self._concurrency = concurrency
        self._ordered = ordered
        self._remaining = limit
        self._read_ahead = max(read_ahead, concurrency)
        self._time_of = time_of
        self._id_of = id_of
        self._window_end = window[1]
        # A new stream may still fall back to offset mode exactly (see Fallback).
        self._fresh = tuple(ranges) == (Range(*window),)
        self._keys = itertools.count(1)
        # Slices in yield order, newest first; the frontier, if any, is the last.
        self._slices: list[_Slice[T]] = [_Slice.new(r.lo, r.top, r.seen) for r in ranges]
        # Requests in flight: key -> (its slice, what it is for).
        self._in_flight: dict[int, tuple[_Slice[T], str]] = {}
        # The batch of frontier cuts in flight: keys of the cuts not answered yet.
        self._cuts: set[int] = set()
        # The key of the batch's lowest cut (the highest page), until it is answered.
        self._last_cut: int | None = None
        # Whether the lowest slice stays the frontier once the batch is answered.
        self._keep_frontier = False
        # The lowest slice a cut made in this batch, with what its reply said of the
        # frontier below it: (slice, records left below its page, the page's times).
        self._lowest_cut: tuple[_Slice[T], int, tuple[datetime, ...]] | None = None
        # Records the frontier still holds below what is planned, as last told.
        self._frontier_records = 0
        # The times of the reply the frontier's top came from, newest first: what of
        # them lies in the frontier's window is at the top of its offset pages too.
        self._frontier_top: tuple[datetime, ...] = ()
        # Fetches the task layer should cancel: their answers are no longer wanted.
        self._obsolete: list[int] = []
        # Whether a reply showed a record at the second its request ended on.
        self._end_inclusive = False
        # The first request goes alone: its total tells how to cut the rest.
        self._first: Fetch | None = None
        self._first_reply: Page[T] | None = None
        self._started = not self._slices
        # Re-reads of crowded seconds whose total changed.
        self._rereads = 0
        #: Records in what is left of the window, as the first reply told.
        self.total = 0
        #: Requests asked for so far, and the most this stream may ask for.
        self.sent = 0
        self._budget = 16 + 4 * concurrency
        #: Batches handed out so far.
        self.batches_out = 0

    # -- what the task layer asks -------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Nothing left to fetch or to hand out."""
        return self._remaining == 0 or (self._started and not self._slices)

    @property
    def end_inclusive(self) -> bool:
        """Whether replies proved the vendor's ``endTime`` inclusive."""
        return self._end_inclusive

    def obsolete(self) -> list[int]:
        """Keys of fetches in flight whose answers are no longer wanted (cancel them)."""
        out, self._obsolete = self._obsolete, []
        return out

    def remaining(self) -> tuple[Range, ...]:
        """What is left, newest first: adjacent untouched slices are merged."""
        out: list[Range] = []
        for s in self._slices:
            if s.finished and not s.cut:
                continue
            if out and s.untouched and s.top == out[-1].lo - _SECOND:
                out[-1] = Range(s.lo, out[-1].top, out[-1].seen)
            else:
                out.append(Range(s.lo, s.out_time, s.out_seen))
        return tuple(out)

    def due(self) -> list[Fetch]:
        """The fetches to start now; each is in flight until its reply or failure."""
        out: list[Fetch] = []
        if self._remaining == 0:
            return out
        if not self._started:
            if self._first is None:
                self._first = self._cursor_fetch(self._slices[0])
                self._issue(self._first, self._slices[0], "cursor", out)
            return out
        # The head's moves that carry no record are handed out here, not left to
        # take(): held back, they keep the head "unfinished" and fill the read-ahead,
        # and take() would then consume them, unblock the next slice and return None
        # with a fetch due that nobody asks for: the stream waited forever.
        self._skip_moves()
        if self._start_slices(out) and (self._plan_cuts(out) or self._cuts):
            # The frontier was just let go, to be fetched by cursor, or a batch of cuts
            # was just asked for, while which the frontier's top is fetched by cursor:
            # start it now, as nothing else may be in flight to bring the task layer
            # back here, and a worker left idle for a round is a round lost.
            self._start_slices(out)
        return out

    def on_reply(self, fetch: Fetch, page: Page[T]) -> None:
        """Take one reply.

        Raises ``MalformedResponseError`` when it contradicts itself or the request,
        ``ResultUnstableError`` when the result keeps changing, and ``Fallback`` when it
        shows that the vendor orders or bounds records differently.
        """
        entry = self._in_flight.pop(fetch.key, None)
        if entry is None:
            return  # no longer wanted
        s, purpose = entry
        if purpose != "cut":
            s.in_flight = None
        check_reply(fetch, page)
        time_of = self._time_of
        times = tuple([time_of(record) for record in page.records])
        self._check_order(fetch, times)
        if times and times[0] == fetch.end:
            self._end_inclusive = True
        if purpose == "cut":
            self._on_cut(fetch, page, times)
            return
        if self._first is not None and fetch.key == self._first.key:
            self._started = True
            self._first_reply = page
            self.total = page.total
            self._budget += 2 * math.ceil(page.total / self._size)
            # Only the last slice can be the frontier (cuts take from the end of the
            # window): a resumed plan's first slice marked so while others came after it
            # was never fetched again, and the stream waited forever.
            if len(page.records) < page.total and s is self._slices[-1]:
                s.frontier = True
                self._frontier_records = page.total - len(page.records)
                self._frontier_top = times
        if purpose == "second":
            self._on_second(s, fetch, page, times)
        else:
            self._on_cursor(s, page, times)

    def on_failure(self, fetch: Fetch) -> None:
        """A fetch failed for good: forget it (the stream ends with its error)."""
        entry = self._in_flight.pop(fetch.key, None)
        if entry is not None and entry[1] != "cut":
            entry[0].in_flight = None

    def take(self) -> Batch[T] | None:
        """The next records to hand out, or ``None`` when none is ready now."""
        if self._fresh and self._cuts and self.batches_out == 1:
            # While the first cuts are in flight, what the top slice brings waits: a cut
            # may still show that the vendor orders records otherwise, and the stream can
            # fall back to offsets exactly only while no more than page 1 went out.
            return None
        while self._remaining != 0:
            self._prune()
            s = next((s for s in self._slices if s.ready), None)
            if s is None or (self._ordered and s is not self._slices[0]):
                return None
            ready = s.ready.popleft()
            records = ready.records
            if self._remaining is not None and len(records) >= self._remaining:
                s.cut = len(records) > self._remaining
                records = records[: self._remaining]
                pairs = zip(ready.times, map(self._id_of, records), strict=False)
                ready.after = _advance(*ready.before, pairs)
                self._remaining = 0
                self._drop_all()
            elif self._remaining is not None:
                self._remaining -= len(records)
            s.out_time, s.out_seen = ready.after
            if records:
                self.batches_out += 1
                return Batch(records, self.batches_out, self.total)
        return None

    def fallback(self) -> OffsetPlan[T]:
        """The offset plan that takes over exactly where this one stands (after
        ``Fallback``): page 1 again if nothing went out, else page 2."""
        assert self._first is not None
        limit = self._remaining
        self._drop_all()
        first = self._first
        reply = self._first_reply if self.batches_out == 0 else None
        return OffsetPlan[T](
            window=(first.start, first.end),
            first_page=1 if self.batches_out == 0 else 2,
            page_size=self._size,
            concurrency=self._concurrency,
            limit=limit,
            id_of=self._id_of,
            prefetched=reply,
        )

    # -- fetching -----------------------------------------------------------------------

    def _start_slices(self, out: list[Fetch]) -> bool:
        """Start the slices' next fetches; ``False`` if workers or read-ahead ran out."""
        ahead = sum(len(s.ready) for s in self._slices)
        head = self._head()
        # With a limit, records fetched and not handed out yet may cover it already:
        # what comes after them in yield order is then never handed out. Not counted,
        # a slow consumer let every slice read on up to the read-ahead.
        remaining = self._remaining
        covered = 0
        if remaining is not None and not self._ordered:
            covered = sum(len(r.records) for s in self._slices for r in s.ready)
        for s in self._slices:
            if remaining is not None and self._ordered:
                covered += sum(len(r.records) for r in s.ready)
            if remaining is not None and covered >= remaining:
                return False
            if len(self._in_flight) >= self._concurrency:
                return False
            if s.done or s.in_flight is not None:
                continue
            if s.frontier and self._last_cut is None:
                # The frontier is cut, not fetched, except while the lowest cut of a
                # batch is in flight: it is then the part of the batch above that cut,
                # paged from its position like any other slice (the cuts split it).
                continue
            if s is not head and ahead + len(self._in_flight) >= self._read_ahead:
                return False
            if s.second is not None:
                self._issue(self._second_fetch(s), s, "second", out)
            else:
                self._issue(self._cursor_fetch(s), s, "cursor", out)
        return True

    def _issue(self, fetch: Fetch, s: _Slice[T], purpose: str, out: list[Fetch]) -> None:
        if self.sent >= self._budget:
            raise ResultUnstableError(
                f"the result kept changing: {self.sent} requests and not done, for a "
                f"result that first needed {math.ceil(self.total / self._size)} pages"
            )
        self.sent += 1
        if purpose != "cut":
            s.in_flight = fetch
        self._in_flight[fetch.key] = (s, purpose)
        out.append(fetch)

    def _end_for(self, top: datetime) -> datetime:
        """Where a request for what is at or below ``top`` ends (see the module docstring)."""
        if self._end_inclusive or top >= self._window_end:
            return top
        return top + _SECOND

    def _cursor_fetch(self, s: _Slice[T]) -> Fetch:
        # The records seen at the position's second come again at the top of the page:
        # ask for that many more, so that small pages still move on by a page each.
        size = min(self._max_size, self._size + len(s.seen))
        return Fetch(next(self._keys), s.lo, self._end_for(s.time), 1, size)

    def _second_fetch(self, s: _Slice[T]) -> Fetch:
        second = s.second
        assert second is not None
        end = self._end_for(second.time)
        if second.end != end:
            # The end's meaning was learned meanwhile: the offsets change, start again.
            second.end, second.page, second.total = end, 1, None
        return Fetch(next(self._keys), second.time, end, second.page, self._size)

    def _head(self) -> _Slice[T] | None:
        return next((s for s in self._slices if not s.finished), None)

    def _drop_all(self) -> None:
        self._obsolete.extend(self._in_flight)
        for s, purpose in self._in_flight.values():
            if purpose != "cut":
                s.in_flight = None
        self._in_flight.clear()
        self._cuts.clear()
        self._last_cut = self._lowest_cut = None

    def _skip_moves(self) -> None:
        """Hand out the head slice's leading position moves that hold no record."""
        while True:
            self._prune()
            s = self._slices[0] if self._slices else None
            if s is None or not s.ready or s.ready[0].records:
                return
            s.out_time, s.out_seen = s.ready.popleft().after

    def _prune(self) -> None:
        if self._ordered:
            while self._slices and self._slices[0].finished:
                del self._slices[0]
        elif any(s.finished for s in self._slices):
            self._slices = [s for s in self._slices if not s.finished]

    # -- checks -------------------------------------------------------------------------

    def _check_order(self, fetch: Fetch, times: Sequence[datetime]) -> None:
        reason = None
        for newer, older in itertools.pairwise(times):
            if older > newer:
                reason = f"records are not newest first ({older} came after {newer})"
                break
        if reason is None and times and (times[0] > fetch.end or times[-1] < fetch.start):
            outside = times[0] if times[0] > fetch.end else times[-1]
            reason = f"a record created {outside} is outside [{fetch.start}, {fetch.end}]"
        if reason is None:
            return
        if self._fresh and self.batches_out <= 1:
            raise Fallback(reason)
        raise _malformed(f"{reason}, in the middle of a stream")

    # -- replies ------------------------------------------------------------------------

    def _accept(self, s: _Slice[T], records: Sequence[T], times: Sequence[datetime]) -> None:
        """Queue what is new to ``s`` in a reply, and move its position past the reply."""
        top, seen, lo = s.time, s.seen, s.lo
        keep: list[T] = []
        keep_times: list[datetime] = []
        pairs: list[tuple[datetime, Hashable]] = []
        id_of = self._id_of
        for record, at in zip(records, times, strict=True):
            if at > top or at < lo:
                continue  # above the position (done already), or another slice's
            ident = id_of(record)
            pairs.append((at, ident))
            if at == top and ident in seen:
                continue  # a repeat from the boundary second
            keep.append(record)
            keep_times.append(at)
        before = (top, seen)
        s.time, s.seen = _advance(top, seen, pairs)
        if keep or (s.time, s.seen) != before:
            s.ready.append(_Ready(tuple(keep), tuple(keep_times), before, (s.time, s.seen)))

    def _move(self, s: _Slice[T], time: datetime) -> None:
        """Move ``s`` down to ``time`` with nothing seen there (a crowded second is done)."""
        before = (s.time, s.seen)
        s.time, s.seen = time, frozenset()
        s.ready.append(_Ready((), (), before, (time, s.seen)))
        if time < s.lo:
            s.done = True

    def _on_cursor(self, s: _Slice[T], page: Page[T], times: tuple[datetime, ...]) -> None:
        top = s.time
        self._accept(s, page.records, times)
        if len(page.records) == page.total or s.time < s.lo or (times and times[-1] < s.lo):
            # The reply held all that is left of the slice (it reached below the slice
            # when a cut moved the slice's bottom up while it was in flight).
            s.done = True
        elif not times or times[-1] >= top:
            # A full page that never got below the position's second: page that second.
            s.second = _Second(top, top, self._end_for(top))

    def _on_second(
        self, s: _Slice[T], fetch: Fetch, page: Page[T], times: tuple[datetime, ...]
    ) -> None:
        second = s.second
        assert second is not None
        if fetch.end != second.end:
            return  # asked before the end's meaning changed; the next one starts again
        if second.total is not None and page.total != second.total:
            self._rereads += 1
            if self._rereads > MAX_REREADS:
                raise ResultUnstableError(
                    f"the records created at {second.time} kept changing while they were "
                    f"paged ({MAX_REREADS} re-reads)"
                )
            second.page, second.total = 1, None  # read that second again; repeats dropped
            return
        if second.passes == 0 and second.total is None:
            # Reading a crowded second twice over is work the first reply did not count.
            self._budget += 2 * math.ceil(page.total / self._size) + 2
        second.total = page.total
        known = len(s.seen) if s.time == second.time else 0
        self._accept(s, page.records, times)
        if len(s.seen) > known:
            second.found = True
        if fetch.page * fetch.size < page.total:
            second.page += 1
        elif second.passes == 0 or second.found:
            # One more pass, to find what a shift inside the second hid from this one.
            second.passes += 1
            if second.passes > MAX_REREADS:
                raise ResultUnstableError(
                    f"the records created at {second.time} kept changing while they were "
                    f"paged ({MAX_REREADS} passes)"
                )
            second.page, second.total, second.found = 1, None, False
        else:
            s.second = None
            self._move(s, second.time - _SECOND)

    # -- cutting the frontier -----------------------------------------------------------

    def _plan_cuts(self, out: list[Fetch]) -> bool:
        """Cut the frontier into slices while workers are free (one batch at a time).

        ``True`` when the frontier is let go uncut instead (its fetch is not started)."""
        frontier = self._slices[-1] if self._slices and self._slices[-1].frontier else None
        if frontier is None or self._cuts:
            return False
        active = sum(1 for s in self._slices if not s.done and not s.frontier)
        free = min(self._concurrency - active, self._concurrency - len(self._in_flight))
        if free <= 0:
            return False
        records = self._frontier_records
        if self._remaining is not None:
            records = min(records, self._remaining)
        rest = math.ceil(records / self._size)
        longest = max(MIN_SLICE_PAGES, self._read_ahead // self._concurrency)
        slices = max(1, min(free, rest // MIN_SLICE_PAGES))
        each = math.ceil(rest / slices) if rest else 0
        # The frontier's top is the batch's top slice, fetched by cursor while the cuts
        # are answered, and cut ``j`` is page ``j * each + 1`` of the frontier's window
        # in pages of ``size`` records: each slice is then ``each`` such pages, fetched
        # as its cut and ``each - 1`` cursor pages (the top slice as ``each`` cursor
        # pages). A cursor page reads its boundary second again, so at the vendor's
        # largest page it moves on by less than a page: ``size`` is the smallest that
        # still covers the frontier's window, so that every slice keeps as much room as
        # it can for those repeats. Had they no room, every slice would need one more
        # request (and one more round trip) than the pages it holds.
        if each > longest:
            # Part of the frontier, in slices of ``longest`` pages of what a cursor page
            # moves on by, with room for a boundary second of two records.
            each, cuts, self._keep_frontier = longest, free, True
            size = max(1, min(self._size, self._max_size - 2))
            pages = [j * each for j in range(1, cuts + 1)]
        else:
            # The whole frontier, spread evenly; its window also holds what the top
            # slice already has at its position's second (and the second above it,
            # while ``endTime`` is not proven inclusive).
            cuts, self._keep_frontier = slices - 1, False
            top, end = frontier.time, self._end_for(frontier.time)
            window = records + sum(1 for at in self._frontier_top if top <= at <= end)
            size = max(1, min(self._size, math.ceil(window / max(1, slices * each))))
            pages = [j * each + 1 for j in range(1, cuts + 1)]
        if self._size + 2 <= self._max_size:
            # A cursor page below the vendor's largest asks for its repeats on top, and
            # moves on by a whole page: the cuts keep the stream's own page size, and
            # share the frontier's ``rest`` pages out evenly.
            size = self._size
            if not self._keep_frontier:
                share = rest / slices
                pages = [max(2, round(j * share) + 1) for j in range(1, cuts + 1)]
        if cuts <= 0:
            frontier.frontier = False  # small enough: fetch it by cursor
            return True
        end = self._end_for(frontier.time)
        self._lowest_cut = None
        if not self._keep_frontier:
            frontier.frontier = False  # every slice of it is fetched by cursor
        for page in pages:
            fetch = Fetch(next(self._keys), frontier.lo, end, page, size)
            self._cuts.add(fetch.key)
            self._last_cut = fetch.key
            self._issue(fetch, frontier, "cut", out)
        return False

    def _on_cut(self, fetch: Fetch, page: Page[T], times: tuple[datetime, ...]) -> None:
        """Split the slice that holds the cut's first second, as soon as the cut is in.

        Each slice is paged from its own cut at once, not after the whole batch: a
        slice left waiting for the slowest cut of the batch is a round trip shortened
        for nobody, and requests sent together queue together at the server.
        """
        self._cuts.discard(fetch.key)
        if fetch.key == self._last_cut:
            self._last_cut = None
        if times:
            self._split(fetch, page, times)
        if self._cuts:
            return
        # The batch is in: what is below its lowest cut stays the frontier, or not.
        lowest = self._slices[-1] if self._slices else None
        kept = self._lowest_cut
        self._lowest_cut = None
        if lowest is None or not lowest.frontier:
            self._frontier_records = 0
        elif self._keep_frontier and kept is not None and kept[0] is lowest and kept[1] > 0:
            self._frontier_records, self._frontier_top = kept[1], kept[2]
        else:
            lowest.frontier, self._frontier_records = False, 0

    def _split(self, fetch: Fetch, page: Page[T], times: tuple[datetime, ...]) -> None:
        first = times[0]
        index, s = next(
            ((i, s) for i, s in enumerate(self._slices) if s.lo <= first <= s.top),
            (-1, None),
        )
        if s is None or s.done or first > s.time or first == s.lo:
            # Overlaps what is fetched already (the result shifted, or the slice's own
            # cursor pages got there first), or leaves nothing below: unused.
            return
        # The slice keeps ``first`` and above; a new slice takes what is below, and the
        # frontier's mark, if the slice had it.
        below: _Slice[T] = _Slice.new(s.lo, first - _SECOND)
        below.frontier, s.frontier, s.lo = s.frontier, False, first
        if s.time < s.lo:
            s.done = True
        self._accept(below, page.records, times)
        if below.time < below.lo:
            below.done = True
        self._slices.insert(index + 1, below)
        if below is self._slices[-1]:
            self._lowest_cut = (below, max(0, page.total - fetch.page * fetch.size), times)


# -- offset mode -------------------------------------------------------------------------


class _RecentIds:
    """The ids of the most recently handed-out records, whole pages at a time, at least
    ``capacity`` of them: after a re-read, repeats can only be of those."""

    __slots__ = ("_ids", "_pages", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # The ids of each page handed out, oldest first.
        self._pages: deque[frozenset[Hashable]] = deque()
        # All ids in _pages, for membership tests.
        self._ids: set[Hashable] = set()

    def __contains__(self, ident: object) -> bool:
        return ident in self._ids

    def snapshot(self) -> frozenset[Hashable]:
        return frozenset(self._ids)

    def add(self, ids: frozenset[Hashable]) -> None:
        self._pages.append(ids)
        self._ids |= ids
        while len(self._ids) - len(self._pages[0]) >= self.capacity:
            self._ids -= self._pages.popleft()


@attrs.define(slots=True, eq=False)
class _Slot(Generic[T]):
    """One page of the current reading, in yield order."""

    page: int
    fetch: Fetch | None = None
    reply: Page[T] | None = None


class OffsetPlan(Generic[T]):
    """Fetch a window by page number, ``concurrency`` pages in flight, handed out in order.

    The vendor pages by offset, so a record created in (or leaving) the window shifts
    every later page. Each reply carries ``total``; when it differs from the total being
    followed, the plan drops every reply not yet handed out and reads again from one page
    before the first page not handed out (more when many records left), dropping repeats
    by id. After ``MAX_REREADS`` such re-reads it gives up with ``ResultUnstableError``.
    A change that keeps the total (one record in, one out) is not seen: that is the limit
    of this mode, and why cursor mode is the default.
    """

    def __init__(
        self,
        *,
        window: tuple[datetime, datetime],
        first_page: int,
        page_size: int,
        concurrency: int,
        limit: int | None,
        id_of: Callable[[T], Hashable],
        exclude: frozenset[Hashable] = frozenset(),
        prefetched: Page[T] | None = None,
    ) -> None:
        self._start, self._end = window
        self._first_page = first_page
        self._size = page_size
        self._concurrency = concurrency
        self._ahead = 3 * concurrency
        self._remaining = limit
        self._id_of = id_of
        self._keys = itertools.count(1)
        # Pages of the current reading not yet handed out, in order.
        self._slots: deque[_Slot[T]] = deque()
        # The next page number to give a new slot.
        self._next_new = first_page
        # The total the current reading follows, and the last page it needs.
        self._total: int | None = None
        self._last_page = 0
        self._in_flight: dict[int, _Slot[T]] = {}
        self._obsolete: list[int] = []
        self._recent = _RecentIds(max((self._ahead + 4) * page_size, MIN_REMEMBERED))
        # Ids that may come again: handed out before the last re-read, or excluded.
        self._drop: frozenset[Hashable] = exclude
        #: Times the result changed and pages were read again.
        self.rereads = 0
        #: Requests asked for so far.
        self.sent = 0
        #: Batches handed out so far.
        self.batches_out = 0
        if prefetched is not None:
            check_reply(Fetch(0, self._start, self._end, first_page, page_size), prefetched)
            self._slots.append(_Slot(first_page, reply=prefetched))
            self._next_new = first_page + 1
            self._follow(prefetched.total)

    @property
    def total(self) -> int:
        """Records in the window, as last told."""
        return self._total or 0

    @property
    def next_page(self) -> int:
        """The first page not yet handed out: resume there."""
        return self._slots[0].page if self._slots else self._next_new

    @property
    def finished(self) -> bool:
        """Nothing left to fetch or to hand out."""
        if self._remaining == 0:
            return True
        return self._total is not None and not self._slots and self._next_new > self._last_page

    def obsolete(self) -> list[int]:
        """Keys of fetches in flight whose answers are no longer wanted (cancel them)."""
        out, self._obsolete = self._obsolete, []
        return out

    def due(self) -> list[Fetch]:
        """The fetches to start now; the first page of a reading goes alone."""
        out: list[Fetch] = []
        if self._remaining == 0:
            return out
        if self._total is None:
            if not self._slots:
                self._slots.append(_Slot(self._next_new))
                self._next_new += 1
            self._start_fetch(self._slots[0], out)
            return out
        while self._next_new <= self._last_page and len(self._slots) < self._ahead:
            self._slots.append(_Slot(self._next_new))
            self._next_new += 1
        for slot in self._slots:
            if len(self._in_flight) >= self._concurrency:
                break
            self._start_fetch(slot, out)
        return out

    def on_reply(self, fetch: Fetch, page: Page[T]) -> None:
        """Take one reply (``MalformedResponseError``, ``ResultUnstableError``)."""
        slot = self._in_flight.pop(fetch.key, None)
        if slot is None or slot.fetch is not fetch:
            return
        slot.fetch = None
        check_reply(fetch, page)
        if self._total is None:
            self._follow(page.total)
        elif page.total != self._total:
            self._reread(page.total)
            return
        slot.reply = page

    def on_failure(self, fetch: Fetch) -> None:
        """A fetch failed for good: forget it."""
        slot = self._in_flight.pop(fetch.key, None)
        if slot is not None:
            slot.fetch = None

    def take(self) -> Batch[T] | None:
        """The next page's records, repeats dropped, or ``None`` when it is not in yet."""
        while self._slots and self._slots[0].reply is not None and self._remaining != 0:
            page = self._slots.popleft().reply
            assert page is not None
            id_of, drop, recent = self._id_of, self._drop, self._recent
            records = page.records
            kept = tuple(r for r in records if id_of(r) not in drop and id_of(r) not in recent)
            if records and not kept and self.rereads == 0 and not drop:
                # Pages tile unless the result moved: a page of nothing but repeats means
                # the server did not serve the page that was asked for.
                raise _malformed(f"page {page.current} repeats an earlier page")
            if self._remaining is not None:
                kept = kept[: self._remaining]
                self._remaining -= len(kept)
                if self._remaining == 0:
                    self._drop_all()
            recent.add(frozenset(map(id_of, kept)))
            self.batches_out += 1
            return Batch(kept, page.current, page.total)
        return None

    # -- internals ----------------------------------------------------------------------

    def _start_fetch(self, slot: _Slot[T], out: list[Fetch]) -> None:
        if slot.fetch is not None or slot.reply is not None:
            return
        slot.fetch = Fetch(next(self._keys), self._start, self._end, slot.page, self._size)
        self._in_flight[slot.fetch.key] = slot
        self.sent += 1
        out.append(slot.fetch)

    def _follow(self, total: int) -> None:
        self._total = total
        pages = math.ceil(total / self._size)
        if self._remaining is not None:
            pages = min(pages, self.next_page - 1 + math.ceil(self._remaining / self._size))
        self._last_page = pages
        while self._slots and self._slots[-1].page > pages:
            self._forget(self._slots.pop())
        self._next_new = min(self._next_new, pages + 1) if self._slots else self._next_new

    def _forget(self, slot: _Slot[T]) -> None:
        if slot.fetch is not None:
            self._in_flight.pop(slot.fetch.key, None)
            self._obsolete.append(slot.fetch.key)
            slot.fetch = None

    def _drop_all(self) -> None:
        for slot in self._slots:
            self._forget(slot)
        self._slots.clear()
        self._last_page = 0

    def _reread(self, total: int) -> None:
        self.rereads += 1
        if self.rereads > MAX_REREADS:
            raise ResultUnstableError(
                f"the result kept changing while it was paged ({MAX_REREADS} re-reads; "
                f"the total went from {self._total} to {total})"
            )
        old = self._total or 0
        first_unyielded = self.next_page
        # Records leaving the window move later ones up: go back far enough to catch
        # them, but no further than the remembered ids reach, nor before the first page.
        back = 1 + math.ceil(max(0, old - total) / self._size)
        reach = self._recent.capacity // self._size
        restart = max(self._first_page, first_unyielded - min(back, reach))
        for slot in self._slots:
            self._forget(slot)
        self._slots.clear()
        snapshot = self._drop | self._recent.snapshot()
        if len(snapshot) > 4 * self._recent.capacity:
            snapshot = self._recent.snapshot()
        self._drop = snapshot
        self._next_new = restart
        self._follow(total)
