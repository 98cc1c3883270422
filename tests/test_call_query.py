"""The call-record window rules and the slicing, as pure code (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itnio_async import CallRecord
from itnio_async._call_query import (
    CLAMP_MARGIN,
    MAX_WINDOW,
    CallRecordQuery,
    earliest_allowed,
    slice_window,
)
from itnio_async._call_records import FILTERS, _plan, _spanning, _submit_second
from itnio_async._paging import PagingMode, Range, StreamCursor

SECOND = timedelta(seconds=1)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda t: t.replace(microsecond=0)
)


@given(times, st.integers(0, 400 * 86_400))
def test_slices_tile_the_window_newest_first_each_at_most_31_days(
    start: datetime, seconds: int
) -> None:
    end = start + timedelta(seconds=seconds)
    slices = slice_window(start, end)
    assert slices[0][1] == end
    assert slices[-1][0] == start
    for lo, hi in slices:
        assert lo <= hi
        assert hi - lo <= MAX_WINDOW
    for newer, older in itertools.pairwise(slices):
        assert older[1] + SECOND == newer[0]  # consecutive: no second lost or shared
    assert len(slices) == max(1, -(-(seconds + 1) // (MAX_WINDOW // SECOND + 1)))


@given(times)
def test_the_earliest_allowed_time_is_two_calendar_months_back(now: datetime) -> None:
    earliest = earliest_allowed(now)
    months = (now.year - earliest.year) * 12 + now.month - earliest.month
    assert months == 2
    assert earliest.time() == now.time()
    assert earliest.day == now.day or earliest.day < now.day  # capped at the month's end
    assert timedelta(days=59) <= now - earliest <= timedelta(days=62)


@pytest.mark.parametrize(
    ("now", "earliest"),
    [
        (datetime(2026, 4, 30, 12), datetime(2026, 2, 28, 12)),
        (datetime(2024, 4, 30, 12), datetime(2024, 2, 29, 12)),
        (datetime(2026, 1, 15), datetime(2025, 11, 15)),
        (datetime(2026, 12, 31), datetime(2026, 10, 31)),
    ],
)
def test_earliest_allowed_examples(now: datetime, earliest: datetime) -> None:
    assert earliest_allowed(now) == earliest


NOW = datetime(2026, 6, 30, 12)


def test_aware_times_become_naive_utc_and_the_wire_keeps_the_zones_offset() -> None:
    plus8 = timezone(timedelta(hours=8))
    query = CallRecordQuery.build(
        datetime(2026, 6, 1, 8, tzinfo=plus8), datetime(2026, 6, 2, tzinfo=UTC), now=NOW
    )
    assert (query.start, query.end) == (datetime(2026, 6, 1), datetime(2026, 6, 2))
    assert query.body(1, 20)["params"]["strTime"] == "2026-06-01T00:00:00+00:00"
    zoned = CallRecordQuery.build(
        datetime(2026, 6, 1, 8), datetime(2026, 6, 2), now=NOW, server_timezone=plus8
    )
    assert zoned.body(2, 5)["params"] == {
        "strTime": "2026-06-01T08:00:00+08:00",
        "endTime": "2026-06-02T00:00:00+08:00",
    }


def test_a_clamped_start_keeps_a_day_inside_the_two_months() -> None:
    query = CallRecordQuery.build(
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 6, 1, tzinfo=UTC),
        now=NOW,
        clamp_start=True,
    )
    assert query.start == earliest_allowed(NOW) + CLAMP_MARGIN


@given(
    days=st.integers(0, 60),
    cut=st.integers(0, 10_000),
    seen=st.frozensets(st.text("ab", min_size=1, max_size=3), max_size=3),
)
def test_a_spanning_cursor_hands_each_slice_its_own_part(
    days: int, cut: int, seen: frozenset[str]
) -> None:
    start = datetime(2026, 5, 1)
    query = CallRecordQuery(start, start + timedelta(days=days, hours=5))
    windows = query.slices()
    # A stream standing inside one slice: a position there, the later slices untouched.
    index = cut % len(windows)
    lo, hi = windows[index]
    top = hi - timedelta(seconds=cut % max(1, int((hi - lo).total_seconds()) + 1))
    rest = list(_plan(query, None))[index + 1 :]
    sub = StreamCursor(
        endpoint="call_records",
        start=lo,
        end=hi,
        requested_end=hi,
        filters=FILTERS,
        mode=PagingMode.CURSOR,
        ranges=(Range(lo, top, seen),),
    )
    cursor = StreamCursor.from_string(str(_spanning(query, query.end, sub, rest)))
    parts = _plan(query, cursor)
    assert [(p.lo, p.hi) for p in parts] == list(windows[index:])
    first = parts[0]
    if (top, seen) == (hi, frozenset()):
        assert first.resume is None  # untouched: fresh, fully concurrent
    else:
        assert first.resume is not None
        assert first.resume.ranges == (Range(lo, top, seen),)
    assert all(part.resume is None for part in parts[1:])


@given(days=st.integers(0, 95), page=st.integers(1, 50), index=st.integers(0, 3))
def test_an_offset_position_in_a_slice_resumes_in_that_slice(
    days: int, page: int, index: int
) -> None:
    start = datetime(2026, 4, 1)
    query = CallRecordQuery(start, start + timedelta(days=days))
    windows = query.slices()
    index %= len(windows)
    lo, hi = windows[index]
    rest = _plan(query, None)[index + 1 :]
    sub = StreamCursor(
        endpoint="call_records",
        start=lo,
        end=hi,
        requested_end=hi,
        filters=FILTERS,
        mode=PagingMode.OFFSET,
        page=page,
        page_size=7,
        exclude=frozenset({"x"}),
    )
    cursor = StreamCursor.from_string(str(_spanning(query, query.end, sub, rest)))
    assert cursor.mode is PagingMode.OFFSET
    parts = _plan(query, cursor)
    assert [(p.lo, p.hi) for p in parts] == list(windows[index:])
    resumed = parts[0].resume
    assert resumed is not None
    assert (resumed.mode, resumed.page, resumed.page_size) == (PagingMode.OFFSET, page, 7)
    assert resumed.exclude == frozenset({"x"})


@given(
    moment=st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.timezones()
    )
    | st.datetimes(timezones=st.just(UTC))
)
def test_a_calls_cursor_key_is_its_submit_time_in_utc_to_the_second(moment: datetime) -> None:
    record = CallRecord(voice_id="1", submit_time=moment)
    assert _submit_second(record) == moment.astimezone(UTC).replace(tzinfo=None, microsecond=0)
