"""The rate limit shared through Redis: one bucket per account for every process and machine.

These tests need a Redis server (see ``redis_support``): they find one at
``ITNIO_TEST_REDIS_URL`` or start ``redis-server`` on a free loopback port; without either
they skip, except under CI, where they fail. The bucket lives on the Redis server's clock,
which no test can stop, so these tests take real time, kept to a second or two each; the
bounds they check are about order and rate, so a slower machine only makes them slower.
The tests of an unreachable Redis need no server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from itnio_async import (
    AsyncVoiceClient,
    ClientStateError,
    ItnioError,
    RateLimiter,
    RetryPolicy,
)
from itnio_async.redis import (
    DEFAULT_PREFIX,
    LimiterTimeoutError,
    LimiterUnavailableError,
    LocalFallback,
    RedisRateLimiter,
)
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan, serve

from .redis_support import (
    RedisNotAvailable,
    free_port,
    redis_server,
    under_ci,
)

WORKER = Path(__file__).with_name("_redis_worker.py")
KEY = "redis-test-key"
SECRET = "redis-test-secret"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def need_redis(reason: str) -> None:
    """Skip for want of Redis, or fail under CI, which must run every test."""
    if under_ci():
        pytest.fail(f"under CI the Redis tests must run, but: {reason}")
    pytest.skip(f"no Redis for the shared-limiter tests: {reason}")


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    name = f"itnio-test:{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def other_client(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    """A second connection pool, as another process would have."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def make_limiter(redis_client: Redis, prefix: str) -> Callable[..., RedisRateLimiter]:
    def factory(rate: float, **kwargs: Any) -> RedisRateLimiter:
        kwargs.setdefault("prefix", prefix)
        client = kwargs.pop("client", redis_client)
        return RedisRateLimiter(client, kwargs.pop("api_key", KEY), rate, **kwargs)

    return factory


def most_in_any_second(times: list[float]) -> int:
    """The most events in any window ``[t, t + 1)``."""
    times = sorted(times)
    best = first = 0
    for last, now in enumerate(times):
        while now - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


async def grant_times(limiters: list[RedisRateLimiter], tasks: int, each: int) -> list[float]:
    """``tasks`` tasks per limiter, each acquiring ``each`` tokens; when each was granted."""
    times: list[float] = []

    async def worker(limiter: RedisRateLimiter) -> None:
        for _ in range(each):
            await limiter.acquire()
            times.append(time.monotonic())

    await asyncio.gather(*(worker(limiter) for limiter in limiters for _ in range(tasks)))
    return times


def dead_url() -> str:
    """A Redis URL on loopback where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


# -- the bucket ----------------------------------------------------------------------------


async def test_acquires_are_spaced_at_the_rate_so_no_second_holds_more_than_rate_plus_one(
    make_limiter: Callable[..., RedisRateLimiter],
) -> None:
    limiter = make_limiter(20)
    started = time.monotonic()
    times = await grant_times([limiter], tasks=8, each=4)
    assert len(times) == 32
    assert most_in_any_second(times) <= 21
    # Not faster than the rate (the first token is free), nor much slower.
    assert 31 / 20 * 0.97 <= max(times) - started <= 31 / 20 + 0.5


async def test_a_burst_lets_that_many_go_at_once_then_keeps_the_rate(
    make_limiter: Callable[..., RedisRateLimiter],
) -> None:
    limiter = make_limiter(10, burst=5)
    started = time.monotonic()
    times = sorted(await grant_times([limiter], tasks=10, each=1))
    assert times[4] - started < 0.3  # without the burst, the fifth would go at 0.4 s
    assert 0.45 <= times[-1] - started <= 1.0


async def test_two_limiters_with_the_same_key_share_one_bucket(
    make_limiter: Callable[..., RedisRateLimiter], other_client: Redis
) -> None:
    first, second = make_limiter(20), make_limiter(20, client=other_client)
    assert first.bucket_key == second.bucket_key
    started = time.monotonic()
    times = await grant_times([first, second], tasks=2, each=5)
    assert len(times) == 20
    assert most_in_any_second(times) <= 21
    assert max(times) - started >= 19 / 20 * 0.97


async def test_different_api_keys_have_separate_buckets_named_by_a_hash(
    make_limiter: Callable[..., RedisRateLimiter],
) -> None:
    one, other = make_limiter(1, api_key="account-one"), make_limiter(1, api_key="account-two")
    assert one.bucket_key != other.bucket_key
    assert "account-one" not in one.bucket_key + one.pause_key
    started = time.monotonic()
    await one.acquire()
    await other.acquire()  # its own bucket is full: no wait for account-one's token
    assert time.monotonic() - started < 0.5


async def test_a_pause_from_one_limiter_holds_the_other_and_is_never_shortened(
    make_limiter: Callable[..., RedisRateLimiter], other_client: Redis
) -> None:
    pauser, waiter = make_limiter(100), make_limiter(100, client=other_client)
    await pauser.pause(0.6)
    await pauser.pause(0.1)  # a shorter pause never shortens a longer one
    await pauser.pause(0)  # nothing
    started = time.monotonic()
    await waiter.acquire()
    assert 0.5 <= time.monotonic() - started <= 1.0


async def test_a_waiter_cancelled_during_its_wait_takes_nothing(
    make_limiter: Callable[..., RedisRateLimiter], other_client: Redis
) -> None:
    # One token every 0.5 s. The first goes at once; a second waiter would have the
    # slot at 0.5 s, but is cancelled (and so is one queued behind it in its process).
    # The next caller then gets that same slot, not the one after it at 1.0 s.
    limiter, later = make_limiter(2), make_limiter(2, client=other_client)
    started = time.monotonic()
    await limiter.acquire()
    waiting = [asyncio.create_task(limiter.acquire()) for _ in range(2)]
    await asyncio.sleep(0.15)
    for task in waiting:
        task.cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    await later.acquire()
    assert 0.4 <= time.monotonic() - started <= 0.9
    # The cancelled waiters left the process's queue free.
    await asyncio.wait_for(limiter.acquire(), timeout=1.0)


async def test_max_wait_raises_a_typed_error_at_once_and_takes_nothing(
    make_limiter: Callable[..., RedisRateLimiter],
) -> None:
    impatient, patient = make_limiter(2, max_wait=0.2), make_limiter(2, max_wait=None)
    started = time.monotonic()
    await impatient.acquire()
    with pytest.raises(LimiterTimeoutError) as caught:
        await impatient.acquire()  # the next token is 0.5 s away: no point in waiting
    assert time.monotonic() - started < 0.4
    assert isinstance(caught.value, ItnioError)
    assert caught.value.max_wait == 0.2
    assert "max_wait=0.2s" in str(caught.value)
    await patient.acquire()  # the slot the impatient one gave up: 0.5 s, not 1.0 s
    assert 0.4 <= time.monotonic() - started <= 0.9


async def test_a_pause_longer_than_max_wait_raises_at_once(
    make_limiter: Callable[..., RedisRateLimiter],
) -> None:
    limiter = make_limiter(100, max_wait=1.0)
    await limiter.pause(30)
    started = time.monotonic()
    with pytest.raises(LimiterTimeoutError):
        await limiter.acquire()
    assert time.monotonic() - started < 0.5


async def test_the_script_comes_back_after_redis_forgets_it(
    make_limiter: Callable[..., RedisRateLimiter], redis_client: Redis
) -> None:
    limiter = make_limiter(100)
    await limiter.acquire()
    await redis_client.script_flush()  # a restarted or failed-over Redis knows no script
    await limiter.acquire()
    await limiter.pause(0.01)


async def test_the_limiter_paces_a_client_streaming_from_the_fake(
    make_limiter: Callable[..., RedisRateLimiter],
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(1_000, seed=3))
    limiter = make_limiter(20)
    start, end = datetime(2024, 1, 1), datetime(2024, 7, 1)
    async with AsyncVoiceClient(KEY, SECRET, transport=fake.transport(), limiter=limiter) as client:
        assert isinstance(limiter, RateLimiter)
        assert client.limiter is limiter
        ids = [record.job_id async for record in client.iter_group_calls(start, end, page_size=50)]
    assert sorted(ids) == sorted(task.job_id for task in fake.expected(start, end))
    assert fake.stats.requests >= 20
    assert fake.stats.max_in_any_second() <= 21


async def test_a_retry_after_seen_by_one_client_holds_every_process(
    make_limiter: Callable[..., RedisRateLimiter], other_client: Redis, redis_client: Redis
) -> None:
    fake = FakeVendor(
        KEY,
        SECRET,
        dataset=Dataset.generate(50, seed=4),
        faults=FaultPlan(by_request={1: Fault.http(429, retry_after=1)}),
    )
    limiter, elsewhere = make_limiter(100), make_limiter(100, client=other_client)
    async with AsyncVoiceClient(
        KEY, SECRET, transport=fake.transport(), limiter=limiter, retry=RetryPolicy(max_retries=2)
    ) as client:
        query = asyncio.create_task(
            client.query_group_calls(datetime(2024, 1, 1), datetime(2024, 7, 1))
        )
        while not await redis_client.exists(limiter.pause_key):
            assert not query.done(), query
            await asyncio.sleep(0.005)
        started = time.monotonic()
        await elsewhere.acquire()  # another process, held by the 429 this one saw
        assert 0.7 <= time.monotonic() - started <= 1.5
        page = await query
    assert page.total == 50
    assert fake.stats.codes[429] == 1


# -- when Redis is unreachable ---------------------------------------------------------------


async def test_an_unreachable_redis_raises_a_typed_error_chained_to_the_cause() -> None:
    async with RedisRateLimiter(dead_url(), KEY, 10) as limiter:
        with pytest.raises(LimiterUnavailableError) as caught:
            await limiter.acquire()
        assert isinstance(caught.value, ItnioError)
        assert isinstance(caught.value.__cause__, redis.ConnectionError)
        assert "fallback=LocalFallback" in str(caught.value)
        with pytest.raises(LimiterUnavailableError):
            await limiter.pause(1.0)
        assert not limiter.using_fallback


async def test_with_a_fallback_an_unreachable_redis_means_a_local_share_of_the_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="itnio_async")
    fallback = LocalFallback(workers=4, retry_interval=0.05)
    async with RedisRateLimiter(dead_url(), KEY, 40, fallback=fallback) as limiter:
        started = time.monotonic()
        times = await grant_times([limiter], tasks=3, each=2)
        assert limiter.using_fallback
        # 40 requests/s shared by 4 workers: 10/s here, so six tokens take half a second;
        # Redis is asked again every 0.05 s meanwhile, and each time it is still away.
        assert 0.45 <= max(times) - started <= 0.9
        await limiter.pause(0.3)  # the local bucket keeps it
        paused = time.monotonic()
        await limiter.acquire()
        assert time.monotonic() - paused >= 0.25
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per outage
    assert "10 requests/s" in warnings[0].getMessage()
    assert any("still unavailable" in r.getMessage() for r in caplog.records)


async def test_the_fallback_keeps_to_max_wait() -> None:
    fallback = LocalFallback(workers=2, retry_interval=60)
    async with RedisRateLimiter(dead_url(), KEY, 2, max_wait=0.3, fallback=fallback) as limiter:
        await limiter.acquire()
        started = time.monotonic()
        with pytest.raises(LimiterTimeoutError):
            await limiter.acquire()  # the local bucket's next token is 1 s away
        assert 0.25 <= time.monotonic() - started <= 0.9
        await limiter.pause(0.01)  # Redis is not due for another try: the local bucket only
        assert limiter.using_fallback


async def test_the_fallback_gives_way_to_redis_when_it_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="itnio_async")
    port = free_port()
    fallback = LocalFallback(workers=2, retry_interval=0.1)
    url = f"redis://127.0.0.1:{port}/0"
    async with RedisRateLimiter(url, KEY, 10, fallback=fallback) as limiter:
        await limiter.acquire()
        assert limiter.using_fallback
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(redis_server(port))
            except RedisNotAvailable as exc:
                need_redis(str(exc))
            await asyncio.sleep(0.15)
            await limiter.acquire()
            assert not limiter.using_fallback
            check = Redis.from_url(url)
            try:
                assert await check.exists(limiter.bucket_key)
            finally:
                await check.aclose()
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_a_limiter_belongs_to_the_loop_of_its_first_call() -> None:
    limiter = RedisRateLimiter(dead_url(), KEY, 10)

    async def first() -> None:
        with pytest.raises(LimiterUnavailableError):
            await limiter.acquire()

    async def second() -> None:
        try:
            with pytest.raises(ClientStateError, match="another event loop"):
                await limiter.acquire()
        finally:
            await limiter.aclose()

    asyncio.run(first())
    asyncio.run(second())


# -- construction --------------------------------------------------------------------------


async def test_a_client_passed_in_stays_open_and_keys_follow_the_prefix(
    redis_client: Redis,
) -> None:
    limiter = RedisRateLimiter(redis_client, KEY, 5)
    assert limiter.bucket_key.startswith(DEFAULT_PREFIX + ":{")
    assert limiter.bucket_key.endswith("}:tat")
    assert limiter.pause_key == limiter.bucket_key.removesuffix(":tat") + ":pause"
    assert "rate=5.0" in repr(limiter)
    await limiter.aclose()
    assert await redis_client.ping()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rate": 0}, ValueError),
        ({"rate": float("inf")}, ValueError),
        ({"rate": "10"}, TypeError),
        ({"rate": True}, TypeError),
        ({"burst": 0}, ValueError),
        ({"burst": 1.5}, TypeError),
        ({"max_wait": -1}, ValueError),
        ({"max_wait": "1"}, TypeError),
        ({"api_key": ""}, ValueError),
        ({"prefix": 3}, TypeError),
        ({"fallback": 4}, TypeError),
        ({"redis": 6379}, TypeError),
    ],
)
def test_bad_arguments_are_refused_up_front(kwargs: dict[str, Any], error: type[Exception]) -> None:
    arguments: dict[str, Any] = {"redis": Redis(), "api_key": KEY, "rate": 10}
    arguments.update(kwargs)
    with pytest.raises(error):
        RedisRateLimiter(arguments.pop("redis"), arguments.pop("api_key"), **arguments)


@pytest.mark.parametrize(
    "kwargs",
    [{"workers": 0}, {"workers": True}, {"workers": 2, "retry_interval": 0}],
)
def test_a_fallback_needs_workers_and_a_positive_interval(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError), match=r"workers|retry_interval"):
        LocalFallback(**kwargs)
    with pytest.raises(TypeError, match="retry_interval"):
        LocalFallback(workers=2, retry_interval="5")  # type: ignore[arg-type]


def test_the_limiter_errors_are_the_packages_own_under_itnio_error() -> None:
    import itnio_async

    assert LimiterTimeoutError is itnio_async.LimiterTimeoutError
    assert LimiterUnavailableError is itnio_async.LimiterUnavailableError
    assert issubclass(LimiterUnavailableError, itnio_async.ItnioError)
    assert issubclass(LimiterTimeoutError, itnio_async.ItnioError)
    assert not LimiterUnavailableError.transient
    assert not LimiterTimeoutError.transient


def test_the_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(LimiterTimeoutError("too long", max_wait=2.0)))
    assert isinstance(error, LimiterTimeoutError)
    assert error.max_wait == 2.0
    assert str(error) == "too long"


# -- the whole point: several processes, one rate ------------------------------------------


def densest_second(times: list[float]) -> str:
    """The busiest one-second window of arrivals, for a failure message."""
    times = sorted(times)
    count, at = max(
        (sum(1 for t in times[i:] if t < first + 1.0), i) for i, first in enumerate(times)
    )
    offsets = [round(t - times[at], 3) for t in times[at : at + count]]
    return f"{count} requests in one second, at offsets {offsets}"


def window_slices(start: datetime, end: datetime, parts: int) -> list[tuple[datetime, datetime]]:
    """``[start, end]`` (both inclusive, whole seconds) cut into ``parts`` that neither
    overlap nor leave a gap: ``[b0, b1 - 1s], [b1, b2 - 1s], ...``."""
    seconds = int((end - start).total_seconds()) + 1
    bounds = [start + timedelta(seconds=seconds * i // parts) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - timedelta(seconds=1)) for i in range(parts)]


def test_four_worker_processes_share_one_rate_and_stream_every_record_once(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    rate, workers = 50, 4
    fake = FakeVendor(
        KEY, SECRET, dataset=Dataset.generate(20_000, seed=11), latency=0.01, jitter=0.02
    )
    start, end = datetime(2024, 1, 1), datetime(2024, 6, 30, 23, 59, 59)
    slices = window_slices(start, end, workers)
    env = {**os.environ, "ITNIO_WORKER_SECRET": SECRET}
    outputs = [tmp_path / f"worker-{i}.txt" for i in range(workers)]
    processes: list[subprocess.Popen[bytes]] = []
    # The fake serves from a thread of this process, whose heap holds the whole suite by
    # now: a full collection there stalls the server long enough to stamp requests that
    # came 20 ms apart as one burst. Frozen objects are not scanned again.
    gc.collect()
    gc.freeze()
    with serve(fake) as base_url:
        try:
            for (first, last), out in zip(slices, outputs, strict=True):
                command = [
                    sys.executable, str(WORKER),
                    "--base-url", base_url,
                    "--redis-url", redis_url,
                    "--prefix", prefix,
                    "--api-key", KEY,
                    "--rate", str(rate),
                    "--concurrency", "8",
                    "--start", first.strftime(TIME_FORMAT),
                    "--end", last.strftime(TIME_FORMAT),
                    "--out", str(out),
                ]  # fmt: skip
                processes.append(
                    subprocess.Popen(
                        command, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
                    )
                )
            failures = []
            for process in processes:
                _, stderr = process.communicate(timeout=90)
                if process.returncode != 0:
                    failures.append(stderr.decode(errors="replace"))
            assert not failures, failures
        finally:
            gc.unfreeze()
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    expected = [task.job_id for task in fake.expected(start, end)]
    assert len(expected) == 20_000  # the slices cover the whole dataset
    streamed: list[int] = []
    for (first, last), out in zip(slices, outputs, strict=True):
        ids = [int(line) for line in out.read_text().split()]
        assert sorted(ids) == sorted(task.job_id for task in fake.expected(first, last))
        streamed.extend(ids)
    assert len(streamed) == len(set(streamed)) == len(expected)  # every record exactly once
    assert set(streamed) == set(expected)
    assert fake.stats.requests >= 20_000 // 100
    assert fake.stats.max_in_any_second() <= rate + 1, densest_second(fake.stats.arrival_times)
