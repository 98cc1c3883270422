"""The HTTP transport under the client's ``httpx.AsyncClient``: httpx's own, or aiohttp's.

httpx's default transport (httpcore) spends most of a fast client's CPU on its pool's
bookkeeping: for every request it asks each idle connection for its peer address and
polls it for readability. At 500-1,000 requests/s that, not the network, is the ceiling
(the one-process case of ``benchmarks/``). ``httpx-aiohttp`` (the ``speedups`` extra)
offers an httpx transport on aiohttp's connection pool that keeps the httpx API, so the
send path, the hooks and an injected ``http_client`` all stay as they are.

``http_backend`` chooses (see :func:`check_http_backend`): ``"auto"``, the default, takes
aiohttp when ``httpx-aiohttp`` is installed and no proxy is configured in the environment
(aiohttp's pool, as httpx-aiohttp makes it, does not read ``HTTPS_PROXY``), else httpx;
``"httpx"`` and ``"aiohttp"`` force one.

:class:`AiohttpBackedTransport` wraps httpx-aiohttp's transport for one reason: its own
mapping of aiohttp's exceptions lets some through raw (``ClientResponseError`` for a
malformed reply, for one) and names others wrongly (a dropped connection is a
``ConnectTimeout`` there). Here every aiohttp exception becomes the httpx exception that
httpcore would raise for the same fault, so the send path's one mapping into our error
tree covers both transports. Hand-written because that mapping is what this module is.
"""

from __future__ import annotations

import importlib.util
import urllib.request
from collections.abc import AsyncIterator
from typing import Final

import httpx

__all__ = [
    "HTTP_BACKENDS",
    "AiohttpBackedTransport",
    "aiohttp_available",
    "check_http_backend",
    "make_transport",
    "pool_size",
]

#: The values ``http_backend`` takes.
HTTP_BACKENDS: Final = ("auto", "httpx", "aiohttp")
_EXTRA: Final = "pip install 'itnio-async[speedups]'"


def aiohttp_available() -> bool:
    """Whether ``httpx-aiohttp`` (and so aiohttp) can be imported."""
    return importlib.util.find_spec("httpx_aiohttp") is not None


def _environment_proxies() -> bool:
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def check_http_backend(http_backend: object) -> str:
    """The backend ``http_backend`` resolves to, ``"httpx"`` or ``"aiohttp"``.

    Raises ``TypeError`` for a non-string, ``ValueError`` for an unknown name or for
    ``"aiohttp"`` without ``httpx-aiohttp`` installed (the message says how to install it).
    """
    if not isinstance(http_backend, str):
        raise TypeError(f"http_backend must be a str, got {type(http_backend).__name__}")
    if http_backend not in HTTP_BACKENDS:
        raise ValueError(
            f"http_backend must be one of {', '.join(map(repr, HTTP_BACKENDS))}, "
            f"got {http_backend!r}"
        )
    if http_backend == "aiohttp":
        if not aiohttp_available():
            raise ValueError(f"http_backend='aiohttp' needs httpx-aiohttp: {_EXTRA}")
        return "aiohttp"
    if http_backend == "auto" and aiohttp_available() and not _environment_proxies():
        return "aiohttp"
    return "httpx"


def make_transport(backend: str, limits: httpx.Limits) -> httpx.AsyncBaseTransport | None:
    """The transport for a resolved ``backend``: ``None`` lets httpx make its own."""
    if backend == "aiohttp":
        return AiohttpBackedTransport(limits)
    return None


def pool_size(transport: object) -> int | None:
    """The connection limit of ``transport``'s pool, when it can be read: httpx's own
    (its httpcore pool, read through private names: httpx has no accessor) or one that
    keeps its ``httpx.Limits`` as ``limits`` (httpx-aiohttp's and ours); else ``None``."""
    size: object = None
    pool = getattr(transport, "_pool", None)
    if pool is not None:
        size = getattr(pool, "_max_connections", None)
    else:
        limits = getattr(transport, "limits", None)
        if isinstance(limits, httpx.Limits):
            size = limits.max_connections
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def _as_httpx_error(exc: BaseException) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp one (or for the httpx exception that
    httpx-aiohttp made of it); ``None`` for anything else."""
    import aiohttp  # installed with httpx-aiohttp, which is how this module runs at all
    from aiohttp.http_exceptions import HttpProcessingError

    # httpx-aiohttp maps some itself (to the wrong class, at times): read what it wrapped.
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    ours = isinstance(cause, aiohttp.ClientError | HttpProcessingError)
    # A bare TimeoutError from inside the transport is one of aiohttp's timers (the
    # attempt's own deadline arrives as a cancellation, never as a TimeoutError here).
    if not ours and not (isinstance(cause, TimeoutError) and cause is exc):
        return None
    try:
        message = f"{type(cause).__name__}: {cause}"
    except Exception:  # aiohttp's __str__ reads fields a bare instance may lack
        message = type(cause).__name__
    kind: type[httpx.TransportError]
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(cause, TimeoutError):  # ServerTimeoutError, SocketTimeoutError
        kind = httpx.ReadTimeout
    elif isinstance(cause, aiohttp.ClientConnectorError):  # refused, DNS, TLS
        kind = httpx.ConnectError
    elif isinstance(
        cause,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientResponseError
        | HttpProcessingError,
    ):  # the server broke the protocol: hung up mid-reply, a malformed head or body
        kind = httpx.RemoteProtocolError
    elif isinstance(cause, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        kind = httpx.UnsupportedProtocol
    elif isinstance(cause, aiohttp.ClientConnectionError):  # reset, broken pipe
        kind = httpx.ReadError
    else:
        kind = httpx.TransportError
    return kind(message)


class _MappedStream(httpx.AsyncByteStream):
    """A reply body whose aiohttp exceptions come out as httpx's."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            mapped = _as_httpx_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except Exception as exc:
            mapped = _as_httpx_error(exc)
            if mapped is None:
                raise
            raise mapped from exc


class AiohttpBackedTransport(httpx.AsyncBaseTransport):
    """httpx-aiohttp's ``AiohttpTransport`` with every aiohttp exception mapped to httpx's.

    ``limits`` sizes aiohttp's pool (``max_connections``; idle connections close after
    ``keepalive_expiry``). Redirects are never followed, nor bodies decompressed by
    aiohttp (httpx does that, as with its own transport). The aiohttp session is made at
    the first request, on the running loop, and closed by ``aclose()``.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        from httpx_aiohttp import AiohttpTransport

        #: The pool's limits (read by the client to size its connection slots).
        self.limits = limits
        self._inner = AiohttpTransport(limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            mapped = _as_httpx_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _MappedStream(response.stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
