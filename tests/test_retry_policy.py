"""The retry policy: its settings, its waits, what it retries, and its tenacity loop.

The loop is driven directly with a recording ``sleep``, so nothing here waits for real.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from itnio_async._errors import (
    AuthenticationError,
    InvalidParameterError,
    IPRestrictedError,
    ItnioAPIError,
    ItnioError,
    ItnioHTTPError,
    ItnioTimeoutError,
    ItnioTransportError,
    MalformedResponseError,
    RateLimitedError,
    TimestampExpiredError,
    VendorServerError,
    api_error,
)
from itnio_async._retry import RETRYABLE_HTTP_STATUSES, RetryPolicy, is_retryable


class SleepRecorder:
    """A ``sleep`` for tenacity that records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Flaky:
    """An async call that raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.raised: list[BaseException] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            error = self.errors.pop(0)
            self.raised.append(error)
            raise error
        return "ok"


async def run(policy: RetryPolicy, fn: Callable[[], Awaitable[str]], sleep: SleepRecorder) -> str:
    """Drive ``policy.retrying`` as the client does."""
    result = ""
    async for attempt in policy.retrying(sleep=sleep):
        with attempt:
            result = await fn()
    return result


def vendor_fault(n: int = 1) -> list[BaseException]:
    return [VendorServerError(-18, f"port program unusual #{i}") for i in range(n)]


class _MaxJitter(RetryPolicy):
    """A policy whose jitter always draws the top of its range (a deterministic ``rng``)."""

    def backoff(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        return super().backoff(retry_number, rng=lambda: 1.0)


# -- settings ------------------------------------------------------------------------------


def test_the_defaults_are_the_documented_ones() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 5
    assert policy.initial_backoff == 0.5
    assert policy.max_backoff == 10.0
    assert policy.deadline == 60.0
    assert policy.max_retry_after == 60.0


def test_zero_everywhere_and_no_deadline_are_valid() -> None:
    policy = RetryPolicy(
        max_retries=0, initial_backoff=0, max_backoff=0, deadline=None, max_retry_after=0
    )
    assert policy.deadline is None
    assert policy.backoff(1) == 0.0


BAD_NUMBERS: list[object] = [-1, -0.001, True, False, "1", [1]]


@pytest.mark.parametrize("field", ["initial_backoff", "max_backoff", "deadline", "max_retry_after"])
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_a_bad_number_is_refused_naming_its_field(field: str, value: object) -> None:
    with pytest.raises((ValueError, TypeError), match=field):
        RetryPolicy(**{field: value})


@pytest.mark.parametrize("value", [-1, 2.0, 1.5, True, False, "3", None])
def test_a_bad_max_retries_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises((ValueError, TypeError), match="max_retries"):
        RetryPolicy(max_retries=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["initial_backoff", "max_backoff", "deadline", "max_retry_after"])
def test_nan_is_refused_naming_its_field(field: str) -> None:
    """NaN is not "a number >= 0", as the validator's own message puts it: it compares
    false with everything, so ``nan < 0`` lets it through and every wait becomes NaN (or,
    for ``deadline``, the deadline never passes)."""
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: math.nan})


@pytest.mark.parametrize("field", ["initial_backoff", "max_backoff", "max_retry_after"])
def test_none_is_refused_for_a_number_other_than_the_deadline(field: str) -> None:
    with pytest.raises(TypeError, match=field):
        RetryPolicy(**{field: None})


def test_the_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_retries = 1  # type: ignore[misc]


# -- backoff and wait_for --------------------------------------------------------------------


@given(
    initial=st.floats(min_value=0, max_value=100, allow_nan=False),
    maximum=st.floats(min_value=0, max_value=1000, allow_nan=False),
    retry_number=st.integers(min_value=1, max_value=64),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_stays_within_zero_and_the_doubling_capped_ceiling(
    initial: float, maximum: float, retry_number: int, draw: float
) -> None:
    policy = RetryPolicy(initial_backoff=initial, max_backoff=maximum)
    ceiling = min(maximum, initial * 2 ** (retry_number - 1))
    wait = policy.backoff(retry_number, rng=lambda: draw)
    assert 0.0 <= wait <= ceiling
    assert wait == pytest.approx(ceiling * draw)


def test_backoff_doubles_from_the_initial_value_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=10.0)
    tops = [policy.backoff(n, rng=lambda: 1.0) for n in range(1, 8)]
    assert tops == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_uses_the_random_source_by_default() -> None:
    policy = RetryPolicy(initial_backoff=4.0, max_backoff=4.0)
    waits = {policy.backoff(1) for _ in range(50)}
    assert all(0.0 <= w <= 4.0 for w in waits)
    assert len(waits) > 1  # jittered, not a constant


def test_backoff_for_a_very_late_retry_is_capped_not_an_overflow() -> None:
    """With ``deadline=None`` and many retries, retry 1025 and later must still wait
    ``max_backoff``; ``2.0 ** 1024`` does not fit in a float."""
    policy = RetryPolicy(max_retries=5000, deadline=None)
    assert policy.backoff(1100, rng=lambda: 1.0) == policy.max_backoff


def test_wait_for_is_zero_after_a_stale_timestamp_that_corrected_the_clock() -> None:
    policy = RetryPolicy(initial_backoff=100.0, max_backoff=100.0)
    error = TimestampExpiredError(-16, "timestamp expired")
    error.clock_corrected = True
    assert policy.wait_for(error, 1) == 0.0
    assert policy.wait_for(error, 4) == 0.0


def test_wait_for_backs_off_after_a_stale_timestamp_that_taught_nothing() -> None:
    policy = _MaxJitter(initial_backoff=3.0, max_backoff=100.0)
    error = TimestampExpiredError(-16, "timestamp expired")
    assert error.clock_corrected is False
    assert policy.wait_for(error, 1) == 3.0
    assert policy.wait_for(error, 2) == 6.0


def test_wait_for_honours_a_longer_retry_after() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=10.0)
    error = RateLimitedError(429, "slow down", retry_after=7.0)
    assert policy.wait_for(error, 1) == 7.0


def test_wait_for_caps_retry_after_at_max_retry_after() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=10.0, max_retry_after=60.0)
    error = ItnioHTTPError(503, "maintenance", retry_after=3600.0)
    assert policy.wait_for(error, 1) == 60.0


def test_wait_for_keeps_the_backoff_when_it_is_longer_than_retry_after() -> None:
    policy = _MaxJitter(initial_backoff=8.0, max_backoff=10.0)
    error = RateLimitedError(429, "", retry_after=1.0)
    assert policy.wait_for(error, 1) == 8.0


def test_wait_for_without_an_error_is_a_plain_backoff() -> None:
    policy = _MaxJitter(initial_backoff=2.0, max_backoff=10.0)
    assert policy.wait_for(None, 2) == 4.0


def test_the_backoff_ceiling_doubles_from_the_first_wait_up_to_the_cap() -> None:
    """One formula: the jittered wait and the client's pause after a burst of -18 use it."""
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=10.0)
    assert [policy.backoff_ceiling(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert policy.backoff_ceiling(10_000) == 10.0  # no OverflowError
    assert policy.backoff(3, rng=lambda: 0.25) == 0.25 * policy.backoff_ceiling(3)


# -- is_retryable ----------------------------------------------------------------------------


def _http(status: int) -> ItnioHTTPError:
    return (RateLimitedError if status == 429 else ItnioHTTPError)(status, "")


RETRYABLE: list[BaseException] = [
    api_error(-16, "timestamp expired"),
    api_error(-18, "port program unusual"),
    *(_http(status) for status in (429, 500, 502, 503, 504)),
    ItnioTransportError("connection reset"),
    ItnioTimeoutError("read timed out"),
]

NOT_RETRYABLE: list[BaseException] = [
    api_error(-1, "authentication error"),
    api_error(-2, "restricted IP"),
    api_error(-22, "parameter exception"),
    api_error(-99, "something new"),
    api_error(7, "something new"),
    *(_http(status) for status in (400, 401, 403, 404, 409, 501)),
    MalformedResponseError("not JSON", status_code=200, body="<html>"),
    asyncio.CancelledError(),
    ValueError("a bug of ours"),
    KeyboardInterrupt(),
]


@pytest.mark.parametrize("error", RETRYABLE, ids=repr)
def test_transient_faults_are_retryable(error: BaseException) -> None:
    assert is_retryable(error)
    assert isinstance(error, ItnioError)
    assert error.transient


@pytest.mark.parametrize("error", NOT_RETRYABLE, ids=repr)
def test_permanent_faults_and_cancellation_are_not_retryable(error: BaseException) -> None:
    assert not is_retryable(error)
    assert not getattr(error, "transient", False)


def test_the_policy_retries_what_an_error_says_of_itself() -> None:
    """One truth: an error's ``transient`` decides, whatever its class."""

    class Passing(ItnioError):
        transient = True

    assert is_retryable(Passing("a fault that passes"))
    error = api_error(-18, "port program unusual")
    error.transient = False
    assert not is_retryable(error)


def test_the_retryable_http_statuses_are_429_and_the_passing_5xx() -> None:
    assert frozenset({429, 500, 502, 503, 504}) == RETRYABLE_HTTP_STATUSES


# -- the tenacity loop ---------------------------------------------------------------------


async def test_a_call_that_succeeds_at_once_never_sleeps() -> None:
    sleep, fn = SleepRecorder(), Flaky()
    assert await run(RetryPolicy(), fn, sleep) == "ok"
    assert fn.calls == 1
    assert sleep.waits == []


@pytest.mark.parametrize("failures", [1, 2, 5])
async def test_a_call_that_fails_n_times_sleeps_n_times_then_succeeds(failures: int) -> None:
    policy = _MaxJitter(max_retries=5, initial_backoff=0.25, max_backoff=1.0, deadline=None)
    sleep, fn = SleepRecorder(), Flaky(*vendor_fault(failures))
    assert await run(policy, fn, sleep) == "ok"
    assert fn.calls == failures + 1
    assert sleep.waits == [0.25, 0.5, 1.0, 1.0, 1.0][:failures]


async def test_the_recorded_waits_are_the_policys_jittered_backoff() -> None:
    policy = RetryPolicy(max_retries=4, initial_backoff=0.5, max_backoff=2.0, deadline=None)
    sleep, fn = SleepRecorder(), Flaky(*vendor_fault(4))
    assert await run(policy, fn, sleep) == "ok"
    assert len(sleep.waits) == 4
    for n, wait in enumerate(sleep.waits, start=1):
        assert 0.0 <= wait <= min(2.0, 0.5 * 2 ** (n - 1))


async def test_retrying_stops_after_max_retries_and_reraises_the_last_real_error() -> None:
    policy = RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.01, deadline=None)
    sleep, fn = SleepRecorder(), Flaky(*vendor_fault(10))
    with pytest.raises(VendorServerError) as info:
        await run(policy, fn, sleep)
    assert fn.calls == 4
    assert len(sleep.waits) == 3
    assert info.value is fn.raised[-1]
    assert info.value.msg == "port program unusual #3"
    assert not isinstance(info.value, tenacity.RetryError)


async def test_the_last_error_is_reraised_even_when_the_faults_differ() -> None:
    policy = RetryPolicy(max_retries=2, initial_backoff=0, max_backoff=0, deadline=None)
    last = ItnioTimeoutError("read timed out")
    fn = Flaky(ItnioHTTPError(502, "bad gateway"), ItnioTransportError("reset"), last)
    with pytest.raises(ItnioTimeoutError) as info:
        await run(policy, fn, SleepRecorder())
    assert info.value is last


async def test_max_retries_zero_makes_exactly_one_attempt() -> None:
    policy = RetryPolicy(max_retries=0)
    sleep, fn = SleepRecorder(), Flaky(*vendor_fault(1))
    with pytest.raises(VendorServerError):
        await run(policy, fn, sleep)
    assert fn.calls == 1
    assert sleep.waits == []


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError(-1, "authentication error"),
        IPRestrictedError(-2, "restricted IP"),
        InvalidParameterError(-22, "parameter exception"),
        ItnioAPIError(-99, "unknown"),
        ItnioHTTPError(404, "not found"),
        MalformedResponseError("not JSON", status_code=200, body="<html>"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_permanent_fault_fails_at_once_without_sleeping(error: ItnioError) -> None:
    sleep, fn = SleepRecorder(), Flaky(error)
    with pytest.raises(type(error)) as info:
        await run(RetryPolicy(), fn, sleep)
    assert info.value is error
    assert fn.calls == 1
    assert sleep.waits == []


async def test_cancellation_is_never_retried() -> None:
    sleep, fn = SleepRecorder(), Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await run(RetryPolicy(), fn, sleep)
    assert fn.calls == 1
    assert sleep.waits == []


async def test_a_corrected_stale_timestamp_is_retried_at_once() -> None:
    error = TimestampExpiredError(-16, "timestamp expired")
    error.clock_corrected = True
    policy = RetryPolicy(initial_backoff=100.0, max_backoff=100.0)
    sleep, fn = SleepRecorder(), Flaky(error)
    assert await run(policy, fn, sleep) == "ok"
    assert sleep.waits == [0.0]


async def test_retry_after_sets_the_recorded_wait() -> None:
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.01, max_retry_after=5.0)
    fn = Flaky(RateLimitedError(429, "", retry_after=3.0), RateLimitedError(429, "", retry_after=9))
    sleep = SleepRecorder()
    assert await run(policy, fn, sleep) == "ok"
    assert sleep.waits == [3.0, 5.0]


async def test_a_retry_whose_wait_would_pass_the_deadline_is_not_made() -> None:
    """The deadline counts the coming wait: a 5 s ``Retry-After`` cannot fit in 1 s."""
    policy = RetryPolicy(max_retries=5, initial_backoff=0, max_backoff=0, deadline=1.0)
    first = RateLimitedError(429, "slow down", retry_after=5.0)
    sleep, fn = SleepRecorder(), Flaky(first, *vendor_fault(3))
    with pytest.raises(RateLimitedError) as info:
        await run(policy, fn, sleep)
    assert info.value is first
    assert fn.calls == 1
    assert sleep.waits == []


async def test_a_long_backoff_past_the_deadline_stops_the_retries() -> None:
    policy = _MaxJitter(max_retries=5, initial_backoff=30.0, max_backoff=30.0, deadline=1.0)
    sleep, fn = SleepRecorder(), Flaky(*vendor_fault(3))
    with pytest.raises(VendorServerError) as info:
        await run(policy, fn, sleep)
    assert info.value is fn.raised[0]
    assert fn.calls == 1
    assert sleep.waits == []


async def test_waits_that_fit_in_the_deadline_are_made() -> None:
    """The recorder does not advance time, so every short wait still fits in 1 s."""
    policy = RetryPolicy(max_retries=5, initial_backoff=0, max_backoff=0, deadline=1.0)
    fn = Flaky(*(RateLimitedError(429, "", retry_after=0.5) for _ in range(3)))
    sleep = SleepRecorder()
    assert await run(policy, fn, sleep) == "ok"
    assert sleep.waits == [0.5, 0.5, 0.5]


async def test_each_call_gets_a_fresh_loop() -> None:
    """A retrying object holds per-call state; two calls must not share attempt counts."""
    policy = RetryPolicy(max_retries=1, initial_backoff=0, max_backoff=0, deadline=None)
    first = policy.retrying(sleep=SleepRecorder())
    second = policy.retrying(sleep=SleepRecorder())
    assert first is not second
    for _ in range(2):
        fn = Flaky(*vendor_fault(1))
        assert await run(policy, fn, SleepRecorder()) == "ok"
        assert fn.calls == 2


async def test_before_sleep_sees_each_failed_attempt() -> None:
    seen: list[tuple[int, Any]] = []

    def before_sleep(state: tenacity.RetryCallState) -> None:
        assert state.outcome is not None
        seen.append((state.attempt_number, type(state.outcome.exception())))

    policy = RetryPolicy(max_retries=3, initial_backoff=0, max_backoff=0, deadline=None)
    fn = Flaky(ItnioTransportError("reset"), ItnioHTTPError(503, ""))
    result = ""
    async for attempt in policy.retrying(sleep=SleepRecorder(), before_sleep=before_sleep):
        with attempt:
            result = await fn()
    assert result == "ok"
    assert seen == [(1, ItnioTransportError), (2, ItnioHTTPError)]
