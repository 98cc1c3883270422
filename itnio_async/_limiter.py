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

__all__ = ["LocalRateLimiter", "RateLimiter", "check_burst", "check_rate"]


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs of a rate limiter.

    ``acquire`` waits until one request may be sent and takes one token; if the waiting task
    is cancelled, it must take nothing. ``pause`` makes every ``acquire`` that has not
    returned yet, those already waiting included (of every task and, for a shared limiter,
    every process), wait at least ``seconds`` from now.
    """

    async def acquire(self) -> None:
        """Wait until one request may be sent, and take its token; a waiter that is
        cancelled takes nothing. May raise an ``ItnioError`` (a shared limiter's
        ``LimiterUnavailableError`` or ``LimiterTimeoutError``), which the call raises."""
        ...

    async def pause(self, seconds: float) -> None:
        """Make every ``acquire`` that has not returned yet wait at least ``seconds``
        (a float >= 0) from now; a shorter pause than one in force changes nothing."""
        ...


#: The slowest rate accepted, in requests per second: one an hour. A slower one (1e-300,
#: say) would block every request for good.
MIN_RATE = 1 / 3600


def check_rate(rate: object, *, name: str = "rate", none_allowed: bool = False) -> float:
    """Return ``rate`` (requests per second) if it is a finite number of at least one an
    hour (``MIN_RATE``), else raise naming ``name`` (the message says "or None" where the
    caller takes ``None`` for no limit). Every limiter checks its rate with this."""
    or_none = " or None" if none_allowed else ""
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise TypeError(f"{name} must be a number{or_none}, got {type(rate).__name__}")
    if not (rate >= MIN_RATE and math.isfinite(rate)):
        raise ValueError(
            f"{name} must be a finite number >= {MIN_RATE:.6g} (one request an hour)"
            f"{or_none}, got {rate!r}"
        )
    return rate


def check_burst(burst: object) -> int:
    """Return ``burst`` (a bucket's size) if it is an int >= 1, else raise naming it."""
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise TypeError(f"burst must be an int, got {type(burst).__name__}")
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst!r}")
    return burst


#: The bucket runs this much below ``rate``, so that the jitter between a grant here and
#: the request's arrival at the server (a busy event loop, the network) does not show the
#: server more than ``rate + 1`` requests in one second. 1% was not enough for an app
#: serving 100 concurrent requests on the same loop; 3% was.
RATE_MARGIN = 0.03
#: How late a waiter may wake and still keep the schedule, in seconds. Timers on epoll
#: round up to whole milliseconds, and a busy loop (decoding pages, say) wakes a waiter
#: later still, so a strict bucket loses that much per request: 1 ms is 5% of the rate at
#: 100 requests/s and half of it at 1,000/s. A bucket this much larger than ``burst``
#: (``MAX_LATENESS * rate`` tokens of slack, however high the rate) lets the next
#: requests make it up. It is time, not a share of one interval: capped at a quarter of
#: an interval, the slack covered only 0.26 ms at 1,000/s and the bucket lost 10-13% of
#: the rate there. What it costs: after an idle spell, requests may start this much early,
#: so one second holds at most ``burst + rate * (1 + MAX_LATENESS) / (1 + RATE_MARGIN)``
#: grants, 0.976 x rate + burst, which leaves 24 ms of jitter before a server could count
#: more than ``rate + 1``.
MAX_LATENESS = 0.005


class LocalRateLimiter:
    """A token bucket for the tasks of one event loop, built on ``aiolimiter``.

    ``rate`` is requests per second (``None``: no limit; pauses still apply). ``burst`` is
    the bucket's size: with the default of 1, requests are spaced evenly, ``1.03/rate``
    apart (see ``RATE_MARGIN``), so no one-second window holds more than ``rate`` of them,
    wherever the window falls, and the server, with network jitter, sees at most
    ``rate + 1``. A larger burst lets that many go at once after an idle spell.

    The bucket holds ``burst`` tokens plus ``MAX_LATENESS`` worth of slack: with a bucket
    of exactly ``burst`` (aiolimiter clamps its level at zero), each late wake-up of the
    event loop would be lost for good and the rate would sag by several percent.

    The ``AsyncLimiter`` is made at the first ``acquire``, on the running loop, never in
    ``__init__``: a limiter made at import or construction time would bind to the wrong loop.

    Args:
        rate: requests per second, a finite number >= 1/3600, or ``None`` for no limit.
        burst: the bucket's size, an ``int`` >= 1 (default 1).

    Raises:
        TypeError, ValueError: a ``rate`` or ``burst`` of the wrong type or out of range,
            naming it (``rate_limit``, as the client calls it, and ``burst``).
    """

    __slots__ = ("_bucket", "_paused_until", "burst", "rate")

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        #: Requests per second, or ``None`` for no limit.
        self.rate = None if rate is None else check_rate(rate, name="rate_limit", none_allowed=True)
        #: Tokens the bucket holds: how many requests may go back to back after a pause.
        self.burst = check_burst(burst)
        # The aiolimiter bucket, made lazily on the running loop (None until then).
        self._bucket: AsyncLimiter | None = None
        # Loop time before which no acquire may return (a server's Retry-After).
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"LocalRateLimiter(rate={self.rate!r}, burst={self.burst!r})"

    async def acquire(self) -> None:
        """Wait for a token (and for any pause to end), then take it. A waiter that is
        cancelled takes nothing; raises nothing else."""
        loop = asyncio.get_running_loop()
        while True:
            # A deadline that a later pause() may push further out, so sleep and look
            # again; an Event would need a timer of its own for the same thing.
            while (delay := self._paused_until - loop.time()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(delay)
            if self.rate is None:
                return
            bucket = self._bucket
            if bucket is None:
                interval = (1.0 + RATE_MARGIN) / self.rate
                # The slack is MAX_LATENESS of time at any rate (see there).
                capacity = self.burst + MAX_LATENESS / interval
                bucket = self._bucket = AsyncLimiter(capacity, capacity * interval)
            # aiolimiter adds to the bucket only after its wait returns, so a waiter that
            # is cancelled takes no capacity.
            await bucket.acquire()
            if self._paused_until <= loop.time():
                return
            # A pause began while this waiter was queued in the bucket: it must hold too.
            # The token it took stays spent (aiolimiter cannot give one back), so after
            # the pause it queues again: that only ever makes the limit stricter.

    async def pause(self, seconds: float) -> None:
        """Hold every ``acquire`` not yet returned, waiting ones included, for at least
        ``seconds`` from now (a ``Retry-After``); ``seconds`` <= 0 does nothing."""
        if seconds > 0:
            until = asyncio.get_running_loop().time() + seconds
            self._paused_until = max(self._paused_until, until)
