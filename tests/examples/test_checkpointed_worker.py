"""``examples/checkpointed_worker.py``: killed at any moment, it resumes without loss or repeat."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from examples import checkpointed_worker as worker
from itnio_async import AsyncVoiceClient, GroupCallStatus, InvalidParameterError, StreamCursor
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan, serve

from ._support import EXAMPLES_ROOT, TIMEOUT, churn, fake_client, task_json, unread

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
KEY, SECRET = "worker-key", "worker-secret"
COMPLETED = GroupCallStatus.COMPLETED


def client_for(fake: FakeVendor, **options: object) -> AsyncVoiceClient:
    return fake_client(fake, rate_limit=None, **options)


def read_output(path: Path, lines: int | None = None) -> list[dict[str, Any]]:
    """The records in the output, or in its first ``lines`` lines.

    After a kill, read only the lines the checkpoint counts: the page being written when
    the kill came may be there in part, a line cut short included (the worker cuts it off
    on resume, which the finished run's output shows).
    """
    text = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in text[:lines]]


def checkpointed(checkpoint: Path) -> int:
    """The records the checkpoint counts (0 before the first page is written)."""
    try:
        return int(json.loads(checkpoint.read_text(encoding="utf-8"))["records"])
    except FileNotFoundError:
        return 0


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [record["job_id"] for record in records]


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    """Poll until ``condition()``; fail if the process ends first or it takes too long."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the worker ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def test_a_worker_stopped_and_killed_amid_churn_writes_every_record_that_stayed_once(
    tmp_path: Path,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(1_200, seed=31), latency=0.005)
    out = tmp_path / "tasks.jsonl"
    checkpoint = tmp_path / "tasks.jsonl.checkpoint"
    argv = [
        sys.executable, "-m", worker.__name__,
        "--start", START.isoformat(sep=" "),
        "--end", END.isoformat(sep=" "),
        "--out", str(out),
        "--page-size", "20",
        "--concurrency", "4",
        "--status", str(int(COMPLETED)),
    ]  # fmt: skip
    # What each run must write, in order: the result as that run finds it, below the
    # last record written before it, without the tasks created above that record.
    owed: list[list[int]] = [unread(fake, [], START, END, COMPLETED, set())]
    counts = [0]
    with serve(fake) as url:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"REDIS_URL", "ITNIO_SERVER_TIMEZONE"}
        }
        env.update(
            ITNIO_API_KEY=KEY, ITNIO_API_SECRET=SECRET, ITNIO_BASE_URL=url, ITNIO_RATE_LIMIT="60"
        )
        # ~840 records, 42 pages: stopped by SIGTERM after 200 records, killed outright
        # after 500, then let finish; the result changes under the filter after each stop.
        above: set[int] = set()
        for stop_after, how in [(200, signal.SIGTERM), (500, signal.SIGKILL)]:
            process = subprocess.Popen(
                argv,
                cwd=EXAMPLES_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

            def past(records: int = stop_after) -> bool:
                return checkpointed(checkpoint) > records

            try:
                wait_for(past, process, f"{stop_after} records")
                process.send_signal(how)
                process.communicate(timeout=TIMEOUT)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            assert process.returncode == (128 + how if how == signal.SIGTERM else -how)
            counts.append(checkpointed(checkpoint))
            written = read_output(out, lines=counts[-1])
            assert len(written) < len(owed[0]), "finished before it was stopped"
            above |= churn(fake, written, START, END, COMPLETED)
            owed.append(unread(fake, written, START, END, COMPLETED, above))
        finished = subprocess.run(
            argv,
            cwd=EXAMPLES_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 2,
            check=False,
        )
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    assert summary["done"] is True
    assert summary["resumed_at"] == counts[-1] > 500
    output = ids(read_output(out))
    assert len(output) == len(set(output)) == summary["records"]
    # Each run went on exactly where the one before it stopped: it wrote what it owed.
    counts.append(len(output))
    for run, (begin, stop) in enumerate(itertools.pairwise(counts)):
        assert output[begin:stop] == owed[run][: stop - begin]
    assert output[counts[-2] :] == owed[-1]


async def test_records_written_after_the_last_checkpoint_are_cut_on_resume(
    tmp_path: Path,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(95, seed=32))
    expected = [task_json(task) for task in fake.expected(START, END)]
    job = worker.Job(START, END, page_size=10)
    out = tmp_path / "tasks.jsonl"
    # The fourth request fails (not retried): the run ends after a few pages, checkpointed.
    fake.faults = FaultPlan(by_request={4: Fault.code(-22)})
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError) as failure:
            await worker.run_job(client, job, out)
    assert failure.value.resume_from is not None
    state = worker.Checkpoint.load(worker.checkpoint_path_for(out))
    assert state is not None
    done = state.records
    assert 0 < done < 95
    assert state.cursor == str(failure.value.resume_from)  # the error's cursor: the same spot
    assert read_output(out) == expected[:done]
    # As if killed between writing the next page and its checkpoint, amid another page.
    with out.open("a", encoding="utf-8") as file:
        file.writelines(json.dumps(record) + "\n" for record in expected[done : done + 10])
        file.write('{"job_id": 50')

    fake.faults = None
    async with client_for(fake) as client:
        summary = await worker.run_job(client, job, out)
    assert read_output(out) == expected
    assert summary == worker.Summary(records=95, resumed_at=done, written=95 - done, done=True)

    # Done is done: a third run asks nothing.
    requests = fake.stats.requests
    async with client_for(fake) as client:
        again = await worker.run_job(client, job, out)
    assert (again.done, again.written, fake.stats.requests) == (True, 0, requests)


async def test_a_resume_after_the_result_changed_under_the_filter_is_exact(
    tmp_path: Path,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(300, seed=33))
    job = worker.Job(START, END, page_size=10, statuses=(int(COMPLETED),))
    out = tmp_path / "tasks.jsonl"
    fake.faults = FaultPlan(by_request={6: Fault.code(-22)})
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError):
            await worker.run_job(client, job, out, concurrency=2)
    first_run = read_output(out)
    assert 20 <= len(first_run) < len(fake.expected(START, END, statuses=[COMPLETED])) - 20
    # Tasks leave the filter above the cursor and enter it below, tasks are deleted and
    # created: with page numbers, this shifts every later record and loses or repeats some.
    above = churn(fake, first_run, START, END, COMPLETED)
    owed = unread(fake, first_run, START, END, COMPLETED, above)

    fake.faults = None
    async with client_for(fake) as client:
        await worker.run_job(client, job, out, concurrency=2)
    written = ids(read_output(out))
    assert written == ids(first_run) + owed
    assert len(written) == len(set(written))


async def test_a_window_reaching_into_the_future_is_frozen_for_every_run(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    dataset = Dataset.generate(40, seed=34, start=now - timedelta(days=1), end=now)
    fake = FakeVendor(KEY, SECRET, dataset=dataset)
    job = worker.Job(now - timedelta(days=2), datetime(2099, 1, 1), page_size=10)
    out = tmp_path / "tasks.jsonl"
    fake.faults = FaultPlan(by_request={3: Fault.code(-22)})
    async with client_for(fake, server_timezone=UTC) as client:
        with pytest.raises(InvalidParameterError):
            await worker.run_job(client, job, out, concurrency=1)
    first = worker.Checkpoint.load(worker.checkpoint_path_for(out))
    assert first is not None
    frozen = first.window_end
    assert frozen is not None
    assert frozen < fake.now() <= frozen + timedelta(seconds=5)
    # Tasks created after the first run began are not part of this job.
    fake.insert_tasks(5, created_time=fake.now() + timedelta(seconds=1))

    fake.faults = None
    async with client_for(fake, server_timezone=UTC) as client:
        await worker.run_job(client, job, out)
    last = worker.Checkpoint.load(worker.checkpoint_path_for(out))
    assert last is not None
    assert (last.done, last.window_end) == (True, frozen)
    written = ids(read_output(out))
    assert written == [task.job_id for task in fake.expected(job.start, frozen)]
    assert len(written) == 40


async def test_a_checkpoint_of_another_job_or_output_is_refused(tmp_path: Path) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(20, seed=35))
    out = tmp_path / "tasks.jsonl"
    checkpoint = worker.checkpoint_path_for(out)
    async with client_for(fake) as client:
        await worker.run_job(client, worker.Job(START, END, page_size=10), out)
        with pytest.raises(worker.CheckpointError, match="another job"):
            await worker.run_job(client, worker.Job(START, END, page_size=5), out)
        with pytest.raises(worker.CheckpointError, match="another job"):
            await worker.run_job(client, worker.Job(START, END, 10, statuses=(2,)), out)
        with pytest.raises(worker.CheckpointError, match="another output"):
            await worker.run_job(
                client, worker.Job(START, END, page_size=10), tmp_path / "other.jsonl", checkpoint
            )
    assert len(read_output(out)) == 20
    assert not (tmp_path / "other.jsonl").exists()
    state = worker.Checkpoint.load(checkpoint)
    assert state is not None
    assert state.cursor is not None
    cursor = StreamCursor.from_string(state.cursor)
    assert (cursor.start, cursor.end, cursor.done) == (START, END, True)


def test_the_command_line_says_why_it_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITNIO_API_KEY", KEY)
    monkeypatch.setenv("ITNIO_API_SECRET", SECRET)
    monkeypatch.setenv("ITNIO_BASE_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.delenv("REDIS_URL", raising=False)
    (tmp_path / "tasks.jsonl.checkpoint").write_text('{"version": 0}', encoding="utf-8")
    code = worker.main(
        ["--start", "2024-01-01", "--end", "2024-02-01", "--out", str(tmp_path / "tasks.jsonl")]
    )
    assert code == 2
    assert "not a checkpoint of this program" in capsys.readouterr().err


def test_a_second_worker_on_the_same_output_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(400, seed=34), latency=0.01)
    out = tmp_path / "tasks.jsonl"
    checkpoint = worker.checkpoint_path_for(out)
    argv = [
        sys.executable, "-m", worker.__name__,
        "--start", START.isoformat(sep=" "),
        "--end", END.isoformat(sep=" "),
        "--out", str(out),
        "--page-size", "10",
        "--concurrency", "1",
    ]  # fmt: skip
    with serve(fake) as url:
        env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
        env.update(
            ITNIO_API_KEY=KEY, ITNIO_API_SECRET=SECRET, ITNIO_BASE_URL=url, ITNIO_RATE_LIMIT="20"
        )
        first = subprocess.Popen(
            argv,
            cwd=EXAMPLES_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: checkpointed(checkpoint) > 0, first, "the first page")
            second = subprocess.run(
                argv, cwd=EXAMPLES_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
            )
            assert first.poll() is None, "the first worker ended before the second was tried"
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=TIMEOUT)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert second.returncode == worker.EXIT_BUSY, second.stderr
        assert f"another worker is already writing {out}" in second.stderr
        assert second.stdout == ""
        assert first.returncode == 128 + signal.SIGTERM
        # The first's checkpoint stands, and the lock went with it: a re-run finishes.
        finished = subprocess.run(
            argv, cwd=EXAMPLES_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT * 2
        )
    assert finished.returncode == 0, finished.stderr
    assert ids(read_output(out)) == [task.job_id for task in fake.expected(START, END)]


async def test_run_job_refuses_an_output_another_holder_has_locked(tmp_path: Path) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(20, seed=35))
    out = tmp_path / "tasks.jsonl"
    with worker.output_lock(out):
        async with client_for(fake) as client:
            with pytest.raises(worker.OutputBusyError, match="already writing"):
                await worker.run_job(client, worker.Job(START, END), out)
    assert fake.stats.requests == 0
    assert out.read_bytes() == b""
    assert not worker.checkpoint_path_for(out).exists()
