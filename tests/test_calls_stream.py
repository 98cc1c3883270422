"""The call-record stream against the fake vendor, end to end in virtual time: exactly
once and in order across 31-day slices, one cursor that resumes across them, churn,
concurrency, bounded read-ahead, cancellation, and the window rules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itnio_async import (
    AsyncVoiceClient,
    CallRecord,
    InvalidParameterError,
    MalformedResponseError,
    StreamCursor,
    StreamProgress,
)
from itnio_async.testing import (
    CallLog,
    Dataset,
    FakeVendor,
    Fault,
    FaultPlan,
    Lies,
    call_account,
)

from .conftest import run_virtual
from .test_stream import make_client, no_other_tasks, virtual
from .test_stream_hostile import assert_all_once_or_a_typed_error

PLUS8 = timezone(timedelta(hours=8))
#: Whole seconds: the fake's clock and the client's are the machine's.
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=50)
#: Before the clock: a window that ends here is not frozen (the freezing has its own test).
END = NOW - timedelta(minutes=30)


def account(tasks: int = 30, per_task: tuple[int, int] = (0, 40)) -> tuple[Dataset, CallLog]:
    local = NOW.astimezone(PLUS8).replace(tzinfo=None)
    return call_account(
        tasks,
        seed=tasks,
        start=local - timedelta(days=55),
        end=local - timedelta(hours=1),
        calls_per_task=per_task,
        tz=PLUS8,
    )


def make_fake(tasks: int = 30, per_task: tuple[int, int] = (0, 40), **kwargs: Any) -> FakeVendor:
    loop = asyncio.get_running_loop()
    dataset, calls = account(tasks, per_task)
    return FakeVendor(
        "calls-key",
        "calls-secret",
        dataset=dataset,
        calls=calls,
        tz=PLUS8,
        monotonic=loop.time,
        **kwargs,
    )


def windows_asked(fake: FakeVendor) -> list[tuple[datetime, datetime]]:
    """Record the window of every call-record query the fake is asked."""
    asked: list[tuple[datetime, datetime]] = []

    def note(_: int, body: dict[str, Any]) -> None:
        params = body.get("params")
        if isinstance(params, dict) and "T" in str(params.get("strTime")):
            asked.append(
                (
                    datetime.fromisoformat(params["strTime"]),
                    datetime.fromisoformat(params["endTime"]),
                )
            )

    fake.on_request(note)
    return asked


def voice_ids(records: list[CallRecord]) -> list[str]:
    return [record.voice_id for record in records]


async def collect(stream: Any) -> list[CallRecord]:
    return [record async for record in stream]


def expected(fake: FakeVendor, start: datetime = START, end: datetime = END) -> list[str]:
    return [call.voice_id for call in fake.expected_calls(start, end)]


# -- exactly once, in order, across slices -------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4, 8])
@pytest.mark.parametrize("page_size", [7, 100])
def test_a_long_window_streams_every_call_once_in_order_in_31_day_slices(
    concurrency: int, page_size: int
) -> None:
    async def main() -> tuple[list[str], list[str], list[tuple[datetime, datetime]], bool]:
        fake = make_fake()
        asked = windows_asked(fake)
        async with make_client(fake) as client:
            got = await collect(
                client.iter_call_records(START, END, page_size=page_size, concurrency=concurrency)
            )
            return voice_ids(got), expected(fake), asked, await no_other_tasks()

    got, want, asked, clean = virtual(main)
    assert len(want) > 100
    assert got == want
    assert asked
    assert all(hi - lo <= timedelta(days=31) for lo, hi in asked)
    assert min(lo for lo, _ in asked) == START
    assert clean


def test_calls_on_every_slice_boundary_arrive_once() -> None:
    async def main() -> tuple[list[str], list[str]]:
        fake = make_fake(tasks=5)
        job = next(iter(fake.dataset)).job_id
        for lo, hi in [(START, START + timedelta(days=31))]:
            for at in (lo, hi, hi + timedelta(seconds=1)):
                fake.insert_calls(3, job_id=job, submit_time=at)
        async with make_client(fake) as client:
            got = await collect(client.iter_call_records(START, END, page_size=2))
            return voice_ids(got), expected(fake)

    got, want = virtual(main)
    assert got == want
    assert len(got) == len(set(got))


def test_unordered_streams_yield_every_call_once() -> None:
    async def main() -> tuple[list[str], list[str]]:
        fake = make_fake(latency=0.01, jitter=0.05)
        async with make_client(fake) as client:
            got = await collect(
                client.iter_call_records(START, END, page_size=10, concurrency=6, ordered=False)
            )
            return voice_ids(got), expected(fake)

    got, want = virtual(main)
    assert sorted(got) == sorted(want)
    assert len(got) == len(set(got))


def test_the_page_stream_numbers_pages_across_slices_and_times_are_aware() -> None:
    async def main() -> tuple[list[Any], list[str]]:
        fake = make_fake()
        async with make_client(fake, server_timezone=PLUS8) as client:
            pages = [page async for page in client.iter_call_record_pages(START, END, page_size=25)]
            return pages, expected(fake)

    pages, want = virtual(main)
    assert [page.current for page in pages] == list(range(1, len(pages) + 1))
    assert [r.voice_id for page in pages for r in page.records] == want
    first = pages[0].records[0]
    assert first.submit_time is not None
    assert first.submit_time.utcoffset() == timedelta(hours=8)


def test_naive_times_are_read_in_the_server_timezone_and_refused_without() -> None:
    async def main() -> tuple[list[str], list[str]]:
        fake = make_fake(tasks=10)
        naive_start = START.astimezone(PLUS8).replace(tzinfo=None)
        naive_end = END.astimezone(PLUS8).replace(tzinfo=None)
        async with make_client(fake) as plain:
            with pytest.raises(ValueError, match="naive"):
                plain.iter_call_records(naive_start, naive_end)
        assert fake.stats.requests == 0
        async with make_client(fake, server_timezone=PLUS8) as client:
            got = await collect(client.iter_call_records(naive_start, naive_end))
            return voice_ids(got), expected(fake)

    got, want = virtual(main)
    assert got == want


# -- the vendor's window rules ------------------------------------------------------------


def test_a_window_older_than_two_months_is_refused_before_any_request_or_clamped() -> None:
    async def main() -> tuple[str, int, list[tuple[datetime, datetime]]]:
        fake = make_fake(tasks=10)
        asked = windows_asked(fake)
        async with make_client(fake) as client:
            with pytest.raises(ValueError, match="only the last 2 months") as info:
                client.iter_call_records(NOW - timedelta(days=70), END)
            refused = fake.stats.requests
            await collect(client.iter_call_records(NOW - timedelta(days=70), END, clamp_start=True))
            return str(info.value), refused, asked

    message, refused, asked = virtual(main)
    assert "clamp_start=True" in message
    assert refused == 0
    oldest = min(lo for lo, _ in asked)
    assert NOW - timedelta(days=62) <= oldest <= NOW - timedelta(days=58)


def test_a_clamped_stream_resumes_after_the_oldest_allowed_time_has_moved_on() -> None:
    """The clamp follows the clock: resumed later, a clamped stream keeps its cursor's start
    (it was refused as another window once a second had passed)."""
    oldest = NOW - timedelta(days=70)

    async def main() -> tuple[list[str], list[str]]:
        fake = make_fake(tasks=30)
        got: list[str] = []
        async with make_client(fake) as client:
            pages = client.iter_call_record_pages(oldest, END, page_size=10, clamp_start=True)
            async with pages:
                async for page in pages:
                    got += [record.voice_id for record in page.records]
                    if len(got) >= 25:
                        break
                cursor = pages.progress.resume_from  # where the pages handed out end
        assert cursor is not None
        fake.clock_offset = 1800.0  # half an hour on, by the vendor's clock
        async with make_client(fake) as client:
            await client.get_group_call(next(iter(fake.dataset)).job_id)  # learns the clock
            rest = client.iter_call_records(
                oldest, END, page_size=10, clamp_start=True, resume_from=str(cursor)
            )
            got += [record.voice_id for record in await collect(rest)]
            want = expected(fake, cursor.start.replace(tzinfo=UTC), END)
        return got, want

    got, want = virtual(main)
    assert got == want


def test_the_end_is_frozen_so_calls_made_meanwhile_do_not_shift_pages() -> None:
    async def main() -> tuple[list[str], list[str], StreamProgress]:
        fake = make_fake()
        job = next(iter(fake.dataset)).job_id
        before = expected(fake, START, datetime.now(UTC))

        def churn(n: int, _: dict[str, Any]) -> None:
            fake.insert_calls(2, job_id=job)  # at the fake's now: after the frozen end

        fake.on_request(churn)
        async with make_client(fake) as client:
            stream = client.iter_call_records(START, END + timedelta(hours=1), page_size=9)
            got = await collect(stream)
            return voice_ids(got), before, stream.progress

    got, before, progress = virtual(main)
    assert got == before
    assert progress.window_end is not None
    assert progress.window_end <= NOW + timedelta(minutes=5)


# -- churn ---------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    page_size=st.sampled_from([3, 10, 100]),
    concurrency=st.integers(1, 8),
    every=st.integers(1, 4),
)
def test_calls_appended_inside_the_window_while_it_is_read_neither_hide_nor_repeat_others(
    seed: int, page_size: int, concurrency: int, every: int
) -> None:
    async def main() -> tuple[list[str], list[str], set[str]]:
        fake = make_fake(tasks=12)
        jobs = [task.job_id for task in fake.dataset]
        before = expected(fake)
        new: set[str] = set()
        step = 0

        def churn(n: int, _: dict[str, Any]) -> None:
            nonlocal step
            if n % every or step >= 40:
                return
            step += 1
            # A day still running: calls land anywhere in the window, late ones included.
            offset = (seed * 7919 + step * 104729) % int((END - START).total_seconds())
            made = fake.insert_calls(
                1 + step % 3,
                job_id=jobs[step % len(jobs)],
                submit_time=START + timedelta(seconds=offset),
            )
            new.update(call.voice_id for call in made)

        fake.on_request(churn)
        async with make_client(fake) as client:
            got = await collect(
                client.iter_call_records(START, END, page_size=page_size, concurrency=concurrency)
            )
            return voice_ids(got), before, new

    got, before, new = virtual(main)
    assert len(got) == len(set(got)), "a call arrived twice"
    kept = set(before)
    assert [v for v in got if v in kept] == before, "a call that stayed was lost or moved"
    assert set(got) <= kept | new


# -- a record that does not fit ----------------------------------------------------------------


class BadFieldOnce(httpx.AsyncBaseTransport):
    """Wraps a transport; in the ``nth`` page of call records it serves, the last record's
    ``callDuration`` is a word (the page is otherwise right, its keys included)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, nth: int) -> None:
        self.inner, self.nth, self.pages = inner, nth, 0
        self.bad: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/voice/recordGroupQuery":
            return response
        body = json.loads(await response.aread())
        records = (body.get("data") or {}).get("records") or []
        if records:
            self.pages += 1
            if self.pages == self.nth:
                records[-1]["callDuration"] = "long"
                self.bad = records[-1]["voiceId"]
        return httpx.Response(response.status_code, headers=response.headers, json=body)


@pytest.mark.parametrize("nth", [1, 2, 5])
def test_a_record_that_does_not_fit_ends_the_stream_with_nothing_half_made(nth: int) -> None:
    # A stream makes a page's records whole only after it has asked for the pages that
    # follow: none of a bad page's records, nor any after it, may reach the consumer.
    async def main() -> tuple[list[CallRecord], MalformedResponseError, list[str], str | None]:
        fake = make_fake(tasks=60, per_task=(20, 60), latency=0.01)
        wrapped = BadFieldOnce(fake.transport(), nth)
        got: list[CallRecord] = []
        async with make_client(fake, transport=wrapped) as client:
            with pytest.raises(MalformedResponseError, match=r"callDuration|long") as caught:
                async for record in client.iter_call_records(
                    START, END, page_size=20, concurrency=4
                ):
                    got.append(record)
        return got, caught.value, expected(fake), wrapped.bad

    got, error, want, bad = virtual(main)
    assert bad is not None
    voice_ids = [record.voice_id for record in got]
    assert voice_ids == want[: len(voice_ids)], "lost, repeated or out of order"
    assert bad not in voice_ids
    # Every record handed out is whole: each field was set (a slot left unset raises).
    for record in got:
        assert attrs.asdict(record)["call_duration"] is None or isinstance(
            record.call_duration, int
        )
    assert error.resume_from is not None


# -- concurrency, memory, cancellation --------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_requests_in_flight_never_exceed_the_concurrency(concurrency: int) -> None:
    async def main() -> int:
        fake = make_fake(tasks=60, per_task=(20, 60), latency=0.05, jitter=0.05)
        async with make_client(fake) as client:
            await collect(
                client.iter_call_records(START, END, page_size=10, concurrency=concurrency)
            )
        return fake.stats.max_in_flight

    peak = virtual(main)
    assert peak <= concurrency
    if concurrency > 1:
        assert peak > 1, "the stream never fetched concurrently"


def test_a_stalled_consumer_stops_the_fetching_within_the_read_ahead() -> None:
    async def main() -> tuple[int, int]:
        fake = make_fake(tasks=80, per_task=(40, 80), latency=0.01)
        async with make_client(fake) as client:
            stream = client.iter_call_records(START, END, page_size=5, concurrency=4)
            await stream.__anext__()
            await asyncio.sleep(60)
            stalled = fake.stats.requests
            await asyncio.sleep(60)
            later = fake.stats.requests
            await stream.aclose()
            return stalled, later

    stalled, later = virtual(main)
    assert later == stalled, "the stream fetched on while nobody read"
    assert stalled < 80 * 40 // 5


async def _leave_early(how: str, client: AsyncVoiceClient) -> None:
    if how == "break":
        stream = client.iter_call_records(START, END, page_size=5, concurrency=8)
        async for _ in stream:
            break
        await stream.aclose()
    elif how == "aclosing":
        async with contextlib.aclosing(
            client.iter_call_record_pages(START, END, page_size=5, concurrency=8)
        ) as pages:
            async for _ in pages:
                break
    elif how == "cancelled":

        async def consume() -> None:
            async for _ in client.iter_call_records(START, END, page_size=5, concurrency=8):
                await asyncio.sleep(0.001)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    elif how == "raises":
        with pytest.raises(ZeroDivisionError):
            async for _ in client.iter_call_records(START, END, page_size=5):
                _ = 1 / 0
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize("how", ["break", "aclosing", "cancelled", "raises"])
def test_leaving_early_cancels_every_request_and_leaves_the_client_working(how: str) -> None:
    async def main() -> tuple[int, int, bool, int]:
        fake = make_fake(tasks=60, per_task=(20, 60), latency=0.05, jitter=0.05)
        async with make_client(fake) as client:
            await _leave_early(how, client)
            settled = fake.stats.requests
            assert fake.stats.in_flight == 0
            await asyncio.sleep(30)
            later = fake.stats.requests
            clean = await no_other_tasks()
            page = await client.query_call_records(NOW - timedelta(days=10), NOW, size=5)
            return settled, later, clean, len(page.records)

    settled, later, clean, served = virtual(main)
    assert later == settled, "a request was sent after the stream was left"
    assert clean, "a task outlived the stream"
    assert served == 5


# -- resume across slices ----------------------------------------------------------------------


def test_resuming_after_every_page_loses_and_repeats_nothing_across_slices() -> None:
    async def main() -> tuple[list[list[str]], list[str], int]:
        fake = make_fake(tasks=20, per_task=(0, 20))
        want = expected(fake)
        runs: list[list[str]] = []
        async with make_client(fake) as client:
            cursor: str | None = None
            crossed = 0
            for _ in range(len(want) + 5):  # bounded: each run hands out at least one page
                stream = client.iter_call_record_pages(
                    START, END, page_size=6, concurrency=3, resume_from=cursor
                )
                got: list[str] = []
                async with contextlib.aclosing(stream):
                    async for page in stream:
                        got.extend(r.voice_id for r in page.records)
                        break
                assert stream.progress.resume_from is not None
                cursor = str(stream.progress.resume_from)
                crossed += len(stream.progress.resume_from.ranges) == 1
                runs.append(got)
                if stream.progress.resume_from.done:
                    break
            return runs, want, crossed

    runs, want, crossed = virtual(main)
    assert [v for run in runs for v in run] == want
    assert crossed, "no cursor stood in the last slice alone"


def test_a_failure_carries_one_cursor_for_the_whole_window() -> None:
    async def main() -> tuple[list[str], list[str], str]:
        fake = make_fake(tasks=30)
        async with make_client(fake) as client:
            got: list[str] = []
            plan = FaultPlan(by_request={12: Fault.code(-22, "Parameter exception")})
            fake.faults = plan
            with pytest.raises(InvalidParameterError) as info:
                async for record in client.iter_call_records(
                    START, END, page_size=10, concurrency=2
                ):
                    got.append(record.voice_id)
            cursor = info.value.resume_from
            assert isinstance(cursor, StreamCursor)
            assert cursor.end == END.replace(tzinfo=None)
            async for record in client.iter_call_records(START, END, resume_from=cursor):
                got.append(record.voice_id)
            return got, expected(fake), str(cursor)

    got, want, cursor = virtual(main)
    assert got == want
    assert StreamCursor.from_string(cursor).endpoint == "call_records"


def test_transient_faults_are_retried_inside_the_stream() -> None:
    async def main() -> tuple[list[str], list[str]]:
        faults = FaultPlan.random(seed=5, probability=0.3, kinds=(Fault.code(-18), Fault.http(503)))
        fake = make_fake(faults=faults)
        async with make_client(fake) as client:
            got = await collect(client.iter_call_records(START, END, page_size=20))
            return voice_ids(got), expected(fake)

    got, want = virtual(main)
    assert got == want


@pytest.mark.parametrize("concurrency", [1, 4, 16])
@pytest.mark.parametrize(
    "lies",
    [
        pytest.param(Lies(cap_size=50), id="capped page that says size 50"),
        pytest.param(Lies(fixed_page=True), id="page 1 for every page number"),
        pytest.param(Lies(fixed_page=True, lie_current=True), id="page 1 saying the page asked"),
        pytest.param(Lies(total=10**9), id="a total of a billion"),
        pytest.param(Lies(total=5), id="a total smaller than the page"),
        pytest.param(Lies(empty_pages=(3,)), id="an empty page in the middle"),
        pytest.param(Lies(half_pages=(3,)), id="a half page in the middle"),
        pytest.param(Lies(pages=7), id="pages that do not match the total"),
        pytest.param(Lies(total=0, requests={2}), id="the second reply says nothing is there"),
    ],
)
def test_a_lying_call_log_gives_every_call_once_or_a_typed_error(
    lies: Lies, concurrency: int
) -> None:
    # The same lies the task stream is held to (test_stream_hostile), across two slices.
    async def main() -> tuple[list[str], list[str], BaseException | None, int]:
        fake = make_fake(60, lies=lies)
        got: list[str] = []
        error: BaseException | None = None
        async with make_client(fake) as client:
            try:
                async for record in client.iter_call_records(START, END, concurrency=concurrency):
                    got.append(record.voice_id)
            except MalformedResponseError as exc:
                error = exc
        return got, expected(fake), error, fake.stats.requests

    got, want, error, sent = virtual(main)
    assert len(want) > 1_000
    assert_all_once_or_a_typed_error(got, want, error)
    assert sent <= 2 * len(want) // 100 + 4 * concurrency + 16


def test_a_cursor_of_another_window_or_stream_is_refused_before_any_request() -> None:
    async def main() -> None:
        fake = make_fake(tasks=5)
        async with make_client(fake) as client:
            stream = client.iter_call_records(START, END)
            await collect(stream)
            cursor = stream.progress.resume_from
            assert cursor is not None
            before = fake.stats.requests
            with pytest.raises(ValueError, match="window"):
                client.iter_call_records(START + timedelta(days=1), END, resume_from=cursor)
            group = client.iter_group_calls(datetime(2024, 1, 1), datetime(2024, 2, 1))
            with pytest.raises(ValueError, match="call_records"):
                client.iter_group_calls(
                    datetime(2024, 1, 1), datetime(2024, 2, 1), resume_from=cursor
                )
            await group.aclose()
            with pytest.raises(ValueError, match="stream cursor"):
                client.iter_call_records(START, END, resume_from="nope")
            assert fake.stats.requests == before

    virtual(main)


def test_limit_stops_across_slices() -> None:
    async def main() -> tuple[list[str], list[str], StreamProgress]:
        fake = make_fake()
        want = expected(fake)
        async with make_client(fake) as client:
            stream = client.iter_call_records(START, END, page_size=10, limit=len(want) - 3)
            got = await collect(stream)
            rest = await collect(
                client.iter_call_records(START, END, resume_from=stream.progress.resume_from)
            )
            return voice_ids(got + rest), want, stream.progress

    got, want, progress = virtual(main)
    assert got == want
    assert progress.records_yielded == len(want) - 3


def test_bodies_carry_iso_times_with_the_server_offset() -> None:
    async def main() -> list[dict[str, Any]]:
        fake = make_fake(tasks=5)
        bodies: list[dict[str, Any]] = []
        fake.on_request(lambda _, body: bodies.append(json.loads(json.dumps(body))))
        async with make_client(fake, server_timezone=PLUS8) as client:
            await collect(client.iter_call_records(START, END))
        return bodies

    bodies = virtual(main)
    assert bodies
    for body in bodies:
        assert body["params"]["strTime"].endswith("+08:00")
        assert body["params"]["endTime"].endswith("+08:00")


def test_a_vendor_in_another_order_falls_back_to_offsets_per_slice_and_still_resumes() -> None:
    async def main() -> tuple[list[str], list[list[str]], list[str], set[str]]:
        fake = make_fake(tasks=12, per_task=(0, 20), order="oldest_first")
        # Oldest first within each slice; the slices themselves come newest first.
        cut = START + timedelta(days=31)
        slices = [(cut + timedelta(seconds=1), END), (START, cut)]
        want = [v for lo, hi in slices for v in expected(fake, lo, hi)]
        modes: set[str] = set()
        async with make_client(fake) as client:
            whole = voice_ids(await collect(client.iter_call_records(START, END, page_size=7)))
            runs: list[list[str]] = []
            cursor: StreamCursor | None = None
            for _ in range(len(want) + 5):  # bounded: each run hands out a page
                pages = client.iter_call_record_pages(START, END, page_size=7, resume_from=cursor)
                got: list[str] = []
                async with contextlib.aclosing(pages):
                    async for page in pages:
                        got.extend(r.voice_id for r in page.records)
                        break
                cursor = StreamCursor.from_string(str(pages.progress.resume_from))
                modes.add(cursor.mode.value)
                runs.append(got)
                if not got:
                    break
        return whole, runs, want, modes

    whole, runs, want, modes = virtual(main)
    assert whole == want
    assert [v for run in runs for v in run] == want
    assert "offset" in modes


# -- flat memory across slices (in a process of its own) -------------------------------------

_SPACING = 30  # seconds between synthetic calls: 150,000 of them span 52 days, two slices


def _synthetic_calls_vendor(total: int, newest: datetime) -> Any:
    """A lean call-record vendor (the fake keeps every call in memory, which would blur the
    measure): call ``i`` was submitted ``30 i`` seconds before ``newest``."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        current, size = body["current"], body["size"]
        lo = datetime.fromisoformat(body["params"]["strTime"])
        hi = datetime.fromisoformat(body["params"]["endTime"])
        first_i = max(0, -(-int((newest - hi).total_seconds()) // _SPACING))
        last_i = min(total - 1, int((newest - lo).total_seconds()) // _SPACING)
        count = max(0, last_i - first_i + 1)
        first = first_i + (current - 1) * size
        records = [
            {
                "voiceId": f"v{i}",
                "callee": "861380000",
                "submitTime": (newest - timedelta(seconds=_SPACING * i)).isoformat(),
                "callDuration": 12,
                "terminationCode": "200",
                "cost": "0.01",
            }
            for i in range(first, min(first + size, first_i + count))
        ]
        data = {"records": records, "total": count, "size": size, "current": current}
        data["pages"] = -(-count // size)
        return httpx.Response(200, json={"status": "0", "reason": "success", "data": data})

    return handler


def _call_memory_peaks() -> tuple[tuple[int, int], tuple[int, int]]:
    """Calls streamed and the traced peak, for 50,000 and for 150,000 calls."""
    newest = NOW - timedelta(days=1)
    start = NOW - timedelta(days=58)

    async def peak_of(total: int) -> tuple[int, int]:
        transport = httpx.MockTransport(_synthetic_calls_vendor(total, newest))
        async with AsyncVoiceClient("k", "s", transport=transport, rate_limit=None) as client:
            tracemalloc.start()
            count = 0
            async for _ in client.iter_call_records(start, newest, concurrency=4):
                count += 1
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        return count, peak

    async def main() -> tuple[tuple[int, int], tuple[int, int]]:
        await peak_of(2_000)  # warm every code path once
        return await peak_of(50_000), await peak_of(150_000)

    return run_virtual(main)


def test_streaming_memory_is_flat_in_the_size_of_the_result_across_slices() -> None:
    script = (
        "import json\n"
        "from tests.test_calls_stream import _call_memory_peaks\n"
        "print(json.dumps(_call_memory_peaks()))\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr
    (small_count, small), (large_count, large) = json.loads(done.stdout.splitlines()[-1])
    assert (small_count, large_count) == (50_000, 150_000)
    assert large < 1.25 * small, (small, large)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"page": 0, "size": 10}, "page"),
        ({"page": 1, "size": 0}, "size"),
        ({"page": 1.0, "size": 10}, "page"),
        ({"page": 1, "size": 10, "order": "by_id"}, "order"),
    ],
)
def test_the_call_logs_pages_refuse_a_page_size_or_order_out_of_range(
    arguments: dict[str, Any], named: str
) -> None:
    _, calls = account(3, (5, 5))
    with pytest.raises(ValueError, match=named):
        calls.page(START.astimezone(UTC), END.astimezone(UTC), **arguments)
    if named == "order":
        with pytest.raises(ValueError, match="order"):
            calls.select(START, END, order=arguments["order"])
    assert calls.page(START, END, 1, 10)[0] == len(calls.select(START, END))
