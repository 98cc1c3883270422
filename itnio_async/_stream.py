"""Streams: the task layer that runs a paging plan (``_paging``) and hands out its pages.

The plan decides everything (what to fetch, what to hand out, when to give up); this
module only starts its fetches as tasks, feeds their replies back, finishes the records
of an ``UnfinishedPage`` (after the fetches its reply leads to are started, before any
record of the page is handed out), and keeps the stream's public face: ``async for``,
``progress``, ``aclose()``. It knows nothing of the client: a stream is given a
:class:`StreamSpec` with a fetch function and the record keys, so any of the vendor's
paged endpoints with the same body shape can be streamed by it.

Leaving early (``break``, ``aclose()``, cancellation, an exception in the loop body, or the
stream simply dropped) cancels every request in flight and waits for them to end, so no
request is sent afterwards and no task is left behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from datetime import datetime, timedelta, tzinfo
from functools import partial
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar

import attrs

from ._errors import ItnioError
from ._hooks import CallTally, PageEvent
from ._models import Page, UnfinishedPage
from ._paging import (
    Batch,
    CursorPlan,
    Fallback,
    Fetch,
    OffsetPlan,
    PagingMode,
    Range,
    StreamCursor,
)
from ._query import MAX_PAGE_SIZE, check_positive_int

__all__ = [
    "FetchPage",
    "PageStream",
    "ProgressCallback",
    "RecordStream",
    "StreamOptions",
    "StreamProgress",
    "StreamSpec",
]

logger = logging.getLogger("itnio_async")

T = TypeVar("T")

#: Records a stream fetches ahead of its consumer, at most (about 10 MB of task records):
#: enough for every slice to run at full speed, flat in the size of the result.
READ_AHEAD_RECORDS: Final = 25_000

_SECOND: Final = timedelta(seconds=1)

#: What each mode promises, in the words ``progress.guarantee`` uses.
GUARANTEES: Final = {
    PagingMode.CURSOR: (
        "exactly once, in order: every record that stays in the window and filter for the "
        "whole stream arrives once, whatever is created, removed or changes status meanwhile"
    ),
    PagingMode.OFFSET: (
        "exactly once while the result holds still; when its total changes, pages are read "
        "again and repeats dropped, but a change that keeps the total (one record in, one "
        "out) can lose or repeat records"
    ),
}

#: ``fetch(start, end, page, size, tally)``: one page of the window ``[start, end]``.
FetchPage = Callable[[datetime, datetime, int, int, CallTally], Awaitable[Page[T]]]


@attrs.frozen(slots=True)
class StreamSpec(Generic[T]):
    """What a stream needs from the client, for one endpoint and one checked query."""

    #: The endpoint's name, recorded in cursors (``"group_calls"``).
    endpoint: str
    #: The window, inclusive, naive in the vendor's zone.
    start: datetime
    end: datetime
    #: The filters as canonical JSON: a cursor carries them and is refused elsewhere.
    filters: str
    fetch: FetchPage[T]
    #: The record's time (naive, whole seconds, the window's zone) and its unique id.
    time_of: Callable[[T], datetime]
    id_of: Callable[[T], Hashable]
    #: The vendor's zone, if known; with ``now``, a future end is frozen at the start.
    zone: tzinfo | None = None
    #: The vendor's current time, naive in its zone.
    now: Callable[[], datetime] | None = None
    #: Called with each page's event (metrics hooks).
    on_page: Callable[[PageEvent], None] | None = None


@attrs.define(slots=True)
class StreamProgress:
    """How far a stream has come. Read it from ``stream.progress`` or ``on_progress``.

    Updated each time the stream hands out a page; ``requests``, ``retries``,
    ``limiter_wait`` and ``slot_wait`` then include everything sent so far (use
    ``ClientHooks`` to see each request as it happens).

    Attributes (also the constructor's arguments, in this order):
        pages_done: Pages handed out. Default ``0``.
        pages_known: Pages the window had when the stream started (0 until the first answer).
            Default ``0``.
        total: Records the window had when the stream started (offset mode: as last reported).
            Default ``0``.
        records_yielded: Records (or, for a page stream, records in pages) handed out so far.
            Default ``0``.
        requests: Requests sent, retries included. Default ``0``.
        retries: Retries so far. Default ``0``.
        limiter_wait: Seconds spent waiting for the rate limiter, summed over requests. Default
            ``0.0``.
        slot_wait: Seconds spent waiting for a connection slot, summed over requests. Default
            ``0.0``.
        resyncs: Offset mode: times the result changed under the stream and pages were read
            again. Default ``0``.
        next_page: Offset mode: the first page not yet handed out (``start_page=`` to resume).
            Default ``None``.
        window_end: The window's end as queried (a future ``end`` frozen at the stream's start
            when ``server_timezone`` is set; aware then), known from the first iteration on.
            Default ``None``.
        mode: How the stream pages: ``"cursor"`` (the default) or ``"offset"`` (``start_page``,
            or the fallback when the vendor orders records differently). Default
            ``PagingMode.CURSOR.value``.
        guarantee: What the mode promises, in plain words. Default
            ``GUARANTEES[PagingMode.CURSOR]``.
        resume_from: Where the stream stands: pass it as ``resume_from=`` to go on exactly from
            here. Set from the first iteration on, and after every page. Default ``None``.
    """

    #: Pages handed out.
    pages_done: int = 0
    #: Pages the window had when the stream started (0 until the first answer).
    pages_known: int = 0
    #: Records the window had when the stream started (offset mode: as last reported).
    total: int = 0
    #: Records (or, for a page stream, records in pages) handed out so far.
    records_yielded: int = 0
    #: Requests sent, retries included.
    requests: int = 0
    #: Retries so far.
    retries: int = 0
    #: Seconds spent waiting for the rate limiter, summed over requests.
    limiter_wait: float = 0.0
    #: Seconds spent waiting for a connection slot, summed over requests.
    slot_wait: float = 0.0
    #: Offset mode: times the result changed under the stream and pages were read again.
    resyncs: int = 0
    #: Offset mode: the first page not yet handed out (``start_page=`` to resume).
    next_page: int | None = None
    #: The window's end as queried (a future ``end`` frozen at the stream's start when
    #: ``server_timezone`` is set; aware then), known from the first iteration on.
    window_end: datetime | None = None
    #: How the stream pages: ``"cursor"`` (the default) or ``"offset"`` (``start_page``,
    #: or the fallback when the vendor orders records differently).
    mode: str = PagingMode.CURSOR.value
    #: What the mode promises, in plain words.
    guarantee: str = GUARANTEES[PagingMode.CURSOR]
    #: Where the stream stands: pass it as ``resume_from=`` to go on exactly from here.
    #: Set from the first iteration on, and after every page.
    resume_from: StreamCursor | None = None


#: Called with the stream's progress after every page it hands out.
ProgressCallback = Callable[[StreamProgress], None]


@attrs.frozen(slots=True)
class StreamOptions:
    """A stream's checked arguments."""

    page_size: int
    concurrency: int
    ordered: bool
    limit: int | None
    start_page: int
    resume_from: StreamCursor | None
    on_progress: ProgressCallback | None

    @classmethod
    def build(
        cls,
        spec: StreamSpec[Any],
        *,
        page_size: object,
        concurrency: object,
        ordered: object,
        limit: object,
        start_page: object,
        resume_from: object,
        on_progress: object,
    ) -> StreamOptions:
        """Check every argument now, before any request, naming the one that is wrong."""
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be a bool, got {type(ordered).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError("on_progress must be callable")
        size = check_positive_int("page_size", page_size, maximum=MAX_PAGE_SIZE)
        first = check_positive_int("start_page", start_page)
        cursor = _check_cursor(spec, resume_from, size)
        if cursor is not None and first != 1:
            raise ValueError("pass resume_from or start_page, not both")
        return cls(
            size,
            check_positive_int("concurrency", concurrency),
            ordered,
            None if limit is None else check_positive_int("limit", limit, minimum=0),
            first,
            cursor,
            on_progress,
        )


def _check_cursor(spec: StreamSpec[Any], value: object, page_size: int) -> StreamCursor | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = StreamCursor.from_string(value)
    if not isinstance(value, StreamCursor):
        raise TypeError(
            f"resume_from must be a StreamCursor or its string, got {type(value).__name__}"
        )
    if value.endpoint != spec.endpoint:
        raise ValueError(
            f"resume_from belongs to a {value.endpoint!r} stream, not {spec.endpoint!r}"
        )
    if value.start != spec.start or spec.end not in (value.end, value.requested_end):
        raise ValueError(
            f"resume_from belongs to the window [{value.start}, {value.requested_end}], "
            f"not [{spec.start}, {spec.end}]: pass the window it was made for"
        )
    if value.filters != spec.filters:
        raise ValueError(
            f"resume_from belongs to other filters ({value.filters}), not {spec.filters}"
        )
    if value.mode is PagingMode.OFFSET and value.page_size != page_size:
        raise ValueError(
            f"resume_from pages {value.page_size} records at a time (offset mode), "
            f"not page_size={page_size}"
        )
    # A stream hands out what its cursor's ranges hold: a damaged or edited cursor whose
    # ranges leave the window, overlap or go oldest first would read other records.
    window_top = max(value.end, value.requested_end)
    below = window_top
    for r in value.ranges:
        if not value.start <= r.lo <= r.top <= window_top:
            raise ValueError(
                f"resume_from is damaged: a range [{r.lo}, {r.top}] is not inside its "
                f"window [{value.start}, {window_top}]"
            )
        if r.top > below:
            raise ValueError("resume_from is damaged: its ranges overlap or are not newest first")
        below = r.lo - _SECOND
    return value


def canonical_filters(**filters: Any) -> str:
    """Filters as canonical JSON, for cursors to compare."""
    return json.dumps(filters, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


Plan = CursorPlan[T] | OffsetPlan[T]


class _Engine(Generic[T]):
    """Runs one stream's plan: starts its fetches, feeds replies back, hands out batches.

    All of it happens on the event loop thread, in ``next_batch`` or in task done
    callbacks, so no lock is needed.
    """

    def __init__(
        self, spec: StreamSpec[T], options: StreamOptions, progress: StreamProgress
    ) -> None:
        self._spec = spec
        self._options = options
        self._progress = progress
        self._tally = CallTally()
        end = spec.end
        cursor = options.resume_from
        if cursor is not None:
            end = cursor.end
        elif spec.now is not None:
            # Tasks created after this second cannot enter the window (see the README).
            now = spec.now() - _SECOND
            if end > now:
                end = max(now, spec.start)
        self._end = end
        progress.window_end = end if spec.zone is None else end.replace(tzinfo=spec.zone)
        self._plan: Plan[T] = self._first_plan(cursor)
        # Fetch tasks in flight, by fetch key (cancelled ones too, until they end).
        self._tasks: dict[int, asyncio.Task[Page[T]]] = {}
        # Set when any fetch ends: the consumer waits on it.
        self._wake = asyncio.Event()
        # The first failure; raised once what is ready before it has been handed out.
        self._failure: BaseException | None = None
        # What is left to do of the pages taken in (``UnfinishedPage.finish``), oldest
        # first: done after the fetches those pages lead to are started, before any
        # record is handed out.
        self._unfinished: deque[Callable[[], None]] = deque()
        # A page could not be finished: nothing more is handed out.
        self._broken = False
        self._report_cursor()

    def _first_plan(self, cursor: StreamCursor | None) -> Plan[T]:
        spec, options = self._spec, self._options
        window = (spec.start, self._end)
        if cursor is not None and cursor.mode is PagingMode.OFFSET:
            return self._offset_plan(window, cursor.page, cursor.exclude)
        if cursor is None and options.start_page != 1:
            return self._offset_plan(window, options.start_page, frozenset())
        ranges = cursor.ranges if cursor is not None else (Range(*window),)
        size = options.page_size
        return CursorPlan(
            ranges,
            window=window,
            page_size=size,
            concurrency=options.concurrency,
            ordered=options.ordered,
            limit=options.limit,
            read_ahead=max(3 * options.concurrency, READ_AHEAD_RECORDS // size),
            time_of=spec.time_of,
            id_of=spec.id_of,
        )

    def _offset_plan(
        self, window: tuple[datetime, datetime], page: int, exclude: frozenset[Hashable]
    ) -> OffsetPlan[T]:
        self._set_mode(PagingMode.OFFSET)
        self._progress.next_page = page
        return OffsetPlan(
            window=window,
            first_page=page,
            page_size=self._options.page_size,
            concurrency=self._options.concurrency,
            limit=self._options.limit,
            id_of=self._spec.id_of,
            exclude=exclude,
        )

    def _set_mode(self, mode: PagingMode) -> None:
        self._progress.mode = mode.value
        self._progress.guarantee = GUARANTEES[mode]

    # -- the cursor ---------------------------------------------------------------------

    def cursor(self) -> StreamCursor:
        spec, plan = self._spec, self._plan
        common: dict[str, Any] = {
            "endpoint": spec.endpoint,
            "start": spec.start,
            "end": self._end,
            "requested_end": spec.end,
            "filters": spec.filters,
        }
        if self._options.resume_from is not None:
            common["requested_end"] = self._options.resume_from.requested_end
        if isinstance(plan, OffsetPlan):
            return StreamCursor(
                mode=PagingMode.OFFSET,
                page=plan.next_page,
                page_size=self._options.page_size,
                **common,
            )
        return StreamCursor(mode=PagingMode.CURSOR, ranges=plan.remaining(), **common)

    def _report_cursor(self) -> None:
        self._progress.resume_from = self.cursor()
        if isinstance(self._plan, OffsetPlan):
            self._progress.next_page = self._plan.next_page

    # -- fetching -----------------------------------------------------------------------

    def _launch(self) -> None:
        plan = self._plan
        fetch_page = self._spec.fetch
        for fetch in plan.due():
            coro = fetch_page(fetch.start, fetch.end, fetch.page, fetch.size, self._tally)
            task = asyncio.ensure_future(coro)
            self._tasks[fetch.key] = task
            task.add_done_callback(partial(self._on_done, plan, fetch))

    def _cancel(self, keys: list[int]) -> None:
        for key in keys:
            task = self._tasks.get(key)
            if task is not None:
                task.cancel()

    def _on_done(self, plan: Plan[T], fetch: Fetch, task: asyncio.Task[Page[T]]) -> None:
        if self._tasks.get(fetch.key) is task:
            del self._tasks[fetch.key]
        self._wake.set()
        exc = None if task.cancelled() else task.exception()  # retrieved: no warning later
        if plan is not self._plan or task.cancelled() or self._failure is not None:
            return  # an abandoned plan's, cancelled, or the stream is failing already
        if exc is not None:
            plan.on_failure(fetch)
            self._fail(exc)
            return
        page = task.result()
        try:
            plan.on_reply(fetch, page)
        except Fallback as signal:
            self._fall_back(signal)
            return
        except ItnioError as error:
            self._fail(error)
            return
        except Exception as error:
            # Raised in a done callback, anything else would go to the loop's exception
            # handler, and the stream would wait for ever: the consumer gets it instead.
            self._fail(error)
            return
        if isinstance(page, UnfinishedPage):
            self._unfinished.append(page.finish)
        self._cancel(plan.obsolete())

    def _fall_back(self, signal: Fallback) -> None:
        plan = self._plan
        assert isinstance(plan, CursorPlan)
        logger.warning(
            "the vendor's replies do not follow the time order this stream relies on (%s): "
            "paging by page number instead, which is exact only while the result holds still",
            signal.reason,
        )
        offset = plan.fallback()
        self._cancel(list(self._tasks))
        self._set_mode(PagingMode.OFFSET)
        self._plan = offset
        self._wake.set()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._cancel(list(self._tasks))

    # -- handing out --------------------------------------------------------------------

    async def next_batch(self) -> Batch[T] | None:
        """The next batch to hand out; ``None`` when the stream is done."""
        while True:
            if self._failure is None:
                try:
                    self._launch()
                except ItnioError as error:
                    self._fail(error)
            if self._unfinished and not self._broken:
                # One page at a time, after the fetches just started have had the loop
                # to send their requests, and before anything is handed out: the slices
                # wait on their requests, not on making the records of other pages.
                self._finish_one()
                await asyncio.sleep(0)
                continue
            batch = None
            try:
                if not self._broken:
                    batch = self._plan.take()
            except ItnioError as error:
                self._fail(error)
            if batch is not None:
                self._handed_out(batch)
                return batch
            if self._failure is not None:
                self._raise()
            if self._plan.finished:
                self._report_cursor()  # a stream that handed out nothing ends done too
                self._sync_tally()
                return None
            self._wake.clear()
            await self._wake.wait()

    def _finish_one(self) -> None:
        try:
            self._unfinished.popleft()()
        except ItnioError as error:
            # Its records are in the plan, not made: none of what is ready goes out.
            self._broken = True
            self._unfinished.clear()
            self._fail(error)

    def _raise(self) -> None:
        exc = self._failure
        assert exc is not None
        self._report_cursor()
        self._sync_tally()
        if isinstance(exc, ItnioError):
            exc.resume_from = self._progress.resume_from
            if isinstance(self._plan, OffsetPlan):
                exc.page = self._plan.next_page
        raise exc

    def _sync_tally(self) -> None:
        progress, tally = self._progress, self._tally
        progress.requests = tally.attempts
        progress.retries = tally.retries
        progress.limiter_wait = tally.limiter_wait
        progress.slot_wait = tally.slot_wait

    def _handed_out(self, batch: Batch[T]) -> None:
        progress, plan = self._progress, self._plan
        size = self._options.page_size
        if isinstance(plan, OffsetPlan):
            progress.resyncs = plan.rereads
            progress.total = plan.total
        elif not progress.pages_done:
            progress.total = plan.total
        if not progress.pages_known or isinstance(plan, OffsetPlan):
            progress.pages_known = -(-progress.total // size)
        progress.pages_done += 1
        progress.records_yielded += len(batch.records)
        self._report_cursor()
        self._sync_tally()
        if self._spec.on_page is not None:
            event = PageEvent(batch.number, len(batch.records), progress.pages_known, batch.total)
            self._spec.on_page(event)
        if self._options.on_progress is not None:
            self._options.on_progress(progress)

    async def close(self) -> None:
        """Cancel every fetch and wait until each has ended (none outlives the stream)."""
        self._failure = self._failure or _Closed()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            # Each ends at once when cancelled; outcomes were retrieved by _on_done.
            await asyncio.wait(tasks)


class _Closed(Exception):
    """Marks a closed engine: nothing new starts after it."""


def _as_page(batch: Batch[T], size: int) -> Page[T]:
    return Page(batch.records, batch.total, size, batch.number, -(-batch.total // size))


async def _stream_pages(
    spec: StreamSpec[T], options: StreamOptions, progress: StreamProgress
) -> AsyncGenerator[Page[T], None]:
    """The pages of a stream. A plain function, not a method: a generator that held its
    stream object would form a reference cycle, and a dropped stream would then wait for
    the garbage collector instead of being closed at once."""
    if options.resume_from is not None and options.resume_from.done:
        return
    engine = _Engine(spec, options, progress)
    try:
        while (batch := await engine.next_batch()) is not None:
            yield _as_page(batch, options.page_size)
    finally:
        await engine.close()


async def _stream_records(
    spec: StreamSpec[T], options: StreamOptions, progress: StreamProgress
) -> AsyncGenerator[T, None]:
    pages = _stream_pages(spec, options, progress)
    try:
        async for page in pages:
            for record in page.records:
                yield record
    finally:
        await pages.aclose()


class _StreamBase(Generic[T]):
    """The async-iterator shell around a generator of pages or records.

    Iterate it with ``async for`` (nothing to await first); close it with ``aclose()``
    or ``contextlib.aclosing``. A stream dropped without closing is closed by the event
    loop's async-generator finalizer as soon as the last reference goes.
    """

    def __init__(self, agen: AsyncGenerator[T, None], progress: StreamProgress) -> None:
        #: How far the stream has come; updated as pages arrive.
        self.progress = progress
        # The generator doing the work; made here but started by the first __anext__.
        self._agen = agen

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        """Stop the stream: cancel the requests in flight and wait for them to end."""
        await self._agen.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _initial_progress(options: StreamOptions) -> StreamProgress:
    progress = StreamProgress()
    cursor = options.resume_from
    if (cursor is not None and cursor.mode is PagingMode.OFFSET) or options.start_page != 1:
        progress.mode = PagingMode.OFFSET.value
        progress.guarantee = GUARANTEES[PagingMode.OFFSET]
        progress.next_page = cursor.page if cursor is not None else options.start_page
    progress.resume_from = cursor
    return progress


class PageStream(_StreamBase[Page[T]]):
    """An async iterator of the pages of a window, each a ``Page`` of new records.

    In cursor mode a page's ``current`` counts the pages handed out (from 1) and
    ``total`` is the window's total when the stream started; in offset mode they are the
    vendor's page number and total. After each page, ``progress.resume_from`` is the
    cursor to checkpoint.
    """

    def __init__(self, spec: StreamSpec[T], options: StreamOptions) -> None:
        progress = _initial_progress(options)
        super().__init__(_stream_pages(spec, options, progress), progress)


class RecordStream(_StreamBase[T]):
    """An async iterator of every record of a window, exactly once and in order."""

    def __init__(self, spec: StreamSpec[T], options: StreamOptions) -> None:
        progress = _initial_progress(options)
        super().__init__(_stream_records(spec, options, progress), progress)
