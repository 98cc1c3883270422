"""Helpers for the examples' tests: clients of the fake, a real uvicorn on loopback, log checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
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
        "status_name": GroupCallStatus(task.status).name,
        "rate": task.rate,
        "num_cnt": task.num_cnt,
        "call_num": task.call_num,
        "success": task.success,
        "fail": task.fail,
        "created_time": task.created_time.isoformat(sep=" "),
    }
