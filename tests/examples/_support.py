"""Helpers for the examples' tests: clients of the fake, a real uvicorn on loopback, log checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pytest
import uvicorn

import examples
from itnio_async import AsyncVoiceClient, GroupCallStatus
from itnio_async.testing import FakeTask, FakeVendor

#: Seconds to wait for a server to start or stop, or for a condition to come true.
TIMEOUT: Final = 15.0

#: Where the ``examples`` package lives: the directory to run ``python -m examples.…`` in.
EXAMPLES_ROOT: Final = Path(examples.__file__).resolve().parent.parent

#: The base URL of a client that reaches the fake in-process, through its transport.
FAKE_BASE_URL: Final = "https://fake.itnio.test"

#: What asyncio logs when a task or a future is left behind.
LEAK_MARKERS: Final = (
    "Task was destroyed",
    "never retrieved",
    "Unclosed",
    "unclosed",
    "Exception in ASGI application",
    "Error handling request",
)


def fake_client(fake: FakeVendor, **options: Any) -> AsyncVoiceClient:
    """A client of ``fake``'s account that reaches it in-process.

    ``options``: more arguments of the client, or others than the fake's own key and secret
    (``api_secret="wrong"``).
    """
    arguments: dict[str, Any] = {
        "api_key": fake.api_key,
        "api_secret": fake.api_secret,
        "base_url": FAKE_BASE_URL,
        "transport": fake.transport(),
    }
    return AsyncVoiceClient(**(arguments | options))


def client_factory(
    fake: FakeVendor, made: list[AsyncVoiceClient] | None = None, **options: Any
) -> Callable[[], AsyncVoiceClient]:
    """An app's client factory of ``fake_client(fake, **options)``; each client made is
    appended to ``made``, so that a test can check it was closed."""

    def factory() -> AsyncVoiceClient:
        client = fake_client(fake, **options)
        if made is not None:
            made.append(client)
        return client

    return factory


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the test runner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def uvicorn_on_loopback(app: Any) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` with uvicorn (lifespan on) as a task of the running loop.

    Yields ``http://127.0.0.1:PORT``; on exit shuts the server down as a signal would
    (the app's lifespan shutdown runs) and waits for it to finish.
    """
    sock = loopback_socket()
    config = uvicorn.Config(
        app,
        lifespan="on",
        http="h11",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="example-app")
    try:
        async with asyncio.timeout(TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("the app's server did not start")
                await asyncio.sleep(0.005)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(TIMEOUT):
                await task
        finally:
            sock.close()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition()`` until it is true, for at most ``TIMEOUT`` seconds."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not condition():  # noqa: ASYNC110 - bounded polling of a plain predicate
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def assert_no_leaks(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing logged an error, and no task, future or transport was left behind."""
    bad = [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.ERROR
        or any(marker in record.getMessage() for marker in LEAK_MARKERS)
    ]
    assert not bad, bad


def task_json(task: FakeTask) -> dict[str, Any]:
    """What the examples write for a task of the fake (``examples.records.record_json`` of it)."""
    return {
        "job_id": task.job_id,
        "task_name": task.task_name,
        "status": task.status,
        "status_name": GroupCallStatus(task.status).name.lower(),
        "rate": task.rate,
        "num_cnt": task.num_cnt,
        "call_num": task.call_num,
        "success": task.success,
        "fail": task.fail,
        "created_time": task.created_time.isoformat(),
    }


def record_key(record: dict[str, Any]) -> tuple[datetime, int]:
    """An output record's place in the vendor's order (newest first: descending)."""
    return (datetime.fromisoformat(record["created_time"]), record["job_id"])


def task_key(task: FakeTask) -> tuple[datetime, int]:
    """A task's place in the vendor's order, comparable with ``record_key``."""
    return (task.created_time, task.job_id)


def churn(
    fake: FakeVendor, written: list[dict[str, Any]], start: datetime, end: datetime, status: int
) -> set[int]:
    """Change the result under the filter ``statuses=[status]`` between two runs of an export
    that has ``written`` these records so far (newest first), the way a busy account does:
    five written tasks leave the filter, five unread ones enter it, five unread ones are
    deleted, and new tasks are created at both ends of the window ``[start, end]``.

    Returns the job ids created above what was written, which belong to a later export
    and must not be handed out by a resume.
    """
    other = GroupCallStatus.COMPLETED if status != GroupCallStatus.COMPLETED else 0
    last = record_key(written[-1])
    unread = [task for task in fake.expected(start, end) if task_key(task) < last]
    entering = [task.job_id for task in unread if task.status != status][-5:]
    leaving = [task.job_id for task in unread if task.status == status][5:10]
    assert len(entering) == len(leaving) == 5, "too small a window to churn"
    fake.change_status([record["job_id"] for record in written[3:8]], other)
    fake.change_status(entering, status)
    fake.remove_tasks(leaving)
    fake.insert_tasks(3, created_time=start, status=status)  # below: a resume hands them out
    assert end > last[0], "no second left above the cursor to create tasks in"
    return {task.job_id for task in fake.insert_tasks(3, created_time=end, status=status)}


def unread(
    fake: FakeVendor,
    written: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    status: int,
    exclude: set[int],
) -> list[int]:
    """The job ids a resume after ``written`` must hand out, in order: the filtered result
    as it is now, below the last record written, without ``exclude``."""
    last = record_key(written[-1]) if written else None
    return [
        task.job_id
        for task in fake.expected(start, end, statuses=[status])
        if (last is None or task_key(task) < last) and task.job_id not in exclude
    ]
