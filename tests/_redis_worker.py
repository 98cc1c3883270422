"""One worker process of the multi-process rate test (run by ``test_redis_limiter.py``).

Streams its own slice of a window from the fake vendor through a ``RedisRateLimiter`` shared
with the other workers, and writes each record's job id on a line of ``--out``.

    python tests/_redis_worker.py --base-url URL --redis-url URL --prefix P --rate 50 \
        --start "2024-01-01 00:00:00" --end "2024-02-15 11:59:59" --out ids.txt
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import datetime
from pathlib import Path

from itnio_async import AsyncVoiceClient, RetryPolicy
from itnio_async.redis import RedisRateLimiter

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


async def stream(args: argparse.Namespace) -> list[int]:
    """The job ids of this worker's slice, in the order streamed."""
    start = datetime.strptime(args.start, TIME_FORMAT)
    end = datetime.strptime(args.end, TIME_FORMAT)
    limiter = RedisRateLimiter(
        args.redis_url, args.api_key, args.rate, prefix=args.prefix, max_wait=None
    )
    async with (
        limiter,
        AsyncVoiceClient(
            args.api_key,
            os.environ["ITNIO_WORKER_SECRET"],
            base_url=args.base_url,
            limiter=limiter,
            retry=RetryPolicy(max_retries=5),
        ) as client,
    ):
        return [
            record.job_id
            async for record in client.iter_group_calls(start, end, concurrency=args.concurrency)
        ]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--out", required=True)
    return parser.parse_args()


def main() -> None:
    args = parse()
    ids = asyncio.run(stream(args))
    Path(args.out).write_text("".join(f"{job_id}\n" for job_id in ids))


if __name__ == "__main__":
    main()
