"""The stream against a result that changes while it is paged, and against servers that
lie, end to end in virtual time.

Churn is made with the fake's own tools: an ``on_request`` callback that changes statuses,
creates or removes tasks at chosen requests. Servers that disagree or lie are built here,
as transports that wrap the fake (or small handlers of their own), so each test says
exactly what the server does wrong.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from itnio_async import (
    AsyncVoiceClient,
    GroupCallRecord,
    ItnioError,
    MalformedResponseError,
    ResultUnstableError,
    StreamCursor,
)
from itnio_async._paging import MAX_REREADS
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan

from .test_stream import END, START, Served, ids, make_client, make_fake, request_bound, virtual

CALLING, COMPLETED = 1, 2


def churn_bound(pages: int, concurrency: int) -> int:
    """The most requests a stream may send while the result changes under it."""
    return 3 * pages + 4 * concurrency + 20


def check_exactly_once(got: list[int], before: list[int], gone: set[int], new: set[int]) -> None:
    """Every record of ``before`` that never left arrived once and in order; nothing
    arrived twice, and nothing that was never in the result."""
    assert len(got) == len(set(got)), "a record arrived twice"
    stayed = [job for job in before if job not in gone]
    kept = set(stayed)
    assert [job for job in got if job in kept] == stayed
    assert set(got) <= set(before) | new


def times_of(records: list[GroupCallRecord]) -> list[datetime]:
    return [r.created_time for r in records]


# -- balanced churn under a status filter ----------------------------------------------------


def swap_statuses(
    fake: FakeVendor, got: list[int], moved: int, left: set[int], entered: set[int]
) -> None:
    """Move ``moved`` tasks already streamed out of CALLING, and as many older ones in."""
    calling = fake.expected(START, END, statuses=[CALLING])
    current = {t.job_id for t in calling}
    streamed = [job for job in got if job in current]
    out = streamed[-moved:] if streamed else [t.job_id for t in calling[:moved]]
    if not out:
        return
    oldest = min(task.created_time for job in out if (task := fake.dataset.get(job)))
    older = [
        t.job_id
        for t in fake.expected(START, oldest - timedelta(seconds=1))
        if t.status != CALLING and t.job_id not in left
    ][: len(out)]
    fake.change_status(out, COMPLETED)
    fake.change_status(older, CALLING)
    left.update(out)
    entered.update(older)


@pytest.mark.parametrize("concurrency", [1, 4, 16])
@pytest.mark.parametrize("at_requests", [(2,), (4,), (3, 6, 9, 12)])
@pytest.mark.parametrize("moved", [1, 10])
def test_balanced_churn_under_a_status_filter_loses_and_repeats_nothing(
    concurrency: int, at_requests: tuple[int, ...], moved: int
) -> None:
    async def main() -> tuple[list[int], list[int], set[int], set[int], int]:
        fake = make_fake(6000, latency=0.01, jitter=0.02, seed=moved)
        before = ids(fake.expected(START, END, statuses=[CALLING]))
        got: list[int] = []
        left: set[int] = set()
        entered: set[int] = set()

        @fake.on_request
        def churn(n: int, body: dict[str, Any]) -> None:
            if n in at_requests:
                swap_statuses(fake, got, moved, left, entered)

        async with make_client(fake) as client:
            stream = client.iter_group_calls(
                START, END, statuses=[CALLING], page_size=20, concurrency=concurrency
            )
            async for record in stream:
                got.append(record.job_id)
            assert stream.progress.mode == "cursor"
        assert len(fake.expected(START, END, statuses=[CALLING])) == len(before)  # balanced
        return got, before, left, entered, fake.stats.requests

    got, before, left, entered, sent = virtual(main)
    assert left, "the churn happened"
    check_exactly_once(got, before, left, entered)
    assert sent <= churn_bound(-(-len(before) // 20), concurrency)


# -- continuous churn ------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4, 16])
@pytest.mark.parametrize("where", ["head", "anywhere"])
def test_tasks_created_on_every_request_neither_hide_nor_repeat_the_others(
    concurrency: int, where: str
) -> None:
    async def main() -> tuple[list[int], list[int], set[int], int]:
        fake = make_fake(3000, latency=0.01, jitter=0.02)
        before = ids(fake.expected(START, END))
        new: set[int] = set()
        rng = random.Random(concurrency)
        span = int((END - START).total_seconds())

        @fake.on_request
        def create(n: int, body: dict[str, Any]) -> None:
            at = END if where == "head" else START + timedelta(seconds=rng.randrange(span))
            new.update(t.job_id for t in fake.insert_tasks(3, created_time=at))

        async with make_client(fake) as client:
            got = [
                r.job_id async for r in client.iter_group_calls(START, END, concurrency=concurrency)
            ]
        return got, before, new, fake.stats.requests

    got, before, new, sent = virtual(main)
    check_exactly_once(got, before, set(), new)
    assert sent <= churn_bound(30, concurrency)


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_tasks_removed_while_the_stream_pages_hide_none_of_the_others(concurrency: int) -> None:
    async def main() -> tuple[list[int], list[int], set[int], int]:
        fake = make_fake(3000, latency=0.01, jitter=0.02)
        before = ids(fake.expected(START, END))
        gone: set[int] = set()
        rng = random.Random(concurrency)

        @fake.on_request
        def remove(n: int, body: dict[str, Any]) -> None:
            if n % 2 == 0:
                present = ids(fake.expected(START, END))
                chosen = rng.sample(present, 5)
                fake.remove_tasks(chosen)
                gone.update(chosen)

        async with make_client(fake) as client:
            got = [
                r.job_id async for r in client.iter_group_calls(START, END, concurrency=concurrency)
            ]
        return got, before, gone, fake.stats.requests

    got, before, gone, sent = virtual(main)
    check_exactly_once(got, before, gone, set())
    assert sent <= churn_bound(30, concurrency)


# -- resuming --------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("fault", [Fault.http(400), Fault.code(-22)], ids=["http-400", "code-22"])
@pytest.mark.parametrize("as_string", [False, True])
def test_resuming_from_a_failure_after_churn_between_the_runs_loses_and_repeats_nothing(
    ordered: bool, fault: Fault, as_string: bool
) -> None:
    async def main() -> tuple[list[GroupCallRecord], list[int], set[int], set[int], int]:
        fake = make_fake(6000, faults=FaultPlan(by_request={7: fault}), latency=0.01, jitter=0.03)
        before = ids(fake.expected(START, END, statuses=[CALLING]))
        records: list[GroupCallRecord] = []
        left: set[int] = set()
        entered: set[int] = set()
        args: dict[str, Any] = {"statuses": [CALLING], "page_size": 20, "concurrency": 4}
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, ordered=ordered, **args)
            with pytest.raises(ItnioError) as caught:
                async for record in stream:
                    records.append(record)
            first_run = len(records)
            cursor = caught.value.resume_from
            assert isinstance(cursor, StreamCursor)
            assert cursor == stream.progress.resume_from
            assert caught.value.page is None
            # Between the runs: statuses swap, tasks are created at the head and inside
            # the window, and some not streamed yet are removed.
            swap_statuses(fake, [r.job_id for r in records], 10, left, entered)
            new = {t.job_id for t in fake.insert_tasks(5, created_time=END, status=CALLING)}
            middle = START + (END - START) / 2
            new |= {t.job_id for t in fake.insert_tasks(5, created_time=middle, status=CALLING)}
            streamed = {r.job_id for r in records}
            later = [job for job in before if job not in streamed and job not in left]
            removed = set(later[::40])
            fake.remove_tasks(removed)
            left |= removed
            resume_from = str(cursor) if as_string else cursor
            async for record in client.iter_group_calls(
                START, END, ordered=ordered, resume_from=resume_from, **args
            ):
                records.append(record)
        return records, before, left, entered | new, first_run

    records, before, left, new, first_run = virtual(main)
    assert 0 < first_run < len(before)
    got = [r.job_id for r in records]
    if ordered:
        check_exactly_once(got, before, left, new)
        assert times_of(records) == sorted(times_of(records), reverse=True)
    else:
        assert len(got) == len(set(got))
        assert {job for job in before if job not in left} <= set(got)
        assert set(got) <= set(before) | new


def test_a_cursor_after_the_last_page_is_done_and_resuming_from_it_sends_no_request() -> None:
    async def main() -> tuple[StreamCursor | None, int, list[int], list[int]]:
        fake = make_fake(450)
        async with make_client(fake) as client:
            stream = client.iter_group_call_pages(START, END, concurrency=3)
            async for _ in stream:
                pass
            cursor = stream.progress.resume_from
            sent = fake.stats.requests
            assert cursor is not None
            again = [
                r.job_id async for r in client.iter_group_calls(START, END, resume_from=cursor)
            ]
            pages = client.iter_group_call_pages(START, END, resume_from=str(cursor))
            again += [r.job_id async for page in pages for r in page.records]
            return cursor, sent, again, [fake.stats.requests - sent]

    cursor, _, again, extra = virtual(main)
    assert cursor is not None
    assert cursor.done
    assert cursor.ranges == ()
    assert again == []
    assert extra == [0]


def _a_cursor(fake: FakeVendor, client: AsyncVoiceClient, **kwargs: Any) -> Any:
    async def run() -> StreamCursor:
        stream = client.iter_group_calls(START, END, limit=150, **kwargs)
        async for _ in stream:
            pass
        assert stream.progress.resume_from is not None
        return stream.progress.resume_from

    return run()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"start": START + timedelta(days=1)}, "window"),
        ({"end": END - timedelta(days=1)}, "window"),
        ({"statuses": [COMPLETED]}, "filters"),
        ({"app_id": 2}, "filters"),
        ({"search": "task"}, "filters"),
    ],
)
@pytest.mark.parametrize("pages", [False, True])
def test_a_cursor_used_with_another_window_or_filter_is_refused_before_any_request(
    change: dict[str, Any], says: str, pages: bool
) -> None:
    async def main() -> int:
        fake = make_fake(1000)
        async with make_client(fake) as client:
            cursor = await _a_cursor(fake, client, statuses=[CALLING])
            sent = fake.stats.requests
            args: dict[str, Any] = {"start": START, "end": END, "statuses": [CALLING]} | change
            method = client.iter_group_call_pages if pages else client.iter_group_calls
            for resume_from in (cursor, str(cursor)):
                with pytest.raises(ValueError, match=rf"resume_from.*{says}"):
                    method(resume_from=resume_from, **args)
            return fake.stats.requests - sent

    assert virtual(main) == 0


def test_an_offset_cursor_is_refused_with_another_page_size_and_a_cursor_with_start_page() -> None:
    async def main() -> int:
        fake = make_fake(1000)
        async with make_client(fake) as client:
            offset = await _a_cursor(fake, client, start_page=2)
            assert offset.mode.value == "offset"
            cursor = await _a_cursor(fake, client)
            sent = fake.stats.requests
            with pytest.raises(ValueError, match=r"resume_from.*page_size"):
                client.iter_group_calls(START, END, resume_from=offset, page_size=50)
            with pytest.raises(ValueError, match="resume_from or start_page"):
                client.iter_group_calls(START, END, resume_from=cursor, start_page=3)
            with pytest.raises(ValueError, match="resume_from"):
                client.iter_group_calls(START, END, resume_from="itc1.garbage")
            with pytest.raises(TypeError, match="resume_from"):
                client.iter_group_calls(START, END, resume_from=42)
            return fake.stats.requests - sent

    assert virtual(main) == 0


@pytest.mark.parametrize(("kwargs", "mode"), [({}, "cursor"), ({"start_page": 2}, "offset")])
def test_progress_says_which_mode_ran_and_what_it_guarantees(
    kwargs: dict[str, Any], mode: str
) -> None:
    async def main() -> tuple[str, str, str]:
        fake = make_fake(300)
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, **kwargs)
            before = stream.progress.mode
            async for _ in stream:
                pass
        return before, stream.progress.mode, stream.progress.guarantee

    before, after, guarantee = virtual(main)
    assert before == after == mode
    if mode == "cursor":
        assert "whatever is created, removed or changes status" in guarantee
    else:
        assert "while the result holds still" in guarantee


# -- servers that order, bound or answer otherwise -------------------------------------------


def _own_vendor(
    dataset: Dataset, *, oldest_first: bool = False, end_exclusive: bool = False
) -> Callable[[httpx.Request], httpx.Response]:
    """A vendor of our own over ``dataset``: oldest first, or with an exclusive endTime."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        current, size, params = body["current"], body["size"], body["params"]
        lo = datetime.fromisoformat(params["strTime"])
        hi = datetime.fromisoformat(params["endTime"])
        if end_exclusive:
            hi -= timedelta(seconds=1)
        tasks = dataset.select(lo, hi, statuses=params.get("statusList"))
        if oldest_first:
            tasks.reverse()
        page = tasks[(current - 1) * size : current * size]
        data = {
            "records": [task.to_wire() for task in page],
            "total": len(tasks),
            "size": size,
            "current": current,
            "pages": -(-len(tasks) // size),
        }
        return httpx.Response(200, json={"code": 0, "msg": "success", "data": data})

    return handler


def _client_of(handler: Callable[[httpx.Request], httpx.Response]) -> AsyncVoiceClient:
    return AsyncVoiceClient("k", "s", transport=httpx.MockTransport(handler), rate_limit=None)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_vendor_ordering_oldest_first_makes_the_stream_fall_back_to_offsets_once_warned(
    concurrency: int, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = Dataset.generate(1234, seed=5)
    expected = [t.job_id for t in dataset.select(START, END)]

    async def main() -> tuple[list[int], str, str]:
        async with _client_of(_own_vendor(dataset, oldest_first=True)) as client:
            stream = client.iter_group_calls(START, END, concurrency=concurrency)
            got = [r.job_id async for r in stream]
        return got, stream.progress.mode, stream.progress.guarantee

    with caplog.at_level(logging.WARNING, logger="itnio_async"):
        got, mode, guarantee = virtual(main)
    assert mode == "offset"
    assert "while the result holds still" in guarantee
    assert got == expected[::-1], "every record once, in the vendor's own order"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "do not follow the time order" in warnings[0].getMessage()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_vendor_whose_end_time_is_exclusive_still_gets_every_record_once_by_cursor(
    concurrency: int, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = Dataset.generate(1500, seed=6)
    # Such a vendor never serves the window's last second: nothing else is lost.
    expected = [t.job_id for t in dataset.select(START, END - timedelta(seconds=1))]

    async def main() -> tuple[list[int], str]:
        async with _client_of(_own_vendor(dataset, end_exclusive=True)) as client:
            stream = client.iter_group_calls(START, END, concurrency=concurrency, page_size=50)
            got = [r.job_id async for r in stream]
        return got, stream.progress.mode

    got, mode = virtual(main)
    assert mode == "cursor"
    assert got == expected
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class Rewriting(httpx.AsyncBaseTransport):
    """Wraps the fake's transport and rewrites the ``data`` of chosen successful replies:
    ``rewrite(n, body, data)`` for the ``n``-th reply returns the data to send."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        rewrite: Callable[[int, dict[str, Any], dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.inner = inner
        self.rewrite = rewrite
        self.replies = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        envelope = json.loads(content)
        if response.status_code == 200 and isinstance(envelope.get("data"), dict):
            self.replies += 1
            body = json.loads(request.content)
            envelope["data"] = self.rewrite(self.replies, body, envelope["data"])
            content = json.dumps(envelope).encode()
        headers = {"content-type": response.headers["content-type"]}
        return httpx.Response(response.status_code, headers=headers, content=content)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _capped_at_50(n: int, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    size = min(50, body["size"])
    return data | {
        "records": data["records"][:size],
        "size": size,
        "pages": -(-data["total"] // size),
    }


def _empty_third(n: int, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return data | {"records": []} if n == 3 else data


def _half_third(n: int, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return data | {"records": data["records"][: len(data["records"]) // 2]} if n == 3 else data


def _billion_empty(n: int, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    if n < 2:
        return data
    return data | {"total": 10**9, "pages": -(-(10**9) // body["size"]), "records": []}


def _page_one_for_every_page(n: int, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return data | {"current": 1}


def _wrong_pages(n: int, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return data | {"pages": data["pages"] + 1} if n == 2 else data


@pytest.mark.parametrize(
    ("rewrite", "says"),
    [
        (_capped_at_50, "the reply says 50"),
        (_empty_third, "holds 0 records"),
        (_half_third, "records, but total"),
        (_billion_empty, "holds 0 records"),
        (_page_one_for_every_page, "got page 1"),
        (_wrong_pages, "pages"),
    ],
    ids=["capped-at-50", "empty-page", "half-page", "billion-empty", "page-one-always", "pages"],
)
def test_a_reply_that_lies_about_itself_ends_the_stream_typed_and_the_cursor_resumes_exactly(
    rewrite: Callable[[int, dict[str, Any], dict[str, Any]], dict[str, Any]], says: str
) -> None:
    async def main() -> tuple[list[int], list[int], int, MalformedResponseError]:
        fake = make_fake(1000, latency=0.01)
        lying = Rewriting(fake.transport(), rewrite)
        got: list[int] = []
        async with make_client(fake, transport=lying) as liar:
            with pytest.raises(MalformedResponseError, match=says) as caught:
                async for record in liar.iter_group_calls(START, END, concurrency=4):
                    got.append(record.job_id)
        first_run = len(got)
        # The same stream against an honest server goes on exactly from the cursor.
        async with make_client(fake) as honest:
            async for record in honest.iter_group_calls(
                START, END, concurrency=4, resume_from=caught.value.resume_from
            ):
                got.append(record.job_id)
        return got, ids(fake.expected(START, END)), first_run, caught.value

    got, expected, first_run, error = virtual(main)
    assert first_run < len(expected)
    assert isinstance(error.resume_from, StreamCursor)
    assert got == expected


class Balancer(httpx.AsyncBaseTransport):
    """Sends each request to the next of several replicas in turn."""

    def __init__(self, *replicas: httpx.AsyncBaseTransport) -> None:
        self.replicas = replicas
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        replica = self.replicas[self.sent % len(self.replicas)]
        self.sent += 1
        return await replica.handle_async_request(request)

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.aclose()


def _replicas() -> tuple[FakeVendor, FakeVendor, set[int]]:
    """Two replicas of one account; the second has two more tasks at the window's head."""
    first = make_fake(2000, dataset=Dataset.generate(2000, seed=8))
    second = make_fake(2000, dataset=Dataset.generate(2000, seed=8))
    extra = {t.job_id for t in second.insert_tasks(2, created_time=END, status=COMPLETED)}
    return first, second, extra


def test_replicas_that_disagree_still_give_every_common_record_once_by_cursor() -> None:
    async def main() -> tuple[list[int], list[int], set[int], int]:
        first, second, extra = _replicas()
        balancer = Balancer(first.transport(), second.transport())
        async with make_client(first, transport=balancer) as client:
            got = [r.job_id async for r in client.iter_group_calls(START, END, concurrency=4)]
        return got, ids(first.expected(START, END)), extra, balancer.sent

    got, common, extra, sent = virtual(main)
    check_exactly_once(got, common, set(), extra)
    assert sent <= request_bound(20, 4) + 2


def test_replicas_that_disagree_end_an_offset_stream_with_result_unstable_in_bounded_requests() -> (
    None
):
    async def main() -> tuple[ResultUnstableError, int]:
        first, second, _ = _replicas()
        balancer = Balancer(first.transport(), second.transport())
        async with make_client(first, transport=balancer) as client:
            with pytest.raises(ResultUnstableError) as caught:
                async for _ in client.iter_group_calls(START, END, concurrency=4, start_page=2):
                    pass
        return caught.value, balancer.sent

    error, sent = virtual(main)
    assert isinstance(error.resume_from, StreamCursor)
    assert error.page is not None
    # One re-read per change of the total, each at most a window of pages in flight.
    assert sent <= (MAX_REREADS + 2) * 3 * 4


def test_served_pages_hold_no_record_twice_when_nothing_changes() -> None:
    async def main() -> tuple[list[list[int]], list[int]]:
        fake = make_fake(2000, latency=0.01, jitter=0.03)
        served = Served(fake.transport())
        async with make_client(fake, transport=served) as client:
            got = [r.job_id async for r in client.iter_group_calls(START, END, concurrency=8)]
        assert got == ids(fake.expected(START, END))
        return served.replies, got

    replies, got = virtual(main)
    # Cursor pages overlap only at a slice's boundary second (dropped by id): the records
    # sent over the wire are the result plus little more, not a re-read of it.
    sent = sum(len(r) for r in replies)
    assert sent <= len(got) + 8 * 100 + 100
