"""Hooks for metrics and tracing, and the pause a burst of -18 sets off."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx
import pytest

from itnio_async import AttemptEvent, ClientHooks, PageEvent, RetryEvent, RetryPolicy
from itnio_async.testing import Dataset, FakeVendor

from .conftest import PassThroughLimiter, ScriptedVendor, vendor_error, vendor_page

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)


class Recorder(ClientHooks):
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_attempt(self, event: AttemptEvent) -> None:
        self.events.append(event)

    def on_retry(self, event: RetryEvent) -> None:
        self.events.append(event)

    def on_clock_offset(self, offset: float) -> None:
        self.events.append(("offset", round(offset)))

    def on_page(self, event: PageEvent) -> None:
        self.events.append(event)


async def test_hooks_see_every_attempt_and_retry_with_a_low_cardinality_reason(
    make_client: Any,
) -> None:
    hooks = Recorder()
    vendor = ScriptedVendor(
        vendor_error(-18), httpx.Response(503), httpx.ReadError("reset"), vendor_page()
    )
    await make_client(vendor, hooks=hooks, retry=RetryPolicy(max_retries=5)).query_group_calls(
        START, END
    )
    attempts = [e for e in hooks.events if isinstance(e, AttemptEvent)]
    retries = [e for e in hooks.events if isinstance(e, RetryEvent)]
    assert [e.outcome for e in attempts] == ["vendor:-18", "http:503", "transport:ReadError", "ok"]
    assert [e.attempt for e in attempts] == [1, 2, 3, 4]
    assert [e.status_code for e in attempts] == [200, 503, None, 200]
    assert [e.reason for e in retries] == ["vendor:-18", "http:503", "transport:ReadError"]
    assert all(e.duration >= 0 and e.limiter_wait >= 0 for e in attempts)


async def test_a_hook_that_raises_is_logged_and_never_breaks_the_call(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(ClientHooks):
        def on_attempt(self, event: AttemptEvent) -> None:
            raise RuntimeError("metrics backend down")

    page = await make_client(ScriptedVendor(vendor_page()), hooks=Broken()).query_group_calls(
        START, END
    )
    assert page.total == 0
    assert any("on_attempt hook raised" in r.getMessage() for r in caplog.records)


async def test_the_clock_offset_hook_hears_of_a_correction(make_client: Any) -> None:
    import time
    from email.utils import formatdate

    def skewed(request: httpx.Request) -> httpx.Response:
        ahead = time.time() + 1800
        if abs(int(request.headers["Timestamp"]) - ahead) > 60:
            return vendor_error(-16, Date=formatdate(ahead, usegmt=True))
        return vendor_page()

    hooks = Recorder()
    await make_client(ScriptedVendor(skewed), hooks=hooks).query_group_calls(START, END)
    offsets = [e[1] for e in hooks.events if isinstance(e, tuple)]
    assert len(offsets) == 1
    assert offsets[0] == pytest.approx(1800, abs=2)  # Date has whole seconds


async def test_streams_report_each_page_to_the_hooks() -> None:
    fake = FakeVendor(dataset=Dataset.generate(250, seed=2))
    hooks = Recorder()
    from itnio_async import AsyncVoiceClient

    async with AsyncVoiceClient(
        fake.api_key,
        fake.api_secret,
        base_url="https://fake.itnio.test",
        transport=fake.transport(),
        rate_limit=None,
        hooks=hooks,
    ) as client:
        async for _ in client.iter_group_calls(START, END):
            pass
    pages = [e for e in hooks.events if isinstance(e, PageEvent)]
    # Cursor pages re-read the boundary second's records and drop them, so a page after
    # the first may hand out a little fewer than 100; numbers count the pages handed out.
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))
    assert sum(p.records for p in pages) == 250
    assert all(0 < p.records <= 100 for p in pages)
    assert {(p.pages, p.total) for p in pages} == {(3, 250)}
    assert len(pages) <= 4


async def test_a_burst_of_server_faults_pauses_the_shared_limiter(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="itnio_async")
    limiter = PassThroughLimiter()
    vendor = ScriptedVendor(vendor_error(-18), vendor_error(-18), vendor_error(-18), vendor_page())
    policy = RetryPolicy(max_retries=5, initial_backoff=0.5, max_backoff=4.0)
    await make_client(vendor, limiter=limiter, retry=policy).query_group_calls(START, END)
    assert limiter.pauses == [0.5]  # the third -18 within a second: initial_backoff
    assert any("pausing" in r.getMessage() for r in caplog.records)


async def test_a_single_server_fault_pauses_nobody(make_client: Any) -> None:
    limiter = PassThroughLimiter()
    vendor = ScriptedVendor(vendor_error(-18), vendor_page())
    await make_client(vendor, limiter=limiter).query_group_calls(START, END)
    assert limiter.pauses == []


def test_hooks_must_be_client_hooks() -> None:
    from itnio_async import AsyncVoiceClient

    with pytest.raises(TypeError, match="hooks"):
        AsyncVoiceClient("k", "s", hooks=object())  # type: ignore[arg-type]
