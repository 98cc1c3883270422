"""The fake vendor's pages, encoded once, so that the server is not the ceiling.

Run by the one-process case. Served by uvicorn, the fake builds and encodes every page
anew (pure Python: each task rebuilt from its seed once it falls out of a 32k-task cache,
its wire form, ``json.dumps`` of the page, h11), which caps any client near 430
requests/s on this machine. Here the same dataset answers the same queries, with three
costs taken away:

* every task is built once and kept (the dataset is the fake's, with an unbounded cache);
* every record is encoded once: a page is its records' bytes joined into the envelope;
* a plain ``asyncio.Protocol`` speaks just enough HTTP/1.1 (keep-alive, ``Content-Length``
  bodies, which is all a client of ours sends), instead of uvicorn and h11.

The vendor's checks stay: ``Api-Key``, ``Sign``, ``Timestamp`` (within the fake's
tolerance), ``Content-Type`` and the body (the fake's own ``parse_query_body``). Anything
this fast path does not take (a bad signature, a bad body, another path) goes to the
unmodified ``FakeVendor`` (its ASGI app, in this process), which answers as the vendor
would; those are counted as ``misses``. At start the server checks that its pages equal
the fake's for a few queries.

Protocol, one line each:

* stdout: ``listening on http://127.0.0.1:PORT`` once bound;
* stdin ``stats``: stdout gets one JSON line: ``requests``, ``misses`` (requests the fake
  answered), ``max_in_any_second`` and ``arrivals`` (seconds, relative to the first),
  since the last ``stats``; then the counters start afresh;
* stdin closed, SIGTERM or SIGINT: the script exits 0.

Each arrival is stamped with the kernel's receive time of the request's last bytes
(``SO_TIMESTAMPNS``, on Linux), so a moment when this process is not scheduled does not
bunch the stamps of what arrived meanwhile (on a busy machine it is descheduled for tens
of milliseconds); elsewhere, with ``time.time()`` when they are read.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import socket
import struct
import sys
import time
from http import HTTPStatus
from typing import Any

from itnio_async.testing import QUERY_PATH, Dataset, FakeVendor

# The fake's own pieces, so that this path checks and pages exactly as it does (private
# names of the package's fake, used here and nowhere outside the project).
from itnio_async.testing._vendor import parse_query_body
from itnio_async.testing._wire import (
    CODE_MESSAGES,
    dumps,
    expected_sign,
    http_date,
    sign_matches,
)

#: The most bytes of a request head, and of a body: a request beyond them is refused.
_MAX_HEAD = 16 * 1024
_MAX_BODY = 64 * 1024
_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json;charset=UTF-8\r\n"
_ENVELOPE_START = b'{"code":0,"msg":' + json.dumps(CODE_MESSAGES[0]).encode() + b',"data":'


class _State:
    """What the server shares between connections: the fake, the encoded records, counts."""

    def __init__(self, fake: FakeVendor) -> None:
        self.fake = fake
        dataset = fake.dataset
        generated = dataset._gen
        if generated is not None:
            # Keep every task once built: the fake keeps the last 32k, and streaming a
            # window of 500k tasks would rebuild each of them again on the next run.
            generated.task = functools.cache(generated._build)
        self.dataset = dataset
        #: Job id -> the record's encoded JSON, exactly as the fake writes it.
        self.encoded: dict[int, bytes] = {}
        self.arrivals: list[float] = []
        self.misses = 0
        self._date_second = -1
        self._date_line = b""

    def date_line(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_line = b"date: " + http_date(now) + b"\r\n\r\n"
        return self._date_line

    def page(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes | None:
        """The encoded body of a successful page, or ``None`` for the fake to answer."""
        fake = self.fake
        timestamp = headers.get("timestamp", "")
        if (
            method != "POST"
            or path != QUERY_PATH
            or headers.get("api-key") != fake.api_key
            or not sign_matches(headers.get("sign", ""), fake.api_key, fake.api_secret, timestamp)
            or "json" not in headers.get("content-type", "").lower()
        ):
            return None
        try:
            if abs(int(timestamp) - fake.time()) > fake.timestamp_tolerance:
                return None
            current, size, query = parse_query_body(json.loads(body))
        except Exception:  # anything the fake answers better: a bad body, a bad time
            return None
        total, tasks = self.dataset.page(query, current, size)
        encoded = self.encoded
        parts = []
        for task in tasks:
            record = encoded.get(task.job_id)
            if record is None:
                record = encoded[task.job_id] = dumps(task.to_wire())
            parts.append(record)
        data = (
            b'{"records":[%b],"total":%d,"size":%d,"current":%d,"searchCount":true,"pages":%d}'
            % (b",".join(parts), total, size, current, -(-total // size))
        )
        return _ENVELOPE_START + data + b"}"

    def stats(self) -> dict[str, Any]:
        arrivals = sorted(self.arrivals)
        best, first = 0, 0
        for last, moment in enumerate(arrivals):
            while moment - arrivals[first] >= 1.0:
                first += 1
            best = max(best, last - first + 1)
        start = arrivals[0] if arrivals else 0.0
        report = {
            "requests": len(arrivals),
            "misses": self.misses,
            "max_in_any_second": best,
            "arrivals": [round(moment - start, 6) for moment in arrivals],
        }
        self.arrivals = []
        self.misses = 0
        return report


#: Linux's SO_TIMESTAMPNS (and its control message type), which Python does not name.
_SO_TIMESTAMPNS = 35


class _StampedSocket(socket.socket):
    """A connection whose every read keeps the kernel's receive time of its data (asyncio's
    transport reads with ``recv``, which this answers with ``recvmsg``)."""

    stamp = 0.0

    def recv(self, size: int, flags: int = 0) -> bytes:
        data, ancillary, _, _ = self.recvmsg(size, 64, flags)
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                self.stamp = seconds + nanoseconds / 1e9
                break
        else:
            self.stamp = time.time()
        return data


class _Connection(asyncio.Protocol):
    def __init__(self, state: _State, sock: _StampedSocket) -> None:
        self._sock = sock
        self._state = state
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False  # a request is with the fake; the client waits for it
        self._asking: asyncio.Future[None] | None = None  # that request's task, kept alive

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._serve()

    def _serve(self) -> None:
        transport = self._transport
        assert transport is not None
        while True:
            buffer = self._buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    transport.close()
                return
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length > _MAX_BODY:
                transport.close()
                return
            if len(buffer) < end + 4 + length:
                return
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            state = self._state
            state.arrivals.append(self._sock.stamp)
            page = state.page(method, path, headers, body)
            if page is not None:
                length_line = b"content-length: %d\r\n" % len(page)
                transport.writelines((_HEAD, length_line, state.date_line(), page))
                continue
            self._busy = True
            self._asking = asyncio.ensure_future(self._ask_the_fake(method, path, headers, body))
            return

    async def _ask_the_fake(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> None:
        state = self._state
        state.misses += 1
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # the fake never asks twice; never answered
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                parts.append(message.get("body", b""))

        await state.fake(scope, receive, send)
        reply = b"".join(parts)
        status = start["status"]
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        for name, value in start["headers"]:
            if name.lower() != b"date":
                head.append(name + b": " + value)
        before_date = b"\r\n".join(head) + b"\r\n"
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.writelines((before_date, state.date_line(), reply))
        self._busy = False
        if self._buffer:
            self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def _fake_answer(fake: FakeVendor, headers: dict[str, str], body: bytes) -> bytes:
    """What the fake itself answers to a POST of ``body`` to the query path."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": QUERY_PATH,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    parts: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        parts.append(message.get("body", b""))

    await fake(scope, receive, send)
    return b"".join(parts)


async def _self_check(state: _State) -> None:
    """Refuse to serve unless this path's pages are the fake's own, for a few queries."""
    fake = state.fake
    timestamp = str(int(fake.time()))
    headers = {
        "api-key": fake.api_key,
        "timestamp": timestamp,
        "sign": expected_sign(fake.api_key, fake.api_secret, timestamp),
        "content-type": "application/json",
    }
    for current, size, start, end in [
        (1, 100, "2024-01-01 00:00:00", "2024-07-01 00:00:00"),
        (7, 100, "2024-02-01 00:00:00", "2024-03-01 12:00:00"),
        (3, 37, "2024-05-01 00:00:00", "2024-05-02 00:00:00"),
        (10**6, 100, "2024-01-01 00:00:00", "2024-07-01 00:00:00"),
    ]:
        params = {"strTime": start, "endTime": end, "statusList": []}
        body = json.dumps({"current": current, "size": size, "params": params}).encode()
        ours = state.page("POST", QUERY_PATH, headers, body)
        theirs = await _fake_answer(fake, headers, body)
        if ours is None or json.loads(ours) != json.loads(theirs):
            raise RuntimeError(f"the cached pages differ from the fake's for {body!r}")
    fake.stats.reset()


async def _main(args: argparse.Namespace) -> int:
    fake = FakeVendor(
        args.api_key,
        args.api_secret,
        dataset=Dataset.generate(args.tasks, seed=args.seed),
        seed=args.seed,
    )
    state = _State(fake)
    await _self_check(state)
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(256)
    listener.setblocking(False)
    accepting = asyncio.ensure_future(_accept(listener, state))
    print(f"listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def on_command() -> None:
        line = sys.stdin.readline()
        if not line:
            stop.set()
        elif line.strip() == "stats":
            print(json.dumps(state.stats()), flush=True)

    loop.add_reader(sys.stdin.fileno(), on_command)
    await stop.wait()
    accepting.cancel()
    listener.close()
    return 0


async def _accept(listener: socket.socket, state: _State) -> None:
    """Accept connections for good, each on a socket that stamps what it reads."""
    loop = asyncio.get_running_loop()
    while True:
        accepted, _ = await loop.sock_accept(listener)
        sock = _StampedSocket(accepted.family, accepted.type, accepted.proto, accepted.detach())
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sys.platform == "linux":
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        await loop.connect_accepted_socket(
            lambda sock=sock: _Connection(state, sock),  # type: ignore[misc]
            sock=sock,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0, help="must be 0: not supported")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--api-secret", default="test-secret")
    args = parser.parse_args()
    if args.latency:
        parser.error("the cached server answers at once: --latency is not supported")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
