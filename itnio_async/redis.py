"""A rate limit shared by every process and machine that uses one Redis: ``RedisRateLimiter``.

The vendor's limit is per account, so every worker that speaks for one API key must share
one token bucket. Plug the limiter into the client like any other (``pip install
'itnio-async[redis]'``)::

    from itnio_async import AsyncVoiceClient
    from itnio_async.redis import LocalFallback, RedisRateLimiter

    limiter = RedisRateLimiter("redis://redis.internal:6379/0", api_key, rate=50)
    async with limiter, AsyncVoiceClient(api_key, api_secret, limiter=limiter) as client:
        ...

Every process that uses the same Redis and API key (and ``prefix``) shares one bucket: together
they never exceed ``rate`` requests per second. Give them all the same ``rate`` and ``burst``:
the bucket keeps one schedule, and each caller reads it with its own settings.

How it works
------------
One Lua script runs atomically on the Redis server and reads the server's own clock
(``TIME``), so the workers' clocks, however skewed, play no part. It is GCRA (the generic
cell rate algorithm): the bucket is a single number, the *theoretical arrival time* (TAT)
of the next request at exactly the rate. A call either takes a token now (the script moves
the TAT one interval on and returns 0) or returns how many microseconds remain until one
is free, *taking nothing*; ``acquire()`` sleeps that long (plus a little jitter) and asks
again. The same script first looks at a shared *pause-until* time, which ``pause()`` sets:
a ``Retry-After`` (or a burst of ``-18``) seen by one process holds every process.

Why "ask, sleep, ask again" rather than the reservation style of GCRA (take the slot at
once, then sleep until it): a reservation is spent even if the waiter is cancelled during
its sleep, and a pause that arrives after it cannot call it back, so reserved requests
would still go out during a ``Retry-After``. Asking again costs one more round trip per
waiting process per slot (each process queues its own waiters behind one local FIFO lock,
so it is one per *process*, not per task), and the order across processes is not FIFO but
decided by who asks first after the slot frees (the jitter keeps that fair on average).
Cancellation during the sleep, where a waiter spends its time, takes nothing; one that lands
during the sub-millisecond script call itself may spend one token, which only ever makes the
limit stricter.

Why our own script rather than a library: none of the maintained ones does exactly this
(waiting acquire, asyncio, atomic, on the Redis server's clock, a pause shared through the
same bucket, and a waiter that takes nothing when cancelled). ``limits`` only answers
"allowed or not", it does not wait; ``pyrate-limiter``'s Redis bucket stamps items with the
caller's clock by design; ``redis-rate-limiters`` (and its fork ``redis-limiters``) wait and
use ``TIME`` but reserve the slot before the wait; ``throttled-py`` waits by retrying but
several of its Redis scripts take "now" from the caller, and none of them has a pause
shared with the bucket, which would then need a second, non-atomic round trip. The script
below is some twenty lines.

Redis keys
----------
Two per account: ``{prefix}:{<h>}:tat`` and ``{prefix}:{<h>}:pause``, where ``<h>`` is the
first 16 hex digits of the SHA-256 of the API key. The API key is not a secret, but
hashing keeps key names short and uniform whatever the key holds, and keeps account names
out of ``MONITOR`` and ``KEYS`` listings; the braces are a Redis Cluster hash tag, so both
keys live on one node as a script requires. Both keys expire by themselves as soon as they
no longer matter (a full bucket is the same as no key). Needs Redis 5 or later (or Valkey):
a script may then read ``TIME`` before it writes.

When Redis cannot be reached
----------------------------
By default ``acquire()`` and ``pause()`` raise :class:`LimiterUnavailableError` (an
``ItnioError``), chained to the ``redis`` exception: going on without the shared limit
would let the workers together exceed the account's rate. With
``fallback=LocalFallback(workers=N)`` the limiter instead goes on with a local token bucket
at ``rate / N`` (``N`` being how many processes share the account), logs one warning per
outage, and tries Redis again every ``retry_interval`` seconds.

This module is named like the ``redis`` package it uses; that is harmless, since imports are
absolute (``import redis.asyncio`` here is the real package), but do not run this file as a
script.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Final, Self

import attrs

from ._errors import ClientStateError, ItnioError, LimiterUnavailableError
from ._limiter import LocalRateLimiter

try:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError(
        "itnio_async.redis needs the redis package: pip install 'itnio-async[redis]'"
    ) from exc

__all__ = [
    "DEFAULT_PREFIX",
    "LimiterTimeoutError",
    "LimiterUnavailableError",
    "LocalFallback",
    "RedisRateLimiter",
]

logger = logging.getLogger("itnio_async")

#: The start of every key the limiter writes.
DEFAULT_PREFIX: Final = "itnio:limit"

#: Socket timeouts of a Redis client made from a URL: a limiter call is one tiny script, so
#: a server that does not answer within this is unreachable for our purpose. (A URL's own
#: ``socket_timeout=`` / ``socket_connect_timeout=`` query options win.)
_URL_SOCKET_TIMEOUT: Final = 2.0
#: The longest pause honoured, so that ``pause(inf)`` stays a number Redis can store.
_MAX_PAUSE: Final = 86_400.0
#: Jitter added to each wait: at most this share of the wait, and at most _JITTER_CAP
#: seconds. It spreads the processes that wait for the same slot, so the slot goes to a
#: random one of them instead of always the one nearest to Redis; kept small because a
#: process that always waits loses that much of its rate.
_JITTER_SHARE: Final = 0.1
_JITTER_CAP: Final = 0.002
#: What the client library of Redis raises when the server cannot serve us: refused,
#: dropped, timed out, read-only after a failover, out of memory... (OSError for the odd
#: socket error that redis-py does not wrap.)
_REDIS_FAULTS: Final = (RedisError, OSError)

# Take one token, or say how long until one is free without taking anything.
# KEYS[1]: the bucket's theoretical arrival time (TAT), in microseconds of the server clock.
# KEYS[2]: the shared pause-until time, in microseconds of the server clock.
# ARGV[1]: the emission interval, 1e6 / rate, in microseconds.
# ARGV[2]: the burst tolerance, (burst - 1) * interval, in microseconds.
# Returns 0 when a token was taken, else the microseconds to wait (>= 1).
# Times are kept as whole microseconds written with '%.0f': Lua's tostring would write
# 1.7e+15 and lose the digits that matter. Doubles hold them exactly (< 2^53).
_ACQUIRE_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if paused > now then
  return paused - now
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then
  tat = now
end
local wait = tat - tolerance - now
if wait > 0 then
  return math.ceil(wait)
end
local new_tat = math.ceil(tat + interval)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"""

# Hold every acquire of the account until now + ARGV[1] microseconds (server clock); a
# shorter pause never shortens a longer one. KEYS[1]: the pause-until time.
# Returns the microseconds the pause now lasts.
_PAUSE_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wanted = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if wanted > current then
  redis.call('SET', KEYS[1], string.format('%.0f', wanted),
             'PX', math.ceil((wanted - now) / 1000) + 1)
  current = wanted
end
return current - now
"""


class LimiterTimeoutError(ItnioError):
    """No token could be had within the limiter's ``max_wait``; nothing was taken."""

    def __init__(self, message: str, *, max_wait: float) -> None:
        super().__init__(message)
        #: The limit that was reached, in seconds.
        self.max_wait = max_wait


def _check_workers(_instance: object, _attribute: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"workers must be an int >= 1, got {value!r}")


def _check_interval(_instance: object, _attribute: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"retry_interval must be a number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"retry_interval must be positive and finite, got {value!r}")


@attrs.frozen
class LocalFallback:
    """What a :class:`RedisRateLimiter` does while Redis is unreachable.

    It goes on with a local token bucket at ``rate / workers`` requests per second, where
    ``workers`` is how many processes share the account, so that together they still keep
    (about) to the rate; and tries Redis again every ``retry_interval`` seconds.
    """

    #: How many processes share the account's rate (each takes an equal share).
    workers: int = attrs.field(validator=_check_workers)
    #: Seconds between two attempts to reach Redis again while it is down.
    retry_interval: float = attrs.field(default=5.0, validator=_check_interval)


def _check_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise TypeError(f"rate must be a number, got {type(rate).__name__}")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive, finite number, got {rate!r}")
    return float(rate)


def _check_burst(burst: object) -> int:
    if not isinstance(burst, int) or isinstance(burst, bool):
        raise TypeError(f"burst must be an int, got {type(burst).__name__}")
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst!r}")
    return burst


def _check_max_wait(max_wait: object) -> float | None:
    if max_wait is None:
        return None
    if isinstance(max_wait, bool) or not isinstance(max_wait, int | float):
        raise TypeError(f"max_wait must be a number or None, got {type(max_wait).__name__}")
    if not max_wait >= 0:
        raise ValueError(f"max_wait must be >= 0 or None, got {max_wait!r}")
    return float(max_wait)


def bucket_id(api_key: str) -> str:
    """The short, uniform name of an account's bucket: 16 hex digits of SHA-256(api_key)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class RedisRateLimiter:
    """A token bucket in Redis, shared by every process that uses the same Redis and key.

    Args:
        redis: a ``redis.asyncio.Redis`` client (left open: it is yours), or a URL such as
            ``"redis://host:6379/0"`` (the limiter makes the client and ``aclose()`` closes it).
        api_key: the account; each key has its own bucket, so accounts can share a Redis.
        rate: requests per second for the account, all processes together.
        burst: tokens the bucket holds: how many may go back to back after an idle spell.
            With the default 1, requests are spaced ``1 / rate`` apart, so no one-second
            window holds more than ``rate + 1`` of them.
        prefix: the start of the Redis keys (to keep apart, say, staging and production).
        max_wait: the longest an ``acquire()`` waits, seconds; it raises
            :class:`LimiterTimeoutError` at once when the wait Redis announces would pass
            it. ``None``: wait as long as it takes.
        fallback: what to do while Redis is unreachable; ``None`` (the default) raises
            :class:`LimiterUnavailableError`.

    Use one limiter per event loop, like the client; it binds to the loop of its first call.
    """

    __slots__ = (
        "_acquire_script",
        "_fallback_until",
        "_local",
        "_loop",
        "_owns_redis",
        "_pause_script",
        "_queue",
        "_redis",
        "_script_args",
        "bucket_key",
        "burst",
        "fallback",
        "max_wait",
        "pause_key",
        "rate",
    )

    def __init__(
        self,
        redis: Redis | str,
        api_key: str,
        rate: float,
        *,
        burst: int = 1,
        prefix: str = DEFAULT_PREFIX,
        max_wait: float | None = 60.0,
        fallback: LocalFallback | None = None,
    ) -> None:
        key: object = api_key  # checked at run time too: callers may not be type-checked
        if not isinstance(key, str) or not key:
            raise ValueError("api_key must be a non-empty string")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
        if fallback is not None and not isinstance(fallback, LocalFallback):
            raise TypeError(f"fallback must be a LocalFallback, got {type(fallback).__name__}")
        #: Requests per second for the account, all processes together.
        self.rate = _check_rate(rate)
        #: Tokens the bucket holds.
        self.burst = _check_burst(burst)
        #: The longest an ``acquire()`` waits, in seconds (``None``: no limit).
        self.max_wait = _check_max_wait(max_wait)
        #: What to do while Redis is unreachable (``None``: raise).
        self.fallback = fallback
        tag = f"{prefix}:{{{bucket_id(api_key)}}}"
        #: The Redis key of the bucket's theoretical arrival time.
        self.bucket_key = f"{tag}:tat"
        #: The Redis key of the shared pause-until time.
        self.pause_key = f"{tag}:pause"
        # The acquire script's ARGV: the emission interval and the burst tolerance, in µs.
        interval = 1e6 / self.rate
        self._script_args = (repr(interval), repr((self.burst - 1) * interval))

        if isinstance(redis, str):
            self._redis = Redis.from_url(
                redis,
                socket_timeout=_URL_SOCKET_TIMEOUT,
                socket_connect_timeout=_URL_SOCKET_TIMEOUT,
            )
            self._owns_redis = True
        elif isinstance(redis, Redis):
            self._redis = redis
            self._owns_redis = False
        else:
            raise TypeError(
                f"redis must be a redis.asyncio.Redis or a URL, got {type(redis).__name__}"
            )
        # EVALSHA, with a SCRIPT LOAD and one retry when the server does not know the script
        # (a restarted or failed-over Redis).
        self._acquire_script = self._redis.register_script(_ACQUIRE_SCRIPT)
        self._pause_script = self._redis.register_script(_PAUSE_SCRIPT)
        # The fallback's bucket at rate / workers (it binds to a loop only at first use).
        self._local: LocalRateLimiter | None = (
            LocalRateLimiter(self.rate / fallback.workers, self.burst)
            if fallback is not None
            else None
        )
        # Loop time until which the fallback serves without asking Redis (None: Redis is up).
        self._fallback_until: float | None = None
        # The loop of the first call, and the FIFO lock that lets one task per process ask
        # Redis at a time; both made at first use, on that loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(rate={self.rate!r}, burst={self.burst!r}, "
            f"bucket_key={self.bucket_key!r}, fallback={self.fallback!r})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the Redis client if the limiter made it from a URL (a client passed in stays
        open: its owner closes it)."""
        if self._owns_redis:
            await self._redis.aclose()

    @property
    def using_fallback(self) -> bool:
        """Whether the last attempt to reach Redis failed and the local fallback serves."""
        return self._fallback_until is not None

    # -- the limiter protocol ------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait until the account may send one more request, and take one token for it.

        Raises :class:`LimiterTimeoutError` when that would take longer than ``max_wait``
        (taking nothing), and :class:`LimiterUnavailableError` when Redis cannot be reached
        and there is no ``fallback``. A task cancelled while it waits takes nothing.
        """
        loop = self._bind_loop()
        deadline = None if self.max_wait is None else loop.time() + self.max_wait
        queue = self._queue
        assert queue is not None  # made by _bind_loop
        # Tasks of this process wait their turn here, in order; only the head asks Redis.
        await self._before(deadline, queue.acquire())
        try:
            await self._take(loop, deadline)
        finally:
            queue.release()

    async def pause(self, seconds: float) -> None:
        """Hold every ``acquire()`` of every process sharing the account for ``seconds``.

        Measured on the Redis server's clock; a shorter pause never shortens a longer one.
        """
        if not seconds > 0:  # also refuses NaN
            return
        seconds = min(float(seconds), _MAX_PAUSE)
        loop = self._bind_loop()
        if self._local is not None:
            # The fallback keeps the pause too, in case Redis goes away before it ends.
            await self._local.pause(seconds)
        if self._fallback_active(loop):
            return
        try:
            await self._pause_script(keys=[self.pause_key], args=[math.ceil(seconds * 1e6)])
        except _REDIS_FAULTS as exc:
            self._redis_failed(exc, loop)
        else:
            self._redis_answered()

    # -- the parts -----------------------------------------------------------------------

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._queue = asyncio.Lock()
        elif loop is not self._loop:
            raise ClientStateError(
                "this RedisRateLimiter belongs to another event loop; create one per loop"
            )
        return loop

    async def _before(self, deadline: float | None, waiter: Awaitable[object]) -> None:
        """Await ``waiter`` but not past ``deadline``: then raise LimiterTimeoutError."""
        if deadline is None:
            await waiter
            return
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            raise self._timeout_error("the wait") from None

    async def _take(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        """Take one token: from Redis, or from the fallback while Redis is down."""
        while True:
            if self._fallback_active(loop):
                assert self._local is not None  # only with a fallback
                await self._before(deadline, self._local.acquire())
                return
            try:
                wait_us = int(
                    await self._acquire_script(
                        keys=[self.bucket_key, self.pause_key],
                        args=self._script_args,
                    )
                )
            except _REDIS_FAULTS as exc:
                self._redis_failed(exc, loop)  # raises, unless the fallback takes over
                continue
            self._redis_answered()
            if wait_us <= 0:
                return
            wait = wait_us / 1e6
            if deadline is not None and loop.time() + wait > deadline:
                raise self._timeout_error(f"the next free token (in {wait:.3f}s)")
            jitter = random.uniform(0.0, min(wait * _JITTER_SHARE, _JITTER_CAP))  # noqa: S311 - spreads waiters, no secret
            # Cancelled here, the task has taken nothing: the script took no token.
            await asyncio.sleep(wait + jitter)

    def _timeout_error(self, what: str) -> LimiterTimeoutError:
        assert self.max_wait is not None
        return LimiterTimeoutError(
            f"rate limit: {what} would pass max_wait={self.max_wait:g}s; no token was taken",
            max_wait=self.max_wait,
        )

    def _fallback_active(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the fallback serves now, without asking Redis (it is down, not yet due)."""
        return self._fallback_until is not None and loop.time() < self._fallback_until

    def _redis_failed(self, exc: BaseException, loop: asyncio.AbstractEventLoop) -> None:
        """Raise LimiterUnavailableError, or switch to the fallback for a while."""
        reason = f"{type(exc).__name__}: {exc}"
        if self.fallback is None:
            raise LimiterUnavailableError(
                f"the shared rate limit's Redis is unavailable ({reason}); pass "
                "fallback=LocalFallback(workers=N) to go on at a local share of the rate"
            ) from exc
        if self._fallback_until is None:
            logger.warning(
                "the shared rate limit's Redis is unavailable (%s): going on with a local "
                "limit of %.4g requests/s (rate %.4g / %d workers), trying Redis again every "
                "%gs",
                reason,
                self.rate / self.fallback.workers,
                self.rate,
                self.fallback.workers,
                self.fallback.retry_interval,
            )
        else:
            logger.debug("the shared rate limit's Redis is still unavailable (%s)", reason)
        self._fallback_until = loop.time() + self.fallback.retry_interval

    def _redis_answered(self) -> None:
        if self._fallback_until is not None:
            self._fallback_until = None
            logger.info("the shared rate limit's Redis is reachable again: using it")
