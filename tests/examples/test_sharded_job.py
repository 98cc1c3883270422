"""``examples/sharded_job.py``: slices as saq jobs on a real Redis, in this process and on
worker processes, one of them killed mid-slice; one shared limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from asyncio.subprocess import DEVNULL, PIPE, Process
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from saq import Queue, Status, Worker

from examples import checkpointed_worker, sharded_job
from examples.settings import open_client
from itnio_async import GroupCallStatus, InvalidParameterError, plan_shards
from itnio_async.cli import demo_vendor, demo_window
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
        # The result changes under the filter; then saq runs the job again.
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


# -- saq in this process: a failing slice retried by the engine ---------------------------


@contextlib.asynccontextmanager
async def queue_of(settings: sharded_job.JobSettings) -> AsyncIterator[Queue]:
    queue = settings.make_queue()
    await queue.connect()
    try:
        yield queue
    finally:
        await queue.disconnect()


@contextlib.asynccontextmanager
async def worker_in_process(
    settings: sharded_job.JobSettings, fake: FakeVendor
) -> AsyncIterator[Worker]:
    """A saq worker of the example in this event loop, its client on the fake in-process."""
    options = sharded_job.worker_settings(settings, client=lambda: fake_client(fake))
    worker = Worker(**options)
    worker.SIGNALS = []  # the test runner keeps its own signal handlers
    await options["queue"].connect()
    task = asyncio.create_task(worker.start())
    try:
        yield worker
    finally:
        await worker.stop()
        async with asyncio.timeout(TIMEOUT):
            await task
        await options["queue"].disconnect()


async def test_a_failing_slice_is_retried_by_saq_and_goes_on_from_its_cursor(
    redis_url: str, redis_name: str, tmp_path: Path
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(2_000, seed=55))
    settings = sharded_job.JobSettings(KEY, SECRET, queue=redis_name, redis_url=redis_url)
    reports: list[sharded_job.Progress] = []
    async with (
        queue_of(settings) as queue,
        fake_client(fake, rate_limit=None) as client,
        worker_in_process(settings, fake),
    ):
        # One page of one slice fails for good (a code the client does not retry), once
        # each slice has written a few pages: its job fails, and saq runs it again.
        fake.faults = FaultPlan(by_request={3 + 15: Fault.code(-22)})  # the plan takes 3
        jobs = await sharded_job.enqueue_shards(
            client, queue, START, END, 2, tmp_path, name=redis_name, retry_delay=0
        )
        async with asyncio.timeout(TIMEOUT):
            results = await sharded_job.collect(
                queue, jobs, progress=reports.append, poll_interval=0.05
            )
        # Planned again under the same name: the complete slices are not run again.
        before = fake.stats.requests
        again = await sharded_job.enqueue_shards(
            client, queue, START, END, 2, tmp_path, name=redis_name
        )
        assert again == jobs
        assert await sharded_job.collect(queue, again) == results
        assert fake.stats.requests - before == 3  # the plan's own requests, nothing more

    retried = [result for result in results if result.attempts > 1]
    assert len(retried) == 1, results
    assert retried[0].attempts == 2
    assert 0 < retried[0].resumed_at < retried[0].count  # went on from its cursor
    assert all(result.resumed_at == 0 for result in results if result.attempts == 1)
    seen: list[int] = []
    for result in results:
        expected = [task_json(task) for task in fake.expected(result.shard.start, result.shard.end)]
        assert await asyncio.to_thread(read_jsonl, result.path) == expected
        assert result.count == result.shard.estimated_count
        seen += [record["job_id"] for record in expected]
    assert len(seen) == len(set(seen)) == 2_000
    # Progress went up to every record, and said so at the end.
    assert [report.records for report in reports] == sorted(report.records for report in reports)
    assert reports[-1] == sharded_job.Progress(2_000, 2_000, 2, 2)


async def test_a_slice_that_fails_every_attempt_is_reported(
    redis_url: str, redis_name: str, tmp_path: Path
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(300, seed=56))
    settings = sharded_job.JobSettings(KEY, SECRET, queue=redis_name, redis_url=redis_url)
    async with (
        queue_of(settings) as queue,
        fake_client(fake, rate_limit=None) as client,
        worker_in_process(settings, fake),
    ):
        # The plan of one slice takes 1 request; then both runs of the slice fail.
        fake.faults = FaultPlan(by_request={2: Fault.code(-22), 3: Fault.code(-22)})
        jobs = await sharded_job.enqueue_shards(
            client, queue, START, END, 1, tmp_path, name=redis_name, attempts=2, retry_delay=0
        )
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(sharded_job.ShardFailedError, match="failed after 2 attempts") as e:
                await sharded_job.collect(queue, jobs, poll_interval=0.05)
    assert e.value.shard == jobs[0][0]
    assert "InvalidParameterError" in str(e.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 0}, "attempts"),
        ({"heartbeat": 0}, "heartbeat"),
        ({"retry_delay": -1.0}, "retry_delay"),
    ],
)
async def test_bad_job_options_are_refused_before_any_request(
    options: dict[str, Any], message: str, tmp_path: Path
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(10, seed=57))
    async with fake_client(fake, rate_limit=None) as client:
        with pytest.raises(ValueError, match=message):
            await sharded_job.enqueue_shards(
                client,
                None,
                START,
                END,
                2,
                tmp_path,
                **options,  # type: ignore[arg-type]
            )
    assert fake.stats.requests == 0


def test_bad_job_settings_name_their_variable() -> None:
    with pytest.raises(ValueError, match="ITNIO_JOB_HEARTBEAT"):
        sharded_job.JobSettings.from_env({"ITNIO_JOB_HEARTBEAT": "soon"})
    with pytest.raises(ValueError, match="ITNIO_WORKER_JOBS"):
        sharded_job.JobSettings.from_env({"ITNIO_WORKER_JOBS": "0"})
    with pytest.raises(ValueError, match="REDIS_URL"):
        sharded_job.JobSettings.from_env({}).make_queue()


# -- worker processes: one killed mid-slice, one stopped ----------------------------------


def worker_env(url: str, redis_url: str, redis_name: str, **more: str) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("ITNIO_", "REDIS_"))
    }
    env.update(
        ITNIO_API_KEY=KEY,
        ITNIO_API_SECRET=SECRET,
        ITNIO_BASE_URL=url,
        ITNIO_RATE_LIMIT=str(RATE),
        REDIS_URL=redis_url,
        ITNIO_LIMIT_PREFIX=redis_name,
        ITNIO_QUEUE=redis_name,
        **more,
    )
    return env


async def start_worker(env: dict[str, str], lines: list[str]) -> tuple[Process, asyncio.Task[None]]:
    """A worker process, its log lines collected into ``lines``; returns once it is ready."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", sharded_job.__name__, "worker", cwd=EXAMPLES_ROOT, env=env,
        stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE,
    )  # fmt: skip
    reader = asyncio.create_task(collect_lines(worker, lines))

    def ready() -> bool:
        assert worker.returncode is None, "".join(lines)
        return any(f"worker {worker.pid} ready" in line for line in lines)

    await eventually(ready, "the worker to start")
    return worker, reader


async def stop_worker(worker: Process, reader: asyncio.Task[None]) -> int:
    if worker.returncode is None:
        worker.terminate()
    async with asyncio.timeout(TIMEOUT):
        code = await worker.wait()
        await reader
    return code


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll the async ``check()`` until it is true, for at most ``TIMEOUT`` seconds."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not await check():  # noqa: ASYNC110 - bounded polling of Redis
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def saq_worker_id(process: Process) -> str:
    return f"{socket.gethostname()}-{process.pid}"


async def test_a_slice_of_a_killed_worker_is_swept_and_goes_on_from_its_cursor(
    redis_url: str, redis_name: str, tmp_path: Path
) -> None:
    # 6,000 tasks: four slices of fifteen pages each, at 20 requests/s for all processes.
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(6_000, seed=51), latency=0.005)
    with serve(fake) as url:
        # One slice at a time per worker; a worker silent for 2 s is taken for dead.
        env = worker_env(url, redis_url, redis_name, ITNIO_WORKER_JOBS="1", ITNIO_JOB_HEARTBEAT="2")
        settings = sharded_job.JobSettings.from_env(env)
        logs: list[list[str]] = [[], []]
        workers = [await start_worker(env, lines) for lines in logs]
        (victim, _), (survivor, _) = workers
        try:
            async with queue_of(settings) as queue:
                # The planner: in this process, with a client of its own under the same limit.
                async with open_client(settings) as client:
                    jobs = await sharded_job.enqueue_shards(
                        client, queue, START, END, 4, tmp_path, name=redis_name,
                        heartbeat=settings.heartbeat, retry_delay=0,
                    )  # fmt: skip
                keys = [key for _, key in jobs]
                checkpoints = [
                    tmp_path / f"{redis_name}-{i:03d}.jsonl.part.checkpoint" for i in range(4)
                ]
                running: dict[str, int] = {}

                async def both_mid_slice() -> bool:
                    running.clear()
                    for index, job in enumerate(await queue.jobs(keys)):
                        assert job is not None
                        written = checkpointed(checkpoints[index])
                        # A page or more written, and three or more to go.
                        if (
                            job.status is Status.ACTIVE
                            and 0 < written < job.kwargs["planned"] - 300
                        ):
                            running[job.worker_id or ""] = index
                    return {saq_worker_id(victim), saq_worker_id(survivor)} <= running.keys()

                # Each worker is in the middle of a slice: one is killed outright.
                await until(both_mid_slice, "both workers to be mid-slice")
                killed = running[saq_worker_id(victim)]
                victim.kill()
                await victim.wait()
                state = checkpointed_worker.Checkpoint.load(checkpoints[killed])
                assert state is not None
                assert not state.done
                assert 0 < state.records < jobs[killed][0].estimated_count
                try:
                    # Typically 15 s; the bound allows for a machine crowded by other work.
                    async with asyncio.timeout(TIMEOUT * 5):
                        results = await sharded_job.collect(queue, jobs, poll_interval=0.1)
                except TimeoutError:
                    states = [
                        (job.status, job.attempts, job.meta) if job else None
                        for job in await queue.jobs(keys)
                    ]
                    raise AssertionError(f"{states}\n{''.join(logs[1])}") from None
        finally:
            codes = [await stop_worker(*worker) for worker in workers]

    assert codes == [-9, 0], logs  # the survivor stopped cleanly by SIGTERM
    # The killed worker's slice was swept, run again on the survivor, from its cursor.
    assert any("Sweeping job" in line for line in logs[1]), logs[1]
    rerun = results[killed]
    assert rerun.worker == survivor.pid
    assert rerun.attempts >= 2
    assert rerun.resumed_at == state.records
    seen: list[int] = []
    for result in results:
        expected = [task_json(task) for task in fake.expected(result.shard.start, result.shard.end)]
        assert result.count == result.shard.estimated_count == len(expected)
        written = await asyncio.to_thread(read_jsonl, result.path)
        assert written == expected
        seen += [record["job_id"] for record in written]
    # Every record of the window, exactly once in the joined output.
    assert sorted(seen) == sorted(task.job_id for task in fake.expected(START, END))
    assert len(seen) == len(set(seen)) == 6_000
    # Both processes ran slices, and all of them together kept to the one limit.
    assert {result.worker for result in results} <= {victim.pid, survivor.pid}
    assert fake.stats.max_in_any_second() <= RATE + 1
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.part*")))


async def test_slices_of_a_stopped_worker_go_on_from_their_cursors_on_another(
    redis_url: str, redis_name: str, tmp_path: Path
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(4_000, seed=54), latency=0.005)
    with serve(fake) as url:
        env = worker_env(url, redis_url, redis_name, ITNIO_WORKER_JOBS="4")
        settings = sharded_job.JobSettings.from_env(env)
        first_log: list[str] = []
        second_log: list[str] = []
        first = await start_worker(env, first_log)
        second = None
        try:
            async with queue_of(settings) as queue:
                async with open_client(settings) as client:
                    jobs = await sharded_job.enqueue_shards(
                        client, queue, START, END, 4, tmp_path, name=redis_name, retry_delay=0
                    )
                checkpoints = [
                    tmp_path / f"{redis_name}-{i:03d}.jsonl.part.checkpoint" for i in range(4)
                ]

                def all_begun() -> bool:
                    return all(checkpointed(path) > 0 for path in checkpoints)

                # Every slice has written a page or more: the worker is stopped (a deploy,
                # say), saq cancels its jobs and queues them again; another takes them over.
                await eventually(all_begun, "every slice to write a page")
                assert await stop_worker(*first) == 0, first_log
                begun = [checkpointed(path) for path in checkpoints]
                second = await start_worker(env, second_log)
                async with asyncio.timeout(TIMEOUT * 2):
                    results = await sharded_job.collect(queue, jobs, poll_interval=0.1)
        finally:
            await stop_worker(*first)
            if second is not None:
                await stop_worker(*second)

    assert sum("Retrying" in line for line in first_log) == 4, first_log
    seen: list[int] = []
    for result, written_before in zip(results, begun, strict=True):
        assert result.worker == second[0].pid
        assert result.attempts == 2
        assert result.resumed_at == written_before > 0
        expected = [task_json(task) for task in fake.expected(result.shard.start, result.shard.end)]
        assert await asyncio.to_thread(read_jsonl, result.path) == expected
        assert result.count == result.shard.estimated_count
        seen += [record["job_id"] for record in expected]
    assert len(seen) == len(set(seen)) == 4_000
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.part*")))


# -- the demo: the whole flow in one command, against the fake vendor on loopback ---------

#: Seconds the demo may take here: about 5 on an idle machine.
DEMO_TIMEOUT = 60.0


def demo_env(**more: str) -> dict[str, str]:
    """The demo's environment: none of the account's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITNIO_", "REDIS_URL"))}
    return env | more


@contextlib.asynccontextmanager
async def demo_process(redis_url: str, *argv: str, lines: list[str]) -> AsyncIterator[Process]:
    """``plan --demo`` in a session of its own, its stderr (and its workers') collected into
    ``lines``; on the way out, whatever of the session still runs is killed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", sharded_job.__name__, "plan", "--demo", *argv,
        cwd=EXAMPLES_ROOT, env=demo_env(REDIS_URL=redis_url),
        stdin=DEVNULL, stdout=PIPE, stderr=PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)  # nothing, when the demo stopped all it started
        await process.wait()


def session_is_empty(process: Process) -> bool:
    """Whether no process of the demo's session (its workers included) runs any more."""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    return False


def demo_facts(lines: list[str]) -> tuple[str, list[int], str]:
    """The fake vendor's URL, the worker processes and the queue, as the demo logged them."""
    text = "".join(lines)
    url = re.search(r"serving it at (http://127\.0\.0\.1:\d+)", text)
    pids = re.search(r"(\d+) workers started \(([\d, ]+)\)", text)
    queue = re.search(r"ready on queue (itnio-demo-\w+)", text)
    assert url, text
    assert pids, text
    assert queue, text
    return url[1], [int(pid) for pid in pids[2].split(", ")], queue[1]


def redis_keys(redis_url: str, namespace: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return list(client.scan_iter(match=f"*{namespace}*"))
    finally:
        client.close()


def refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_the_demo_exports_the_window_through_worker_processes_and_stops_them(
    redis_url: str, tmp_path: Path
) -> None:
    start, _ = demo_window()
    end = start + timedelta(days=10, seconds=-1)  # a third of the demo's tasks: quicker
    expected = demo_vendor(latency=0).expected(start, end)
    lines: list[str] = []
    argv = ["--out-dir", str(tmp_path), "--start", start.isoformat(), "--end", end.isoformat()]
    async with demo_process(
        redis_url, *argv, "--workers", "2", "--shards", "3", lines=lines
    ) as demo:
        assert demo.stdout is not None
        reader = asyncio.create_task(collect_lines(demo, lines))
        async with asyncio.timeout(DEMO_TIMEOUT):
            out = await demo.stdout.read()  # until every process that holds it has ended
            await reader
            code = await demo.wait()
        # Nothing of the demo runs any more: not its workers, not the fake vendor.
        assert session_is_empty(demo), "".join(lines)

    assert code == 0, "".join(lines)
    assert "Traceback" not in "".join(lines)
    url, workers, queue = demo_facts(lines)
    assert len(workers) == 2
    assert refused(url)
    assert redis_keys(redis_url, queue) == []  # the demo's queue and bucket are gone
    slices = [json.loads(line) for line in out.decode().splitlines()]
    assert [piece["index"] for piece in slices] == [0, 1, 2]
    assert {piece["worker"] for piece in slices} <= set(workers)
    assert sum(piece["count"] for piece in slices) == len(expected) > 0
    assert f"{len(expected)} records in 3 slices" in "".join(lines)
    assert f"the fake vendor holds {len(expected)} tasks: each is written once" in "".join(lines)
    written = [row["job_id"] for piece in slices for row in read_jsonl(piece["path"])]
    assert sorted(written) == sorted(task.job_id for task in expected)  # each once


async def test_ctrl_c_stops_the_demo_its_workers_and_its_server(
    redis_url: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    async with demo_process(redis_url, "--out-dir", str(tmp_path), lines=lines) as demo:
        reader = asyncio.create_task(collect_lines(demo, lines))

        def slices_run() -> bool:
            assert demo.returncode is None, "".join(lines)
            return any("Processing Job" in line for line in lines)

        await eventually(slices_run, "a slice to start")
        demo.send_signal(signal.SIGINT)  # to the demo alone, as a test can: it stops the rest
        async with asyncio.timeout(DEMO_TIMEOUT):
            await reader
            code = await demo.wait()
        assert session_is_empty(demo), "".join(lines)

    assert code == 128 + signal.SIGINT, "".join(lines)
    assert "Traceback" not in "".join(lines)
    assert "stopped by signal 2" in "".join(lines)
    url, _, queue = demo_facts(lines)
    assert refused(url)
    assert redis_keys(redis_url, queue) == []


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["plan", "--demo", "--out-dir", "out"], {}, "REDIS_URL=redis://"),
        (["plan", "--out-dir", "out"], {"ITNIO_DEMO": "1"}, "REDIS_URL=redis://"),
        (["worker"], {"ITNIO_DEMO": "1", "REDIS_URL": "redis://127.0.0.1:1/0"}, "plan --demo"),
        (["plan", "--out-dir", "out", "--shards", "2"], {}, "REDIS_URL is required"),
        (["plan", "--out-dir", "out"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, "--demo"),
    ],
    ids=["demo", "itnio-demo", "demo-worker", "plan", "no-window"],
)
def test_what_the_demo_lacks_is_one_line_saying_what_to_run(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", sharded_job.__name__, *argv],
        cwd=EXAMPLES_ROOT,
        env=demo_env(**env),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
