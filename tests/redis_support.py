"""Finding or starting a Redis server on loopback for the shared-limiter tests.

Where the tests get their Redis, in order:

1. ``ITNIO_TEST_REDIS_URL`` (CI starts a ``redis-server`` and sets it);
2. a ``redis-server`` on ``PATH``, started here on a free loopback port, without persistence,
   and stopped at the end;
3. neither: the tests skip with the reason, except under CI (``CI`` set), where they fail,
   since CI must run them.

Tests share the server, never a key: each uses its own ``prefix`` and deletes what it wrote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import redis

URL_VARIABLE: Final = "ITNIO_TEST_REDIS_URL"
#: Seconds to wait for a started server to answer PING.
_START_TIMEOUT: Final = 10.0


class RedisNotAvailable(Exception):
    """No Redis for the tests; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(url: str) -> bool:
    """Whether a Redis answers PING at ``url``."""
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """Start ``redis-server`` on 127.0.0.1 (a free port unless given); yield its URL.

    No persistence and a private working directory; stopped (and waited for) on exit.
    Raises :class:`RedisNotAvailable` when there is no ``redis-server`` or it does not start.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisNotAvailable("redis-server is not installed (apt-get install redis-server)")
    port = free_port() if port is None else port
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="itnio-redis-") as workdir:
        log = Path(workdir) / "redis.log"
        command = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
            "--logfile", str(log),
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + _START_TIMEOUT
            while not ping(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    text = log.read_text(errors="replace") if log.exists() else ""
                    raise RedisNotAvailable(f"redis-server did not start on port {port}: {text}")
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def redis_for_tests() -> Iterator[str]:
    """The URL of a Redis for the tests: ``ITNIO_TEST_REDIS_URL``, or one started here.

    Raises :class:`RedisNotAvailable` when there is none.
    """
    url = os.environ.get(URL_VARIABLE)
    if url:
        if not ping(url):
            raise RedisNotAvailable(f"{URL_VARIABLE}={url} does not answer PING")
        yield url
        return
    with redis_server() as started:
        yield started


def under_ci() -> bool:
    """Whether these tests run under CI, where they must not be skipped."""
    return bool(os.environ.get("CI"))
