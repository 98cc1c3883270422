"""Streaming every task of a window: pages fetched concurrently, records yielded in order.

How it works (the plain rules are in the README):

* The first page is fetched alone: it tells ``total`` and ``pages``.
* The other pages are *slots* in yield order. At most ``concurrency`` slots are in flight
  and at most ``3 * concurrency`` are fetched or in flight ahead of the consumer, so a slow
  consumer slows the fetching down instead of filling memory.
* Every request goes through the client's own send path: limiter, signing, retries.
* The vendor pages by offset, so a task created in (or leaving) the window mid-stream
  shifts every later page. Each answer carries ``total``; when one differs from the total
  the stream has been following, the stream *resyncs*: it drops every answer it has not
  yet yielded, goes back one page before the first page it has not yielded (more when
  many tasks left), and fetches on from there under the new page count. Repeats that this
  re-reading brings are dropped by ``job_id`` against the records yielded recently (a
  bounded window, so memory does not grow with the result).
* Leaving early (``break``, ``aclose()``, cancellation, an exception in the loop body, or
  the stream simply dropped) cancels every request in flight and waits for them to end,
  so no request is sent afterwards and no task is left behind.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar

import attrs

from ._client import CallTally
from ._errors import ItnioError
from ._hooks import PageEvent, call_hook
from ._models import GroupCallRecord, Page
from ._query import MAX_PAGE_SIZE, GroupCallQuery, check_positive_int

if TYPE_CHECKING:
    from ._client import AsyncVoiceClient

__all__ = [
    "GroupCallPageStream",
    "GroupCallStream",
    "ProgressCallback",
    "StreamOptions",
    "StreamProgress",
]

logger = logging.getLogger("itnio_async")

T = TypeVar("T")

#: Pages fetched or in flight ahead of the consumer, per unit of ``concurrency``.
LOOKAHEAD_FACTOR = 3
#: Job ids remembered for dropping repeats after a resync, at least. Tasks that enter the
#: window at its head mid-stream shift the old records down, so a re-read can bring back
#: records yielded that many places earlier; 10,000 ids cost about a megabyte.
MIN_REMEMBERED = 10_000


@attrs.define(slots=True)
class StreamProgress:
    """How far a stream has come. Read it from ``stream.progress`` or ``on_progress``.

    Updated each time the stream hands out a page; ``requests``, ``retries`` and
    ``limiter_wait`` then include everything sent so far (use ``ClientHooks`` to see
    each request as it happens).
    """

    #: Pages handed out (re-read pages after a resync count again).
    pages_done: int = 0
    #: Pages the result has, as last reported by the server (0 until the first answer).
    pages_known: int = 0
    #: Records the result has, as last reported by the server.
    total: int = 0
    #: Records (or, for a page stream, records in pages) yielded so far.
    records_yielded: int = 0
    #: Requests sent, retries included.
    requests: int = 0
    #: Retries so far.
    retries: int = 0
    #: Seconds spent waiting for the rate limiter, summed over requests.
    limiter_wait: float = 0.0
    #: Times the result changed under the stream and pages were read again.
    resyncs: int = 0
    #: The first page not yet yielded: pass it as ``start_page=`` to resume.
    next_page: int = 1
    #: The window's end as queried (a future ``end`` frozen at the stream's start when
    #: ``server_timezone`` is set; aware then), known from the first iteration on. A job
    #: that resumes later should pass this as ``end`` so that its pages still line up.
    window_end: datetime | None = None


#: Called with the stream's progress after every page it hands out.
ProgressCallback = Callable[[StreamProgress], None]


@attrs.frozen(slots=True)
class StreamOptions:
    """A stream's checked arguments."""

    query: GroupCallQuery
    page_size: int
    concurrency: int
    ordered: bool
    limit: int | None
    start_page: int
    on_progress: ProgressCallback | None

    @classmethod
    def build(
        cls,
        client: AsyncVoiceClient,
        start: object,
        end: object,
        *,
        statuses: object,
        app_id: object,
        search: object,
        page_size: object,
        concurrency: object,
        ordered: object,
        limit: object,
        start_page: object,
        on_progress: object,
    ) -> StreamOptions:
        """Check every argument now, before any request, naming the one that is wrong."""
        query = client._build_query(start, end, statuses, app_id, search)
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be a bool, got {type(ordered).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError("on_progress must be callable")
        return cls(
            query,
            check_positive_int("page_size", page_size, maximum=MAX_PAGE_SIZE),
            check_positive_int("concurrency", concurrency),
            ordered,
            None if limit is None else check_positive_int("limit", limit, minimum=0),
            check_positive_int("start_page", start_page),
            on_progress,
        )


class _Slot:
    """One page to fetch and yield in the current epoch."""

    __slots__ = ("page", "result", "task")

    def __init__(self, page: int) -> None:
        self.page = page
        # The fetch, once started.
        self.task: asyncio.Task[Page[GroupCallRecord]] | None = None
        # The accepted answer, once it came with the current total.
        self.result: Page[GroupCallRecord] | None = None


class _RecentIds:
    """The job ids of the most recently yielded records, up to ``capacity``.

    A re-read after a resync goes back a bounded number of pages, so repeats can only be
    of records yielded shortly before it: remembering those keeps memory proportional to
    the window rather than to the result.
    """

    __slots__ = ("_count", "_pages", "capacity")

    def __init__(self, capacity: int) -> None:
        #: How many ids it keeps, at least (whole pages are kept or dropped).
        self.capacity = capacity
        # The ids of each yielded page, oldest first: one append per page, not per record,
        # since this sits on every page's path and is read only when a resync happens.
        self._pages: deque[tuple[int, ...]] = deque()
        # Ids held in _pages.
        self._count = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self._pages)

    def add_page(self, job_ids: tuple[int, ...]) -> None:
        self._pages.append(job_ids)
        self._count += len(job_ids)
        while self._count - len(self._pages[0]) >= self.capacity:
            self._count -= len(self._pages.popleft())


class _PageEngine:
    """Fetches the pages of one stream and hands them out in yield order.

    All mutation happens on the event loop thread, in ``next_page`` or in task done
    callbacks, so no lock is needed.
    """

    def __init__(
        self, client: AsyncVoiceClient, options: StreamOptions, progress: StreamProgress
    ) -> None:
        self._client = client
        self._options = options
        self._progress = progress
        self._tally = CallTally()
        self._query = options.query
        self._size = options.page_size
        self._max_in_flight = options.concurrency
        self._max_ahead = LOOKAHEAD_FACTOR * options.concurrency
        # The total the current epoch follows; an answer with another total starts a resync.
        self._total = 0
        # The last page (by the server's count) that this stream needs.
        self._last_page = 0
        # Slots of the current epoch not yet yielded, in yield order.
        self._slots: deque[_Slot] = deque()
        # The next page number to give a new slot.
        self._next_new_page = options.start_page + 1
        # Fetches started and not yet ended (cancelled ones too, until they end): the
        # concurrency bound counts them, and close() waits for them.
        self._in_flight: set[asyncio.Task[Page[GroupCallRecord]]] = set()
        # Set when any fetch ends: the consumer waits on it.
        self._wake = asyncio.Event()
        # The first fetch failure, with its page; raised once the pages before it are out.
        self._failure: tuple[int, BaseException] | None = None
        # Set by close(): nothing new starts after it.
        self._closed = False
        # The last yielded job ids, from which each resync takes its snapshot.
        self._recent = _RecentIds(capacity=max((self._max_ahead + 4) * self._size, MIN_REMEMBERED))
        # Ids yielded before the last resync: a re-read may bring these again. A snapshot,
        # not the live window, because records that entered the result at its head are
        # yielded before the repeats and would push those out of a window of fixed size.
        self._before_resync: frozenset[int] = frozenset()
        # Records still allowed by ``limit`` (None: no limit).
        self._remaining = options.limit

    # -- bookkeeping ---------------------------------------------------------------------

    def _sync_tally(self) -> None:
        progress, tally = self._progress, self._tally
        progress.requests = tally.attempts
        progress.retries = tally.retries
        progress.limiter_wait = tally.limiter_wait

    def _report(self) -> None:
        self._sync_tally()
        progress = self._progress
        callback = self._options.on_progress
        if callback is not None:
            callback(progress)

    def _pages_for(self, total: int) -> int:
        return math.ceil(total / self._size)

    def _needed_last_page(self, first_unyielded: int, pages: int) -> int:
        """The last page worth fetching: all of them, or as many as ``limit`` still needs."""
        if self._remaining is None:
            return pages
        return min(pages, first_unyielded - 1 + math.ceil(self._remaining / self._size))

    def _first_unyielded(self) -> int:
        return self._slots[0].page if self._slots else self._next_new_page

    def _set_total(self, total: int) -> None:
        self._total = total
        self._progress.total = total
        self._progress.pages_known = self._pages_for(total)

    # -- fetching ------------------------------------------------------------------------

    async def start(self) -> Page[GroupCallRecord] | None:
        """Fetch the first page alone: it tells how many pages there are."""
        if self._remaining == 0:
            return None
        first = self._options.start_page
        try:
            page = await self._client._fetch_page(self._query, first, self._size, self._tally)
        except ItnioError as exc:
            exc.page = first
            raise
        finally:
            self._sync_tally()
        self._set_total(page.total)
        return page

    def accept_first(self, page: Page[GroupCallRecord]) -> Page[GroupCallRecord]:
        """Hand out the first page, then start fetching the others."""
        out = self._without_repeats(page)
        self._last_page = self._needed_last_page(self._next_new_page, self._pages_for(self._total))
        self._fill()
        self._progress.next_page = self._first_unyielded()
        return out

    def _fill(self) -> None:
        """Add slots and start fetches while the window allows."""
        if self._failure is not None or self._closed:
            return
        while self._next_new_page <= self._last_page and len(self._slots) < self._max_ahead:
            self._slots.append(_Slot(self._next_new_page))
            self._next_new_page += 1
        for slot in self._slots:
            if len(self._in_flight) >= self._max_in_flight:
                break
            if slot.task is None and slot.result is None:
                self._launch(slot)

    def _launch(self, slot: _Slot) -> None:
        task = asyncio.ensure_future(
            self._client._fetch_page(self._query, slot.page, self._size, self._tally)
        )
        slot.task = task
        self._in_flight.add(task)
        task.add_done_callback(partial(self._on_done, slot))

    def _drop(self, slots: Iterable[_Slot]) -> None:
        """Forget these slots' fetches: cancel them; their outcomes will be ignored."""
        for slot in slots:
            task, slot.task = slot.task, None
            if task is not None:
                task.cancel()

    def _on_done(self, slot: _Slot, task: asyncio.Task[Page[GroupCallRecord]]) -> None:
        self._in_flight.discard(task)
        self._wake.set()
        exc = None if task.cancelled() else task.exception()  # retrieved: no warning later
        if slot.task is not task or task.cancelled():
            return  # dropped by a resync, a failure, a limit or close
        if exc is not None:
            self._fail(slot.page, exc)
            return
        page = task.result()
        if page.total != self._total:
            if self._failure is not None:
                # A failure is already pending: end there, resuming covers the rest.
                self._fail(slot.page, self._failure[1])
            else:
                self._resync(page, slot)
            return
        slot.result = page
        self._fill()

    def _fail(self, page: int, exc: BaseException) -> None:
        if self._failure is None or page < self._failure[0]:
            self._failure = (page, exc)
        # Nothing after the failed page is wanted; pages before it may still finish.
        self._drop(slot for slot in self._slots if slot.page >= page)

    def _resync(self, answer: Page[GroupCallRecord], trigger: _Slot) -> None:
        """The result changed under the stream: re-read from before the first unyielded page."""
        old_total, new_total = self._total, answer.total
        first_unyielded = self._first_unyielded()
        # Tasks leaving the window move later records up: go back far enough to catch them,
        # but no further than the remembered job ids reach.
        back = 1 + math.ceil(max(0, old_total - new_total) / self._size)
        # A resumed stream never reads before its start page: the records there were
        # yielded by the earlier run, and this one could not tell them from new ones.
        restart = max(
            self._options.start_page,
            first_unyielded - min(back, self._recent.capacity // self._size),
        )
        logger.warning(
            "the result changed while streaming (total %d -> %d, seen on page %d): "
            "reading again from page %d",
            old_total,
            new_total,
            trigger.page,
            restart,
        )
        self._drop(self._slots)
        self._slots.clear()
        snapshot = self._before_resync | frozenset(self._recent)
        if len(snapshot) > 4 * self._recent.capacity:
            snapshot = frozenset(self._recent)
        self._before_resync = snapshot
        self._set_total(new_total)
        self._progress.resyncs += 1
        self._next_new_page = restart
        self._last_page = self._needed_last_page(first_unyielded, self._pages_for(new_total))
        self._fill()

    # -- handing pages out ---------------------------------------------------------------

    async def next_page(self) -> Page[GroupCallRecord] | None:
        """The next page to yield, repeats removed; ``None`` when the stream is done."""
        while True:
            if self._options.ordered:
                head = self._slots[0] if self._slots else None
                ready = head if head is not None and head.result is not None else None
            else:
                ready = next((slot for slot in self._slots if slot.result is not None), None)
            if ready is not None:
                self._slots.remove(ready)
                page = ready.result
                assert page is not None
                out = self._without_repeats(page)
                self._fill()
                self._progress.next_page = self._first_unyielded()
                return out
            if self._failure is not None:
                failed_page, exc = self._failure
                if not any(slot.page < failed_page for slot in self._slots):
                    self._progress.next_page = failed_page
                    if isinstance(exc, ItnioError):
                        exc.page = failed_page
                    raise exc
            elif not self._slots:
                return None
            self._wake.clear()
            await self._wake.wait()

    def _without_repeats(self, page: Page[GroupCallRecord]) -> Page[GroupCallRecord]:
        records = page.records
        if self._progress.resyncs:
            # Only records yielded before the last resync can come again: pages read since
            # then tile with each other.
            seen = self._before_resync
            records = tuple(record for record in records if record.job_id not in seen)
        if self._remaining is not None:
            records = records[: self._remaining]
            self._remaining -= len(records)
            if self._remaining == 0:
                self._last_page = 0
                self._drop(self._slots)
                self._slots.clear()
        if records is not page.records:
            page = attrs.evolve(page, records=records)
        self._recent.add_page(tuple([record.job_id for record in records]))
        self._progress.records_yielded += len(records)
        self._progress.pages_done += 1
        self._report()
        hooks = self._client._hooks
        if hooks is not None:
            progress = self._progress
            event = PageEvent(page.current, len(records), progress.pages_known, progress.total)
            call_hook(hooks, "on_page", event)
        return page

    async def close(self) -> None:
        """Cancel every fetch and wait until each has ended (none outlives the stream)."""
        self._closed = True
        self._drop(self._slots)
        self._slots.clear()
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            # Each ends at once when cancelled; outcomes were retrieved by _on_done.
            await asyncio.wait(tasks)


async def _stream_pages(
    client: AsyncVoiceClient, options: StreamOptions, progress: StreamProgress
) -> AsyncGenerator[Page[GroupCallRecord], None]:
    """The pages of a stream. A plain function, not a method: a generator that held its
    stream object would form a reference cycle, and a dropped stream would then wait for
    the garbage collector instead of being closed at once."""
    query = options.query
    if client.server_timezone is not None:
        # Tasks created after this second cannot enter the window (see the README).
        now = client.server_now().replace(tzinfo=None) - timedelta(seconds=1)
        if query.end > now:
            query = query.with_end(max(now, query.start))
        progress.window_end = query.end.replace(tzinfo=client.server_timezone)
    else:
        progress.window_end = query.end
    engine = _PageEngine(client, attrs.evolve(options, query=query), progress)
    try:
        first = await engine.start()
        if first is None:
            return
        yield engine.accept_first(first)
        while (page := await engine.next_page()) is not None:
            yield page
    finally:
        await engine.close()


async def _stream_records(
    client: AsyncVoiceClient, options: StreamOptions, progress: StreamProgress
) -> AsyncGenerator[GroupCallRecord, None]:
    pages = _stream_pages(client, options, progress)
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

    _generator: Callable[[AsyncVoiceClient, StreamOptions, StreamProgress], AsyncGenerator[T, None]]

    def __init__(self, client: AsyncVoiceClient, options: StreamOptions) -> None:
        #: How far the stream has come; updated as pages arrive.
        self.progress = StreamProgress(next_page=options.start_page)
        # The generator doing the work; made here but started by the first __anext__.
        self._agen = type(self)._generator(client, options, self.progress)

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


class GroupCallPageStream(_StreamBase[Page[GroupCallRecord]]):
    """An async iterator of ``Page``s of a window (see ``iter_group_call_pages``)."""

    _generator = staticmethod(_stream_pages)


class GroupCallStream(_StreamBase[GroupCallRecord]):
    """An async iterator of every ``GroupCallRecord`` of a window (see ``iter_group_calls``)."""

    _generator = staticmethod(_stream_records)
