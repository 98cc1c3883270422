"""Shared test helpers: a scripted vendor behind ``httpx.MockTransport``, a client factory
that never sleeps for real, and an event loop whose clock jumps instead of waiting."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import settings

from itnio_async import ENVIRONMENT, AsyncVoiceClient, RetryPolicy

T = TypeVar("T")

pytest_plugins = ["itnio_async.testing.pytest_plugin"]

# CI runs the same examples every time, so that what passed before landing passes in CI:
# the property tests explore new inputs on developers' machines, where a failure can be
# shrunk and kept in the example database. (Hypothesis's own ``ci`` profile appeared after
# the lowest version we allow, so it is named here.)
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

KEY = "test-key"
SECRET = "test-secret-do-not-leak"

#: The variables the library, the CLI and the examples read (``ENVIRONMENT``), and the
#: examples' demo switch: a developer's own settings must not change what a test sees.
_SETTINGS_VARIABLES = (*ENVIRONMENT, "ITNIO_DEMO")


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def wire_record(job_id: int, **overrides: Any) -> dict[str, Any]:
    """A record in the vendor's JSON shape."""
    record = {
        "jobId": job_id,
        "taskName": f"task {job_id}",
        "status": 2,
        "rate": "100",
        "numCnt": 3,
        "callNum": 3,
        "success": 2,
        "fail": 1,
        "createdTime": "2024-06-04 14:49:36",
    }
    record.update(overrides)
    return record


def vendor_page(
    records: list[dict[str, Any]] | None = None,
    *,
    total: int | None = None,
    size: int = 100,
    current: int = 1,
    code: int | str = 0,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A successful reply (or, with ``code``, a vendor error inside HTTP 200)."""
    records = records or []
    total = len(records) if total is None else total
    data = {
        "records": records,
        "total": total,
        "size": size,
        "current": current,
        "pages": -(-total // size),
        "searchCount": True,
    }
    body: dict[str, Any] = {"code": code, "msg": "success" if code in (0, "0") else "failed"}
    body["data"] = data if code in (0, "0") else None
    return httpx.Response(200, json=body, headers=headers)


def vendor_error(code: int | str, msg: str = "failed", **headers: str) -> httpx.Response:
    return httpx.Response(200, json={"code": code, "msg": msg, "data": None}, headers=headers)


Step = httpx.Response | BaseException | Callable[[httpx.Request], httpx.Response]


class ScriptedVendor:
    """A MockTransport handler that answers from a script and records every request.

    Each request takes the next step of the script; the last step repeats. A step is a
    response, an exception to raise (a transport fault), or a function of the request.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps) or [vendor_page()]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]


class PassThroughLimiter:
    """A limiter that never waits and records the pauses asked of it."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.acquired = 0

    async def acquire(self) -> None:
        self.acquired += 1

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


class SleepRecorder:
    """Stands in for the retry wait: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``ITNIO_TEST_REDIS_URL``, or a ``redis-server`` started on a free loopback port.

    Without either, a test that needs it skips with the reason, except under CI, where it
    fails: CI must run every test.
    """
    from .redis_support import RedisNotAvailable, redis_for_tests, under_ci

    try:
        with redis_for_tests() as url:
            yield url
    except RedisNotAvailable as exc:
        if under_ci():
            pytest.fail(f"under CI the Redis tests must run, but: {exc}")
        pytest.skip(f"no Redis for this test: {exc}")


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def make_client(sleeps: SleepRecorder) -> AsyncIterator[Callable[..., AsyncVoiceClient]]:
    """Build clients on a scripted vendor; retry waits are recorded, never slept."""
    clients: list[AsyncVoiceClient] = []

    def factory(
        handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
    ) -> AsyncVoiceClient:
        if "rate_limit" not in kwargs and "limiter" not in kwargs:
            kwargs["limiter"] = PassThroughLimiter()
        kwargs.setdefault("retry", RetryPolicy(max_retries=3))
        client = AsyncVoiceClient(KEY, SECRET, transport=httpx.MockTransport(handler), **kwargs)
        client._retry_sleep = sleeps
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


class _AutojumpSelector:
    """Wraps a selector: when the loop would block on a timer, jump the clock instead."""

    def __init__(self, loop: VirtualTimeLoop, selector: selectors.BaseSelector) -> None:
        self._loop = loop
        self._selector = selector

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = self._selector.select(0)
        if ready:
            return ready
        if timeout == 0:
            if not self._loop._ready:  # type: ignore[attr-defined]
                # Only due timers are pending: let a nanosecond pass, as a real clock would,
                # or code that re-arms a timer for "now" (float rounding) would spin forever.
                self._loop.virtual_now += 1e-9
            return ready
        if timeout is None:
            return self._selector.select(None)
        self._loop.virtual_now += timeout
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and jumps to the next timer when idle.

    Sleeps and limiter waits take no real time, yet their order and spacing are exact.
    Only for code that does no real I/O (mock transports, in-process fakes).
    """

    def __init__(self) -> None:
        self.virtual_now = 0.0
        super().__init__(_AutojumpSelector(self, selectors.DefaultSelector()))  # type: ignore[arg-type]

    def time(self) -> float:
        return self.virtual_now


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
