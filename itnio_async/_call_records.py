"""The call-record stream: the generic stream (``_stream``) bound to
``/voice/recordGroupQuery``, over a window cut into slices of at most 31 days.

Each slice is one stream of the engine, with its own fetches, checks and exactly-once
plan; the slices run one after another, newest first, so the records come in one order.
One :class:`StreamCursor` spans them: the slice in progress's cursor, followed by the
ranges of the slices not yet started (``ranges`` also follow an offset-mode position).
Resuming cuts the same window into the same slices and hands each its part.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from ._call_query import CallRecordQuery
from ._errors import ItnioError, MalformedResponseError
from ._hooks import PageEvent
from ._models import CallRecord, Page
from ._paging import PagingMode, Range, StreamCursor
from ._stream import (
    FetchPage,
    StreamOptions,
    StreamProgress,
    StreamSpec,
    _stream_pages,
    _StreamBase,
    canonical_filters,
)

__all__ = [
    "ENDPOINT",
    "CallRecordPageStream",
    "CallRecordStream",
    "call_record_options",
    "call_record_pages",
]

#: The endpoint's name in stream cursors.
ENDPOINT = "call_records"
#: Call records have no filter but the window.
FILTERS = canonical_filters()


def _submit_second(record: CallRecord) -> datetime:
    # Naive UTC, whole seconds: the engine's key, whatever offset the vendor wrote.
    submitted = record.submit_time
    if submitted is None:
        raise MalformedResponseError(
            f"call record {record.voice_id!r} has no submitTime", status_code=200, body=""
        )
    if submitted.tzinfo is not UTC:
        try:
            submitted = submitted.astimezone(UTC)
        except OverflowError:  # a time at the edge of year 1 or 9999, in another offset
            raise MalformedResponseError(
                f"call record {record.voice_id!r} has a submitTime out of range: {submitted}",
                status_code=200,
                body="",
            ) from None
    # Made anew, not with ``replace(tzinfo=None, microsecond=0)``: a third of the cost,
    # for every record of the stream.
    return datetime(
        submitted.year,
        submitted.month,
        submitted.day,
        submitted.hour,
        submitted.minute,
        submitted.second,
    )


def _voice_id(record: CallRecord) -> str:
    return record.voice_id


@attrs.frozen(slots=True)
class _Binding:
    """What every slice's spec shares."""

    query: CallRecordQuery
    fetch: FetchPage[CallRecord]
    on_page: Callable[[PageEvent], None] | None

    def spec(self, lo: datetime, hi: datetime) -> StreamSpec[CallRecord]:
        return StreamSpec(
            endpoint=ENDPOINT,
            start=lo,
            end=hi,
            filters=FILTERS,
            fetch=self.fetch,
            time_of=_submit_second,
            id_of=_voice_id,
            zone=UTC,
            on_page=self.on_page,
        )


def call_record_options(query: CallRecordQuery, **arguments: Any) -> StreamOptions:
    """Check a stream's arguments against the whole window (its cursor included)."""
    whole = StreamSpec[CallRecord](
        endpoint=ENDPOINT,
        start=query.start,
        end=query.end,
        filters=FILTERS,
        fetch=_never,
        time_of=_submit_second,
        id_of=_voice_id,
    )
    return StreamOptions.build(whole, start_page=1, **arguments)


async def _never(*_: Any) -> Page[CallRecord]:  # pragma: no cover - never fetched
    raise AssertionError("the whole-window spec only checks arguments")


def _split(ranges: tuple[Range, ...], lo: datetime, hi: datetime) -> tuple[Range, ...]:
    """The parts of ``ranges`` within ``[lo, hi]`` (a range's ``seen`` stays with its top)."""
    out: list[Range] = []
    for r in ranges:
        if r.top < lo or r.lo > hi:
            continue
        top = min(r.top, hi)
        out.append(Range(max(r.lo, lo), top, r.seen if top == r.top else frozenset()))
    return tuple(out)


@attrs.frozen(slots=True)
class _Part:
    """One slice to stream, and where it starts."""

    lo: datetime
    hi: datetime
    resume: StreamCursor | None


def _plan(query: CallRecordQuery, cursor: StreamCursor | None) -> list[_Part]:
    """The slices still to stream, newest first, each with its own cursor if resumed."""
    windows = query.slices()
    if cursor is None:
        return [_Part(lo, hi, None) for lo, hi in windows]
    parts: list[_Part] = []
    if cursor.mode is PagingMode.OFFSET:
        # The position is in the slice just before those the ranges list whole.
        first = cursor.ranges[0].top if cursor.ranges else None
        index = next(
            (i for i, (lo, hi) in enumerate(windows) if first is not None and lo <= first <= hi),
            len(windows),
        )
        if index == 0:
            raise ValueError("resume_from: not a valid stream cursor (no slice for its page)")
        lo, hi = windows[index - 1]
        sub = StreamCursor(
            endpoint=ENDPOINT,
            start=lo,
            end=hi,
            requested_end=hi,
            filters=FILTERS,
            mode=PagingMode.OFFSET,
            page=cursor.page,
            page_size=cursor.page_size,
            exclude=cursor.exclude,
        )
        parts.append(_Part(lo, hi, sub))
        windows = windows[index:]
    for lo, hi in windows:
        ranges = _split(cursor.ranges, lo, hi)
        if not ranges:
            continue  # done
        if ranges == (Range(lo, hi),):
            parts.append(_Part(lo, hi, None))  # untouched: a fresh stream, fully concurrent
            continue
        sub = StreamCursor(
            endpoint=ENDPOINT,
            start=lo,
            end=hi,
            requested_end=hi,
            filters=FILTERS,
            mode=PagingMode.CURSOR,
            ranges=ranges,
        )
        parts.append(_Part(lo, hi, sub))
    return parts


def _spanning(
    query: CallRecordQuery, requested_end: datetime, sub: StreamCursor | None, rest: list[_Part]
) -> StreamCursor:
    """One cursor for the whole window: the slice in progress's, then the rest untouched."""
    later = tuple(Range(part.lo, part.hi) for part in rest)
    common: dict[str, Any] = {
        "endpoint": ENDPOINT,
        "start": query.start,
        "end": query.end,
        "requested_end": requested_end,
        "filters": FILTERS,
    }
    if sub is not None and sub.mode is PagingMode.OFFSET:
        return StreamCursor(
            mode=PagingMode.OFFSET,
            ranges=later,
            page=sub.page,
            page_size=sub.page_size,
            exclude=sub.exclude,
            **common,
        )
    head = sub.ranges if sub is not None else ()
    return StreamCursor(mode=PagingMode.CURSOR, ranges=head + later, **common)


_COUNTERS = ("requests", "retries", "limiter_wait", "slot_wait", "resyncs")


@attrs.define(slots=True)
class _Spanning:
    """Folds the progress of the slice in progress into the whole stream's."""

    query: CallRecordQuery
    requested_end: datetime
    progress: StreamProgress
    #: The counters of the slices done, and the pages and records they knew.
    base: dict[str, float] = attrs.field(factory=lambda: dict.fromkeys(_COUNTERS, 0))
    known: int = 0
    total: int = 0

    def cursor(self, sub: StreamCursor | None, rest: list[_Part]) -> StreamCursor:
        return _spanning(self.query, self.requested_end, sub, rest)

    def mirror(self, sub: StreamProgress, start: StreamCursor | None, rest: list[_Part]) -> None:
        progress = self.progress
        for name in _COUNTERS:
            setattr(progress, name, self.base[name] + getattr(sub, name))
        progress.pages_known = self.known + sub.pages_known
        progress.total = self.total + sub.total
        progress.mode, progress.guarantee = sub.mode, sub.guarantee
        progress.next_page = sub.next_page
        cursor = sub.resume_from if sub.resume_from is not None else start
        progress.resume_from = self.cursor(cursor, rest)

    def close_slice(self) -> None:
        progress = self.progress
        for name in _COUNTERS:
            self.base[name] = getattr(progress, name)
        self.known, self.total = progress.pages_known, progress.total


async def call_record_pages(
    query: CallRecordQuery,
    fetch: FetchPage[CallRecord],
    options: StreamOptions,
    progress: StreamProgress,
    *,
    requested_end: datetime,
    on_page: Callable[[PageEvent], None] | None,
) -> AsyncGenerator[Page[CallRecord], None]:
    """The pages of every slice, newest first, with one progress and one cursor."""
    binding = _Binding(query, fetch, on_page)
    parts = _plan(query, options.resume_from)
    whole = _Spanning(query, requested_end, progress)
    progress.window_end = query.end.replace(tzinfo=UTC)
    progress.resume_from = whole.cursor(None, parts)
    remaining = options.limit
    number = 0
    while parts and remaining != 0:
        part = parts.pop(0)
        sub = StreamProgress()
        sub_options = attrs.evolve(
            options, resume_from=part.resume, limit=remaining, on_progress=None
        )
        pages = _stream_pages(binding.spec(part.lo, part.hi), sub_options, sub)
        try:
            async for page in pages:
                number += 1
                whole.mirror(sub, part.resume, parts)
                progress.pages_done += 1
                progress.records_yielded += len(page.records)
                if remaining is not None:
                    remaining -= len(page.records)
                if options.on_progress is not None:
                    options.on_progress(progress)
                yield attrs.evolve(page, current=number, total=progress.total)
        except ItnioError as exc:
            whole.mirror(sub, part.resume, parts)
            exc.resume_from = progress.resume_from
            raise
        finally:
            await pages.aclose()
        whole.mirror(sub, part.resume, parts)
        if remaining != 0:
            # The slice ended whole: what is left is the slices after it.
            progress.resume_from = whole.cursor(None, parts)
        whole.close_slice()


async def _records(
    pages: AsyncGenerator[Page[CallRecord], None],
) -> AsyncGenerator[CallRecord, None]:
    try:
        async for page in pages:
            for record in page.records:
                yield record
    finally:
        await pages.aclose()


class CallRecordPageStream(_StreamBase[Page[CallRecord]]):
    """An async iterator of ``Page``s of call records (see ``iter_call_record_pages``).

    A page's ``current`` counts the pages handed out, from 1, across every slice;
    ``total`` and ``progress.total`` count the records of the slices started so far.
    After each page, ``progress.resume_from`` is the one cursor of the whole window.

    ``AsyncVoiceClient.iter_call_record_pages`` makes it, its arguments checked; it is
    not meant to be built by hand. Iterate it with ``async for``; ``aclose()`` (or
    ``async with``) stops it and every request in flight.

    Args:
        pages: the generator of the window's pages, slice after slice, not yet started
            (the first ``__anext__`` starts it); the stream hands its pages out and
            closes it on ``aclose()``.
        progress: the ``StreamProgress`` that generator updates; kept as
            ``stream.progress``.
    """

    def __init__(
        self, pages: AsyncGenerator[Page[CallRecord], None], progress: StreamProgress
    ) -> None:
        super().__init__(pages, progress)


class CallRecordStream(_StreamBase[CallRecord]):
    """An async iterator of every ``CallRecord`` of a window (see ``iter_call_records``).

    ``AsyncVoiceClient.iter_call_records`` makes it, its arguments checked; it is not
    meant to be built by hand. Iterate it with ``async for``; ``aclose()`` (or
    ``async with``) stops it and every request in flight. After each page,
    ``progress.resume_from`` is the one cursor of the whole window.

    Args:
        pages: the generator of the window's pages, slice after slice, not yet started
            (the first ``__anext__`` starts it); the stream hands out their records one
            by one, in the pages' order, and closes it on ``aclose()``.
        progress: the ``StreamProgress`` that generator updates; kept as
            ``stream.progress``.
    """

    def __init__(
        self, pages: AsyncGenerator[Page[CallRecord], None], progress: StreamProgress
    ) -> None:
        super().__init__(_records(pages), progress)
