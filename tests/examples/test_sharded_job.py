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

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from examples import checkpointed_worker, sharded_job
from examples.settings import open_client
from itnio_async import GroupCallStatus, InvalidParameterError, plan_shards
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan, serve

from ._support import EXAMPLES_ROOT, TIMEOUT, churn, eventually, fake_client, task_json, unread

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
KEY, SECRET = "shard-key", "shard-secret"
RATE = 20


async def collect_lines(process: Process, lines: list[str]) -> None:
    assert process.stderr is not None
    async for line in process.stderr:
        lines.append(line.decode(errors="replace"))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def checkpointed(path: Path) -> int:
    """Records a slice's checkpoint counts (0 if it has none yet)."""
    state = checkpointed_worker.Checkpoint.load(path)
    return 0 if state is None else state.records


async def test_a_slice_run_again_goes_on_from_its_cursor_through_churn(tmp_path: Path) -> None:
    completed = GroupCallStatus.COMPLETED
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(6_000, seed=52))
    out = tmp_path / "slice-001.jsonl"
    partial = tmp_path / "slice-001.jsonl.part"
    async with fake_client(fake, rate_limit=None) as client:
        shard = (await plan_shards(client, START, END, 3, statuses=[completed]))[1]
        args = (shard.index, shard.start.isoformat(), shard.end.isoformat(), str(out), [2])
        # The slice's job fails midway: what it wrote stays, with its checkpoint.
        fake.faults = FaultPlan(by_request={fake.stats.requests + 5: Fault.code(-22)})
        with pytest.raises(InvalidParameterError):
            await sharded_job.export_shard({"itnio": client}, *args)
        first = read_jsonl(partial)
        assert 100 <= len(first) < shard.estimated_count - 100
        assert not out.exists()
        # The result changes under the filter; then arq runs the job again.
        above = churn(fake, first, shard.start, shard.end, completed)
        owed = unread(fake, first, shard.start, shard.end, completed, above)
        fake.faults = None
        fake.stats.reset()
        reply = await sharded_job.export_shard({"itnio": client}, *args)

    written = [record["job_id"] for record in read_jsonl(out)]
    assert written == [record["job_id"] for record in first] + owed
    assert reply["count"] == len(written) == len(set(written))
    assert reply["resumed_at"] == len(first)
    assert fake.stats.requests <= len(owed) // 100 + 1 + 2 * 4 + 2  # no page fetched again
    assert files_in(tmp_path) == [out.name]  # no partial file or checkpoint left


async def test_a_checkpoint_left_by_another_slice_is_dropped(tmp_path: Path) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(300, seed=53))
    out = tmp_path / "slice-000.jsonl"
    args = (0, START.isoformat(), END.isoformat(), str(out))
    async with fake_client(fake, rate_limit=None) as client:
        # A slice of an earlier plan, under the same name, stopped halfway.
        other = checkpointed_worker.Job(START, datetime(2024, 4, 1), page_size=10)
        fake.faults = FaultPlan(by_request={3: Fault.code(-22)})
        with pytest.raises(InvalidParameterError):
            await checkpointed_worker.run_job(
                client, other, tmp_path / "slice-000.jsonl.part", concurrency=1
            )
        assert checkpointed(tmp_path / "slice-000.jsonl.part.checkpoint") > 0
        fake.faults = None
        reply = await sharded_job.export_shard({"itnio": client}, *args)
        # Run again once finished: the slice is rewritten, not appended to.
        again = await sharded_job.export_shard({"itnio": client}, *args)
    expected = [task_json(task) for task in fake.expected(START, END)]
    assert read_jsonl(out) == expected
    assert (reply["resumed_at"], reply["count"]) == (0, 300)
    assert (again["resumed_at"], again["count"]) == (0, 300)
    assert files_in(tmp_path) == [out.name]  # no partial file or checkpoint left


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
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.part*")))


async def start_worker(env: dict[str, str], lines: list[str]) -> tuple[Process, asyncio.Task[None]]:
    """A worker process, its log lines collected into ``lines``; returns once it is ready."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", sharded_job.__name__, "worker", cwd=EXAMPLES_ROOT, env=env,
        stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE,
    )  # fmt: skip
    reader = asyncio.create_task(collect_lines(worker, lines))

    def ready() -> bool:
        assert worker.returncode is None, "".join(lines)
        return any("Starting worker" in line for line in lines)

    await eventually(ready, "the worker to start")
    return worker, reader


async def stop_worker(worker: Process, reader: asyncio.Task[None]) -> int:
    if worker.returncode is None:
        worker.terminate()
    async with asyncio.timeout(TIMEOUT):
        code = await worker.wait()
        await reader
    return code


async def test_slices_of_a_stopped_worker_go_on_from_their_cursors_on_another(
    redis_url: str, redis_name: str, tmp_path: Path
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(4_000, seed=54), latency=0.005)
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
            ITNIO_WORKER_JOBS="4",
        )
        first_log: list[str] = []
        second_log: list[str] = []
        first = await start_worker(env, first_log)
        second = None
        pool = await create_pool(RedisSettings.from_dsn(redis_url))
        try:
            settings = sharded_job.JobSettings.from_env(env)
            async with open_client(settings) as client:
                jobs = await sharded_job.enqueue_shards(
                    client, pool, START, END, 4, tmp_path, name=redis_name, queue=redis_name
                )
            checkpoints = [
                tmp_path / f"{redis_name}-{i:03d}.jsonl.part.checkpoint" for i in range(4)
            ]

            def all_begun() -> bool:
                return all(checkpointed(path) > 0 for path in checkpoints)

            # Every slice has written a page or more: the worker is stopped (a deploy, say),
            # arq cancels its jobs and queues them again; another worker takes them over.
            await eventually(all_begun, "every slice to write a page")
            assert await stop_worker(*first) == 0, first_log
            begun = [checkpointed(path) for path in checkpoints]
            second = await start_worker(env, second_log)
            async with asyncio.timeout(TIMEOUT * 2):
                results = await sharded_job.collect(jobs)
        finally:
            await pool.aclose()
            await stop_worker(*first)
            if second is not None:
                await stop_worker(*second)

    assert any("will be run again" in line for line in first_log), first_log
    seen: list[int] = []
    for result, written_before in zip(results, begun, strict=True):
        assert result.worker == second[0].pid
        assert result.resumed_at == written_before > 0
        expected = [task_json(task) for task in fake.expected(result.shard.start, result.shard.end)]
        assert await asyncio.to_thread(read_jsonl, result.path) == expected
        assert result.count == result.shard.estimated_count
        seen += [record["job_id"] for record in expected]
    assert len(seen) == len(set(seen)) == 4_000
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.part*")))
