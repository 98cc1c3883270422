"""Servers in their own processes, started and always stopped by the benchmark.

Four kinds, each printing one line ``listening on SCHEME://HOST:PORT`` when ready:

* :func:`fake_cli` runs the fake's own command line, ``python -m itnio_async.testing``;
* :func:`stats_server` runs ``_stats_server.py`` (beside this file): the same fake served
  by ``itnio_async.testing.serve`` in a thread, which also answers ``stats`` on its stdin
  with what the server saw (arrival times of the requests), for the rate-bound case;
* :func:`fast_server` runs ``_fast_server.py``: the fake behind a cache of encoded replies,
  which also reports what it saw, for the one-process case;
* :func:`counter` runs ``_counter.py``: a UDP counter that stamps each datagram's arrival,
  for the shared-rate case.

And :func:`redis_server`, a ``redis-server`` on a free loopback port, for the shared-rate case.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

__all__ = [
    "API_KEY",
    "API_SECRET",
    "Server",
    "counter",
    "fake_cli",
    "fast_server",
    "redis_server",
    "stats_server",
]

API_KEY: Final = "bench-key"
API_SECRET: Final = "bench-secret"  # a throwaway credential of the local fake

_LISTENING: Final = re.compile(r"listening on (\w+://\S+)")
_START_TIMEOUT: Final = 30.0
_STOP_TIMEOUT: Final = 10.0
_HERE: Final = Path(__file__).resolve().parent


class Server:
    """A server process: its base URL and, for the stats server, a way to read its stats."""

    def __init__(self, process: subprocess.Popen[str], url: str, lines: queue.Queue[str]) -> None:
        self.process = process
        self.url = url
        self._lines = lines

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used so far (Linux ``/proc``; else ``None``)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        """Ask a stats server what it saw since the last call (and reset its counters)."""
        stdin = self.process.stdin
        if stdin is None:
            raise RuntimeError("this server takes no commands")
        stdin.write("stats\n")
        stdin.flush()
        line = self._lines.get(timeout=_START_TIMEOUT)
        result: dict[str, Any] = json.loads(line)
        return result


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@contextlib.contextmanager
def _process(argv: Sequence[str], *, commands: bool) -> Iterator[Server]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, *argv],
        stdin=subprocess.PIPE if commands else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
        try:
            first = lines.get(timeout=_START_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"server did not start: {' '.join(argv)}") from None
        match = _LISTENING.search(first)
        if match is None:
            raise RuntimeError(f"unexpected first line from the server: {first!r}")
        yield Server(process, match.group(1), lines)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _fake_args(tasks: int, latency: float) -> list[str]:
    return [
        "--port",
        "0",
        "--tasks",
        str(tasks),
        "--seed",
        "1",
        "--latency",
        repr(latency),
        "--api-key",
        API_KEY,
        "--api-secret",
        API_SECRET,
    ]


@contextlib.contextmanager
def fake_cli(tasks: int, latency: float = 0.0) -> Iterator[Server]:
    """``python -m itnio_async.testing`` serving ``tasks`` generated tasks on loopback."""
    with _process(["-m", "itnio_async.testing", *_fake_args(tasks, latency)], commands=False) as s:
        yield s


@contextlib.contextmanager
def stats_server(tasks: int, latency: float = 0.0) -> Iterator[Server]:
    """The fake served by ``_stats_server.py``, which reports what it saw on request."""
    script = str(_HERE / "_stats_server.py")
    with _process([script, *_fake_args(tasks, latency)], commands=True) as server:
        yield server


@contextlib.contextmanager
def fast_server(tasks: int) -> Iterator[Server]:
    """The fake behind ``_fast_server.py``'s cache of encoded replies (see there); its
    ``stats()`` also says how many requests the fake itself had to answer (``misses``)."""
    script = str(_HERE / "_fast_server.py")
    with _process([script, *_fake_args(tasks, 0.0)], commands=True) as server:
        yield server


@contextlib.contextmanager
def counter() -> Iterator[Server]:
    """The UDP arrival counter of ``_counter.py``; ``stats()`` returns ``{"arrivals": [...]}``."""
    with _process([str(_HERE / "_counter.py")], commands=True) as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A ``redis-server`` on a free port of 127.0.0.1, without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the shared-rate case needs redis-server (apt-get install redis-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + _START_TIMEOUT
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
                ):
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
