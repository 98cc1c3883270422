"""One big export split across worker processes with saq, all under one shared rate limit.

Run it from the repository's root (``pip install "itnio-async[examples]"``; a Redis that
every process can reach)::

    export ITNIO_API_KEY=... ITNIO_API_SECRET=...
    export REDIS_URL=redis://127.0.0.1:6379/0 ITNIO_RATE_LIMIT=20

    # Workers: as many as you like, on any machines that reach the Redis and --out-dir.
    python -m examples.sharded_job worker    # or: saq examples.sharded_job.worker_settings

    # The job: split the window into slices of about equal task counts, enqueue one saq
    # job per slice, wait for them with progress, and check each slice's count.
    python -m examples.sharded_job plan --start "2024-01-01 00:00:00" \\
        --end "2024-06-30 23:59:59" --shards 8 --out-dir exports/

Or, without an account, the whole flow on one machine with one command (a Redis is all it
needs: ``redis-server``, or ``docker run -p 6379:6379 redis``)::

    REDIS_URL=redis://127.0.0.1:6379/0 python -m examples.sharded_job plan --demo --out-dir demo/

``--demo`` (or ``ITNIO_DEMO=1``) serves the fake vendor of ``itnio-async --demo`` (30,000
tasks over the 30 days before today, a few transient faults) on 127.0.0.1, starts
``--workers`` (2) worker processes that reach it over HTTP, plans its window (or
``--start``/``--end``) in ``--shards`` (4) slices on a queue of its own, waits with
progress, prints each slice's count and the total, and checks that every task of the window
was written once; then, as on Ctrl-C, it stops the workers (saq puts back what they ran)
and the server, and deletes its keys from Redis. All of its processes share the demo's 200
requests/s through the Redis limiter. Run it again after a Ctrl-C: the slices go on from
their checkpoints. ``worker`` has no demo of its own (the demo starts its workers).

How the work is split: ``plan_shards`` cuts the window into whole-second time slices that do
not overlap and together cover it (a task belongs to exactly one slice), with about the same
number of tasks in each, at a cost of ``2 * shards - 1`` tiny requests. Each saq job streams
its slice and writes it to ``OUT_DIR/<name>-<index>.jsonl``, then returns its count; the
planner compares the counts with the plan.

How a slice survives its worker: the job is ``examples/checkpointed_worker.py``'s
``run_job`` on the slice. It appends each page to ``<name>-<index>.jsonl.part`` and then
saves the output's length and the stream's cursor in a checkpoint file of that slice
beside it; the finished file is renamed into place and the checkpoint removed. Whenever
saq runs the job again, on any worker that shares the output directory, it goes on from
its slice's cursor with ``resume_from=``: nothing already written is fetched again, and
nothing is lost or repeated even if tasks changed meanwhile. saq runs it again when:

- the job fails (a vendor or network fault that outlasted the client's retries): after
  ``--retry-delay`` seconds, doubled on each further failure (with jitter, at most 5
  minutes), up to ``--attempts`` runs in all; then the planner reports the slice failed;
- its worker is stopped (SIGINT, SIGTERM): saq cancels the job and queues it again at once;
- its worker dies without a word (``kill -9``, a lost machine): while a job runs, it
  writes a heartbeat (with its record count) to Redis every quarter of
  ``ITNIO_JOB_HEARTBEAT`` seconds (5 at most); every live worker sweeps the running jobs
  every half of it, and a job whose heartbeat is older than ``ITNIO_JOB_HEARTBEAT`` is
  marked aborting, given 5 seconds to stop (saq's grace for a worker that is only slow),
  and queued again. (A worker's first sweep waits one interval: ``_ExportQueue`` says why.)

A checkpoint of another slice (an earlier plan under the same name) is dropped and the
slice starts afresh; a slice that finished is rewritten, never appended to, if its job
runs again. While a job writes its slice, it holds a lock (``flock``) on the partial file:
if a worker only looked dead and still runs, the new run fails at once and is retried
later instead of racing it (across machines, that needs a file system whose ``flock`` is
shared, or one worker per slice's directory).

How the limit is shared: each worker process makes one ``AsyncVoiceClient`` at startup
(saq's ``startup``; the jobs of that process share it through their context) with a
``RedisRateLimiter`` on ``REDIS_URL``: every process using that Redis and API key draws
from one bucket, so all the workers and the planner together keep to ``ITNIO_RATE_LIMIT``
requests per second, and a ``Retry-After`` seen by one pauses them all.

Job keys are ``<name>:<index>`` (``--name``, by default made from the window and the shard
count): planning the same job again while its jobs run waits for them instead of running
them twice, and a slice that saq still remembers as complete (for a day) is not run again.

Settings (environment): those of ``examples/settings.py``, which says what each means:
``ITNIO_API_KEY``, ``ITNIO_API_SECRET`` (required), ``ITNIO_BASE_URL``, ``ITNIO_RATE_LIMIT``
(requests per second for the account, all processes together; default 10),
``ITNIO_SERVER_TIMEZONE``, ``REDIS_URL`` (required here: the queue and the shared limit) and
``ITNIO_LIMIT_PREFIX`` (the limiter's Redis keys); and this job's own: ``ITNIO_QUEUE`` (the
saq queue, default ``itnio:exports``), ``ITNIO_WORKER_JOBS`` (slices one worker streams at
once, default 4) and ``ITNIO_JOB_HEARTBEAT`` (seconds without a heartbeat after which a
running slice's worker is taken for dead, default 60; give the planner and the workers the
same). Writing to a local ``--out-dir`` suits workers on one machine; across machines, use
a shared volume or upload each slice instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import urlsplit

import attrs
import redis
import redis.asyncio
from saq import Job as QueuedJob
from saq import Queue, Status, Worker
from saq.queue.redis import RedisQueue

from examples.checkpointed_worker import Checkpoint, CheckpointError, checkpoint_path_for, run_job
from examples.checkpointed_worker import Job as SliceJob
from examples.settings import ClientFactory, Settings, demo_window, open_client
from itnio_async import AsyncVoiceClient, Shard, plan_shards
from itnio_async.cli import DEMO_RATE_LIMIT, demo_vendor
from itnio_async.testing import FakeVendor, aserve

__all__ = [
    "JobSettings",
    "Progress",
    "ShardFailedError",
    "ShardResult",
    "collect",
    "enqueue_shards",
    "export_shard",
    "main",
    "worker_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_QUEUE: Final = "itnio:exports"
#: Slices one worker process streams at once, when ``ITNIO_WORKER_JOBS`` is not set.
DEFAULT_WORKER_JOBS: Final = 4
#: Seconds a running slice may go without a heartbeat, when ``ITNIO_JOB_HEARTBEAT`` is not
#: set; then a sweep takes its worker for dead and queues the slice again.
DEFAULT_HEARTBEAT: Final = 60
#: The longest time between two heartbeats of a slice, which carry its record count.
PROGRESS_EVERY: Final = 5.0
#: Runs of a slice's job (the first included) before the slice is reported failed.
DEFAULT_ATTEMPTS: Final = 5
#: Seconds before a failed slice runs again; doubled (with jitter) for each further failure.
DEFAULT_RETRY_DELAY: Final = 5.0
#: The longest wait before a failed slice runs again.
MAX_RETRY_DELAY: Final = 300.0
#: The longest a slice may run, heartbeat or not: a slice of a big window takes a while at
#: a low rate.
JOB_TIMEOUT: Final = 6 * 3600
#: Seconds saq keeps a finished job (its count, or its error) for a planner that asks again.
RESULT_TTL: Final = 24 * 3600
#: The default bound on the planner's wait for every slice.
DEFAULT_WAIT: Final = 24 * 3600.0
#: The name under which workers know the job's function.
FUNCTION: Final = "export_shard"
#: A job in one of these states is in the queue or running: a planner waits for it.
IN_FLIGHT: Final = frozenset({Status.NEW, Status.QUEUED, Status.ACTIVE, Status.ABORTING})


# -- settings: the client's, and the queue's ----------------------------------------------


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


@attrs.frozen
class JobSettings(Settings):
    """The client's settings (``examples/settings.py``), and the queue's."""

    queue: str = DEFAULT_QUEUE
    worker_jobs: int = DEFAULT_WORKER_JOBS
    heartbeat: int = DEFAULT_HEARTBEAT

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """Read the settings from ``env`` (default: the environment).

        Raises ``ValueError`` naming the variable when one is not a valid number.
        """
        return attrs.evolve(
            super().from_env(env),
            queue=env.get("ITNIO_QUEUE") or DEFAULT_QUEUE,
            worker_jobs=_positive_int(env, "ITNIO_WORKER_JOBS", DEFAULT_WORKER_JOBS),
            heartbeat=_positive_int(env, "ITNIO_JOB_HEARTBEAT", DEFAULT_HEARTBEAT),
        )

    def make_queue(self) -> Queue:
        """The saq queue on ``REDIS_URL`` (not connected yet).

        Raises ``ValueError`` when ``REDIS_URL`` is not set.
        """
        if not self.redis_url:
            raise ValueError("REDIS_URL is required: the queue and the shared limit live there")
        return _ExportQueue.from_url(self.redis_url, name=self.queue)


class _ExportQueue(RedisQueue):
    """saq's Redis queue, except that a worker's first sweep waits one sweep interval.

    saq sweeps the running jobs as soon as a worker starts, while that worker's first
    dequeues are in flight, and takes a job that a worker has moved to the running list
    but not yet marked running for abandoned (saq issue #277): started with slices
    waiting, a worker would run some of them twice. The slices' checkpoints keep the output
    exact even then, but the work is wasted. Later sweeps can still meet a dequeue in that
    window (a few milliseconds per sweep interval), which costs a slice's rerun, nothing
    more. Hand-written because saq has no setting for it.
    """

    _first_sweep_skipped = False

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        if not self._first_sweep_skipped:
            self._first_sweep_skipped = True
            return []
        return await super().sweep(lock, abort)


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

    def records(self) -> int:
        """Records the slice's checkpoint counts so far (0 before its first page)."""
        try:
            state = Checkpoint.load(self.checkpoint)
        except CheckpointError:
            return 0
        return 0 if state is None else state.records

    def commit(self) -> None:
        """Put the complete slice in place, then forget its checkpoint."""
        os.replace(self.partial, self.path)
        self.checkpoint.unlink()


async def _heartbeat(job: QueuedJob, files: _SliceFiles, planned: int | None) -> None:
    """Tell saq, every quarter of the job's heartbeat (at least every ``PROGRESS_EVERY``
    seconds), that the slice runs and how far it is.

    Runs until cancelled. Without a beat for ``job.heartbeat`` seconds, a sweep on another
    worker takes this one for dead and runs the slice again; a beat that cannot reach Redis
    is logged and tried again (the shared limiter, on the same Redis, stops the job if that
    lasts).
    """
    interval = min(job.heartbeat / 4, PROGRESS_EVERY) if job.heartbeat else PROGRESS_EVERY
    while True:
        records = await asyncio.to_thread(files.records)
        progress = min(records / planned, 1.0) if planned else 0.0
        try:
            await job.update(progress=progress, meta={"records": records, "worker": os.getpid()})
        except (redis.RedisError, OSError) as exc:
            logger.warning("heartbeat of %s failed: %r", job.key, exc)
        await asyncio.sleep(interval)


async def export_shard(
    ctx: Mapping[str, Any],
    index: int,
    start: str,
    end: str,
    out: str,
    statuses: list[int] | None = None,
    planned: int | None = None,
) -> dict[str, Any]:
    """The saq job: stream one slice to ``out``; return its count (and which worker ran it).

    ``ctx``: saq's job context, with the worker's client under ``"itnio"`` and the running
    ``saq.Job`` under ``"job"`` (without one, as in a test, no heartbeat is sent).
    ``index``: the slice's number; ``start``, ``end``: its window (ISO times, inclusive);
    ``out``: the finished file's path; ``statuses``: the states to keep (default all);
    ``planned``: the plan's count for the slice, for progress (default: none reported).

    Returns ``{"index", "count", "path", "worker", "resumed_at"}``: ``count`` records are
    in ``path``, ``resumed_at`` of them written by earlier runs. Run again after a failure
    or its worker's end, it goes on from the slice's checkpoint. Raises what the stream
    raises (an ``ItnioError``), ``CheckpointError`` for a checkpoint that does not fit its
    file, and ``OutputBusyError`` while another run still writes the slice.
    """
    client: AsyncVoiceClient = ctx["itnio"]
    job = SliceJob(
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
        statuses=None if statuses is None else tuple(statuses),
    )
    files = _SliceFiles(Path(out))
    await asyncio.to_thread(files.prepare, job)
    queued: QueuedJob | None = ctx.get("job")
    beat = None if queued is None else asyncio.create_task(_heartbeat(queued, files, planned))
    try:
        summary = await run_job(client, job, files.partial, files.checkpoint)
    finally:
        if beat is not None:
            beat.cancel()
            await asyncio.wait([beat])  # never raises: this task's own cancellation stays
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


@attrs.define
class _Lifecycle:
    """saq's ``startup`` and ``shutdown``: the one client of a worker process, for its jobs."""

    settings: JobSettings
    client: ClientFactory
    stack: contextlib.AsyncExitStack = attrs.Factory(contextlib.AsyncExitStack)

    async def startup(self, ctx: dict[str, Any]) -> None:
        ctx["itnio"] = await self.stack.enter_async_context(self.client())
        logger.info("worker %d ready on queue %s", os.getpid(), self.settings.queue)

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        """Close the client (and the limiter's Redis connection)."""
        await self.stack.aclose()


def worker_settings(
    settings: JobSettings | None = None, *, client: ClientFactory | None = None
) -> dict[str, Any]:
    """The ``saq.Worker`` arguments of a worker of these settings.

    ``settings``: default from the environment. ``client``: makes the worker's one client
    (default: ``open_client(settings)``, with the shared limiter). Also what saq's command
    line reads: ``saq examples.sharded_job.worker_settings``.

    Raises ``ValueError`` when ``REDIS_URL`` is not set.
    """
    settings = settings if settings is not None else JobSettings.from_env()
    lifecycle = _Lifecycle(settings, client or (lambda: open_client(settings)))
    return {
        "queue": settings.make_queue(),
        "functions": [(FUNCTION, export_shard)],
        "concurrency": settings.worker_jobs,
        "startup": lifecycle.startup,
        "shutdown": lifecycle.shutdown,
        # Sweeping twice per heartbeat finds a dead worker's slice within 1.5 heartbeats.
        "timers": {"sweep": max(1, settings.heartbeat // 2)},
        # Which process runs a slice, as saq's job and worker records show it.
        "id": f"{socket.gethostname()}-{os.getpid()}",
    }


# -- the planner side --------------------------------------------------------------------


class ShardFailedError(Exception):
    """A slice's job failed for good (every attempt), or saq lost it; the message says why."""

    def __init__(self, shard: Shard, message: str) -> None:
        super().__init__(message)
        self.shard = shard


@attrs.frozen
class ShardResult:
    """What the job of one slice reported, next to what the plan expected."""

    shard: Shard
    count: int
    path: str
    worker: int
    #: Records its file held when the run that finished it began (0: one run did it all).
    resumed_at: int = 0
    #: Runs of the job (1: it never had to run again).
    attempts: int = 1

    @property
    def matches_plan(self) -> bool:
        """Whether the slice held as many records as the plan counted (tasks changed if not)."""
        return self.count == self.shard.estimated_count


@attrs.frozen
class Progress:
    """How far the slices are, as their heartbeats and results tell."""

    records: int
    planned: int
    done: int
    slices: int


def default_name(start: datetime, end: datetime, shards: int) -> str:
    """The job's name when ``--name`` is not given: from the window and the shard count."""
    return f"itnio-export-{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}-{shards}"


def _same_slice(job: QueuedJob, arguments: Mapping[str, Any]) -> bool:
    kwargs = job.kwargs or {}
    return job.function == FUNCTION and all(
        kwargs.get(name) == arguments[name] for name in ("start", "end", "out", "statuses")
    )


async def enqueue_shards(
    client: AsyncVoiceClient,
    queue: Queue,
    start: datetime,
    end: datetime,
    shards: int,
    out_dir: Path,
    *,
    name: str | None = None,
    statuses: list[int] | None = None,
    heartbeat: int = DEFAULT_HEARTBEAT,
    attempts: int = DEFAULT_ATTEMPTS,
    retry_delay: float = DEFAULT_RETRY_DELAY,
) -> list[tuple[Shard, str]]:
    """Plan the slices and enqueue one ``export_shard`` job per slice; return their keys.

    ``client``: makes the plan's requests; ``queue``: a connected saq queue; ``start``,
    ``end``, ``shards``, ``statuses``: as ``plan_shards`` takes them; ``out_dir``: where
    the slices are written (every worker must reach it). ``name``: the job keys' prefix
    (default from the window and ``shards``). ``heartbeat``: seconds without a heartbeat
    after which a running slice's worker is taken for dead. ``attempts``: runs of a slice
    before it is given up (at least 1); ``retry_delay``: seconds before a failed slice runs
    again, doubled with jitter for each further failure, at most ``MAX_RETRY_DELAY``.

    A slice whose job runs already is waited for, not enqueued twice; one that saq keeps
    as complete is not run again. Raises ``ValueError`` for a bad argument or when a job
    under this name still runs another window (choose another ``name``), and what
    ``plan_shards`` raises.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    if heartbeat < 1:
        raise ValueError(f"heartbeat must be at least 1 second, not {heartbeat}")
    if retry_delay < 0:
        raise ValueError(f"retry_delay must not be negative, not {retry_delay}")
    name = name or default_name(start, end, shards)
    planned = await plan_shards(client, start, end, shards, statuses=statuses)
    logger.info("%d slices: %s", len(planned), ", ".join(str(s.estimated_count) for s in planned))
    jobs: list[tuple[Shard, str]] = []
    for shard in planned:
        key = f"{name}:{shard.index}"
        out = out_dir / f"{name}-{shard.index:03d}.jsonl"
        arguments = {
            "index": shard.index,
            "start": shard.start.isoformat(),
            "end": shard.end.isoformat(),
            "out": str(out.resolve()),
            "statuses": statuses,
            "planned": shard.estimated_count,
        }
        existing = await queue.job(key)
        if existing is not None and existing.status in IN_FLIGHT | {Status.COMPLETE}:
            if _same_slice(existing, arguments):
                logger.info("job %s is %s already: waiting for it", key, existing.status.value)
                jobs.append((shard, key))
                continue
            if existing.status in IN_FLIGHT:
                raise ValueError(
                    f"job {key} still runs another slice ({existing.kwargs}); choose another name"
                )
        job = QueuedJob(
            FUNCTION,
            kwargs=arguments,
            key=key,
            timeout=JOB_TIMEOUT,
            heartbeat=heartbeat,
            retries=attempts,
            retry_delay=retry_delay,
            retry_backoff=MAX_RETRY_DELAY,
            ttl=RESULT_TTL,
        )
        if await queue.enqueue(job) is None:  # enqueued meanwhile by another planner
            logger.info("job %s exists already: waiting for it", key)
        jobs.append((shard, key))
    return jobs


def _error_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return lines[-1] if lines else "no error recorded"


async def collect(
    queue: Queue,
    jobs: Sequence[tuple[Shard, str]],
    *,
    progress: Callable[[Progress], None] | None = None,
    poll_interval: float = 0.5,
) -> list[ShardResult]:
    """Wait for every slice's job; return their results in the plan's order.

    ``queue``: the connected saq queue; ``jobs``: what ``enqueue_shards`` returned;
    ``progress``: called with the records written so far whenever they change (default:
    none); ``poll_interval``: seconds between two looks at the jobs (one ``MGET``).

    Waits as long as the jobs take: bound it with ``asyncio.timeout``. Raises
    ``ShardFailedError`` for the first slice that failed for good or that saq no longer
    knows (deleted, or kept past its time).
    """
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, not {poll_interval}")
    keys = [key for _, key in jobs]
    planned = sum(shard.estimated_count for shard, _ in jobs)
    last: Progress | None = None
    while True:
        states = await queue.jobs(keys)
        done = 0
        records = 0
        for (shard, key), job in zip(jobs, states, strict=True):
            if job is None:
                raise ShardFailedError(shard, f"slice {shard.index}: saq has no job {key}")
            if job.status in (Status.FAILED, Status.ABORTED):
                raise ShardFailedError(
                    shard,
                    f"slice {shard.index} {job.status.value} after {job.attempts} attempts: "
                    f"{_error_line(job.error)}",
                )
            if job.status is Status.COMPLETE:
                done += 1
                records += int(job.result["count"])
            else:
                records += int(job.meta.get("records", 0))
        now = Progress(records, planned, done, len(jobs))
        if progress is not None and now != last:
            progress(now)
        last = now
        if done == len(jobs):
            break
        await asyncio.sleep(poll_interval)
    results = []
    for (shard, _), job in zip(jobs, states, strict=True):
        assert job is not None
        reply = job.result
        results.append(
            ShardResult(
                shard,
                int(reply["count"]),
                str(reply["path"]),
                int(reply["worker"]),
                int(reply.get("resumed_at", 0)),
                job.attempts,
            )
        )
    return results


class _ProgressLog:
    """Logs the planner's progress at most every few seconds, and always the last."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.logged = -float("inf")

    def __call__(self, now: Progress) -> None:
        moment = time.monotonic()
        if now.done < now.slices and moment - self.logged < self.every:
            return
        self.logged = moment
        logger.info(
            "%d of %d records, %d of %d slices done",
            now.records,
            now.planned,
            now.done,
            now.slices,
        )


class _WorkerExitedError(Exception):
    """A worker process that the demo started ended before the slices were done."""


async def _enqueue_and_collect(
    settings: JobSettings,
    args: argparse.Namespace,
    window: tuple[datetime, datetime, int],
    workers: Sequence[Process] = (),
) -> list[ShardResult]:
    """Plan and enqueue the slices, then wait for them (at most ``args.timeout`` seconds)
    with progress; if one of ``workers`` ends meanwhile, raise ``_WorkerExitedError``."""
    start, end, shards = window
    queue = settings.make_queue()
    await queue.connect()
    try:
        async with open_client(settings) as client:
            jobs = await enqueue_shards(
                client,
                queue,
                start,
                end,
                shards,
                args.out_dir,
                name=args.name,
                statuses=args.status,
                heartbeat=settings.heartbeat,
                attempts=args.attempts,
                retry_delay=args.retry_delay,
            )
        async with asyncio.timeout(args.timeout):
            if not workers:
                return await collect(queue, jobs, progress=_ProgressLog())
            waiting = asyncio.create_task(collect(queue, jobs, progress=_ProgressLog()))
            ended = [asyncio.create_task(worker.wait()) for worker in workers]
            try:
                await asyncio.wait([waiting, *ended], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (waiting, *ended):
                    task.cancel()
                await asyncio.wait([waiting, *ended])
            if waiting.cancelled():  # a worker ended first
                gone = next(worker for worker in workers if worker.returncode is not None)
                raise _WorkerExitedError(
                    f"worker {gone.pid} ended (exit status {gone.returncode}) "
                    "before the slices were done"
                )
            return waiting.result()
    finally:
        await queue.disconnect()


def _report(results: Sequence[ShardResult]) -> int:
    """Print each slice's result as a JSON line, and the total on stderr; return the total."""
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
                    "attempts": result.attempts,
                    "worker": result.worker,
                }
            ),
            flush=True,
        )
    total = sum(result.count for result in results)
    off = [result.shard.index for result in results if not result.matches_plan]
    print(f"{total} records in {len(results)} slices", file=sys.stderr)
    if off:
        # Tasks created or changed in a slice between planning and streaming it.
        print(f"slices {off} differ from the plan: the result changed meanwhile", file=sys.stderr)
    return total


async def _plan(args: argparse.Namespace, settings: JobSettings) -> int:
    try:
        results = await _enqueue_and_collect(settings, args, (args.start, args.end, args.shards))
    except ShardFailedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _report(results)
    return 0


# -- the demo: the whole flow on this machine, against the fake vendor --------------------


#: Worker processes the demo starts, when ``--workers`` is not given.
DEMO_WORKERS: Final = 2
#: Slices of the demo's window, when ``--shards`` is not given.
DEMO_SHARDS: Final = 4
#: The bound on the demo's wait for its slices, when ``--timeout`` is not given.
DEMO_WAIT: Final = 600.0
#: Seconds a stopped worker process gets to put its slices back before it is killed.
STOP_TIMEOUT: Final = 15.0
#: The repository's root, where ``python -m examples.sharded_job`` finds its package.
ROOT: Final = Path(__file__).resolve().parent.parent
#: This module, as ``python -m`` runs it.
MODULE: Final = "examples.sharded_job"
#: What to run when the demo has no Redis.
DEMO_COMMAND: Final = (
    "REDIS_URL=redis://127.0.0.1:6379/0 python -m examples.sharded_job plan --demo --out-dir DIR"
)


def _worker_environment(settings: JobSettings) -> dict[str, str]:
    """A demo worker's environment: this one without its account's variables, with the
    demo's (the fake's URL and key, the demo's queue, limit and Redis keys)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ITNIO_") and name != "REDIS_URL"
    }
    env.update(
        ITNIO_API_KEY=settings.api_key or "",
        ITNIO_API_SECRET=settings.api_secret or "",
        ITNIO_BASE_URL=settings.base_url or "",
        ITNIO_RATE_LIMIT=f"{settings.rate_limit:g}",
        REDIS_URL=settings.redis_url or "",
        ITNIO_LIMIT_PREFIX=settings.limit_prefix or "",
        ITNIO_QUEUE=settings.queue,
        ITNIO_WORKER_JOBS=str(settings.worker_jobs),
        ITNIO_JOB_HEARTBEAT=str(settings.heartbeat),
    )
    return env


async def _stop(worker: Process) -> None:
    """Stop a worker as a deploy would (SIGTERM: saq puts its running slices back), and
    kill it if it has not ended within ``STOP_TIMEOUT`` seconds; wait for it either way."""
    if worker.returncode is None:
        worker.terminate()
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            await worker.wait()
    except TimeoutError:
        logger.warning("worker %d did not stop within %g s: killed", worker.pid, STOP_TIMEOUT)
        worker.kill()
        await worker.wait()


async def _forget(redis_url: str, namespace: str) -> None:
    """Delete the demo's keys (its queue's jobs and the limiter's bucket) from Redis."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{namespace}*")]
        if keys:
            await client.delete(*keys)
    except (redis.RedisError, OSError) as exc:
        logger.warning("could not delete the demo's keys (%s*) from Redis: %r", namespace, exc)
    finally:
        await client.aclose()


async def _demo(args: argparse.Namespace, settings: JobSettings) -> int:
    """Serve the demo's fake vendor on loopback, start ``args.workers`` worker processes on
    it, plan and wait as ``plan`` does, and check the total against the fake; then stop the
    workers and the server, and delete the demo's Redis keys (also when cancelled)."""
    assert settings.redis_url is not None  # main checked it
    fake = demo_vendor()
    start = args.start or demo_window()[0]
    end = args.end or demo_window()[1]
    shards = args.shards or DEMO_SHARDS
    # A queue and limiter keys of this run alone: no other worker on this Redis takes the
    # demo's slices to an account, and no worker of the demo takes anyone else's.
    namespace = f"itnio-demo-{uuid.uuid4().hex[:12]}"
    expected = fake.expected(start, end)
    try:
        results = await _demo_run(args, settings, fake, (start, end, shards), namespace)
    except (ShardFailedError, _WorkerExitedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"error: the slices were not done within {args.timeout:g} s", file=sys.stderr)
        return 1
    finally:
        await _forget(settings.redis_url, namespace)
    total = _report(results)
    written = await asyncio.to_thread(_job_ids, [Path(result.path) for result in results])
    if total != len(expected) or sorted(written) != sorted(t.job_id for t in expected):
        print(
            f"error: the slices hold {len(written)} records ({len(set(written))} tasks), "
            f"the fake vendor {len(expected)}",
            file=sys.stderr,
        )
        return 1
    print(f"the fake vendor holds {len(expected)} tasks: each is written once", file=sys.stderr)
    return 0


async def _demo_run(
    args: argparse.Namespace,
    settings: JobSettings,
    fake: FakeVendor,
    window: tuple[datetime, datetime, int],
    namespace: str,
) -> list[ShardResult]:
    """The demo's servers and processes around ``_enqueue_and_collect``; all of them are
    stopped on the way out, however it ends."""
    start, end, _ = window
    async with aserve(fake) as url:
        logger.info(
            "demo: the fake vendor holds %d tasks from %s to %s; serving it at %s",
            len(fake.expected(start, end)),
            start,
            end,
            url,
        )
        jobs = settings.worker_jobs if "ITNIO_WORKER_JOBS" in os.environ else None
        demo = attrs.evolve(
            settings,
            # Unless told otherwise, each worker takes its share of the slices.
            worker_jobs=jobs or -(-window[2] // args.workers),
            api_key=fake.api_key,
            api_secret=fake.api_secret,
            base_url=url,
            rate_limit=DEMO_RATE_LIMIT,
            limit_prefix=namespace,
            queue=namespace,
            demo=False,
        )
        env = _worker_environment(demo)
        workers: list[Process] = []
        try:
            for _ in range(args.workers):
                workers.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        MODULE,
                        "worker",
                        cwd=ROOT,
                        env=env,
                        stdin=asyncio.subprocess.DEVNULL,
                    )
                )
            logger.info(
                "demo: %d workers started (%s), %g requests/s for all processes together",
                len(workers),
                ", ".join(str(worker.pid) for worker in workers),
                DEMO_RATE_LIMIT,
            )
            return await _enqueue_and_collect(demo, args, window, workers)
        finally:
            await asyncio.gather(*(_stop(worker) for worker in workers))


def _job_ids(paths: Sequence[Path]) -> list[int]:
    """The ``job_id`` of every record of these JSON Lines files, in their order."""
    ids: list[int] = []
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            ids += [json.loads(line)["job_id"] for line in lines]
    return ids


async def _until_signalled(run: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``run()``; SIGINT or SIGTERM cancel it (its ``finally`` blocks stop what it
    started) and the exit status is 128 + the signal's number."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(run())
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise
        logger.warning("stopped by signal %d: the workers and the server are stopped", received[0])
        return 128 + received[0]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _worker(args: argparse.Namespace, settings: JobSettings) -> int:
    options = worker_settings(settings)
    if args.burst:
        options |= {"burst": True, "dequeue_timeout": 1.0}
    queue: Queue = options["queue"]
    worker = Worker(**options)
    await queue.connect()
    try:
        # Until SIGINT or SIGTERM: saq then cancels the running slices and queues them again.
        await worker.start()
    finally:
        await queue.disconnect()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Split an export across saq workers.")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="plan the slices, enqueue them, wait for them")
    plan.add_argument(
        "--start", type=datetime.fromisoformat, help="the window's start (--demo: the demo's)"
    )
    plan.add_argument(
        "--end", type=datetime.fromisoformat, help="the window's end (--demo: the demo's)"
    )
    plan.add_argument("--shards", type=int, help=f"slices (--demo: {DEMO_SHARDS})")
    plan.add_argument("--out-dir", type=Path, required=True)
    plan.add_argument(
        "--demo",
        action="store_true",
        help="no account: serve the fake vendor of itnio-async --demo on 127.0.0.1, start "
        "--workers worker processes on it, plan its window, wait, check the total, stop "
        "them (or ITNIO_DEMO=1; needs REDIS_URL)",
    )
    plan.add_argument(
        "--workers", type=int, help=f"worker processes the demo starts ({DEMO_WORKERS})"
    )
    plan.add_argument("--name", help="the job's name (default: from the window and shards)")
    plan.add_argument("--status", type=int, action="append", help="keep these states")
    plan.add_argument(
        "--attempts", type=int, default=DEFAULT_ATTEMPTS, help="runs of a slice before it fails"
    )
    plan.add_argument(
        "--retry-delay",
        type=float,
        default=DEFAULT_RETRY_DELAY,
        help="seconds before a failed slice runs again (doubled each time)",
    )
    plan.add_argument(
        "--timeout",
        type=float,
        help=f"seconds to wait for every slice (default {DEFAULT_WAIT:g}; {DEMO_WAIT:g} "
        "with --demo)",
    )
    worker = commands.add_parser("worker", help="run a worker until stopped")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    return parser


def _refusal(args: argparse.Namespace, settings: JobSettings) -> str | None:
    """Why the command cannot run with these settings, in one line; ``None`` if it can."""
    demo = settings.demo
    if args.command == "worker" and demo:
        return f"the demo starts workers of its own (ITNIO_DEMO=1 is for plan): {DEMO_COMMAND}"
    if not settings.redis_url:
        if demo:
            return (
                "the demo needs a Redis for the queue and the shared limit: start one "
                f"(redis-server, or docker run -p 6379:6379 redis), then run: {DEMO_COMMAND}"
            )
        return (
            "REDIS_URL is required: the queue and the shared limit live there "
            f"(or try the demo: {DEMO_COMMAND})"
        )
    if args.command == "worker":
        return None
    if demo:
        if args.workers is not None and args.workers < 1:
            return f"--workers must be at least 1, not {args.workers}"
        return None
    if args.workers is not None:
        return f"--workers goes with --demo (else start workers: python -m {MODULE} worker)"
    if args.start is None or args.end is None or args.shards is None:
        return "--start, --end and --shards are required (or try the demo: --demo)"
    if not (settings.api_key and settings.api_secret):
        return "set ITNIO_API_KEY and ITNIO_API_SECRET for your account (or try the demo: --demo)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``plan`` or ``worker`` with ``argv`` (default: the command line); the exit status.

    ``plan --demo`` (or ``ITNIO_DEMO=1``) runs the whole flow against the fake vendor. A
    wrong variable or a missing one (``REDIS_URL``, the account's without the demo) is one
    line on stderr and exit status 2; a slice that failed for good, 1; SIGINT or SIGTERM
    stop what the command started and exit with 128 + the signal's number.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    env: Mapping[str, str] = os.environ
    if getattr(args, "demo", False):
        env = {**env, "ITNIO_DEMO": "1"}  # the demo ignores the account's variables
    try:
        settings = JobSettings.from_env(env)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    refusal = _refusal(args, settings)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    if args.command == "worker":
        return asyncio.run(_worker(args, settings))
    if settings.demo:
        if not _answers(settings.redis_url):
            # Its host and port alone: a URL may hold a password.
            where = urlsplit(settings.redis_url or "")
            print(
                f"error: no Redis answers at REDIS_URL ({where.hostname}:{where.port or 6379}): "
                "start one (redis-server, or docker run -p 6379:6379 redis)",
                file=sys.stderr,
            )
            return 2
        args.workers = args.workers or DEMO_WORKERS
        args.timeout = DEMO_WAIT if args.timeout is None else args.timeout
        return asyncio.run(_until_signalled(lambda: _demo(args, settings)))
    args.timeout = DEFAULT_WAIT if args.timeout is None else args.timeout
    return asyncio.run(_plan(args, settings))


def _answers(url: str | None) -> bool:
    """Whether a Redis answers PING at ``url`` within a couple of seconds."""
    if not url:
        return False
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
