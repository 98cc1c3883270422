"""One worker process of the shared-rate case: takes slots from a limiter, as fast as it gives them.

Run by ``_cases.py`` (the ``shared`` case), W of them at once. Each sets its limiter up and
talks to it once (so that the Redis connection and the script are ready), prints ``ready``,
waits for ``go`` on stdin, then runs ``--concurrency`` tasks that each loop on
``await acquire()`` and then send one UDP datagram to the counter (``_counter.py``), which
stamps its arrival: what a vendor would count. After ``--seconds`` it stops, closes the
limiter and prints one JSON line (grants, and the acquires that failed).

    python benchmarks/_shared_worker.py --limiter redis --rate 200 --workers 4 \
        --redis-url redis://127.0.0.1:6379/0 --prefix P --counter-port 40000 --seconds 4

Limiters: ``redis`` (``itnio_async.redis.RedisRateLimiter`` at ``--rate`` for all workers
together), ``local`` (``LocalRateLimiter`` at ``rate / workers`` in each process) and
``throttled`` (``throttled-py``'s GCRA on the same Redis, waiting with its retry loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

API_KEY = "bench-shared-key"


async def _redis_limiter(
    args: argparse.Namespace,
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    from itnio_async.redis import RedisRateLimiter

    limiter = RedisRateLimiter(
        args.redis_url, API_KEY, args.rate, prefix=f"{args.prefix}:ours", max_wait=None
    )
    return limiter.acquire, limiter.aclose


async def _local_limiter(
    args: argparse.Namespace,
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    from itnio_async import LocalRateLimiter

    limiter = LocalRateLimiter(args.rate / args.workers)

    async def close() -> None:
        return None

    return limiter.acquire, close


async def _throttled_limiter(
    args: argparse.Namespace,
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    from throttled.asyncio import RateLimiterType, RedisStore, Throttled, per_sec

    rate = round(args.rate)
    throttle = Throttled(
        using=RateLimiterType.GCRA.value,
        quota=per_sec(rate, burst=1),
        store=RedisStore(server=args.redis_url),
        timeout=60,
    )
    key = f"{args.prefix}:throttled"

    async def acquire() -> None:
        result = await throttle.limit(key)
        if result.limited:
            raise RuntimeError("throttled-py gave up waiting")

    async def close() -> None:
        return None

    return acquire, close


_LIMITERS = {"redis": _redis_limiter, "local": _local_limiter, "throttled": _throttled_limiter}


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    acquire, close = await _LIMITERS[args.limiter](args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", args.counter_port))
    sock.setblocking(False)
    grants = 0
    failures = 0
    try:
        if args.limiter != "local":
            # The Redis connection and the script, ready before the clock starts; the slot it
            # takes is not sent, and the bucket is idle again by the time everyone starts.
            await acquire()
        loop = asyncio.get_running_loop()
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        stop = loop.time() + args.seconds

        async def task() -> None:
            nonlocal grants, failures
            while True:
                try:
                    await acquire()
                except Exception:
                    failures += 1
                    continue
                sock.send(b"x")
                grants += 1

        # At the end the tasks still waiting are cancelled, as a stopping worker's would be.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(stop):
                await asyncio.gather(*(task() for _ in range(args.concurrency)))
    finally:
        await close()
        sock.close()
    return {"grants": grants, "failures": failures, "cpu_s": time.process_time()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limiter", choices=sorted(_LIMITERS), required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--counter-port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
