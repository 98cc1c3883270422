"""The send path: reading a reply as data, the -18 burst detector, and what each step
does when something around it misbehaves (a limiter, the server, the caller)."""

from __future__ import annotations

from datetime import datetime
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from itnio_async import (
    ItnioHTTPError,
    RateLimitedError,
    RetryPolicy,
    TimestampExpiredError,
    VendorServerError,
)
from itnio_async._errors import LimiterUnavailableError
from itnio_async._reply import RawReply, ServerFaultBurst, classify

from .conftest import ScriptedVendor, vendor_page

START = datetime(2024, 6, 3, 0, 0, 0)
END = datetime(2024, 6, 3, 23, 59, 59)


def raw(status: int = 200, body: bytes = b"", **headers: str) -> RawReply:
    return RawReply(status, "", httpx.Headers(headers), body)


# -- classify: a pure reading ---------------------------------------------------------------


def test_a_success_is_read_into_its_envelope() -> None:
    reply = classify(raw(body=b'{"code": 0, "msg": "success", "data": {"x": 1}}'))
    assert reply.error is None
    assert reply.envelope is not None
    assert reply.envelope.data == {"x": 1}


def test_a_stale_timestamp_is_read_with_the_servers_clock_and_changes_nothing() -> None:
    date = formatdate(1_700_000_000, usegmt=True)
    reply = classify(raw(body=b'{"code": -16, "msg": "expired"}', Date=date))
    assert isinstance(reply.error, TimestampExpiredError)
    assert reply.server_time == 1_700_000_000
    assert reply.error.clock_corrected is False  # deciding that is the send path's job


def test_a_cached_date_is_no_clock_reading() -> None:
    date = formatdate(1_700_000_000, usegmt=True)
    reply = classify(raw(body=b'{"code": -16, "msg": "expired"}', Date=date, Age="3"))
    assert reply.server_time is None


def test_an_http_error_is_read_with_its_retry_after() -> None:
    reply = classify(raw(429, b"slow down", **{"Retry-After": "7"}))
    assert isinstance(reply.error, RateLimitedError)
    assert reply.retry_after == 7.0
    assert reply.error.retry_after == 7.0


def test_the_burst_detector_counts_faults_within_a_second() -> None:
    burst = ServerFaultBurst(RetryPolicy(initial_backoff=0.5, max_backoff=4.0))
    assert burst.note(0.0) is None
    assert burst.note(0.4) is None
    assert burst.note(0.8) == 0.5  # the third within a second
    assert burst.note(0.9) == 1.0  # each further one doubles the pause
    assert burst.note(5.0) is None  # a second later the count starts again


# -- a limiter of the user's that fails ------------------------------------------------------


class BrokenLimiter:
    def __init__(self, *, acquire: BaseException | None = None) -> None:
        self.acquire_error = acquire
        self.pauses: list[float] = []

    async def acquire(self) -> None:
        if self.acquire_error is not None:
            raise self.acquire_error

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        raise ConnectionError("the limiter's store is down")


async def test_a_limiter_that_fails_its_own_way_raises_a_typed_error(make_client: Any) -> None:
    vendor = ScriptedVendor(vendor_page())
    limiter = BrokenLimiter(acquire=ConnectionError("the limiter's store is down"))
    client = make_client(vendor, limiter=limiter)
    with pytest.raises(LimiterUnavailableError, match="ConnectionError") as caught:
        await client.query_group_calls(START, END)
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert vendor.requests == []


async def test_a_limiter_that_raises_our_own_error_passes_it_through(make_client: Any) -> None:
    error = LimiterUnavailableError("redis is down")
    client = make_client(ScriptedVendor(vendor_page()), limiter=BrokenLimiter(acquire=error))
    with pytest.raises(LimiterUnavailableError) as caught:
        await client.query_group_calls(START, END)
    assert caught.value is error


def test_http_errors_and_vendor_faults_stay_typed() -> None:
    assert isinstance(classify(raw(502, b"bad gateway")).error, ItnioHTTPError)
    assert isinstance(classify(raw(body=b'{"code": -18, "msg": "x"}')).error, VendorServerError)
