"""Serve a fake vendor on loopback with uvicorn (imported lazily; ``itnio-async[testing]``).

- :func:`serve` is a *sync* context manager: uvicorn runs in a background thread
  with its own event loop, so the calling code may use any loop (or none)::

      with serve(FakeVendor()) as base_url:   # "http://127.0.0.1:PORT"
          ...

- :func:`aserve` is the *async* variant for code already inside a running loop; the
  server runs as a task of that loop::

      async with aserve(fake) as base_url:
          ...

Both bind a free port when ``port=0``, keep uvicorn quiet (warnings only, no
access log, no change to your logging configuration) and stop it cleanly on exit.
A :meth:`~itnio_async.testing.Fault.drop` really closes the TCP connection
mid-response there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from ._vendor import DroppedConnection

if TYPE_CHECKING:
    import uvicorn

__all__ = ["aserve", "bind_socket", "make_server", "serve"]

#: An ASGI 3 application: a FakeVendor, or anything else callable that way.
ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

_START_TIMEOUT: Final = 10.0  # seconds to wait for uvicorn to start
_STOP_TIMEOUT: Final = 10.0  # seconds to wait for it to stop


class _HideDrops(logging.Filter):
    """Hide uvicorn's traceback for the fake's deliberate dropped connections."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


_HIDE_DROPS: Final = _HideDrops()


def _quiet_uvicorn() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _HIDE_DROPS not in logger.filters:
        logger.addFilter(_HIDE_DROPS)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port=0``: a free one), ready for uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio turns TCP_NODELAY on only for sockets whose
    # protocol says TCP. Without it uvicorn's two writes (head, then body) meet the peer's
    # delayed ACK, and every answer on loopback waited about 40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def make_server(app: ASGIApp, *, log_level: str = "warning") -> uvicorn.Server:
    """A quiet uvicorn server for ``app`` that leaves signal handling to its caller."""
    import uvicorn  # lazily: only serving needs it

    class _Server(uvicorn.Server):
        # The caller owns signals (a test runner, our CLI): never install handlers.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # older uvicorn spelling
            return None

    _quiet_uvicorn()
    config = uvicorn.Config(
        app,
        interface="asgi3",
        lifespan="off",
        http="h11",
        ws="none",
        log_config=None,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,  # the fake sends its own Date, from its own clock
        timeout_graceful_shutdown=5,
    )
    return _Server(config)


@contextlib.contextmanager
def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` (e.g. a :class:`FakeVendor`) on ``host:port`` in a background thread.

    Yields the base URL ``http://HOST:PORT``; stops the server on exit.
    """
    sock = bind_socket(host, port)
    server = make_server(app)
    failure: list[BaseException] = []  # an exception that ended the server thread

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=run, name="itnio-fake-vendor", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake vendor server did not start") from (
                    failure[0] if failure else None
                )
            time.sleep(0.001)
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(_STOP_TIMEOUT)
        sock.close()


@contextlib.asynccontextmanager
async def aserve(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` as a task of the running loop; yield the base URL."""
    sock = bind_socket(host, port)
    server = make_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="itnio-fake-vendor")
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the fake vendor server did not start")
            await asyncio.sleep(0.001)
        yield base_url(sock)
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
