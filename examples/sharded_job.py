"""One big export split across worker processes with arq, all under one shared rate limit.

Run it from the repository's root (``pip install "itnio-async[examples]"``; a Redis that
every process can reach)::

    export ITNIO_API_KEY=... ITNIO_API_SECRET=...
    export REDIS_URL=redis://127.0.0.1:6379/0 ITNIO_RATE_LIMIT=20

    # Workers: as many as you like, on any machines that reach the Redis.
    python -m examples.sharded_job worker          # or: arq examples.sharded_job.WorkerSettings

    # The job: split the window into slices of about equal task counts, enqueue one
    # arq job per slice, wait for them, and check each slice's count.
    python -m examples.sharded_job plan --start "2024-01-01 00:00:00" \\
        --end "2024-06-30 23:59:59" --shards 8 --out-dir exports/

How the work is split: ``plan_shards`` cuts the window into whole-second time slices that do
not overlap and together cover it (a task belongs to exactly one slice), with about the same
number of tasks in each, at a cost of ``2 * shards - 1`` tiny requests. Each arq job streams
its slice and writes it to ``OUT_DIR/<name>-<index>.jsonl``, then returns its count; the
planner compares the counts with the plan.

How a slice survives its worker: the job is ``examples/checkpointed_worker.py``'s
``run_job`` on the slice. It appends each page to ``<name>-<index>.jsonl.part`` and then
saves the output's length and the stream's cursor in a checkpoint file of that slice
beside it; the finished file is renamed into place and the checkpoint removed. When a
worker is stopped (SIGINT, SIGTERM: arq cancels the job and runs it again later, on any
worker that shares the output directory), the job goes on from its slice's cursor, with
``resume_from=``: nothing already written is fetched again, and nothing is lost or repeated
even if tasks changed meanwhile. A checkpoint of another slice (an earlier plan under the
same name) is dropped and the slice starts afresh; a slice that finished is rewritten,
never appended to, if its job runs again.

How the limit is shared: each worker process makes one ``AsyncVoiceClient`` at startup
(arq's ``on_startup``; the jobs of that process share it through ``ctx``) with a
``RedisRateLimiter`` on ``REDIS_URL``: every process using that Redis and API key draws from
one bucket, so all the workers and the planner together keep to ``ITNIO_RATE_LIMIT``
requests per second, and a ``Retry-After`` seen by one pauses them all.

Job ids are ``<name>:<index>`` (``--name``, by default made from the window and the shard
count): planning the same job again while arq keeps its results (an hour) waits for the
jobs already there instead of running them twice.

Settings (environment): those of ``examples/settings.py``, which says what each means:
``ITNIO_API_KEY``, ``ITNIO_API_SECRET`` (required), ``ITNIO_BASE_URL``, ``ITNIO_RATE_LIMIT``
(requests per second for the account, all processes together; default 10),
``ITNIO_SERVER_TIMEZONE``, ``REDIS_URL`` (required here: the queue and the shared limit) and
``ITNIO_LIMIT_PREFIX`` (the limiter's Redis keys); and this job's own, ``ITNIO_QUEUE`` (the
arq queue, default ``itnio:exports``) and ``ITNIO_WORKER_JOBS`` (slices one worker streams
at once, default 4). Writing to a local ``--out-dir`` suits workers on one machine; across
machines, use a shared volume or upload each slice instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import attrs
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from arq.worker import Worker

from examples.checkpointed_worker import Checkpoint, CheckpointError, checkpoint_path_for, run_job
from examples.checkpointed_worker import Job as SliceJob
from examples.settings import Settings, open_client
from itnio_async import AsyncVoiceClient, Shard, plan_shards

__all__ = [
    "JobSettings",
    "ShardResult",
    "WorkerSettings",
    "collect",
    "enqueue_shards",
    "export_shard",
    "main",
    "worker_options",
]

logger = logging.getLogger(__name__)

DEFAULT_QUEUE: Final = "itnio:exports"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
#: Slices one worker process streams at once, when ``ITNIO_WORKER_JOBS`` is not set.
DEFAULT_WORKER_JOBS: Final = 4


# -- settings: the client's, and the queue's ----------------------------------------------


@attrs.frozen
class JobSettings(Settings):
    """The client's settings (``examples/settings.py``), and the queue's."""

    queue: str = DEFAULT_QUEUE
    worker_jobs: int = DEFAULT_WORKER_JOBS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        return attrs.evolve(
            super().from_env(env),
            queue=env.get("ITNIO_QUEUE") or DEFAULT_QUEUE,
            worker_jobs=int(env.get("ITNIO_WORKER_JOBS") or DEFAULT_WORKER_JOBS),
        )


# -- the worker side ---------------------------------------------------------------------


class _SliceFiles:
    """A slice's files: ``<path>.part`` while it is written, with its checkpoint beside it;
    ``path`` once complete.

    Blocking file calls, which the job runs in a thread (``asyncio.to_thread``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".part")
        self.checkpoint = checkpoint_path_for(self.partial)

    def prepare(self, job: SliceJob) -> None:
        """Keep a checkpoint of this very slice to go on from; drop anything else left."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            state = Checkpoint.load(self.checkpoint)
        except CheckpointError as exc:
            logger.warning("starting %s afresh: %s", self.path.name, exc)
            state = None
        if state is not None and state.job == job and self.partial.exists():
            return  # run_job goes on from it
        if state is not None:
            logger.info("starting %s afresh: the checkpoint left is of another slice", self.path)
        self.checkpoint.unlink(missing_ok=True)
        self.partial.unlink(missing_ok=True)

    def commit(self) -> None:
        """Put the complete slice in place, then forget its checkpoint."""
        os.replace(self.partial, self.path)
        self.checkpoint.unlink()


async def export_shard(
    ctx: dict[str, Any],
    index: int,
    start: str,
    end: str,
    out: str,
    statuses: list[int] | None = None,
) -> dict[str, Any]:
    """The arq job: stream one slice to ``out``; return its count (and which worker ran it).

    Run again after its worker stopped, it goes on from the slice's checkpoint.
    """
    client: AsyncVoiceClient = ctx["itnio"]
    job = SliceJob(
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
        statuses=None if statuses is None else tuple(statuses),
    )
    files = _SliceFiles(Path(out))
    await asyncio.to_thread(files.prepare, job)
    summary = await run_job(client, job, files.partial, files.checkpoint)
    await asyncio.to_thread(files.commit)
    logger.info(
        "slice %d: %d records written to %s (%d before this run)",
        index,
        summary.records,
        out,
        summary.resumed_at,
    )
    return {
        "index": index,
        "count": summary.records,
        "path": out,
        "worker": os.getpid(),
        "resumed_at": summary.resumed_at,
    }


async def startup(ctx: dict[str, Any]) -> None:
    """arq's ``on_startup``: the one client of this worker process, shared by its jobs."""
    stack = contextlib.AsyncExitStack()
    ctx["itnio_stack"] = stack
    ctx["itnio"] = await stack.enter_async_context(open_client(ctx.get("itnio_settings")))


async def shutdown(ctx: dict[str, Any]) -> None:
    """arq's ``on_shutdown``: close the client (and the limiter's Redis connection)."""
    stack: contextlib.AsyncExitStack | None = ctx.get("itnio_stack")
    if stack is not None:
        await stack.aclose()


def worker_options(settings: JobSettings) -> dict[str, Any]:
    """The arq ``Worker`` arguments for these settings."""
    return {
        "functions": [export_shard],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url or DEFAULT_REDIS_URL),
        "queue_name": settings.queue,
        "max_jobs": settings.worker_jobs,
        "job_timeout": 6 * 3600,  # a slice of a big window takes a while at a low rate
        "ctx": {"itnio_settings": settings},
    }


class WorkerSettings:
    """For the arq command line: ``arq examples.sharded_job.WorkerSettings``."""

    _options: ClassVar[dict[str, Any]] = worker_options(JobSettings.from_env())
    functions = _options["functions"]
    on_startup = _options["on_startup"]
    on_shutdown = _options["on_shutdown"]
    redis_settings = _options["redis_settings"]
    queue_name = _options["queue_name"]
    max_jobs = _options["max_jobs"]
    job_timeout = _options["job_timeout"]
    ctx = _options["ctx"]


# -- the planner side --------------------------------------------------------------------


@attrs.frozen
class ShardResult:
    """What the job of one slice reported, next to what the plan expected."""

    shard: Shard
    count: int
    path: str
    worker: int
    #: Records its file held when the run that finished it began (0: one run did it all).
    resumed_at: int = 0

    @property
    def matches_plan(self) -> bool:
        return self.count == self.shard.estimated_count


def default_name(start: datetime, end: datetime, shards: int) -> str:
    return f"itnio-export-{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}-{shards}"


async def enqueue_shards(
    client: AsyncVoiceClient,
    pool: ArqRedis,
    start: datetime,
    end: datetime,
    shards: int,
    out_dir: Path,
    *,
    name: str | None = None,
    statuses: list[int] | None = None,
    queue: str = DEFAULT_QUEUE,
) -> list[tuple[Shard, Job]]:
    """Plan the slices and enqueue one ``export_shard`` job per slice."""
    name = name or default_name(start, end, shards)
    planned = await plan_shards(client, start, end, shards, statuses=statuses)
    logger.info("%d slices: %s", len(planned), ", ".join(str(s.estimated_count) for s in planned))
    jobs: list[tuple[Shard, Job]] = []
    for shard in planned:
        job_id = f"{name}:{shard.index}"
        out = out_dir / f"{name}-{shard.index:03d}.jsonl"
        job = await pool.enqueue_job(
            "export_shard",
            shard.index,
            shard.start.isoformat(),
            shard.end.isoformat(),
            str(out.resolve()),
            statuses,
            _job_id=job_id,
            _queue_name=queue,
        )
        if job is None:  # enqueued before, and arq still has it: wait for that one
            logger.info("job %s exists already; waiting for it", job_id)
            job = Job(job_id, pool, _queue_name=queue)
        jobs.append((shard, job))
    return jobs


async def collect(jobs: Sequence[tuple[Shard, Job]]) -> list[ShardResult]:
    """Wait for every slice's job; raise the first job's failure."""
    results: list[ShardResult] = []
    for shard, job in jobs:
        reply = await job.result(poll_delay=0.1)
        results.append(
            ShardResult(
                shard, reply["count"], reply["path"], reply["worker"], reply.get("resumed_at", 0)
            )
        )
    return results


async def _plan(args: argparse.Namespace) -> int:
    settings = JobSettings.from_env()
    if not settings.redis_url:
        raise ValueError("REDIS_URL is required: the queue and the shared limit live there")
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        async with open_client(settings) as client:
            jobs = await enqueue_shards(
                client,
                pool,
                args.start,
                args.end,
                args.shards,
                args.out_dir,
                name=args.name,
                statuses=args.status,
                queue=settings.queue,
            )
        async with asyncio.timeout(args.timeout):
            results = await collect(jobs)
    finally:
        await pool.aclose()
    for result in results:
        print(
            json.dumps(
                {
                    "index": result.shard.index,
                    "start": result.shard.start.isoformat(sep=" "),
                    "end": result.shard.end.isoformat(sep=" "),
                    "planned": result.shard.estimated_count,
                    "count": result.count,
                    "path": result.path,
                }
            )
        )
    total = sum(result.count for result in results)
    off = [result.shard.index for result in results if not result.matches_plan]
    print(f"{total} records in {len(results)} slices", file=sys.stderr)
    if off:
        # Tasks created or changed in a slice between planning and streaming it.
        print(f"slices {off} differ from the plan: the result changed meanwhile", file=sys.stderr)
    return 0


async def _worker(args: argparse.Namespace) -> int:
    worker = Worker(**worker_options(JobSettings.from_env()), burst=args.burst)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        # SIGINT or SIGTERM: arq cancelled its jobs (they are retried later) and its loop.
    finally:
        await worker.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Split an export across arq workers.")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="plan the slices, enqueue them, wait for them")
    plan.add_argument("--start", type=datetime.fromisoformat, required=True)
    plan.add_argument("--end", type=datetime.fromisoformat, required=True)
    plan.add_argument("--shards", type=int, required=True)
    plan.add_argument("--out-dir", type=Path, required=True)
    plan.add_argument("--name", help="the job's name (default: from the window and shards)")
    plan.add_argument("--status", type=int, action="append", help="keep these states")
    plan.add_argument("--timeout", type=float, help="seconds to wait for every slice")
    worker = commands.add_parser("worker", help="run a worker until stopped")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    run = _plan if args.command == "plan" else _worker
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
