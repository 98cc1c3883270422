"""Which faults are retried, and how long to wait between attempts.

The policy is a small attrs class; the client builds a fresh ``tenacity.AsyncRetrying``
from it for every call (a retrying object holds per-call state and must never be shared
between tasks).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from attrs.validators import ge, optional
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    stop_never,
)

from ._checks import INTEGER, NUMBER, Validator
from ._errors import RETRYABLE_HTTP_STATUSES, ItnioError, ItnioHTTPError, TimestampExpiredError

__all__ = ["RETRYABLE_HTTP_STATUSES", "RetryPolicy", "is_retryable"]

_NON_NEGATIVE_OR_NONE: Validator = optional([NUMBER, ge(0)])


@attrs.frozen(slots=True)
class RetryPolicy:
    """How the client retries transient faults.

    Retried: the vendor's ``-16`` (after the clock is corrected from the reply's ``Date``;
    a retry right after a correction goes at once) and ``-18``, HTTP 429, 500, 502, 503
    and 504, and transport faults (connect and read timeouts, refused or dropped
    connections, protocol errors): the errors whose ``transient`` is true. Anything else
    fails at once, and so does cancellation.

    The wait before retry ``n`` (from 1) is drawn uniformly from
    ``[0, min(max_backoff, initial_backoff * 2 ** (n - 1))]`` ("full jitter", which spreads
    the retries of many clients apart), or the server's ``Retry-After`` when it sends one
    and that is longer, capped at ``max_retry_after``.

    Args:
        max_retries: retries after the first attempt, an ``int`` >= 0 (default 5; 0 turns
            retrying off).
        initial_backoff: the upper bound of the first wait in seconds, >= 0 (default
            0.5); it doubles for each later retry.
        max_backoff: no single wait is longer, in seconds >= 0 (default 10.0).
        deadline: seconds from the first attempt after which no retry starts, >= 0, or
            ``None`` for no deadline (default 60.0).
        max_retry_after: the longest ``Retry-After`` honoured, in seconds >= 0
            (default 60.0).

    Raises:
        TypeError, ValueError: a value of the wrong type (a bool is not a number) or out
            of range, naming the field.
    """

    #: Retries after the first attempt; 0 turns retrying off.
    max_retries: int = attrs.field(default=5, validator=[INTEGER, ge(0)])
    #: Upper bound of the first wait, in seconds; it doubles for each later retry.
    initial_backoff: float = attrs.field(default=0.5, validator=[NUMBER, ge(0)])
    #: No single wait is longer than this (``Retry-After`` has its own cap below).
    max_backoff: float = attrs.field(default=10.0, validator=[NUMBER, ge(0)])
    #: Seconds from the first attempt after which no retry starts (``None``: no deadline).
    #: A retry whose wait would end past the deadline is not made.
    deadline: float | None = attrs.field(default=60.0, validator=_NON_NEGATIVE_OR_NONE)
    #: The longest ``Retry-After`` the client honours, in seconds.
    max_retry_after: float = attrs.field(default=60.0, validator=[NUMBER, ge(0)])

    def backoff_ceiling(self, retry_number: int) -> float:
        """The longest wait before retry ``retry_number`` (from 1), before the jitter:
        ``min(max_backoff, initial_backoff * 2 ** (retry_number - 1))``."""
        # The exponent is capped: 2.0 ** 1024 overflows, and 2 ** 62 is past any cap anyway.
        growth = 2.0 ** min(max(retry_number - 1, 0), 62)
        return min(self.max_backoff, self.initial_backoff * growth)

    def backoff(self, retry_number: int, rng: Callable[[], float] | None = None) -> float:
        """The jittered wait before retry ``retry_number`` (1 for the first retry):
        ``backoff_ceiling(retry_number)`` times ``rng()``.

        ``rng``: a function returning a float in ``[0, 1)`` (default ``random.random``).
        Returns the wait in seconds."""
        return self.backoff_ceiling(retry_number) * (rng or random.random)()

    def wait_for(self, exc: BaseException | None, retry_number: int) -> float:
        """The wait in seconds before retry ``retry_number`` (from 1) after ``exc``: none
        right after a clock correction, else ``backoff``, or the reply's ``Retry-After``
        (capped at ``max_retry_after``) when longer."""
        if isinstance(exc, TimestampExpiredError) and exc.clock_corrected:
            return 0.0
        wait = self.backoff(retry_number)
        if isinstance(exc, ItnioHTTPError) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self.max_retry_after))
        return wait

    def retrying(
        self,
        *,
        sleep: Callable[[float], Any],
        before_sleep: Callable[[RetryCallState], Any] | None = None,
    ) -> AsyncRetrying:
        """A fresh ``tenacity.AsyncRetrying`` for one call, never to be shared.

        Args:
            sleep: the coroutine function that waits (``asyncio.sleep``, or a test's).
            before_sleep: called with tenacity's ``RetryCallState`` before each wait
                (default ``None``).

        Returns:
            The retrying object; it re-raises the last real error, never a
            ``tenacity.RetryError``.
        """
        by_time = stop_before_delay(self.deadline) if self.deadline is not None else stop_never
        stop = stop_after_attempt(self.max_retries + 1) | by_time

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            return self.wait_for(exc, state.attempt_number)

        return AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(is_retryable),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )


def is_retryable(exc: BaseException) -> bool:
    """Whether a fault may pass if the request is simply tried again: what the error says of
    itself (``ItnioError.transient``). Anything that is not our error is never retried."""
    return isinstance(exc, ItnioError) and exc.transient
