"""A rate limit shared by every process and machine that uses one Redis: ``RedisRateLimiter``.

The vendor's limit is per account, so every worker that speaks for one API key must share
one token bucket. Plug the limiter into the client like any other (``pip install
'itnio-async[redis]'``)::

    from itnio_async import AsyncVoiceClient
    from itnio_async.redis import LocalFallback, RedisRateLimiter

    limiter = RedisRateLimiter("redis://redis.internal:6379/0", api_key, rate=50)
    async with limiter, AsyncVoiceClient(api_key, api_secret, limiter=limiter) as client:
        ...

Every process that uses the same Redis and API key (and ``prefix``) shares one schedule:
together they never exceed ``rate`` requests per second. Give them all the same ``rate`` and
``burst``; when they differ, the bucket keeps the strictest that any live process asked for
(the lowest rate, the smallest burst), and each process whose own settings differ logs a
warning naming both, so that a mistake, or a rolling deploy of a new rate, never lets them
together exceed the lowest rate configured. A process's settings are forgotten 30 s after
its last call.

How it works
------------
The bucket is a schedule of slots on the Redis server's clock (``TIME``), so the workers'
clocks, however skewed, play no part. It is GCRA (the generic cell rate algorithm): the
schedule is a single number, the *theoretical arrival time* (TAT) of the next slot, and
each slot reserved moves it one interval on. Lua scripts keep it, atomically, in four steps:

1. **Reserve.** The task at the head of a process's queue reserves slots: one for itself
   and, up to four in all, one for each task queued behind it (a small lease). It gets
   the next slots of the schedule, or a slot another process handed back before its time,
   never one past ``max_wait``, and never one inside a pause.
2. **Sleep until the slot.** From each reply the process knows the offset between its
   clock and the server's (the smallest of the recent ones: a reply's own latency only
   ever makes it larger), so it wakes at the slot's time on the server's clock, a
   millisecond early since timers fire up to a millisecond late.
3. **Confirm.** At its time the head confirms the slot, and the same call reserves the
   next slots for the tasks behind it: in steady state each slot costs one round trip, by
   the process that holds it. The confirmation is refused while a pause holds (the slot is
   forfeit; the task reserves again after the pause), and while the last second of the
   server's clock already holds as many *takes* (confirmed slots) as an exact schedule
   would: a process that wakes late, however late, then waits for room instead of
   crowding a second.
4. **Hand back.** A task cancelled or timed out while it waits takes nothing: its slot goes
   to the next task of its process or, when none is left for it, back to the bucket. The
   last slot of the schedule moves the TAT back; one inside it becomes a *hole*, taken at
   exactly its time by the next reservation of any process. Nothing is lost, nothing added.

Why: the first design asked for a token, slept, and asked again, taking nothing until a
token was free. Every waiting process paid a round trip per slot, the slot went to
whichever asked first after it freed, and slots went unused while processes slept past
them: four processes delivered 61-92% of the rate. Reserving first, the way GCRA is
usually run, was refused then for two reasons, which steps 3 and 4 answer: a waiter
cancelled during its sleep would have spent its slot, and a pause could not call back a
slot already reserved (so requests would still go out during a ``Retry-After``).

The server counts arrivals, not grants. The schedule runs 3% below ``rate`` (as the local
bucket does), so the spread between a slot's time and its request's arrival does not show
the server more than ``rate + 1`` requests in any second. After an idle spell of a second
or more (the start of a job) the first second's slots are 10% further apart: a job's first
requests open connections, whose set-up time varies by tens of milliseconds, and requests
granted on time would reach the server bunched.

Why our own scripts rather than a library: none of the maintained ones does this (waiting
acquire, asyncio, atomic, on the Redis server's clock, a pause shared through the same
bucket that holds reserved slots too, and a waiter that takes nothing when cancelled).
``limits`` only answers "allowed or not", it does not wait; ``pyrate-limiter``'s Redis
bucket stamps items with the caller's clock by design; ``redis-rate-limiters`` (and its
fork ``redis-limiters``) wait and use ``TIME`` but spend the slot of a cancelled waiter;
``throttled-py``'s GCRA runs on ``TIME`` but waits by retrying, at least 0.2 s apart, so
that with a burst of 1 (what keeps a second to ``rate + 1``) it delivers a small part of the
rate (``benchmarks/README.md``), and none of them has a pause shared with the bucket.

Redis keys
----------
Six per account, ``{prefix}:{<h>}:`` followed by ``tat`` (the schedule), ``pause`` (the
shared pause-until time), ``holes`` (slots handed back), ``settings`` (the settings the
bucket keeps), ``taken`` (the takes of the last second) and ``start`` (the start of a young
busy spell), where ``<h>`` is the first 16 hex digits of the SHA-256 of the API key. The
API key is not a secret, but hashing keeps key names short and uniform whatever the key
holds, and keeps account names out of ``MONITOR`` and ``KEYS`` listings; the braces are a
Redis Cluster hash tag, so all the keys live on one node as a script requires. Every key
expires by itself as soon as it no longer matters (the schedule a second after its last
slot). Needs Redis 5 or later (or Valkey): a script may then read ``TIME`` before it writes;
redis-py 8 speaks RESP3 by default, which needs Redis 6 (or a client made with
``protocol=2``). redis-py 5, 6, 7 and 8 are tested (``nox -s redis_versions``).

When Redis cannot be reached
----------------------------
By default ``acquire()`` and ``pause()`` raise :class:`LimiterUnavailableError` (an
``ItnioError``; it and :class:`LimiterTimeoutError` live in the package's one error tree
and are importable from ``itnio_async`` or from here), chained to the ``redis`` exception:
going on without the shared limit would let the workers together exceed the account's
rate. With
``fallback=LocalFallback(workers=N)`` the limiter instead goes on with a local token bucket
at ``rate / N`` (``N`` being how many processes share the account), logs one warning per
outage, and tries Redis again every ``retry_interval`` seconds.

A Redis that hangs (stopped, swapping, behind a dead link that no socket timeout catches)
is unreachable too: every call is bounded by what is left of ``max_wait`` (but given at
least 50 ms), and a call that runs out of it is a failure like a refused connection
(chained to ``TimeoutError``). A
client made from a URL also has 2-second socket timeouts. Slots that a call cut short may
have reserved are lost: that only ever makes the limit stricter.

This module is named like the ``redis`` package it uses; that is harmless, since imports are
absolute (``import redis.asyncio`` here is the real package), but do not run this file as a
script.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Any, Final, NamedTuple, Self

import attrs
from attrs.validators import ge, gt

from ._checks import INTEGER, NUMBER
from ._errors import ClientStateError, LimiterTimeoutError, LimiterUnavailableError
from ._limiter import LocalRateLimiter, check_burst, check_rate

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
#: The shared schedule runs this much below ``rate``, so that the spread between a slot's
#: time and its request's arrival at the server (timers, the round trip that confirms the
#: slot, a busy event loop) does not show the server more than ``rate + 1`` requests in
#: one second. The same margin as the local bucket's.
_RATE_MARGIN: Final = 0.03
#: The most slots a process holds reserved ahead, never more than it has waiting tasks:
#: enough that a late wake-up or a slow round trip never leaves the schedule without a
#: taker, few enough that a pause or a cancellation has little to forfeit or hand back.
_LEASE: Final = 4
#: How long, in seconds, a slot reserved already due may be used without asking Redis
#: again: the reservation itself checked the pause, just before.
_DUE_GRACE: Final = 0.005
#: How early a slot may be confirmed, seconds: the event loop's timers fire up to a
#: millisecond late (epoll rounds up), so waking this much before a slot makes its
#: confirmation land on time; the count of takes per second stays the hard limit.
_EARLY: Final = 0.001
#: How many recent replies the estimate of the server clock's offset is taken over.
_OFFSET_SAMPLES: Final = 16
#: After an idle spell, for _SLOW_START_SECONDS, the schedule spaces slots this share further
#: apart: the first requests of a job open connections, whose set-up time varies so much
#: (tens of milliseconds) that requests granted on time would reach the server bunched.
_SLOW_START: Final = 0.10
_SLOW_START_SECONDS: Final = 1.0
#: How long the bucket keeps the settings a process asked for after its last call, seconds.
_SETTINGS_TTL: Final = 30.0
#: The least time a Redis call is given, seconds, even when less of ``max_wait`` is left
#: (``max_wait=0`` means "only a slot free now", not "Redis is unreachable").
_CALL_FLOOR: Final = 0.05
#: The longest a hand-back of unused slots may take, seconds (it runs as a waiter leaves).
_REFUND_TIMEOUT: Final = 0.5
#: What the client library of Redis raises when the server cannot serve us: refused,
#: dropped, timed out, read-only after a failover, out of memory... (OSError for the odd
#: socket error that redis-py does not wrap.)
_REDIS_FAULTS: Final = (RedisError, OSError)

# Reserve slots of the shared schedule, and first (optionally) confirm one that is due.
# KEYS[1]: the theoretical arrival time (TAT) of the schedule, microseconds of the server clock,
#          kept ARGV[8] past its time: no key means the bucket has been idle that long.
# KEYS[2]: the shared pause-until time, microseconds of the server clock.
# KEYS[3]: the holes: slots handed back before their time (a sorted set, score = slot).
# KEYS[4]: the settings the bucket keeps: "<interval> <burst>".
# KEYS[5]: the takes of the last second (a sorted set, score = server time of the take).
# KEYS[6]: the start of the current busy spell, while it is young (see ARGV[7]).
# ARGV[1]: this process's emission interval, microseconds (written with repr: exact).
# ARGV[2]: this process's burst.
# ARGV[3]: the slot to confirm (0: none).
# ARGV[4]: how many slots to reserve (only once the slot to confirm, if any, is confirmed).
# ARGV[5]: the latest acceptable slot, in microseconds from now (-1: any); reserving stops
#          at the first slot past it.
# ARGV[6]: how long the settings are kept, in milliseconds, after the last process that
#          asked for them.
# ARGV[7]: the slow start: for ARGV[8] microseconds after a reservation finds the bucket
#          idle (the start of a busy spell), slots are this share further apart.
# ARGV[9]: how early, in microseconds, a slot may be confirmed (the timers' granularity).
# Returns {status, now, pause_until, interval, burst, wait, then per slot reserved: slot,
# tat_before, tat_after (both 0 for a slot taken from the holes), taken (1: already due, and
# counted as taken now)}. status: 1 confirmed, 0 nothing to confirm, -1 a pause holds (the
# slot is forfeit), -2 before the slot's time, -3 the last second already holds `cap`
# takes; for -2 and -3 `wait` is the microseconds until a confirmation can succeed, and
# when reserving stopped at max_wait it is how far away the next slot was.
# The bucket keeps the strictest settings any live process asked for (the longest
# interval, the smallest burst). A take is counted when it is confirmed, just before its
# request goes: however late processes confirm their slots, no second of the server's clock
# holds more takes than a schedule kept to the microsecond would have there, `cap`.
# Times are whole microseconds written with '%.0f': Lua's tostring would write 1.7e+15 and
# lose the digits that matter. Doubles hold them exactly (< 2^53).
_ACQUIRE_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local own_interval, own_burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local interval, burst = own_interval, own_burst
local kept_interval, kept_burst
local kept = redis.call('GET', KEYS[4])
if kept then
  local i, b = string.match(kept, '^(%S+) (%S+)$')
  kept_interval, kept_burst = tonumber(i), tonumber(b)
end
if kept_interval and kept_burst then
  interval = math.max(interval, kept_interval)
  burst = math.min(burst, kept_burst)
end
local interval_text = string.format('%.17g', interval)
if interval ~= kept_interval or burst ~= kept_burst then
  redis.call('SET', KEYS[4], interval_text .. ' ' .. string.format('%d', burst), 'PX', ARGV[6])
elseif interval == own_interval or burst == own_burst then
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
end
local cap = math.max(1, math.ceil(1000000 / interval - 1e-6)) + burst - 1
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', string.format('%.0f', now - 1000000))
local count = redis.call('ZCARD', KEYS[5])
local function take(slot, n)
  redis.call('ZADD', KEYS[5], now, string.format('%.0f:%.0f:%d', now, slot, n))
  count = count + 1
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local reply = {0, now, paused, interval_text, burst, 0}
local confirm = tonumber(ARGV[3])
if confirm > 0 then
  if paused > now then
    reply[1] = -1
    return reply
  end
  if confirm > now + tonumber(ARGV[9]) then
    reply[1], reply[6] = -2, confirm - now
    return reply
  end
  if count >= cap then
    local oldest = redis.call('ZRANGE', KEYS[5], count - cap, count - cap, 'WITHSCORES')
    reply[1], reply[6] = -3, math.max(1, tonumber(oldest[2]) + 1000000 - now)
    return reply
  end
  take(confirm, 0)
  reply[1] = 1
end
local want = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local earliest = math.max(now, paused)
local tolerance = (burst - 1) * interval
local kept_tat = redis.call('GET', KEYS[1])
local tat = tonumber(kept_tat or '0') or 0
local ramp = tonumber(ARGV[8])
local moved = false
local young_until = 0
if want > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', earliest))
  local started = tonumber(redis.call('GET', KEYS[6]) or '0') or 0
  if started == 0 and not kept_tat then
    started = earliest
    redis.call('SET', KEYS[6], string.format('%.0f', started),
               'PX', math.ceil((started + ramp - now) / 1000) + 1)
  end
  if started > 0 then
    young_until = started + ramp
  end
end
local slow = 1 + tonumber(ARGV[7])
for n = 1, want do
  local slot = math.ceil(math.max(earliest, tat - tolerance))
  local hole = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  local from_hole = hole[2] ~= nil and tonumber(hole[2]) <= slot
  if from_hole then
    slot = tonumber(hole[2])
  end
  if limit >= 0 and slot - now > limit then
    reply[6] = slot - now
    break
  end
  if from_hole then
    redis.call('ZREM', KEYS[3], hole[1])
    table.insert(reply, slot)
    table.insert(reply, 0)
    table.insert(reply, 0)
  else
    local before = tat
    local step = interval
    if slot < young_until then
      step = interval * slow
    end
    tat = math.ceil(math.max(tat, slot) + step)
    moved = true
    table.insert(reply, slot)
    table.insert(reply, before)
    table.insert(reply, tat)
  end
  if slot <= now and count < cap then
    take(slot, n)
    table.insert(reply, 1)
  else
    table.insert(reply, 0)
  end
end
if moved then
  redis.call('SET', KEYS[1], string.format('%.0f', tat),
             'PX', math.ceil((tat + ramp - now) / 1000) + 1)
end
if count > 0 then
  redis.call('PEXPIRE', KEYS[5], 1001)
end
return reply
"""

# Hand back reserved slots that will not be used, so that another process can have them.
# KEYS[1]: the TAT; KEYS[2]: the holes. ARGV[1]: how long the TAT is kept past its time,
# microseconds (the acquire script's ARGV[8]); then per slot, latest first: slot, tat_before,
# tat_after, as the acquire script reserved it. A slot at the end of the schedule moves the
# TAT back; one inside it becomes a hole, taken at exactly its time by the next reservation;
# one whose time has passed is gone.
_REFUND_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local keep = tonumber(ARGV[1])
local moved = false
local last_hole = 0
for i = 2, #ARGV, 3 do
  local slot, before, after = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if slot >= now then
    if after > 0 and tat == after then
      tat = before
      moved = true
    else
      redis.call('ZADD', KEYS[2], slot, string.format('%.0f:%.0f:%d', slot, now, i))
      last_hole = math.max(last_hole, slot)
    end
  end
end
if moved then
  if tat + keep > now then
    redis.call('SET', KEYS[1], string.format('%.0f', tat),
               'PX', math.ceil((tat + keep - now) / 1000) + 1)
  else
    redis.call('DEL', KEYS[1])
  end
end
if last_hole > 0 then
  local needed = math.ceil((last_hole - now) / 1000) + 1
  if redis.call('PTTL', KEYS[2]) < needed then
    redis.call('PEXPIRE', KEYS[2], needed)
  end
end
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


@attrs.frozen
class LocalFallback:
    """What a :class:`RedisRateLimiter` does while Redis is unreachable.

    It goes on with a local token bucket at ``rate / workers`` requests per second, where
    ``workers`` is how many processes share the account, so that together they still keep
    (about) to the rate; and tries Redis again every ``retry_interval`` seconds.
    """

    #: How many processes share the account's rate (each takes an equal share).
    workers: int = attrs.field(validator=[INTEGER, ge(1)])
    #: Seconds between two attempts to reach Redis again while it is down.
    retry_interval: float = attrs.field(default=5.0, validator=[NUMBER, gt(0)])


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


class _Slot(NamedTuple):
    """A slot of the shared schedule that this process holds reserved."""

    #: Its time, microseconds of the Redis server's clock.
    at: int
    #: The schedule's TAT before and after the reservation (0, 0: taken from the holes);
    #: what a hand-back needs to move the TAT back when the slot is the last one.
    before: int
    after: int
    #: Loop time until which it may be used without confirming (0.0: it must be confirmed):
    #: the reservation found it due and counted it as taken.
    due_until: float


class _Reply(NamedTuple):
    """The acquire script's answer."""

    status: int
    now: int
    paused_until: int
    interval: float
    burst: int
    #: For a confirmation refused for now, the microseconds until one can succeed; when
    #: reserving stopped at max_wait, how far away the next slot was.
    wait: int


class RedisRateLimiter:
    """A token bucket in Redis, shared by every process that uses the same Redis and key.

    Args:
        redis: a ``redis.asyncio.Redis`` client (left open: it is yours), or a URL such as
            ``"redis://host:6379/0"`` (the limiter makes the client and ``aclose()`` closes it).
        api_key: the account; each key has its own bucket, so accounts can share a Redis.
        rate: requests per second for the account, all processes together.
        burst: tokens the bucket holds: how many may go back to back after an idle spell.
            With the default 1, requests are spaced evenly, ``1.03 / rate`` apart, so that no
            one-second window at the server holds more than ``rate + 1`` of them.
        prefix: the start of the Redis keys (to keep apart, say, staging and production).
        max_wait: the longest an ``acquire()`` waits, seconds, Redis calls included: it
            raises :class:`LimiterTimeoutError` at once when the next free slot would pass
            it, and a Redis that does not answer within it (or within 50 ms, when less of
            it is left) counts as unreachable. ``None``: wait as long as it takes.
        fallback: what to do while Redis is unreachable; ``None`` (the default) raises
            :class:`LimiterUnavailableError`.

    Use one limiter per event loop, like the client; it binds to the loop of its first call.
    """

    __slots__ = (
        "_acquire_script",
        "_fallback_until",
        "_held",
        "_local",
        "_loop",
        "_offsets",
        "_owns_redis",
        "_pause_script",
        "_queue",
        "_redis",
        "_refund_script",
        "_refunds",
        "_script_args",
        "_script_keys",
        "_script_tail",
        "_shared",
        "_waiting",
        "bucket_key",
        "burst",
        "fallback",
        "max_wait",
        "pause_key",
        "rate",
        "settings_key",
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
        self.rate = float(check_rate(rate))
        #: Tokens the bucket holds.
        self.burst = check_burst(burst)
        #: The longest an ``acquire()`` waits, in seconds (``None``: no limit).
        self.max_wait = _check_max_wait(max_wait)
        #: What to do while Redis is unreachable (``None``: raise).
        self.fallback = fallback
        tag = f"{prefix}:{{{bucket_id(api_key)}}}"
        #: The Redis key of the schedule's theoretical arrival time.
        self.bucket_key = f"{tag}:tat"
        #: The Redis key of the shared pause-until time.
        self.pause_key = f"{tag}:pause"
        #: The Redis key of the settings the bucket keeps (the strictest asked for).
        self.settings_key = f"{tag}:settings"

        # The acquire script's settings: the emission interval in µs, with the margin, and
        # the burst; and its last arguments (see the script).
        interval = 1e6 * (1.0 + _RATE_MARGIN) / self.rate
        self._script_args = (repr(interval), str(self.burst))
        self._script_tail = (
            round(_SETTINGS_TTL * 1000),
            repr(_SLOW_START),
            round(_SLOW_START_SECONDS * 1e6),
            round(_EARLY * 1e6),
        )
        # The acquire script's keys: those above, the slots handed back before their time,
        # the takes of the last second, and the start of a young busy spell.
        self._script_keys = (
            self.bucket_key,
            self.pause_key,
            f"{tag}:holes",
            self.settings_key,
            f"{tag}:taken",
            f"{tag}:start",
        )

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
        self._refund_script = self._redis.register_script(_REFUND_SCRIPT)
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
        # The slots this process holds, in time order; the tasks in acquire(), queued or not.
        self._held: deque[_Slot] = deque()
        self._waiting = 0
        # Recent (loop time of a reply - server time in it): the smallest is the best
        # estimate of the offset between the two clocks, and never runs ahead of the server.
        self._offsets: deque[float] = deque(maxlen=_OFFSET_SAMPLES)
        # The (rate, burst) the bucket keeps, when the last reply said it differs from ours.
        self._shared: tuple[float, int] | None = None
        # Hand-backs under way (awaited by aclose).
        self._refunds: set[asyncio.Future[None]] = set()

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
        """Hand back the slots still reserved, then close the Redis client if the limiter
        made it from a URL (a client passed in stays open: its owner closes it)."""
        if self._held:
            self._hand_back(len(self._held))
        if self._refunds:
            await asyncio.gather(*self._refunds, return_exceptions=True)
        if self._owns_redis:
            await self._redis.aclose()

    @property
    def using_fallback(self) -> bool:
        """Whether the last attempt to reach Redis failed and the local fallback serves."""
        return self._fallback_until is not None

    @property
    def shared_settings(self) -> tuple[float, int] | None:
        """The ``(rate, burst)`` the shared bucket keeps, when it is not this limiter's own
        (another process sharing the key asked for stricter ones); ``None`` when it is."""
        return self._shared

    # -- the limiter protocol ------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait until the account may send one more request, and take one slot for it.

        Raises :class:`LimiterTimeoutError` when that would take longer than ``max_wait``
        (taking nothing), and :class:`LimiterUnavailableError` when Redis cannot be reached,
        or does not answer within ``max_wait``, and there is no ``fallback``. A task
        cancelled while it waits takes nothing: its slot goes to the next task of this
        process, or back to the bucket.
        """
        loop = self._bind_loop()
        deadline = None if self.max_wait is None else loop.time() + self.max_wait
        queue = self._queue
        assert queue is not None  # made by _bind_loop
        self._waiting += 1
        try:
            # Tasks of this process wait their turn here, in order; only the head asks Redis.
            await self._before(deadline, queue.acquire())
            try:
                await self._take(loop, deadline)
            finally:
                queue.release()
        finally:
            self._waiting -= 1
            surplus = len(self._held) - self._waiting
            if surplus > 0:
                # Slots no task of ours is left to use: another process may have them.
                await asyncio.shield(self._hand_back(surplus))

    async def pause(self, seconds: float) -> None:
        """Hold every ``acquire()`` of every process sharing the account for ``seconds``.

        Measured on the Redis server's clock; a shorter pause never shortens a longer one.
        Slots already reserved by any process are held too: each is confirmed at its time.
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
        deadline = None if self.max_wait is None else loop.time() + self.max_wait
        try:
            async with asyncio.timeout_at(self._call_deadline(loop, deadline)):
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
        """Take one slot: the next this process holds, or from the fallback while Redis is down.

        The head of the queue reserves slots (for itself and, up to ``_LEASE``, for the tasks
        queued behind it), sleeps until the first one's time, and confirms it: the confirming
        call sees any pause set meanwhile, and reserves the next slots in the same round trip.
        """
        held = self._held
        # Loop time before which Redis said the first slot cannot be confirmed.
        retry_at = 0.0
        while True:
            if self._fallback_active(loop):
                assert self._local is not None  # only with a fallback
                await self._before(deadline, self._local.acquire())
                return
            if not held:
                limit = -1 if deadline is None else max(0, int((deadline - loop.time()) * 1e6))
                reply = await self._call(loop, deadline, None, min(_LEASE, self._waiting), limit)
                if reply is None:
                    continue  # Redis failed and the fallback took over
                if not held:  # nothing reserved: the next free slot is past max_wait
                    raise self._timeout_error(f"the next free token (in {reply.wait / 1e6:.3f}s)")
            slot = held[0]
            now = loop.time()
            if now <= slot.due_until:  # found due and taken by the reservation, a moment ago
                held.popleft()
                return
            wake = max(slot.at / 1e6 + min(self._offsets) - _EARLY, retry_at)
            if deadline is not None and wake > deadline:
                raise self._timeout_error(f"the next free token (in {wake - now:.3f}s)")
            if wake > now:
                # Cancelled here, the task takes nothing: its slot stays with the process,
                # for the next task or to hand back.
                await asyncio.sleep(wake - now)
            others = min(_LEASE, self._waiting - 1) - (len(held) - 1)
            limit = -1 if self.max_wait is None else int(self.max_wait * 1e6)
            reply = await self._call(loop, deadline, slot, max(0, others), limit)
            retry_at = 0.0
            if reply is None:
                continue
            if reply.status == 1:
                held.remove(slot)  # the first: new slots were added after it
                return
            if reply.status == -1:
                # A pause holds: every slot before its end is forfeit (the others still stand).
                while held and held[0].at < reply.paused_until:
                    held.popleft()
                continue
            if reply.status == -2:
                # Early: our estimate of the server's clock ran ahead; start it afresh.
                latest = self._offsets[-1]
                self._offsets.clear()
                self._offsets.append(latest)
            # -2, -3 (the last second is full: this process woke late, and so many before
            # it that the slot must wait): confirm again when Redis said it can succeed.
            retry_at = loop.time() + reply.wait / 1e6

    async def _call(
        self,
        loop: asyncio.AbstractEventLoop,
        deadline: float | None,
        confirm: _Slot | None,
        want: int,
        limit: int,
    ) -> _Reply | None:
        """One acquire-script call, bounded by ``deadline``; the slots it reserves are held.

        Returns ``None`` when Redis failed and the fallback took over (else it raises).
        """
        interval, burst = self._script_args
        at = 0 if confirm is None else confirm.at
        args = (interval, burst, at, want, limit, *self._script_tail)
        try:
            async with asyncio.timeout_at(self._call_deadline(loop, deadline)):
                raw: Sequence[Any] = await self._acquire_script(keys=self._script_keys, args=args)
        except _REDIS_FAULTS as exc:  # a call past the deadline too (TimeoutError is an OSError)
            self._held.clear()  # they can no longer be confirmed
            self._redis_failed(exc, loop)  # raises, unless the fallback takes over
            return None
        received = loop.time()
        self._redis_answered()
        reply = _Reply(
            int(raw[0]), int(raw[1]), int(raw[2]), float(raw[3]), int(raw[4]), int(raw[5])
        )
        self._offsets.append(received - reply.now / 1e6)
        self._note_settings(reply)
        for index in range(6, len(raw), 4):
            due = received + _DUE_GRACE if int(raw[index + 3]) else 0.0
            self._held.append(_Slot(int(raw[index]), int(raw[index + 1]), int(raw[index + 2]), due))
        return reply

    @staticmethod
    def _call_deadline(loop: asyncio.AbstractEventLoop, deadline: float | None) -> float | None:
        """When a Redis call must have answered: at ``deadline``, but not sooner than
        ``_CALL_FLOOR`` from now."""
        return None if deadline is None else max(deadline, loop.time() + _CALL_FLOOR)

    def _note_settings(self, reply: _Reply) -> None:
        """Warn once when the bucket keeps other settings than ours (another process's)."""
        own = (float(self._script_args[0]), self.burst)
        if (reply.interval, reply.burst) == own:
            if self._shared is not None:
                logger.info("the shared rate limit's bucket keeps this process's settings again")
                self._shared = None
            return
        shared = (1e6 * (1.0 + _RATE_MARGIN) / reply.interval, reply.burst)
        if shared != self._shared:
            logger.warning(
                "processes sharing the rate limit of %s ask for different settings: the bucket "
                "keeps the strictest, rate %.6g/s and burst %d, while this one asked for rate "
                "%.6g/s and burst %d; give every process the same rate and burst",
                self.bucket_key,
                shared[0],
                shared[1],
                self.rate,
                self.burst,
            )
            self._shared = shared

    def _hand_back(self, count: int) -> asyncio.Future[None]:
        """Give the bucket back the last ``count`` slots held (in the background)."""
        slots = [self._held.pop() for _ in range(min(count, len(self._held)))]
        task = asyncio.ensure_future(self._refund(slots))
        self._refunds.add(task)
        task.add_done_callback(self._refunds.discard)
        return task

    async def _refund(self, slots: list[_Slot]) -> None:
        args = [self._script_tail[2]]
        args += [value for slot in slots for value in (slot.at, slot.before, slot.after)]
        try:
            async with asyncio.timeout(_REFUND_TIMEOUT):
                await self._refund_script(keys=[self.bucket_key, self._script_keys[2]], args=args)
        except _REDIS_FAULTS as exc:
            logger.debug("could not hand back %d reserved slot(s) (%s): unused", len(slots), exc)

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
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
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
