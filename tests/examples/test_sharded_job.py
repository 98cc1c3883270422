"""``examples/sharded_job.py``: four slices on two arq worker processes, one shared limit."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from asyncio.subprocess import DEVNULL, PIPE, Process
from datetime import datetime
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings

from examples import sharded_job
from examples.settings import open_client
from itnio_async.testing import Dataset, FakeVendor, serve

from ._support import EXAMPLES_ROOT, TIMEOUT, eventually, task_json

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
KEY, SECRET = "shard-key", "shard-secret"
RATE = 20


async def collect_lines(process: Process, lines: list[str]) -> None:
    assert process.stderr is not None
    async for line in process.stderr:
        lines.append(line.decode(errors="replace"))


def read_jsonl(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


async def test_four_slices_on_two_workers_write_every_record_once_within_one_limit(
    redis_url: str, redis_name: str, tmp_path: Path
) -> None:
    # 4,000 tasks: four slices of ten pages each, enough for both workers to get a share.
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(4_000, seed=51), latency=0.005)
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("ITNIO_", "REDIS_"))
    }
    with serve(fake) as url:
        env.update(
            ITNIO_API_KEY=KEY,
            ITNIO_API_SECRET=SECRET,
            ITNIO_BASE_URL=url,
            ITNIO_RATE_LIMIT=str(RATE),
            REDIS_URL=redis_url,
            ITNIO_LIMIT_PREFIX=redis_name,
            ITNIO_QUEUE=redis_name,
            ITNIO_WORKER_JOBS="2",
        )
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", sharded_job.__name__, "worker", cwd=EXAMPLES_ROOT, env=env,
                stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE,
            )
            for _ in range(2)
        ]  # fmt: skip
        logs: list[list[str]] = [[] for _ in workers]
        readers = [
            asyncio.create_task(collect_lines(worker, lines))
            for worker, lines in zip(workers, logs, strict=True)
        ]
        try:

            def ready() -> bool:
                for worker, lines in zip(workers, logs, strict=True):
                    assert worker.returncode is None, "".join(lines)
                return all(any("Starting worker" in line for line in lines) for lines in logs)

            await eventually(ready, "both workers to start")
            # The planner: in this process, with a client of its own under the same limit.
            settings = sharded_job.JobSettings.from_env(env)
            pool = await create_pool(RedisSettings.from_dsn(redis_url))
            try:
                async with open_client(settings) as client:
                    jobs = await sharded_job.enqueue_shards(
                        client, pool, START, END, 4, tmp_path, name=redis_name, queue=redis_name
                    )
                async with asyncio.timeout(TIMEOUT * 2):
                    results = await sharded_job.collect(jobs)
            finally:
                await pool.aclose()
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.terminate()
            async with asyncio.timeout(TIMEOUT):
                codes = [await worker.wait() for worker in workers]
                await asyncio.gather(*readers)

    assert codes == [0, 0], logs  # stopped cleanly by SIGTERM
    assert [result.shard.index for result in results] == [0, 1, 2, 3]
    seen: list[int] = []
    for result in results:
        expected = [task_json(task) for task in fake.expected(result.shard.start, result.shard.end)]
        assert result.count == result.shard.estimated_count == len(expected)
        written = await asyncio.to_thread(read_jsonl, result.path)
        assert written == expected
        seen += [record["job_id"] for record in written]
    assert sorted(seen) == sorted(task.job_id for task in fake.expected(START, END))
    assert len(seen) == len(set(seen)) == 4_000
    # Both processes did their share...
    assert {result.worker for result in results} == {worker.pid for worker in workers}
    # ...and the planner's requests and theirs, together, kept to the one limit.
    assert fake.stats.max_in_any_second() <= RATE + 1
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.part")))
