"""The transport under the client: httpx's own and the aiohttp one (``http_backend``).

Each behaviour the send path relies on is tried with both, against servers on 127.0.0.1
that the tests start and stop: paging, the pool's size, timeouts, the size cap, no
redirects, every fault as an error of our tree (never a raw aiohttp exception),
cancellation and closing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from itnio_async import (
    AsyncVoiceClient,
    ClientStateError,
    ItnioError,
    ItnioHTTPError,
    ItnioTimeoutError,
    ItnioTransportError,
    MalformedResponseError,
    RetryPolicy,
    _transport,
)
from itnio_async.testing import Dataset, FakeVendor, aserve

from .conftest import KEY, SECRET

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("httpx_aiohttp")

BACKENDS = ["httpx", "aiohttp"]
START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
PAGE = b'{"code":0,"msg":"ok","data":{"records":[],"total":0,"size":100,"current":1,"pages":0}}'

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def loopback(handler: Handler) -> AsyncIterator[str]:
    """A raw TCP server on 127.0.0.1 running ``handler`` for each connection; on exit the
    handlers still running are cancelled (``wait_closed`` waits for them from 3.12 on)."""
    running: set[asyncio.Task[Any]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            running.discard(task)
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


def answer(body: bytes = PAGE, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


def client_for(url: str, backend: str, **kwargs: Any) -> AsyncVoiceClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy(max_retries=0))
    client = AsyncVoiceClient(KEY, SECRET, base_url=url, http_backend=backend, **kwargs)
    assert client.http_backend == backend
    return client


async def failure_of(url: str, backend: str, **kwargs: Any) -> ItnioError:
    async with client_for(url, backend, **kwargs) as client:
        with pytest.raises(ItnioError) as caught:
            await client.query_group_calls(START, END)
    return caught.value


def assert_no_raw_aiohttp(exc: BaseException) -> None:
    """Our error, caused by an httpx one; aiohttp's only further down the chain."""
    assert isinstance(exc, ItnioError)
    assert not isinstance(exc, aiohttp.ClientError)
    cause = exc.__cause__
    if cause is not None:
        # An httpx error, or the attempt's own deadline (asyncio's TimeoutError).
        assert isinstance(cause, httpx.HTTPError | ItnioError) or type(cause) is TimeoutError
        assert not isinstance(cause, aiohttp.ClientError)


# -- choosing ----------------------------------------------------------------------------


def test_auto_takes_aiohttp_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    client = AsyncVoiceClient(KEY, SECRET)
    assert client.http_backend == "aiohttp"
    assert isinstance(client._http._transport, _transport.AiohttpBackedTransport)


def test_auto_keeps_httpx_when_a_proxy_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiohttp's pool, as httpx-aiohttp makes it, would ignore the proxy httpx honours.
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert AsyncVoiceClient(KEY, SECRET).http_backend == "httpx"


def test_auto_keeps_httpx_without_the_speedups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_transport, "aiohttp_available", lambda: False)
    client = AsyncVoiceClient(KEY, SECRET)
    assert client.http_backend == "httpx"
    assert isinstance(client._http._transport, httpx.AsyncHTTPTransport)


def test_asking_for_aiohttp_without_it_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transport, "aiohttp_available", lambda: False)
    with pytest.raises(ValueError, match=r"http_backend='aiohttp'.*itnio-async\[speedups\]"):
        AsyncVoiceClient(KEY, SECRET, http_backend="aiohttp")


@pytest.mark.parametrize(
    ("value", "error"), [("curl", ValueError), ("", ValueError), (None, TypeError), (1, TypeError)]
)
def test_a_bad_http_backend_is_refused_naming_it(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="http_backend"):
        AsyncVoiceClient(KEY, SECRET, http_backend=value)


def test_http_backend_and_a_transport_of_the_callers_are_refused_together() -> None:
    with pytest.raises(ValueError, match="http_backend"):
        AsyncVoiceClient(KEY, SECRET, http_backend="httpx", transport=httpx.MockTransport(print))
    # With "auto" (the default) the caller's transport is simply used.
    client = AsyncVoiceClient(KEY, SECRET, transport=httpx.MockTransport(print))
    assert client.http_backend == "custom"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_own_pool_is_sized_for_the_clients_concurrency(backend: str) -> None:
    client = AsyncVoiceClient(KEY, SECRET, max_connections=7, http_backend=backend)
    assert _transport.pool_size(client._http._transport) == 7


def test_an_injected_aiohttp_clients_pool_sizes_the_connection_slots() -> None:
    from httpx_aiohttp import AiohttpTransport

    http = httpx.AsyncClient(transport=AiohttpTransport(limits=httpx.Limits(max_connections=3)))
    assert AsyncVoiceClient(KEY, SECRET, http_client=http).max_connections == 3


# -- on loopback, with both ----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_stream_reads_every_record_once(backend: str) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(3000, seed=3))
    async with aserve(fake) as url, client_for(url, backend) as client:
        ids = [r.job_id async for r in client.iter_group_calls(START, END, concurrency=8)]
    expected = [task.job_id for task in fake.expected(START, END)]
    assert sorted(ids) == sorted(expected)
    assert len(ids) == len(set(ids)) == 3000


@pytest.mark.parametrize("backend", BACKENDS)
async def test_no_more_connections_open_than_the_pool_holds(backend: str) -> None:
    open_now = most = 0
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        try:
            while True:
                await read_request(reader)
                await release.wait()
                writer.write(answer())
                await writer.drain()
        finally:
            open_now -= 1

    async with loopback(handler) as url, client_for(url, backend, max_connections=3) as client:
        calls = [asyncio.create_task(client.query_group_calls(START, END)) for _ in range(12)]
        await asyncio.sleep(0.1)  # every call that can is connected and waiting
        release.set()
        pages = await asyncio.gather(*calls)
    assert len(pages) == 12
    assert most == 3


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_server_that_never_answers_is_a_timeout(backend: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.Event().wait()  # silence until the client gives up

    async with loopback(handler) as url:
        error = await failure_of(url, backend, timeout=0.2)
    assert isinstance(error, ItnioTimeoutError)
    assert_no_raw_aiohttp(error)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_body_trickling_in_cannot_outlive_the_deadline(backend: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(1000):  # bounded: far longer than the deadline
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with loopback(handler) as url:
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = await failure_of(url, backend, timeout=httpx.Timeout(0.3, read=0.3))
        assert loop.time() - started < 3
    assert isinstance(error, ItnioTimeoutError)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_past_max_response_bytes_is_refused(backend: str, declared: bool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if declared:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b" " * 1000)
        else:  # chunked, with no end in sight
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(200):
                writer.write(b"400\r\n" + b" " * 1024 + b"\r\n")
                await writer.drain()
        await writer.drain()

    async with loopback(handler) as url:
        error = await failure_of(url, backend, max_response_bytes=50_000)
    assert isinstance(error, MalformedResponseError)
    assert "max_response_bytes" in str(error)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_redirect_is_not_followed(backend: str) -> None:
    requests = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            await read_request(reader)
            requests += 1
            writer.write(answer(b"", b"302 Found", b"Location: https://elsewhere.test/x\r\n"))
            await writer.drain()

    async with loopback(handler) as url:
        error = await failure_of(url, backend)
    assert isinstance(error, ItnioHTTPError)
    assert error.status_code == 302
    assert "elsewhere.test" in str(error)
    assert requests == 1


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b'{"code":0')
    await writer.drain()  # then close, mid-body


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"SMTP ready\r\n\r\n")
    await writer.drain()


async def _no_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)  # then close without a word


async def _bad_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Huge: " + b"a" * 70_000 + b"\r\n\r\n")
    await writer.drain()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("server", [_hang_up, _garbage, _no_answer, _bad_header])
async def test_a_broken_server_is_a_transport_error_of_our_tree(
    backend: str, server: Handler
) -> None:
    async with loopback(server) as url:
        error = await failure_of(url, backend)
    assert isinstance(error, ItnioTransportError)
    assert_no_raw_aiohttp(error)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_refused_connection_is_a_transport_error_of_our_tree(backend: str) -> None:
    async with loopback(_no_answer) as url:
        pass  # the port is free again: nothing listens there
    error = await failure_of(url, backend)
    assert isinstance(error, ItnioTransportError)
    assert "ConnectError" in str(error)
    assert_no_raw_aiohttp(error)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_cancelled_call_leaves_the_client_working(backend: str) -> None:
    calls = 0
    hold = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        while True:
            await read_request(reader)
            calls += 1
            if calls == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(PAGE))
                await writer.drain()
                await hold.wait()  # the body never comes: the call is cancelled meanwhile
                return
            writer.write(answer())
            await writer.drain()

    async with loopback(handler) as url, client_for(url, backend, max_connections=1) as client:
        first = asyncio.create_task(client.query_group_calls(START, END))
        for _ in range(200):  # bounded wait for the request to arrive
            if calls:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        # The one connection slot is free again, and the half-read connection is not reused.
        page = await asyncio.wait_for(client.query_group_calls(START, END), 5)
        hold.set()
    assert page.total == 0
    assert calls == 2


@pytest.mark.parametrize("backend", BACKENDS)
async def test_aclose_ends_a_call_in_flight_and_closes_the_pool(backend: str) -> None:
    arrived = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        arrived.set()
        await asyncio.Event().wait()

    async with loopback(handler) as url:
        client = client_for(url, backend)
        call = asyncio.create_task(client.query_group_calls(START, END))
        await asyncio.wait_for(arrived.wait(), 5)
        await client.aclose()
        with pytest.raises(ClientStateError):
            await call
    transport = client._http._transport
    if isinstance(transport, _transport.AiohttpBackedTransport):
        session = transport._inner.client
        assert session is not None
        assert session.closed


# -- the mapping itself ----------------------------------------------------------------------


def _key() -> Any:
    return aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (lambda: aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (lambda: aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (lambda: aiohttp.ServerTimeoutError("read"), httpx.ReadTimeout),
        (lambda: TimeoutError(), httpx.ReadTimeout),
        (lambda: aiohttp.ClientConnectorError(_key(), OSError(111, "refused")), httpx.ConnectError),
        (lambda: aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (lambda: aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (lambda: aiohttp.ClientResponseError(None, (), message="bad"), httpx.RemoteProtocolError),
        (lambda: aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (lambda: aiohttp.InvalidURL("x"), httpx.UnsupportedProtocol),
        (lambda: aiohttp.ClientError("other"), httpx.TransportError),
        # httpx-aiohttp's own mapping of a dropped connection, read by what it wrapped.
        (lambda: _wrapped(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()),
         httpx.RemoteProtocolError),
    ],
)  # fmt: skip
def test_every_aiohttp_exception_maps_to_the_httpx_one_for_the_same_fault(
    raised: Callable[[], BaseException], expected: type[httpx.TransportError]
) -> None:
    mapped = _transport._as_httpx_error(raised())
    assert type(mapped) is expected


def _wrapped(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize("exc", [ValueError("x"), KeyError("y"), httpx.ReadError("plain")])
def test_what_is_not_aiohttps_is_left_alone(exc: BaseException) -> None:
    assert _transport._as_httpx_error(exc) is None


class _Failing(httpx.AsyncByteStream):
    def __init__(self, during: BaseException | None, closing: BaseException | None) -> None:
        self._during = during
        self._closing = closing

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        if self._during is not None:
            raise self._during

    async def aclose(self) -> None:
        if self._closing is not None:
            raise self._closing


async def test_a_body_failing_midway_or_on_close_raises_httpxs_error() -> None:
    stream = _transport._MappedStream(_Failing(aiohttp.ClientPayloadError("cut"), None))
    with pytest.raises(httpx.RemoteProtocolError) as caught:
        _ = [chunk async for chunk in stream]
    assert isinstance(caught.value.__cause__, aiohttp.ClientPayloadError)
    closing = _transport._MappedStream(_Failing(None, aiohttp.ClientOSError(32, "pipe")))
    with pytest.raises(httpx.ReadError):
        await closing.aclose()
    # Not aiohttp's: left as it is, for the send path to see as it would with httpx.
    with pytest.raises(ValueError, match="ours"):
        _ = [chunk async for chunk in _transport._MappedStream(_Failing(ValueError("ours"), None))]
    with pytest.raises(KeyError):
        await _transport._MappedStream(_Failing(None, KeyError("x"))).aclose()


async def test_what_the_transport_raises_that_is_not_aiohttps_passes_unchanged() -> None:
    transport = _transport.AiohttpBackedTransport(httpx.Limits(max_connections=1))

    class Broken:
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise LookupError("not a fault of the network")

        async def aclose(self) -> None:
            return None

    transport._inner = Broken()  # type: ignore[assignment]
    with pytest.raises(LookupError):
        await transport.handle_async_request(httpx.Request("POST", "http://127.0.0.1:9/"))
    await transport.aclose()
