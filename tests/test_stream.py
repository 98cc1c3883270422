"""The record stream against the in-process fake vendor, in virtual time.

Every test runs on an event loop whose clock jumps to the next timer, and the fake counts
arrivals on that clock: backoff, ``Retry-After``, latency and rate limits cost no real
time, yet their order and spacing are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itnio_async import (
    AsyncVoiceClient,
    InvalidParameterError,
    ItnioHTTPError,
    RetryPolicy,
    StreamCursor,
    StreamProgress,
)
from itnio_async._paging import Range
from itnio_async._stream import READ_AHEAD_RECORDS
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan

from .conftest import run_virtual, wire_record

T = TypeVar("T")

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
PATIENT = RetryPolicy(max_retries=20, initial_backoff=0.05, max_backoff=1.0, deadline=None)
ALL_FAULTS = (
    Fault.code(-18),
    Fault.code(-16),
    Fault.http(429, retry_after=1.0),
    Fault.http(503),
    Fault.http(502, html=True),
    Fault.drop(),
)


def make_fake(count: int, **kwargs: Any) -> FakeVendor:
    """A fake whose arrival clock is the running (virtual) loop's."""
    loop = asyncio.get_running_loop()
    kwargs.setdefault("dataset", Dataset.generate(count, seed=count))
    return FakeVendor("stream-key", "stream-secret", monotonic=loop.time, **kwargs)


def make_client(fake: FakeVendor, **kwargs: Any) -> AsyncVoiceClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", PATIENT)
    kwargs.setdefault("transport", fake.transport())
    return AsyncVoiceClient(
        fake.api_key, fake.api_secret, base_url="https://fake.itnio.test", **kwargs
    )


def request_bound(pages: int, concurrency: int) -> int:
    """The most requests a stream may send for ``pages`` pages when nothing changes."""
    return pages + 2 * concurrency + 2


class Served(httpx.AsyncBaseTransport):
    """Wraps a transport and keeps, for each successful reply, the job ids it served."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.replies: list[list[int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        body = json.loads(content) if response.status_code == 200 else {}
        if isinstance(body.get("data"), dict):
            self.replies.append([record["jobId"] for record in body["data"]["records"]])
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self.inner.aclose()


def ids(records: list[Any]) -> list[int]:
    return [record.job_id for record in records]


class LoopErrors:
    """Collects what asyncio reports to the loop's exception handler (leaked tasks etc.)."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def install(self) -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: self.reports.append(context)
        )


def virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run in virtual time, and fail if asyncio reported a leaked task or exception."""
    errors = LoopErrors()

    async def wrapped() -> T:
        errors.install()
        result = await main()
        gc.collect()
        await asyncio.sleep(0)
        return result

    result = run_virtual(wrapped)
    assert errors.reports == []
    return result


async def no_other_tasks() -> bool:
    for _ in range(5):
        await asyncio.sleep(0)
    return asyncio.all_tasks() == {asyncio.current_task()}


# -- completeness and order -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    total=st.one_of(
        st.sampled_from([0, 1, 99, 100, 101, 200, 300, 97, 211, 499]), st.integers(0, 700)
    ),
    page_size=st.sampled_from([1, 7, 10, 50, 100]),
    concurrency=st.integers(1, 12),
    fault_seed=st.integers(0, 2**16),
    fault_probability=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_the_stream_yields_every_record_once_in_server_order_through_faults(
    total: int, page_size: int, concurrency: int, fault_seed: int, fault_probability: float
) -> None:
    if total // page_size > 200:
        page_size = 100  # keep each example small

    async def main() -> tuple[list[int], list[int], StreamProgress]:
        faults = FaultPlan.random(fault_seed, fault_probability, kinds=ALL_FAULTS)
        fake = make_fake(total, faults=faults, latency=0.01, jitter=0.02, seed=fault_seed)
        expected = ids(fake.expected(START, END))
        async with make_client(fake) as client:
            stream = client.iter_group_calls(
                START, END, page_size=page_size, concurrency=concurrency
            )
            got = [record.job_id async for record in stream]
            assert fake.stats.max_in_flight <= concurrency
        return got, expected, stream.progress

    got, expected, progress = virtual(main)
    assert got == expected
    assert progress.records_yielded == total
    assert progress.pages_known == -(-total // page_size)


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_unordered_streams_yield_every_record_once(concurrency: int) -> None:
    async def main() -> tuple[list[int], list[int]]:
        fake = make_fake(
            1234, faults=FaultPlan.random(3, 0.2, kinds=ALL_FAULTS), latency=0.01, jitter=0.05
        )
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, concurrency=concurrency, ordered=False)
            got = [record.job_id async for record in stream]
        return got, ids(fake.expected(START, END))

    got, expected = virtual(main)
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(expected)


def test_filters_reach_the_server_and_the_stream_follows_them() -> None:
    async def main() -> tuple[list[int], list[int]]:
        fake = make_fake(900)
        async with make_client(fake) as client:
            stream = client.iter_group_calls(
                START, END, statuses=[2, 3], app_id=2, page_size=20, concurrency=4
            )
            got = [record.job_id async for record in stream]
        return got, ids(fake.expected(START, END, statuses=[2, 3], app_id=2))

    got, expected = virtual(main)
    assert got == expected
    assert got  # the filter matched something


def test_the_page_stream_yields_pages_that_tile_the_result() -> None:
    async def main() -> tuple[list[int], list[int], list[int]]:
        fake = make_fake(250)
        async with make_client(fake) as client:
            pages = [page async for page in client.iter_group_call_pages(START, END, page_size=100)]
        return (
            [p.current for p in pages],
            [r.job_id for p in pages for r in p.records],
            ids(fake.expected(START, END)),
        )

    currents, got, expected = virtual(main)
    assert currents == [1, 2, 3]
    assert got == expected


# -- drift: the result changes under the stream ---------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    at_request=st.integers(1, 20),
    inserted=st.integers(1, 250),
    concurrency=st.integers(1, 10),
    page_size=st.sampled_from([10, 25, 100]),
)
def test_tasks_created_mid_stream_neither_hide_nor_repeat_the_others(
    at_request: int, inserted: int, concurrency: int, page_size: int
) -> None:
    async def main() -> tuple[list[int], list[int], set[int]]:
        fake = make_fake(600, latency=0.01, jitter=0.03, seed=at_request)
        before = ids(fake.expected(START, END))
        new: set[int] = set()

        @fake.on_request
        def insert(n: int, body: dict[str, Any]) -> None:
            if n == at_request:
                # Newest first: tasks created inside the window land at its head.
                new.update(t.job_id for t in fake.insert_tasks(inserted, created_time=END))

        async with make_client(fake) as client:
            got = [
                r.job_id
                async for r in client.iter_group_calls(
                    START, END, page_size=page_size, concurrency=concurrency
                )
            ]
        return got, before, new

    got, before, new = virtual(main)
    assert len(got) == len(set(got)), "a record was repeated"
    assert [job_id for job_id in got if job_id not in new] == before


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    at_request=st.integers(1, 20),
    leaving=st.integers(1, 120),
    concurrency=st.integers(1, 10),
    page_size=st.sampled_from([10, 25, 100]),
    where=st.sampled_from(["head", "spread"]),
)
def test_tasks_leaving_mid_stream_never_hide_or_repeat_the_ones_that_stay(
    at_request: int, leaving: int, concurrency: int, page_size: int, where: str
) -> None:
    async def main() -> tuple[list[int], list[int], set[int]]:
        fake = make_fake(900, latency=0.01, jitter=0.03, seed=at_request)
        before = ids(fake.expected(START, END, statuses=[2]))
        pool = before[: leaving * 2] if where == "head" else before[::3]
        gone = set(pool[:leaving])

        @fake.on_request
        def leave(n: int, body: dict[str, Any]) -> None:
            if n == at_request:
                fake.change_status(gone, 4)  # cancelled: no longer matches statuses=[2]

        async with make_client(fake) as client:
            got = [
                r.job_id
                async for r in client.iter_group_calls(
                    START, END, statuses=[2], page_size=page_size, concurrency=concurrency
                )
            ]
        return got, before, gone

    got, before, gone = virtual(main)
    assert len(got) == len(set(got)), "a record was repeated"
    stayed = [job_id for job_id in before if job_id not in gone]
    assert [job_id for job_id in got if job_id not in gone] == stayed


def test_tasks_created_at_the_head_mid_stream_cost_no_re_read_and_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> tuple[list[int], list[int], set[int], StreamProgress]:
        fake = make_fake(500, latency=0.01)
        before = ids(fake.expected(START, END))
        new: set[int] = set()

        @fake.on_request
        def insert(n: int, body: dict[str, Any]) -> None:
            if n == 3:
                new.update(t.job_id for t in fake.insert_tasks(3, created_time=END))

        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, concurrency=2)
            got = [r.job_id async for r in stream]
        return got, before, new, stream.progress

    got, before, new, progress = virtual(main)
    assert [job for job in got if job not in new] == before
    assert len(got) == len(set(got))
    assert progress.mode == "cursor"
    assert progress.resyncs == 0
    assert progress.requests <= request_bound(5, 2)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_in_offset_mode_a_change_of_the_total_is_read_again_and_counted() -> None:
    async def main() -> tuple[list[int], list[int], set[int], StreamProgress]:
        fake = make_fake(500, latency=0.01)
        before = ids(fake.expected(START, END))
        new: set[int] = set()

        @fake.on_request
        def insert(n: int, body: dict[str, Any]) -> None:
            if n == 3:  # at the head: every later page shifts by three
                new.update(t.job_id for t in fake.insert_tasks(3, created_time=END))

        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, concurrency=2, start_page=2)
            got = [r.job_id async for r in stream]
        return got, before, new, stream.progress

    got, before, new, progress = virtual(main)
    assert progress.mode == "offset"
    assert progress.resyncs == 1
    assert len(got) == len(set(got))
    old = [job for job in got if job not in new]
    assert [job for job in old if job in set(before[100:])] == before[100:]
    assert progress.total == 503


def test_the_window_end_is_frozen_at_the_stream_start_when_the_zone_is_known() -> None:
    async def main() -> tuple[list[str], str, list[int], set[int]]:
        old = Dataset.generate(300, seed=1, start=datetime(2020, 1, 1), end=datetime(2020, 2, 1))
        fake = make_fake(0, dataset=old)
        fake.insert_tasks(5, created_time=fake.now() - timedelta(seconds=5))
        ends: list[str] = []
        new: set[int] = set()

        @fake.on_request
        def record_and_insert(n: int, body: dict[str, Any]) -> None:
            ends.append(body["params"]["endTime"])
            if n == 2:
                new.update(t.job_id for t in fake.insert_tasks(40))

        started = fake.now().strftime("%Y-%m-%d %H:%M:%S")
        end = datetime.now(UTC) + timedelta(days=1)
        async with make_client(fake, server_timezone=UTC) as client:
            stream = client.iter_group_calls(datetime(2019, 1, 1, tzinfo=UTC), end, page_size=50)
            assert stream.progress.window_end is None
            got = [r.job_id async for r in stream]
            window_end = stream.progress.window_end
            assert window_end is not None
            assert window_end.tzinfo is UTC
            assert window_end.strftime("%Y-%m-%d %H:%M:%S") == ends[0]
        return ends, started, got, new

    ends, started, got, new = virtual(main)
    # Cursor requests end at each slice's position; none goes past the frozen end.
    assert max(ends) == ends[0]
    assert len(set(ends)) > 1
    assert ends[0] < started, "the window must end before the second the stream started"
    assert not new & set(got), "tasks created after the stream started entered it"
    assert len(got) == 305


# -- bounds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_requests_in_flight_never_exceed_the_concurrency(concurrency: int) -> None:
    async def main() -> int:
        # Enough pages for every worker to get a slice longer than the read-ahead allows.
        fake = make_fake(30_000, latency=0.05, jitter=0.05)
        async with make_client(fake) as client:
            async for _ in client.iter_group_calls(START, END, concurrency=concurrency):
                pass
        return fake.stats.max_in_flight

    assert virtual(main) == concurrency


def test_the_rate_limit_holds_at_the_server() -> None:
    async def main() -> tuple[int, int]:
        fake = make_fake(12_000, latency=0.002)
        async with make_client(fake, rate_limit=25) as client:
            count = 0
            async for _ in client.iter_group_calls(START, END, concurrency=16):
                count += 1
        return fake.stats.max_in_any_second(), count

    most, count = virtual(main)
    assert count == 12_000
    assert most <= 26


def test_a_stalled_consumer_stops_the_fetching_until_it_asks_again() -> None:
    async def main() -> tuple[int, int, int]:
        fake = make_fake(10_000, latency=0.01)
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, concurrency=4)
            await anext(stream)
            await asyncio.sleep(60)  # the consumer stalls: nothing new may start
            stalled = fake.stats.requests
            await asyncio.sleep(60)
            still = fake.stats.requests
            async for _ in stream:
                pass
        return stalled, still, fake.stats.requests

    stalled, still, total_requests = virtual(main)
    assert still == stalled <= 1 + 4  # the first page, then a request per worker
    assert total_requests <= request_bound(100, 4)


@pytest.mark.parametrize(("concurrency", "page_size"), [(4, 100), (100, 100), (4, 50)])
def test_a_slow_consumer_holds_the_fetching_within_the_read_ahead(
    concurrency: int, page_size: int
) -> None:
    read_ahead = max(3 * concurrency, READ_AHEAD_RECORDS // page_size)

    async def main() -> tuple[int, int, list[int], list[int]]:
        fake = make_fake(40_000, latency=0.01)
        ahead = 0
        got: list[int] = []
        async with make_client(fake) as client:
            stream = client.iter_group_call_pages(
                START, END, concurrency=concurrency, page_size=page_size
            )
            async for page in stream:
                got.extend(r.job_id for r in page.records)
                await asyncio.sleep(1.0)  # far slower than the fetching
                ahead = max(ahead, fake.stats.requests - stream.progress.pages_done)
        return ahead, fake.stats.requests, got, ids(fake.expected(START, END))

    ahead, sent, got, expected = virtual(main)
    assert got == expected
    # Pages fetched (or in flight) and not handed out: up to the read-ahead, and one more
    # request per worker at most; and it is the read-ahead that holds them back.
    assert read_ahead // 2 <= ahead <= read_ahead + concurrency
    assert sent <= request_bound(40_000 // page_size, concurrency)


# -- limit, start_page, arguments -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "concurrency"),
    [(0, 8), (1, 8), (100, 8), (101, 8), (250, 8), (250, 1), (650, 4), (10_000, 8)],
)
@pytest.mark.parametrize("slow", [False, True])
def test_limit_stops_early_and_fetches_no_page_it_does_not_need(
    limit: int, concurrency: int, slow: bool
) -> None:
    async def main() -> tuple[list[int], list[int], int, list[list[int]]]:
        fake = make_fake(1000, latency=0.01)
        served = Served(fake.transport())
        got: list[int] = []
        async with make_client(fake, transport=served) as client:
            stream = client.iter_group_calls(START, END, limit=limit, concurrency=concurrency)
            async for record in stream:
                got.append(record.job_id)
                if slow and len(got) % 50 == 0:
                    await asyncio.sleep(0.5)
        return got, ids(fake.expected(START, END)), fake.stats.requests, served.replies

    got, expected, sent, replies = virtual(main)
    assert got == expected[:limit]
    pages = -(-min(limit, 1000) // 100)
    assert sent <= request_bound(pages, concurrency)
    if limit <= 100:
        assert sent == pages  # the first page alone
    rank = {job: k for k, job in enumerate(expected)}
    beyond = [
        served for served in replies if served and min(map(rank.__getitem__, served)) >= limit
    ]
    if limit <= 250 or limit >= 1000:
        assert not beyond, "a page holding only records past the limit was fetched"
    else:
        # The limit's last record falls in one slice; each slice after it may have read
        # one page before the records ahead of it covered the limit.
        assert len(beyond) <= concurrency - 1


def test_start_page_past_the_end_yields_nothing_after_one_request() -> None:
    async def main() -> tuple[list[int], int]:
        fake = make_fake(150)
        async with make_client(fake) as client:
            got = [r.job_id async for r in client.iter_group_calls(START, END, start_page=9)]
        return got, fake.stats.requests

    assert virtual(main) == ([], 1)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"limit": -1}, "limit"),
        ({"start_page": 0}, "start_page"),
        ({"ordered": "yes"}, "ordered"),
        ({"on_progress": 3}, "on_progress"),
        ({"statuses": [8]}, "statuses"),
        ({"end": datetime(2023, 1, 1)}, "end"),
    ],
)
def test_bad_stream_arguments_fail_on_creation_before_any_request(
    kwargs: dict[str, Any], named: str
) -> None:
    async def main() -> int:
        fake = make_fake(10)
        async with make_client(fake) as client:
            args = {"start": START, "end": END} | kwargs
            with pytest.raises((ValueError, TypeError), match=named):
                client.iter_group_calls(**args)
            with pytest.raises((ValueError, TypeError), match=named):
                client.iter_group_call_pages(**args)
        return fake.stats.requests

    assert virtual(main) == 0


# -- failure and resuming -------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("as_string", [False, True])
def test_a_failed_request_ends_the_stream_with_a_cursor_and_resuming_loses_and_repeats_nothing(
    ordered: bool, as_string: bool
) -> None:
    async def main() -> tuple[list[int], list[int], InvalidParameterError, StreamProgress]:
        fake = make_fake(
            1000, faults=FaultPlan(by_request={6: Fault.code(-22)}), latency=0.01, jitter=0.05
        )
        expected = ids(fake.expected(START, END))
        got: list[int] = []
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, concurrency=4, ordered=ordered)
            with pytest.raises(InvalidParameterError) as caught:
                async for record in stream:
                    got.append(record.job_id)
            error = caught.value
            assert error.code == -22
            assert error.resume_from == stream.progress.resume_from
            resume_from = str(error.resume_from) if as_string else error.resume_from
            async for record in client.iter_group_calls(
                START, END, concurrency=4, ordered=ordered, resume_from=resume_from
            ):
                got.append(record.job_id)
        return got, expected, error, stream.progress

    got, expected, error, progress = virtual(main)
    assert error.page is None, "a page number means nothing in cursor mode"
    assert isinstance(error.resume_from, StreamCursor)
    assert not error.resume_from.done
    assert progress.next_page is None
    if ordered:
        assert got == expected
    else:
        assert sorted(got) == sorted(expected)
        assert len(got) == len(set(got))


def test_in_offset_mode_a_failure_carries_the_first_page_not_handed_out_to_resume_from() -> None:
    async def main() -> tuple[list[int], list[int], int | None, list[int]]:
        fake = make_fake(
            1000, faults=FaultPlan(by_page={6: [Fault.code(-22)]}), latency=0.01, jitter=0.05
        )
        expected = ids(fake.expected(START, END))
        got: list[int] = []
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, concurrency=4, start_page=2)
            with pytest.raises(InvalidParameterError) as caught:
                async for record in stream:
                    got.append(record.job_id)
            # The first page not handed out: pages after the failed one are dropped,
            # pages before it still in flight are cancelled.
            failed_at = caught.value.page
            assert failed_at is not None
            assert 2 <= failed_at <= 6
            assert stream.progress.next_page == failed_at
            assert got == expected[100 : (failed_at - 1) * 100]
            cursor = caught.value.resume_from
            assert isinstance(cursor, StreamCursor)
            assert cursor.mode.value == "offset"
            assert cursor.page == failed_at
            by_cursor = [
                r.job_id async for r in client.iter_group_calls(START, END, resume_from=cursor)
            ]
            async for record in client.iter_group_calls(START, END, start_page=failed_at):
                got.append(record.job_id)
        return got, expected, failed_at, by_cursor

    got, expected, failed_at, by_cursor = virtual(main)
    assert got == expected[100:]
    assert by_cursor == expected[(failed_at - 1) * 100 :]


def test_a_request_whose_retries_run_out_raises_the_transient_error_with_a_cursor() -> None:
    async def main() -> tuple[ItnioHTTPError, int, StreamProgress, list[int], list[int]]:
        # One worker, so request 4 and its two retries are requests 4, 5 and 6.
        faults = FaultPlan(by_request={n: Fault.http(503) for n in (4, 5, 6)})
        fake = make_fake(800, faults=faults)
        got: list[int] = []
        async with make_client(
            fake, retry=RetryPolicy(max_retries=2, initial_backoff=0.1)
        ) as client:
            stream = client.iter_group_calls(START, END, concurrency=1)
            with pytest.raises(ItnioHTTPError) as caught:
                async for record in stream:
                    got.append(record.job_id)
            count = len(got)
            assert await no_other_tasks()
            async for record in client.iter_group_calls(
                START, END, concurrency=1, resume_from=caught.value.resume_from
            ):
                got.append(record.job_id)
        return caught.value, count, stream.progress, got, ids(fake.expected(START, END))

    error, count, progress, got, expected = virtual(main)
    assert error.status_code == 503
    assert error.attempts == 3
    assert error.page is None
    assert error.resume_from == progress.resume_from
    assert progress.records_yielded == count > 0
    assert got == expected


def test_in_offset_mode_a_page_whose_retries_run_out_raises_with_its_page() -> None:
    async def main() -> tuple[int | None, int | None, int]:
        fake = make_fake(800, faults=FaultPlan(by_page={3: [Fault.http(503)] * 10}))
        async with make_client(
            fake, retry=RetryPolicy(max_retries=2, initial_backoff=0.1)
        ) as client:
            stream = client.iter_group_calls(START, END, concurrency=2, start_page=2)
            count = 0
            with pytest.raises(ItnioHTTPError) as caught:
                async for _ in stream:
                    count += 1
            assert stream.progress.next_page == 3
            assert await no_other_tasks()
        return caught.value.page, caught.value.attempts, count

    assert virtual(main) == (3, 3, 100)


def test_a_failure_on_the_first_page_carries_that_page() -> None:
    async def main() -> int | None:
        fake = make_fake(100, faults=FaultPlan(by_page={4: [Fault.code(-1)]}))
        async with make_client(fake) as client:
            with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is checked below
                async for _ in client.iter_group_calls(START, END, start_page=4, page_size=10):
                    pass
        assert type(caught.value).__name__ == "AuthenticationError"
        return caught.value.page  # type: ignore[attr-defined,no-any-return]

    assert virtual(main) == 4


# -- leaving early --------------------------------------------------------------------------------


async def _leave_early(how: str, client: AsyncVoiceClient, fake: FakeVendor) -> None:
    if how == "break":
        stream = client.iter_group_calls(START, END, concurrency=8)
        async for _ in stream:
            break
        await stream.aclose()
    elif how == "aclosing":
        async with contextlib.aclosing(
            client.iter_group_calls(START, END, concurrency=8)
        ) as stream:
            async for _ in stream:
                break
    elif how == "dropped":
        async for _ in client.iter_group_calls(START, END, concurrency=8):
            break
        # No aclose: dropping the iterator must stop the fetching by itself.
        for _ in range(5):
            await asyncio.sleep(0)
    elif how == "cancelled":

        async def consume() -> None:
            async for _ in client.iter_group_calls(START, END, concurrency=8):
                await asyncio.sleep(0.001)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    elif how == "raises":
        with pytest.raises(ZeroDivisionError):
            async for _ in client.iter_group_calls(START, END, concurrency=8):
                _ = 1 / 0
        for _ in range(5):
            await asyncio.sleep(0)
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["break", "aclosing", "dropped", "cancelled", "raises"])
def test_leaving_early_cancels_every_request_and_leaves_the_client_working(how: str) -> None:
    async def main() -> tuple[int, int, bool, int]:
        fake = make_fake(50_000, latency=0.05, jitter=0.05)
        async with make_client(fake) as client:
            await _leave_early(how, client, fake)
            settled = fake.stats.requests
            assert fake.stats.in_flight == 0
            await asyncio.sleep(30)  # long enough for any stray fetch to show up
            later = fake.stats.requests
            clean = await no_other_tasks()
            page = await client.query_group_calls(START, END, size=5)
            return settled, later, clean, len(page.records)

    settled, later, clean, served = virtual(main)
    assert later == settled, "a request was sent after the stream was left"
    assert settled <= 1 + 3 * 8
    assert clean, "a task outlived the stream"
    assert served == 5


def test_progress_is_reported_after_every_page() -> None:
    seen: list[tuple[int, int, int, StreamCursor | None]] = []

    def on_progress(progress: StreamProgress) -> None:
        seen.append(
            (
                progress.pages_done,
                progress.pages_known,
                progress.records_yielded,
                progress.resume_from,
            )
        )

    async def main() -> StreamProgress:
        fake = make_fake(450, faults=FaultPlan(by_request={2: Fault.code(-18)}))
        async with make_client(fake, rate_limit=50) as client:
            stream = client.iter_group_calls(START, END, concurrency=2, on_progress=on_progress)
            async for _ in stream:
                pass
            assert fake.stats.requests == stream.progress.requests
        return stream.progress

    progress = virtual(main)
    assert progress.pages_known == 5
    assert progress.records_yielded == progress.total == 450
    assert progress.pages_done == len(seen)
    assert progress.retries == 1
    assert 5 + 1 <= progress.requests <= request_bound(5, 2) + 1
    assert progress.limiter_wait > 0
    assert progress.next_page is None
    assert progress.mode == "cursor"
    counts = [s[2] for s in seen]
    assert counts == sorted(counts)
    assert counts[-1] == 450
    cursors = [s[3] for s in seen]
    assert all(isinstance(c, StreamCursor) for c in cursors)
    assert len(set(cursors)) == len(cursors), "the cursor moves on with every page"
    assert cursors[-1] is not None
    assert cursors[-1].done


# -- memory ---------------------------------------------------------------------------------------


#: Creation time of the newest record of the synthetic vendor; the others are a second apart.
_NEWEST = END - timedelta(days=1)


def _synthetic_vendor(total: int) -> Callable[[httpx.Request], httpx.Response]:
    """A lean vendor for the memory test (the fake's own caches would blur the measure):
    record ``i`` was created ``i`` seconds before ``_NEWEST``; windows are honoured."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        current, size = body["current"], body["size"]
        lo = datetime.fromisoformat(body["params"]["strTime"])
        hi = datetime.fromisoformat(body["params"]["endTime"])
        first_i = max(0, int((_NEWEST - hi).total_seconds()))
        last_i = min(total - 1, int((_NEWEST - lo).total_seconds()))
        count = max(0, last_i - first_i + 1)
        first = first_i + (current - 1) * size
        records = [
            wire_record(
                10_000_000 - i,
                createdTime=(_NEWEST - timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S"),
            )
            for i in range(first, min(first + size, first_i + count))
        ]
        data = {"records": records, "total": count, "size": size, "current": current}
        data["pages"] = -(-count // size)
        return httpx.Response(200, json={"code": 0, "msg": "success", "data": data})

    return handler


def _memory_peaks() -> tuple[tuple[int, int], tuple[int, int]]:
    """Records streamed and the traced peak, for 50,000 and for 150,000 records."""
    concurrency = 4

    async def peak_of(total: int) -> tuple[int, int]:
        client = AsyncVoiceClient(
            "k", "s", transport=httpx.MockTransport(_synthetic_vendor(total)), rate_limit=None
        )
        async with client:
            tracemalloc.start()
            count = 0
            async for _ in client.iter_group_calls(START, END, concurrency=concurrency):
                count += 1
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        return count, peak

    async def main() -> tuple[tuple[int, int], tuple[int, int]]:
        await peak_of(2_000)  # warm every code path once
        return await peak_of(50_000), await peak_of(150_000)

    return run_virtual(main)


def test_streaming_memory_is_flat_in_the_size_of_the_result() -> None:
    """The peak while streaming 150,000 records is about that of 50,000: the read-ahead
    (25,000 records) bounds what is held, not the result. Measured in a process of its
    own, where nothing else (threads and servers of other tests) allocates meanwhile."""
    script = (
        "import json\n"
        "from tests.test_stream import _memory_peaks\n"
        "print(json.dumps(_memory_peaks()))\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr
    (small_count, small), (large_count, large) = json.loads(done.stdout.splitlines()[-1])
    assert (small_count, large_count) == (50_000, 150_000)
    assert large < 1.25 * small, (small, large)


def test_a_resumed_stream_never_reads_before_its_start_page_after_a_drift() -> None:
    async def main() -> tuple[list[int], list[int], set[int]]:
        fake = make_fake(1000, latency=0.01)
        before = ids(fake.expected(START, END))
        new: set[int] = set()

        @fake.on_request
        def insert(n: int, body: dict[str, Any]) -> None:
            if n == 3:  # the newest tasks: everything shifts down by 7
                new.update(t.job_id for t in fake.insert_tasks(7, created_time=END))

        async with make_client(fake) as client:
            got = [r.job_id async for r in client.iter_group_calls(START, END, start_page=4)]
        return got, before, new

    got, before, new = virtual(main)
    assert len(got) == len(set(got))
    old = [job for job in got if job not in new]
    # Every record from the start page on arrives once, in order...
    assert [job for job in old if job in set(before[300:])] == before[300:]
    # ...and the re-read after the shift brings back at most the 7 records that the shift
    # pushed over the start page's edge: never more than that, never from further back.
    early = [job for job in old if job not in set(before[300:])]
    assert early == before[293:300]


def _damaged(cursor: StreamCursor, *ranges: tuple[datetime, datetime]) -> StreamCursor:
    return attrs.evolve(cursor, ranges=tuple(Range(lo, top) for lo, top in ranges))


@pytest.mark.parametrize(
    "ranges",
    [
        pytest.param([(datetime(2024, 3, 1), END + timedelta(seconds=1))], id="above-the-end"),
        pytest.param([(START - timedelta(seconds=1), datetime(2024, 2, 1))], id="below-start"),
        pytest.param([(datetime(2024, 3, 2), datetime(2024, 3, 1))], id="upside-down"),
        pytest.param(
            [(datetime(2024, 2, 1), datetime(2024, 3, 1)), (datetime(2024, 4, 1), END)],
            id="oldest-first",
        ),
        pytest.param(
            [(datetime(2024, 3, 1), END), (datetime(2024, 2, 1), datetime(2024, 3, 1))],
            id="overlapping",
        ),
    ],
)
def test_a_cursor_whose_ranges_leave_the_window_or_overlap_is_refused_before_any_request(
    ranges: list[tuple[datetime, datetime]],
) -> None:
    async def main() -> None:
        fake = make_fake(500)
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, limit=150)
            async for _ in stream:
                pass
            cursor = stream.progress.resume_from
            assert cursor is not None
            assert cursor.ranges
            before = fake.stats.requests
            for damaged in (_damaged(cursor, *ranges), str(_damaged(cursor, *ranges))):
                with pytest.raises(ValueError, match="resume_from is damaged"):
                    client.iter_group_calls(START, END, resume_from=damaged)
            assert fake.stats.requests == before
            # The cursor as the stream made it, and a fair edit of it, still resume.
            client.iter_group_calls(START, END, resume_from=cursor)
            fair = _damaged(cursor, (datetime(2024, 3, 1), END), (START, datetime(2024, 2, 1)))
            await client.iter_group_calls(START, END, resume_from=fair).aclose()

    virtual(main)
