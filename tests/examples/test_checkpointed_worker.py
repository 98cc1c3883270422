"""``examples/checkpointed_worker.py``: killed at any moment, it resumes without loss or repeat."""

from __future__ import annotations

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
from itnio_async import AsyncVoiceClient, InvalidParameterError
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan, serve

from ._support import EXAMPLES_ROOT, TIMEOUT, fake_client, task_json

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
KEY, SECRET = "worker-key", "worker-secret"


def client_for(fake: FakeVendor, **options: object) -> AsyncVoiceClient:
    return fake_client(fake, rate_limit=None, **options)


def read_output(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def next_page(checkpoint: Path) -> int:
    """The checkpoint's next page (0 before the first one is written)."""
    try:
        return int(json.loads(checkpoint.read_text(encoding="utf-8"))["next_page"])
    except FileNotFoundError:
        return 0


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    """Poll until ``condition()``; fail if the process ends first or it takes too long."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the worker ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def test_a_worker_stopped_and_killed_resumes_and_writes_every_record_once(
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
    ]  # fmt: skip
    with serve(fake) as url:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"REDIS_URL", "ITNIO_SERVER_TIMEZONE"}
        }
        env.update(
            ITNIO_API_KEY=KEY, ITNIO_API_SECRET=SECRET, ITNIO_BASE_URL=url, ITNIO_RATE_LIMIT="60"
        )
        # 60 pages: stopped by SIGTERM after 10, killed outright after 30, then let finish.
        for stop_after, how in [(10, signal.SIGTERM), (30, signal.SIGKILL)]:
            process = subprocess.Popen(
                argv,
                cwd=EXAMPLES_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

            def past(page: int = stop_after) -> bool:
                return next_page(checkpoint) > page

            try:
                wait_for(past, process, f"page {stop_after}")
                process.send_signal(how)
                process.communicate(timeout=TIMEOUT)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            assert process.returncode == (128 + how if how == signal.SIGTERM else -how)
            assert next_page(checkpoint) < 61  # not finished
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
    assert summary["resumed_from"] > 30
    assert read_output(out) == [task_json(task) for task in fake.expected(START, END)]
    assert fake.stats.per_page[1] == 1  # the later runs never started over


async def test_records_written_after_the_last_checkpoint_are_cut_on_resume(
    tmp_path: Path,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(95, seed=32))
    expected = [task_json(task) for task in fake.expected(START, END)]
    job = worker.Job(START, END, page_size=10)
    out = tmp_path / "tasks.jsonl"
    # Page 4 fails (not retried): the run ends with 3 pages written and checkpointed.
    fake.faults = FaultPlan(by_page={4: Fault.code(-22)})
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError) as failure:
            await worker.run_job(client, job, out)
    assert failure.value.page == 4
    assert read_output(out) == expected[:30]
    # As if killed between writing page 4 and its checkpoint, in the middle of page 5.
    with out.open("a", encoding="utf-8") as file:
        file.writelines(json.dumps(record) + "\n" for record in expected[30:40])
        file.write('{"job_id": 50')

    fake.faults = None
    async with client_for(fake) as client:
        summary = await worker.run_job(client, job, out)
    assert read_output(out) == expected
    assert summary == worker.Summary(records=95, resumed_from=4, written=65, done=True)

    # Done is done: a third run asks nothing.
    requests = fake.stats.requests
    async with client_for(fake) as client:
        again = await worker.run_job(client, job, out)
    assert (again.done, again.written, fake.stats.requests) == (True, 0, requests)


async def test_a_resume_after_tasks_left_the_result_loses_nothing(tmp_path: Path) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(95, seed=33))
    job = worker.Job(START, END, page_size=10)
    out = tmp_path / "tasks.jsonl"
    fake.faults = FaultPlan(by_page={4: Fault.code(-22)})
    async with client_for(fake) as client:
        with pytest.raises(InvalidParameterError):
            await worker.run_job(client, job, out)
    first_run = [record["job_id"] for record in read_output(out)]
    assert len(first_run) == 30
    # Five written tasks leave: every later record moves five places up, onto page 3.
    fake.remove_tasks(first_run[3:8])

    fake.faults = None
    async with client_for(fake) as client:
        await worker.run_job(client, job, out)
    written = [record["job_id"] for record in read_output(out)]
    rest = [task.job_id for task in fake.expected(START, END) if task.job_id not in first_run]
    assert written == first_run + rest
    assert len(written) == len(set(written)) == 95


async def test_a_window_reaching_into_the_future_is_frozen_for_every_run(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    dataset = Dataset.generate(40, seed=34, start=now - timedelta(days=1), end=now)
    fake = FakeVendor(KEY, SECRET, dataset=dataset)
    job = worker.Job(now - timedelta(days=2), datetime(2099, 1, 1), page_size=10)
    out = tmp_path / "tasks.jsonl"
    async with client_for(fake, server_timezone=UTC) as client:
        await worker.run_job(client, job, out)
    frozen = worker.Checkpoint.load(worker.checkpoint_path_for(out))
    assert frozen is not None
    assert frozen.end < fake.now() <= frozen.end + timedelta(seconds=5)
    assert len(read_output(out)) == 40


async def test_a_checkpoint_of_another_job_is_refused(tmp_path: Path) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(20, seed=35))
    out = tmp_path / "tasks.jsonl"
    async with client_for(fake) as client:
        await worker.run_job(client, worker.Job(START, END, page_size=10), out)
        with pytest.raises(worker.CheckpointError, match="another job"):
            await worker.run_job(client, worker.Job(START, END, page_size=5), out)
    assert len(read_output(out)) == 20


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
