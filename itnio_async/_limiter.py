"""Rate limiting: the protocol the client speaks to a limiter, and the local token bucket.

The client calls ``acquire()`` once per attempt (retries included), after it has a
connection slot and just before it signs and sends, and ``pause(seconds)`` when a reply
carries ``Retry-After``, so that every task sharing the limiter holds off, not only the one
that saw it. Any object with these two coroutine methods can be passed as ``limiter=``:
a limiter shared by several processes (Redis, in ``itnio_async.redis``) plugs in the same way.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol, runtime_checkable

from aiolimiter import AsyncLimiter

__all__ = ["LocalRateLimiter", "RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs of a rate limiter.

    ``acquire`` waits until one request may be sent and takes one token; if the waiting task
    is cancelled, it must take nothing. ``pause`` makes every later ``acquire`` (of every
    task and, for a shared limiter, every process) wait at least ``seconds`` from now.
    """

    async def acquire(self) -> None: ...

    async def pause(self, seconds: float) -> None: ...


def _check_rate(rate: object) -> None:
    if rate is None:
        return
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise TypeError(f"rate_limit must be a number or None, got {type(rate).__name__}")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate_limit must be a positive, finite number or None, got {rate!r}")


def _check_burst(burst: object) -> None:
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise TypeError(f"burst must be an int, got {type(burst).__name__}")
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst!r}")


class LocalRateLimiter:
    """A token bucket for the tasks of one event loop, built on ``aiolimiter``.

    ``rate`` is requests per second (``None``: no limit; pauses still apply). ``burst`` is
    the bucket's size: with the default of 1, requests are spaced ``1/rate`` apart, so no
    one-second window holds more than ``rate + 1`` of them, wherever the window falls.
    A larger burst lets that many go at once after an idle spell.

    The ``AsyncLimiter`` is made at the first ``acquire``, on the running loop, never in
    ``__init__``: a limiter made at import or construction time would bind to the wrong loop.
    """

    __slots__ = ("_bucket", "_paused_until", "burst", "rate")

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        _check_rate(rate)
        _check_burst(burst)
        #: Requests per second, or ``None`` for no limit.
        self.rate = rate
        #: Tokens the bucket holds: how many requests may go back to back after a pause.
        self.burst = burst
        # The aiolimiter bucket, made lazily on the running loop (None until then).
        self._bucket: AsyncLimiter | None = None
        # Loop time before which no acquire may return (a server's Retry-After).
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"LocalRateLimiter(rate={self.rate!r}, burst={self.burst!r})"

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        # A deadline that a later pause() may push further out, so sleep and look again;
        # an Event would need a timer of its own for the same thing.
        while (delay := self._paused_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        if self.rate is None:
            return
        bucket = self._bucket
        if bucket is None:
            bucket = self._bucket = AsyncLimiter(self.burst, self.burst / self.rate)
        # aiolimiter adds to the bucket only after its wait returns, so a waiter that is
        # cancelled takes no capacity.
        await bucket.acquire()

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            until = asyncio.get_running_loop().time() + seconds
            self._paused_until = max(self._paused_until, until)
