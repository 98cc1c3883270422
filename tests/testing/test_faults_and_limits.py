"""Misbehaviour on demand: faults, the rate limit, latency, and what the stats record."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from itnio_async.testing import Dataset, FakeStats, FakeVendor, Fault, FaultPlan
from tests.conftest import run_virtual

from ._support import PATH, body, client, post, signed_headers


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def small_fake(**kwargs: Any) -> FakeVendor:
    return FakeVendor(dataset=Dataset.generate(30, seed=1), **kwargs)


# ------------------------------------------------------------------- faults


async def test_a_code_fault_replaces_the_answer_inside_http_200() -> None:
    fake = small_fake(
        faults=FaultPlan(
            by_request={1: Fault.code(-18), 2: Fault.code(-16), 3: Fault.code(-99, "odd")}
        )
    )
    async with client(fake) as http:
        answers = [await post(http, fake, body()) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["code"] for a in answers] == [-18, -16, -99, 0]
    assert [a.json()["msg"] for a in answers[:3]] == [
        "Port program unusual",
        "Timestamp expires",
        "odd",
    ]
    assert answers[0].json()["data"] is None
    assert all("Date" in a.headers for a in answers)


async def test_a_code_fault_follows_code_as_string() -> None:
    fake = small_fake(code_as_string=True, faults=FaultPlan(by_request={1: Fault.code(-18)}))
    async with client(fake) as http:
        assert (await post(http, fake, body())).json()["code"] == "-18"
    fake.faults = FaultPlan(by_request={1: Fault.code("E42")})
    fake.stats.reset()
    async with client(fake) as http:
        assert (await post(http, fake, body())).json() == {
            "code": "E42",
            "msg": "unknown error",
            "data": None,
        }
    assert fake.stats.codes == {"E42": 1}


async def test_http_faults_look_like_a_proxy_or_framework_error() -> None:
    fake = small_fake(
        faults=FaultPlan(
            by_request={
                1: Fault.http(429, retry_after=1.0),
                2: Fault.http(502, html=True),
                3: Fault.http(503),
                4: Fault.http(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
            }
        )
    )
    async with client(fake) as http:
        limited, gateway, unavailable, dated = [await post(http, fake, body()) for _ in range(4)]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert gateway.status_code == 502
    assert gateway.headers["Content-Type"] == "text/html"
    assert gateway.headers["Server"] == "nginx"
    assert "<center><h1>502 Bad Gateway</h1></center>" in gateway.text
    assert unavailable.status_code == 503
    assert unavailable.json()["error"] == "Service Unavailable"
    assert "Retry-After" not in unavailable.headers
    assert dated.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert fake.stats.codes == {429: 1, 502: 1, 503: 2}


async def test_a_dropped_connection_is_a_remote_protocol_error_in_process() -> None:
    fake = small_fake(faults=FaultPlan(by_request={1: Fault.drop()}))
    async with client(fake) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await post(http, fake, body())
        assert (await post(http, fake, body())).json()["code"] == 0
    assert fake.stats.codes == {"drop": 1, 0: 1}
    assert fake.stats.in_flight == 0


async def test_by_page_faults_are_consumed_in_order_by_requests_for_that_page() -> None:
    plan = FaultPlan(by_page={2: [Fault.code(-18), Fault.http(503)], 3: Fault.drop()})
    fake = small_fake(faults=plan)
    async with client(fake) as http:
        codes = []
        for current in (1, 2, 2, 2, 1):
            response = await post(http, fake, body(current=current))
            ok = response.status_code == 200
            codes.append(response.json()["code"] if ok else response.status_code)
        with pytest.raises(httpx.RemoteProtocolError):
            await post(http, fake, body(current=3))
        assert (await post(http, fake, body(current=3))).json()["code"] == 0
    assert codes == [0, -18, 503, 0, 0]
    assert fake.stats.per_page == {1: 2, 2: 3, 3: 2}
    fake.faults = plan  # assigning a plan starts its page queues afresh
    async with client(fake) as http:
        assert (await post(http, fake, body(current=2))).json()["code"] == -18


async def test_a_delay_fault_waits_then_answers_normally() -> None:
    clock = ManualClock()
    fake = small_fake(faults=FaultPlan(by_request={1: Fault.delay(0.02)}), monotonic=clock)
    async with client(fake) as http:
        loop = asyncio.get_running_loop()
        began = loop.time()
        answer = (await post(http, fake, body())).json()
        assert loop.time() - began >= 0.02
        fake.faults = FaultPlan(by_request={2: Fault.delay(5.0)})
        with pytest.raises(httpx.ReadTimeout):
            await http.post(PATH, json=body(), headers=signed_headers(fake), timeout=0.01)
    assert answer["code"] == 0
    assert fake.stats.requests == 2


async def test_random_faults_are_deterministic_given_the_seed_and_arrival_order() -> None:
    async def run(seed: int) -> list[Any]:
        fake = small_fake(faults=FaultPlan.random(seed, probability=0.3))
        seen: list[Any] = []
        async with client(fake) as http:
            for _ in range(60):
                try:
                    response = await post(http, fake, body())
                except httpx.RemoteProtocolError:
                    seen.append("drop")
                else:
                    ok = response.status_code == 200
                    seen.append(response.json()["code"] if ok else response.status_code)
        assert fake.stats.requests == 60
        return seen

    first, again, other = await run(5), await run(5), await run(6)
    assert first == again
    assert first != other
    assert 5 <= sum(code != 0 for code in first) <= 35
    assert set(first) <= {0, -18, 502, 503, "drop"}


def test_fault_values_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="HTTP status"):
        Fault.http(42)
    with pytest.raises(ValueError, match="seconds"):
        Fault.delay(-1)
    with pytest.raises(ValueError, match="probability"):
        FaultPlan.random(1, probability=1.5)
    with pytest.raises(ValueError, match="kinds"):
        FaultPlan.random(1, kinds=())
    assert FaultPlan().random_fault(1) is None
    assert FaultPlan.random(1, probability=1.0, kinds=[Fault.code(-2)]).random_fault(
        7
    ) == Fault.code(-2)


# --------------------------------------------------------------- rate limit


async def test_requests_above_the_rate_limit_get_429_with_retry_after() -> None:
    clock = ManualClock()
    fake = small_fake(rate_limit=3, monotonic=clock)
    async with client(fake) as http:
        statuses = []
        for step in (0.0, 0.1, 0.2, 0.3, 0.5):
            clock.now = 100.0 + step
            statuses.append((await post(http, fake, body())).status_code)
        clock.now = 100.7
        refused = await post(http, fake, body())
        other_key = await http.post(PATH, json=body(), headers=signed_headers(fake, key="other"))
        clock.now = 101.0  # the first admitted request left the window [t, t + 1)
        again = await post(http, fake, body())
    assert statuses == [200, 200, 200, 429, 429]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"] == "Too Many Requests"
    assert "Date" in refused.headers
    assert other_key.status_code == 200  # the limit is per Api-Key
    assert other_key.json()["code"] == -1
    assert again.json()["code"] == 0
    assert fake.stats.codes == {0: 4, 429: 3, -1: 1}


async def test_a_rate_below_one_allows_one_request_per_period() -> None:
    clock = ManualClock()
    fake = small_fake(rate_limit=0.25, monotonic=clock)
    async with client(fake) as http:
        assert (await post(http, fake, body())).status_code == 200
        clock.now += 1.5
        refused = await post(http, fake, body())
        clock.now += 2.5
        assert (await post(http, fake, body())).status_code == 200
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3"


# ------------------------------------------------------- latency and stats


async def test_concurrent_requests_are_counted_in_flight() -> None:
    fake = small_fake(latency=0.02)
    async with client(fake) as http:
        answers = await asyncio.gather(
            *(post(http, fake, body(current=c % 3 + 1)) for c in range(6))
        )
    assert all(a.json()["code"] == 0 for a in answers)
    assert fake.stats.max_in_flight == 6
    assert fake.stats.in_flight == 0
    assert fake.stats.requests == 6
    assert fake.stats.per_page == {1: 2, 2: 2, 3: 2}
    assert fake.stats.max_in_any_second() == 6
    assert len(fake.stats.arrival_times) == 6
    fake.stats.reset()
    assert (fake.stats.requests, fake.stats.max_in_flight, fake.stats.codes) == (0, 0, {})
    assert fake.stats.max_in_any_second() == 0
    assert "requests=0" in repr(fake.stats)


def test_max_in_any_second_slides_a_half_open_one_second_window() -> None:
    stats = FakeStats()
    stats.arrival_times.extend([1.1, 0.0, 0.2, 0.4, 1.0, 2.5, 3.4, 3.49])
    assert stats.max_in_any_second() == 4  # [0.2, 1.2) holds 0.2, 0.4, 1.0, 1.1
    stats.arrival_times[:] = [0.0, 1.0, 2.0]
    assert stats.max_in_any_second() == 1  # 1.0 is outside [0.0, 1.0)


def test_the_latency_counts_from_the_requests_arrival() -> None:
    # The time the fake spends on a request before it answers (here an on_request
    # callback that takes 0.3 s of the loop's clock) is part of the latency, not added
    # to it: a burst of requests is answered on time, not each after the last.
    async def main() -> tuple[float, int]:
        fake = small_fake(latency=1.0)
        loop = asyncio.get_running_loop()
        fake.on_request(lambda n, payload: setattr(loop, "virtual_now", loop.time() + 0.3))
        async with client(fake) as http:
            started = loop.time()
            answer = await post(http, fake, body())
            return loop.time() - started, answer.json()["code"]

    took, code = run_virtual(main)
    assert code == 0
    assert took == pytest.approx(1.0)


def test_an_answer_holds_what_the_fake_had_as_its_request_arrived() -> None:
    async def main() -> tuple[int, int]:
        fake = small_fake(latency=1.0)
        async with client(fake) as http:
            answer = asyncio.ensure_future(post(http, fake, body(size=100)))
            await asyncio.sleep(0.5)  # the request waits out its latency meanwhile
            fake.dataset.remove([next(iter(fake.dataset)).job_id])
            late = await post(http, fake, body(size=100))
            return (await answer).json()["data"]["total"], late.json()["data"]["total"]

    assert run_virtual(main) == (30, 29)


async def test_latency_and_jitter_are_seeded_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def delays(seed: int) -> list[float]:
        slept.clear()
        fake = small_fake(latency=0.5, jitter=0.25, seed=seed)
        monkeypatch.setattr(asyncio, "sleep", record_sleep)
        try:
            async with client(fake) as http:
                for _ in range(20):
                    await post(http, fake, body())
        finally:
            monkeypatch.undo()
        return list(slept)

    first, again, other = await delays(1), await delays(1), await delays(2)
    # Each sleep is the request's delay less the moments the fake took to make its
    # answer since the request arrived (on this real loop, not quite zero).
    assert first == pytest.approx(again, abs=0.01)
    assert first != pytest.approx(other, abs=0.01)
    assert all(0.49 <= d < 0.75 for d in first)
    assert len({round(d, 2) for d in first}) > 10
