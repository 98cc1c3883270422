"""``AsyncVoiceClient``: the front of the library.

It holds the settings (checked at construction), reads the environment, owns the
lifecycle (the loop it is bound to, the connection pool, ``aclose()``) and offers the
public methods. Every request goes through the send path in ``_send``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any, Final, Self

import httpx

from ._call_query import CallRecordQuery
from ._call_records import (
    CallRecordPageStream,
    CallRecordStream,
    call_record_options,
    call_record_pages,
)
from ._converter import make_converter_with_hooks
from ._errors import ClientStateError, MalformedResponseError
from ._group_calls import GroupCallPageStream, GroupCallStream, group_call_spec
from ._hooks import CallTally, ClientHooks, PageEvent, call_hook
from ._limiter import LocalRateLimiter, RateLimiter
from ._models import (
    CallRecord,
    GroupCallDetail,
    GroupCallRecord,
    GroupCallStatus,
    Page,
    UnfinishedPage,
)
from ._paging import StreamCursor
from ._query import GroupCallQuery, check_page, check_positive_int
from ._retry import RetryPolicy
from ._send import Sender
from ._settings import (
    DEFAULT_BASE_URL,
    DEFAULT_RATE_LIMIT,
    ENV_API_KEY,
    ENV_API_SECRET,
    ENV_BASE_URL,
    check_base_url,
    env_value,
)
from ._signing import Credentials, ServerClock, check_credential
from ._stream import ProgressCallback, StreamOptions, StreamProgress
from ._transport import check_http_backend, make_transport, pool_size

logger = logging.getLogger("itnio_async")

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "AsyncVoiceClient",
]

#: Finite by default: 10 s to connect, 30 s for each read, write or pool wait.
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
#: Connections (and so requests in flight) per client.
DEFAULT_MAX_CONNECTIONS: Final = 32
#: The largest reply body read: a page of 100 tasks is some 30 kB, so this leaves room
#: for any real reply and keeps a hostile or broken server from growing memory.
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024

GROUP_CALL_QUERY_PATH: Final = "/voice/group/call/query"
GROUP_CALL_DETAIL_PATH: Final = "/voice/group/call/detail/"
CALL_RECORD_QUERY_PATH: Final = "/voice/recordGroupQuery"
CALL_RECORD_PATH: Final = "/voice/recordGroup/"

_DEFAULT_RETRY: Final = RetryPolicy()

_CLOSED: Final = "the client is closed; create a new AsyncVoiceClient"
_CLOSED_WITH_THE_LOOP: Final = (
    "the client was closed when its event loop shut down; an asyncio client cannot move "
    "between event loops, so create one client per event loop"
)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


def _park(agen: AsyncGenerator[None, None]) -> None:
    """Run an async generator to its first ``yield`` without awaiting it (it awaits nothing
    before): its first step registers it with the running loop, which closes it at
    shutdown."""
    try:
        agen.asend(None).send(None)
    except StopIteration:
        return
    raise AssertionError("the generator awaited before its first yield")  # pragma: no cover


def _take_credentials(api_key: object, api_secret: object) -> Credentials | Exception:
    """The credentials, from the arguments or the environment, checked; or the error to
    raise. Returned rather than raised, with no traceback: the caller drops the raw values
    from its frame first, so that no frame of a traceback holds the secret."""
    try:
        key = _credential("api_key", api_key, ENV_API_KEY)
        secret = _credential("api_secret", api_secret, ENV_API_SECRET)
    except (TypeError, ValueError) as exc:
        return exc.with_traceback(None)
    return Credentials(key, secret)


def _credential(name: str, value: object, variable: str) -> str:
    if value is None:
        value = env_value(variable)
        if value:
            return check_credential(variable, value)
    if isinstance(value, str) and not value:
        value = None
    if value is None:
        raise ValueError(f"{name} is required: pass {name}= or set {variable}")
    return check_credential(name, value)


def _check_seconds(name: str, value: object) -> float:
    if value is None:
        raise ValueError(f"{name} must be finite: None would let a request wait forever")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be seconds or an httpx.Timeout, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _check_timeout(timeout: object, name: str = "timeout") -> httpx.Timeout:
    """The timeout as httpx takes it; every phase finite and positive (the README's promise)."""
    if isinstance(timeout, httpx.Timeout):
        for phase in ("connect", "read", "write", "pool"):
            _check_seconds(f"{name}.{phase}", getattr(timeout, phase))
        return timeout
    return httpx.Timeout(_check_seconds(name, timeout))


def _pool_size(http: httpx.AsyncClient, url: httpx.URL) -> int | None:
    """The connection limit of the pool that serves ``url``, when it can be read (httpx's
    own transport, or the aiohttp one); ``None`` for any other transport (the caller's
    ``max_connections`` holds)."""
    return pool_size(http._transport_for_url(url))


def _attempt_deadline(timeout: httpx.Timeout) -> float:
    """Seconds one attempt may take in all: the longest of the timeout's phases (so a
    plain ``timeout=2`` bounds the whole attempt to 2 s)."""
    phases = (timeout.connect, timeout.read, timeout.write)
    return max(phase for phase in phases if phase is not None)


class AsyncVoiceClient:
    """An asyncio client for the Itniotech voice API.

    Create one per process (or per event loop) and share it between all tasks: it holds
    the connection pool, the rate limiter and the learned server clock. Open it with
    ``async with`` (or call ``aclose()`` when done). Every argument is checked here,
    before any request; the README's "The client" says more of each.

    Args:
        api_key: the account's key, a non-empty ``str`` of visible ASCII (``!`` to ``~``).
            Default ``None``: ``ITNIO_API_KEY``.
        api_secret: its secret, as ``api_key``; default ``None``: ``ITNIO_API_SECRET``.
            Never shown in a ``repr``, a log line, an exception or a traceback's locals.
        base_url: the vendor's endpoint, ``https://`` (plain ``http://`` only to a
            loopback host), a path prefix kept; no user, password, query or fragment.
            Default ``None``: ``ITNIO_BASE_URL``, else ``DEFAULT_BASE_URL``.
        rate_limit: requests per second for this client, every attempt counted, at least
            1/3600; ``None`` for no limit. Default ``DEFAULT_RATE_LIMIT`` (10). Ignored
            when ``limiter`` is given.
        burst: the token bucket's size (default 1: requests evenly spaced).
        limiter: a ``RateLimiter`` (``async acquire()``, ``async pause(seconds)``) to use
            instead of the built-in bucket, such as ``itnio_async.redis.RedisRateLimiter``
            to share one quota between processes. Default ``None``: a
            ``LocalRateLimiter(rate_limit, burst)``.
        retry: which faults are retried, how often and how long (default
            ``RetryPolicy()``: 5 retries, 60 s deadline).
        timeout: seconds, or an ``httpx.Timeout`` whose every phase is finite and > 0;
            default ``DEFAULT_TIMEOUT`` (10 s to connect, 30 s otherwise). Each attempt
            as a whole also ends within its longest phase.
        max_connections: the pool's size and the most requests in flight (default 32);
            callers beyond it wait inside the client.
        max_response_bytes: the largest reply body read (default 4 MiB); a larger one is
            a ``MalformedResponseError``.
        server_timezone: the zone of the vendor's times (a ``tzinfo``, such as
            ``ZoneInfo("Asia/Shanghai")``). Default ``None``: times are naive and sent
            as they are; aware ones are refused.
        clock_correction: learn the vendor's clock from a ``-16`` reply's ``Date``
            header and retry at once (default ``True``).
        http_client: your own ``httpx.AsyncClient`` (it stays yours to close), with a
            finite timeout; then ``timeout`` must be left as it is. Default ``None``: the
            client makes its own pool.
        transport: an ``httpx`` transport for the client's own pool, such as the fake
            vendor's ``fake.transport()``; not with ``http_client``.
        hooks: a ``ClientHooks`` for metrics and tracing (default ``None``).
        http_backend: the transport of the client's own pool: ``"httpx"`` (httpcore),
            ``"aiohttp"`` (httpx-aiohttp, the ``speedups`` extra) or ``"auto"`` (the
            default): aiohttp when httpx-aiohttp is installed and no proxy is set in the
            environment, else httpx. Leave it ``"auto"`` with ``transport`` or
            ``http_client``. ``http_backend`` (the property) says which one runs.

    Raises:
        TypeError: an argument of the wrong type, naming it.
        ValueError: a missing credential (naming the argument and its variable), a
            credential with a space, control or non-ASCII character, an unsafe
            ``base_url`` (or ``ITNIO_BASE_URL``, then naming the variable), a rate,
            burst, size or timeout out of range, ``http_client`` with ``transport``
            or ``timeout``, an unknown ``http_backend``, ``"aiohttp"`` without
            httpx-aiohttp installed, or one other than ``"auto"`` with ``transport`` or
            ``http_client``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        base_url: str | None = None,
        rate_limit: float | None = DEFAULT_RATE_LIMIT,
        burst: int = 1,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy = _DEFAULT_RETRY,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        server_timezone: tzinfo | None = None,
        clock_correction: bool = True,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        hooks: ClientHooks | None = None,
        http_backend: str = "auto",
    ) -> None:
        self._state = _State.UNOPENED
        credentials = _take_credentials(api_key, api_secret)
        # From here on no frame of ours holds the raw secret: a traceback's locals (as an
        # error tracker records them) show only the Credentials, whose repr hides it.
        del api_key, api_secret
        if not isinstance(credentials, Credentials):
            raise credentials
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if limiter is not None and not isinstance(limiter, RateLimiter):
            raise TypeError("limiter must have async acquire() and pause(seconds) methods")
        if server_timezone is not None and not isinstance(server_timezone, tzinfo):
            raise TypeError(
                f"server_timezone must be a tzinfo, got {type(server_timezone).__name__}"
            )
        if hooks is not None and not isinstance(hooks, ClientHooks):
            raise TypeError(f"hooks must be a ClientHooks, got {type(hooks).__name__}")
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError(
                f"http_client must be an httpx.AsyncClient, got {type(http_client).__name__}"
            )
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        backend = check_http_backend(http_backend)
        if http_backend != "auto" and (http_client is not None or transport is not None):
            raise ValueError(
                "http_backend chooses the client's own transport: pass it, or "
                "transport= or http_client=, not both"
            )
        max_connections = check_positive_int("max_connections", max_connections)
        if http_client is None:
            timeout = _check_timeout(timeout)
        elif timeout is not DEFAULT_TIMEOUT:
            raise ValueError(
                "timeout= applies to the client's own connection pool; with http_client=, "
                "set the timeout on that httpx.AsyncClient instead"
            )
        else:
            timeout = _check_timeout(http_client.timeout, "http_client's timeout")
        max_response_bytes = check_positive_int("max_response_bytes", max_response_bytes)

        if base_url:
            self._base_url = check_base_url(base_url)
        else:
            from_env = env_value(ENV_BASE_URL)
            self._base_url = (
                check_base_url(from_env, ENV_BASE_URL)
                if from_env is not None
                else check_base_url(DEFAULT_BASE_URL)
            )
        self._credentials = credentials
        self._clock = ServerClock(enabled=clock_correction)
        # Our own limiter validates rate_limit and burst now, but binds to a loop only later.
        self._limiter: RateLimiter = (
            limiter if limiter is not None else LocalRateLimiter(rate_limit, burst)
        )
        self._server_timezone = server_timezone
        self._converter, self._call_hooks = make_converter_with_hooks(server_timezone)
        self._structure_page: Callable[[Any, Any], Page[GroupCallRecord]] = (
            self._converter.get_structure_hook(Page[GroupCallRecord])
        )
        if http_client is not None:
            # Never more requests in flight than the pool has connections: no pool timeout.
            pool = _pool_size(http_client, self._base_url)
            max_connections = min(max_connections, pool) if pool else max_connections
        self._max_connections = max_connections
        self._owns_http = http_client is None
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        if http_client is not None or transport is not None:
            backend = "custom"
        elif (own := make_transport(backend, limits)) is not None:
            transport = own
        #: "httpx", "aiohttp", or "custom" for a transport= or http_client= of the caller.
        self._backend = backend
        self._http = http_client or httpx.AsyncClient(
            transport=transport, timeout=timeout, limits=limits
        )
        self._hooks = hooks
        self._sender = Sender(
            self._http,
            self._base_url,
            self._credentials,
            self._clock,
            self._limiter,
            retry,
            hooks,
            deadline=_attempt_deadline(timeout),
            max_response_bytes=max_response_bytes,
        )
        # The loop this client first ran on; every later call must come from it.
        self._loop: asyncio.AbstractEventLoop | None = None
        # Closes the client when that loop shuts down (see _close_with_the_loop).
        self._guard: AsyncGenerator[None, None] | None = None
        self._closed_reason = ""

    # -- lifecycle -------------------------------------------------------------------------

    def __repr__(self) -> str:
        # Also shown for a client whose construction failed (in a traceback's locals).
        credentials = getattr(self, "_credentials", None)
        key = credentials.api_key if credentials is not None else None
        base_url = str(getattr(self, "_base_url", ""))
        return (
            f"AsyncVoiceClient(api_key={key!r}, base_url={base_url!r}, state={self._state.value!r})"
        )

    async def __aenter__(self) -> Self:
        self._bind_loop()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client: calls from now on raise ``ClientStateError``, and so do the
        requests in flight, which end at once; then the connection pool closes (an
        injected ``http_client`` stays open). Safe to call twice, and after the event
        loop the client ran on has closed (the client closed with it).
        """
        if self._state is _State.CLOSED:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed() and asyncio.get_running_loop() is not loop:
            raise ClientStateError("close this AsyncVoiceClient on the event loop it runs on")
        self._closed_reason = _CLOSED
        guard, self._guard = self._guard, None
        if guard is not None:
            await guard.aclose()  # its finally block shuts the client
        else:
            await self._shut()

    async def _close_with_the_loop(self) -> AsyncGenerator[None, None]:
        # Parked on the client's loop by _bind_loop. A loop that shuts down closes every
        # live async generator (asyncio.run does, after cancelling its tasks and before
        # closing the loop), so this one closes the client while its connections can
        # still be closed cleanly, not after, when they no longer can.
        try:
            yield
        finally:
            await self._shut()

    async def _shut(self) -> None:
        """Refuse new calls, end the requests in flight, then close the pool."""
        if self._state is _State.CLOSED and self._sender.closed:
            return
        self._state = _State.CLOSED
        self._closed_reason = self._closed_reason or _CLOSED_WITH_THE_LOOP
        loop = self._loop
        if loop is not None and loop.is_closed():
            # Closed without shutting its async generators down: with the loop went every
            # connection's transport, and nothing is left to end or to close cleanly.
            self._sender.closed = True
            logger.debug("the client's event loop was closed before the client")
            return
        await self._sender.close()
        if self._owns_http:
            await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        """Whether the client is closed (by ``aclose()``, or with its event loop)."""
        return self._state is _State.CLOSED

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        if self._state is _State.CLOSED:
            raise ClientStateError(self._closed_reason or _CLOSED)
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._sender.bind(loop, self._max_connections)
            self._state = _State.OPENED
            self._guard = self._close_with_the_loop()
            _park(self._guard)
        elif loop is not self._loop:
            raise ClientStateError(
                "this AsyncVoiceClient belongs to another event loop; an asyncio client "
                "cannot move between loops, so create one client per event loop"
            )
        return loop

    @property
    def _retry_sleep(self) -> Callable[[float], Awaitable[None]]:
        # Test seam: how retry waits sleep (tests swap in a recorder; nothing else should).
        return self._sender.retry_sleep

    @_retry_sleep.setter
    def _retry_sleep(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._sender.retry_sleep = sleep

    # -- settings that other layers read ------------------------------------------------

    @property
    def base_url(self) -> str:
        """The vendor's base URL."""
        return str(self._base_url)

    @property
    def server_timezone(self) -> tzinfo | None:
        """The zone of the vendor's times, if configured."""
        return self._server_timezone

    @property
    def clock_offset(self) -> float:
        """Seconds our clock is behind the vendor's, as learned from a ``-16`` reply."""
        return self._clock.offset

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter every attempt of this client goes through."""
        return self._limiter

    @property
    def http_backend(self) -> str:
        """The transport under this client: ``"httpx"`` (httpcore), ``"aiohttp"``
        (httpx-aiohttp, from the ``speedups`` extra), or ``"custom"`` (the caller's
        ``transport=`` or ``http_client=``). See the ``http_backend`` argument."""
        return self._backend

    @property
    def max_connections(self) -> int:
        """Requests this client has in flight at most (its connection pool's size)."""
        return self._max_connections

    def server_now(self) -> datetime:
        """The vendor's current time as this client knows it, to the second.

        Aware in ``server_timezone`` when that is set, else naive local time corrected by
        the learned clock offset.
        """
        now = datetime.fromtimestamp(int(self._clock.now()), tz=UTC)
        if self._server_timezone is None:
            return datetime.fromtimestamp(now.timestamp())
        return now.astimezone(self._server_timezone)

    # -- the API ------------------------------------------------------------------------

    async def query_group_calls(
        self,
        start: datetime,
        end: datetime,
        *,
        statuses: Iterable[GroupCallStatus | int | str] | None = None,
        app_id: int | None = None,
        search: str | None = None,
        page: int = 1,
        size: int = 100,
    ) -> Page[GroupCallRecord]:
        """Fetch one page of group-call tasks created between ``start`` and ``end``.

        Args:
            start: the window's first second, inclusive: a ``datetime``, naive in the
                vendor's zone, or aware (then converted to ``server_timezone``, which it
                needs). Microseconds are dropped.
            end: the window's last second, inclusive, as ``start``; not before it.
            statuses: keep only tasks in these states: ``GroupCallStatus`` members, their
                numbers (0 to 6) or their names (``"completed"``, case-insensitive, ``-``
                or ``_`` alike; see ``GroupCallStatus.parse``). Default ``None``: all.
            app_id: keep only this application's tasks, an ``int`` >= 0 (default: all).
            search: the vendor's fuzzy match on task name or content (default: none).
            page: the page number, from 1 (default 1).
            size: records per page, 1 to ``MAX_PAGE_SIZE`` (100, the default).

        Returns:
            The ``Page`` of ``GroupCallRecord``s, newest first, with the result's
            ``total``, ``size``, ``current`` and ``pages``.

        Raises:
            TypeError, ValueError: a bad argument, naming it, before any request.
            ItnioError: what the vendor or the network did, after retries: an
                ``ItnioAPIError`` (a vendor code), ``ItnioHTTPError``,
                ``ItnioTransportError``, ``MalformedResponseError`` (a reply that
                contradicts itself or the request), or ``ClientStateError`` (the client
                is closed, or used from another event loop).
        """
        query = self._build_query(start, end, statuses, app_id, search)
        page, size = check_page(page, size)
        return await self._fetch_page(query, page, size)

    def iter_group_calls(
        self,
        start: datetime,
        end: datetime,
        *,
        statuses: Iterable[GroupCallStatus | int | str] | None = None,
        app_id: int | None = None,
        search: str | None = None,
        page_size: int = 100,
        concurrency: int = 8,
        ordered: bool = True,
        limit: int | None = None,
        resume_from: StreamCursor | str | None = None,
        start_page: int = 1,
        on_progress: ProgressCallback | None = None,
    ) -> GroupCallStream:
        """Stream every task of the window, exactly once, fetching concurrently.

        Use the result with ``async for`` (and close it early with ``aclose()`` or
        ``contextlib.aclosing``); nothing is requested until the loop starts.

        Args:
            start: the window's first second, inclusive, as for ``query_group_calls``.
            end: its last second, inclusive; with ``server_timezone`` set, an ``end`` in
                the future is frozen at the vendor's "now" when the stream starts.
            statuses: keep only these states, as for ``query_group_calls``
                (default ``None``: all).
            app_id: keep only this application's tasks (default: all).
            search: the vendor's fuzzy match on task name or content (default: none).
            page_size: records per request, 1 to 100 (default 100).
            concurrency: requests in flight at most, >= 1 (default 8).
            ordered: hand records out newest first, in the server's order (default
                ``True``); ``False`` hands out pages as they arrive.
            limit: stop after this many records, fetching no more than needed
                (default ``None``: all).
            resume_from: a ``StreamCursor`` or its string (from
                ``stream.progress.resume_from`` or ``error.resume_from``) of a stream of
                the same window and filters: go on exactly where it stopped (default
                ``None``: from the start).
            start_page: page by number from this page, taking earlier pages as done
                (offset mode, exact only while the result holds still; default 1: the
                cursor mode).
            on_progress: called with the ``StreamProgress`` after every page (default
                ``None``).

        Returns:
            A ``GroupCallStream`` of ``GroupCallRecord``s; ``stream.progress`` says how
            far it is.

        Raises:
            TypeError, ValueError: a bad argument, or a cursor of another window or
                filter, naming it, before any request.
            ItnioError: while iterating, what the vendor or the network did, after
                retries (see ``query_group_calls``), or ``ResultUnstableError`` when the
                result kept changing beyond the stream's budget; each carries
                ``resume_from``, the cursor to go on from.
        """
        spec = self._group_call_spec(start, end, statuses, app_id, search)
        return GroupCallStream(
            spec,
            StreamOptions.build(
                spec,
                page_size=page_size,
                concurrency=concurrency,
                ordered=ordered,
                limit=limit,
                start_page=start_page,
                resume_from=resume_from,
                on_progress=on_progress,
            ),
        )

    def iter_group_call_pages(
        self,
        start: datetime,
        end: datetime,
        *,
        statuses: Iterable[GroupCallStatus | int | str] | None = None,
        app_id: int | None = None,
        search: str | None = None,
        page_size: int = 100,
        concurrency: int = 8,
        ordered: bool = True,
        limit: int | None = None,
        resume_from: StreamCursor | str | None = None,
        start_page: int = 1,
        on_progress: ProgressCallback | None = None,
    ) -> GroupCallPageStream:
        """Like ``iter_group_calls`` but yields ``Page``s, for jobs that checkpoint:
        after each page, ``stream.progress.resume_from`` is the cursor to save.

        Args:
            start: the window's first second, inclusive, as for ``iter_group_calls``.
            end: its last second, inclusive, as for ``iter_group_calls``.
            statuses: keep only these states (default ``None``: all).
            app_id: keep only this application's tasks (default: all).
            search: the vendor's fuzzy match (default: none).
            page_size: records per request, 1 to 100 (default 100).
            concurrency: requests in flight at most (default 8).
            ordered: pages in the server's order (default ``True``).
            limit: stop after this many records (default ``None``: all).
            resume_from: a cursor to go on from (default ``None``).
            start_page: offset mode from this page (default 1: the cursor mode).
            on_progress: called with the ``StreamProgress`` after every page.

        Returns:
            A ``GroupCallPageStream`` of ``Page[GroupCallRecord]``; a page's records are
            what the stream hands out (repeats dropped), so ``len(page.records)`` may be
            less than ``page_size``.

        Raises:
            TypeError, ValueError, ItnioError: as ``iter_group_calls``.
        """
        spec = self._group_call_spec(start, end, statuses, app_id, search)
        return GroupCallPageStream(
            spec,
            StreamOptions.build(
                spec,
                page_size=page_size,
                concurrency=concurrency,
                ordered=ordered,
                limit=limit,
                start_page=start_page,
                resume_from=resume_from,
                on_progress=on_progress,
            ),
        )

    def _group_call_spec(
        self, start: object, end: object, statuses: object, app_id: object, search: object
    ) -> Any:
        query = self._build_query(start, end, statuses, app_id, search)

        async def fetch(
            lo: datetime, hi: datetime, page: int, size: int, tally: CallTally
        ) -> Page[GroupCallRecord]:
            return await self._fetch_page(query.with_window(lo, hi), page, size, tally)

        hooks = self._hooks
        on_page = None
        if hooks is not None:

            def on_page(event: PageEvent) -> None:
                call_hook(hooks, "on_page", event)

        now = None
        if self._server_timezone is not None:

            def now() -> datetime:
                return self.server_now().replace(tzinfo=None)

        return group_call_spec(query, fetch, zone=self._server_timezone, now=now, on_page=on_page)

    def _build_query(
        self, start: object, end: object, statuses: object, app_id: object, search: object
    ) -> GroupCallQuery:
        """Check a query's arguments in this client's zone; every entry point comes here."""
        return GroupCallQuery.build(
            start,
            end,
            statuses=statuses,
            app_id=app_id,
            search=search,
            server_timezone=self._server_timezone,
        )

    # -- requests ---------------------------------------------------------------------------

    async def _fetch_page(
        self, query: GroupCallQuery, page: int, size: int, tally: CallTally | None = None
    ) -> Page[GroupCallRecord]:
        """One page of a checked query, through the send path."""
        self._bind_loop()
        envelope = await self._sender.call(GROUP_CALL_QUERY_PATH, query.body(page, size), tally)
        try:
            return self._structure_page(envelope.data, Page[GroupCallRecord])
        except _UNFIT as exc:
            raise _unfit(envelope.data, exc) from exc

    def _structure(self, data: object, cls: Any) -> Any:
        """``data`` as ``cls``; a reply that does not fit is a ``MalformedResponseError``."""
        try:
            return self._converter.structure(data, cls)
        except _UNFIT as exc:
            raise _unfit(data, exc) from exc

    # -- a task's details and the calls it made ------------------------------------------

    async def get_group_call(self, job_id: int) -> GroupCallDetail:
        """Fetch one group-call task in full (``GET /voice/group/call/detail/{id}``).

        Signed, rate-limited and retried like every request.

        Args:
            job_id: the task's id (``GroupCallRecord.job_id``), an ``int`` >= 1.

        Returns:
            The task's ``GroupCallDetail``: every documented field (any may be ``None``),
            undocumented ones in ``extra``; ``country_code`` is the task's country.

        Raises:
            TypeError: ``job_id`` is not an ``int`` (a ``bool`` neither).
            ValueError: ``job_id`` is below 1.
            ItnioAPIError: the vendor refused (its subclasses by code; an unknown task is
                typically ``-24``, "data does not exist").
            MalformedResponseError: the reply is not a task.
            ItnioError: any other fault of the vendor, the network or the client's state.
        """
        job_id = check_positive_int("job_id", job_id)
        self._bind_loop()
        envelope = await self._sender.call(f"{GROUP_CALL_DETAIL_PATH}{job_id}", None, method="GET")
        detail: GroupCallDetail = self._structure(envelope.data, GroupCallDetail)
        if detail.job_id != job_id:
            raise MalformedResponseError(
                f"asked for task {job_id}, the reply is task {detail.job_id}",
                status_code=200,
                body="",
            )
        return detail

    async def get_call_record(self, voice_id: str) -> CallRecord:
        """Fetch one call record by its id (``GET /voice/recordGroup/{voiceId}``).

        The vendor keeps call records for the last two months only.

        Args:
            voice_id: the call's id (``CallRecord.voice_id``), a non-empty ``str``; it is
                percent-encoded into the path.

        Returns:
            The ``CallRecord``, its times aware.

        Raises:
            TypeError: ``voice_id`` is not a ``str``.
            ValueError: ``voice_id`` is empty, or holds a control character or whitespace.
            ItnioAPIError: the vendor refused (its subclasses by code; an unknown or
                expired call is typically ``-24``).
            MalformedResponseError: the reply is not a call record, or another one.
            ItnioError: any other fault of the vendor, the network or the client's state.
        """
        voice_id = _check_voice_id(voice_id)
        self._bind_loop()
        path = CALL_RECORD_PATH + urllib.parse.quote(voice_id, safe="")
        envelope = await self._sender.call(path, None, method="GET")
        record: CallRecord = self._structure(envelope.data, CallRecord)
        if record.voice_id != voice_id:
            raise MalformedResponseError(
                f"asked for call {voice_id!r}, the reply is call {record.voice_id!r}",
                status_code=200,
                body="",
            )
        return record

    async def query_call_records(
        self,
        start: datetime,
        end: datetime,
        *,
        page: int = 1,
        size: int = 100,
        clamp_start: bool = False,
    ) -> Page[CallRecord]:
        """Fetch one page of the calls submitted between ``start`` and ``end``
        (``POST /voice/recordGroupQuery``).

        Args:
            start: window start, inclusive. Aware datetimes are taken as they are; naive
                ones are read in ``server_timezone`` (refused when none is set).
            end: window end, inclusive, likewise; at most 31 days after ``start`` (the
                vendor's limit for one query: ``iter_call_records`` splits longer ones).
            page: the page number, from 1 (default 1).
            size: records per page, 1..100 (default 100).
            clamp_start: a ``start`` further back than the vendor's two months is moved
                up to one day after the oldest allowed time (so that a long stream stays
                inside them) instead of refused (default ``False``).

        Returns:
            The vendor's ``Page`` of ``CallRecord``, in its order.

        Raises:
            TypeError: an argument of the wrong type.
            ValueError: ``end`` before ``start``; a naive time without
                ``server_timezone``; a window over 31 days; a ``start`` older than two
                months (without ``clamp_start``); ``page`` or ``size`` out of range.
            ItnioError: a fault of the vendor, the network or the client's state (see
                the README's error tree).
        """
        query = self._call_query(start, end, clamp_start, single=True)
        page, size = check_page(page, size)
        return await self._fetch_call_page(query, page, size)

    def iter_call_records(
        self,
        start: datetime,
        end: datetime,
        *,
        page_size: int = 100,
        concurrency: int = 8,
        ordered: bool = True,
        limit: int | None = None,
        resume_from: StreamCursor | str | None = None,
        on_progress: ProgressCallback | None = None,
        clamp_start: bool = False,
    ) -> CallRecordStream:
        """Stream every call submitted in the window, exactly once, fetching concurrently.

        Records come newest first by ``submit_time``. A window over 31 days is cut into
        consecutive slices of at most 31 days, streamed one after another as one stream
        with one cursor. The end is frozen at the vendor's current time when the stream
        starts, so calls made meanwhile cannot shift it. Every argument is checked before
        any request.

        Args:
            start: window start, inclusive. Aware datetimes are taken as they are; naive
                ones are read in ``server_timezone`` (refused when none is set).
            end: window end, inclusive, likewise (any length).
            page_size: records per request, 1..100 (default 100).
            concurrency: requests in flight at most, per slice (default 8).
            ordered: hand records out in order (default ``True``); ``False`` lets a
                slow page not hold back the others, within a slice.
            limit: stop after this many records (default ``None``: all).
            resume_from: a ``StreamCursor`` or its string, from
                ``stream.progress.resume_from`` or ``error.resume_from`` of a stream of the
                same window: go on exactly where it stopped, across slices (default
                ``None``).
            on_progress: called with ``stream.progress`` after every page (default
                ``None``).
            clamp_start: a ``start`` further back than the vendor's two months is moved
                up to one day after the oldest allowed time (so that a long stream stays
                inside them) instead of refused (default ``False``).

        Returns:
            A ``CallRecordStream``: ``async for`` it; ``aclose()`` (or leave the loop) to
            stop it and every request in flight.

        Raises:
            TypeError: an argument of the wrong type (at once, before any request).
            ValueError: ``end`` before ``start``; a naive time without
                ``server_timezone``; a ``start`` older than two months (without
                ``clamp_start``); a number out of range; a ``resume_from`` of another
                window (at once).
            ItnioError: while iterating, a fault of the vendor or the network; it carries
                ``resume_from`` to go on from.
        """
        pages, progress = self._call_record_stream(
            start,
            end,
            page_size,
            concurrency,
            ordered,
            limit,
            resume_from,
            on_progress,
            clamp_start,
        )
        return CallRecordStream(pages, progress)

    def iter_call_record_pages(
        self,
        start: datetime,
        end: datetime,
        *,
        page_size: int = 100,
        concurrency: int = 8,
        ordered: bool = True,
        limit: int | None = None,
        resume_from: StreamCursor | str | None = None,
        on_progress: ProgressCallback | None = None,
        clamp_start: bool = False,
    ) -> CallRecordPageStream:
        """Like ``iter_call_records`` but yields ``Page``s, for jobs that checkpoint:
        after each page, ``stream.progress.resume_from`` is the cursor to save.

        A page's ``current`` counts the pages handed out across every slice, from 1, and
        its ``total`` the records of the slices started so far.

        Args:
            start: window start, inclusive. Aware datetimes are taken as they are; naive
                ones are read in ``server_timezone`` (refused when none is set).
            end: window end, inclusive, likewise (any length: cut into 31-day slices).
            page_size: records per request, 1..100 (default 100).
            concurrency: requests in flight at most, per slice (default 8).
            ordered: hand pages out in order (default ``True``).
            limit: stop after this many records (default ``None``: all).
            resume_from: a ``StreamCursor`` or its string from a stream of the same
                window, to go on exactly where it stopped (default ``None``).
            on_progress: called with ``stream.progress`` after every page (default
                ``None``).
            clamp_start: a ``start`` further back than the vendor's two months is moved
                up to one day after the oldest allowed time instead of refused (default
                ``False``).

        Returns:
            A ``CallRecordPageStream`` of ``Page[CallRecord]``.

        Raises:
            TypeError: an argument of the wrong type (at once, before any request).
            ValueError: ``end`` before ``start``; a naive time without
                ``server_timezone``; a ``start`` older than two months (without
                ``clamp_start``); a number out of range; a ``resume_from`` of another
                window (at once).
            ItnioError: while iterating, a fault of the vendor or the network; it carries
                ``resume_from`` to go on from.
        """
        pages, progress = self._call_record_stream(
            start,
            end,
            page_size,
            concurrency,
            ordered,
            limit,
            resume_from,
            on_progress,
            clamp_start,
        )
        return CallRecordPageStream(pages, progress)

    def _call_query(
        self, start: object, end: object, clamp_start: object, *, single: bool = False
    ) -> CallRecordQuery:
        now = datetime.fromtimestamp(int(self._clock.now()), tz=UTC).replace(tzinfo=None)
        return CallRecordQuery.build(
            start,
            end,
            now=now,
            server_timezone=self._server_timezone,
            clamp_start=clamp_start,
            single=single,
        )

    def _call_record_stream(
        self,
        start: object,
        end: object,
        page_size: object,
        concurrency: object,
        ordered: object,
        limit: object,
        resume_from: object,
        on_progress: object,
        clamp_start: object,
    ) -> tuple[AsyncGenerator[Page[CallRecord], None], StreamProgress]:
        query = self._call_query(start, end, clamp_start)
        requested_end = query.end
        if isinstance(resume_from, str):
            resume_from = StreamCursor.from_string(resume_from)
        if isinstance(resume_from, StreamCursor):
            if clamp_start is True and resume_from.start < query.start:
                # Clamped before, to the then oldest time, which has moved on with the
                # clock since: the cursor's start stands (refused if now too old).
                # The query's and the cursor's times are naive UTC.
                query = self._call_query(
                    resume_from.start.replace(tzinfo=UTC), query.end.replace(tzinfo=UTC), False
                )
            if resume_from.requested_end == requested_end:
                query = query.with_window(query.start, resume_from.end)
        else:
            # Calls made after this second cannot enter the window (see the README).
            now = datetime.fromtimestamp(int(self._clock.now()), tz=UTC).replace(tzinfo=None)
            frozen = now - timedelta(seconds=1)
            if query.end > frozen:
                query = query.with_window(query.start, max(frozen, query.start))
        options = call_record_options(
            query,
            page_size=page_size,
            concurrency=concurrency,
            ordered=ordered,
            limit=limit,
            resume_from=resume_from,
            on_progress=on_progress,
        )

        async def fetch(
            lo: datetime, hi: datetime, page: int, size: int, tally: CallTally
        ) -> Page[CallRecord]:
            return await self._fetch_call_page(
                query.with_window(lo, hi), page, size, tally, unfinished=True
            )

        hooks = self._hooks
        on_page = None
        if hooks is not None:

            def on_page(event: PageEvent) -> None:
                call_hook(hooks, "on_page", event)

        progress = StreamProgress()
        progress.resume_from = options.resume_from
        pages = call_record_pages(
            query, fetch, options, progress, requested_end=requested_end, on_page=on_page
        )
        return pages, progress

    async def _fetch_call_page(
        self,
        query: CallRecordQuery,
        page: int,
        size: int,
        tally: CallTally | None = None,
        *,
        unfinished: bool = False,
    ) -> Page[CallRecord]:
        """One page of a checked call-record query, through the send path.

        ``unfinished``: for a stream, an ``UnfinishedPage`` when the records have the
        common shape (see ``CallRecordHooks``)."""
        self._bind_loop()
        envelope = await self._sender.call(CALL_RECORD_QUERY_PATH, query.body(page, size), tally)
        if unfinished:
            made = self._unfinished_call_page(envelope.data)
            if made is not None:
                return made
        page_of: Page[CallRecord] = self._structure(envelope.data, Page[CallRecord])
        return page_of

    def _unfinished_call_page(self, data: object) -> UnfinishedPage[CallRecord] | None:
        """``data`` as a page of records keyed for the paging engine, finished later;
        ``None`` when it is not of the common shape (then it is made whole, or refused)."""
        if data.__class__ is not dict:
            return None
        assert isinstance(data, dict)
        raw = data.get("records")
        if raw.__class__ is not list:
            return None
        keyed = self._call_hooks.keyed
        records: list[CallRecord] = []
        for value in raw:
            record = keyed(value)
            if record is None:
                return None
            records.append(record)
        shell: Page[CallRecord] = self._structure({**data, "records": []}, Page[CallRecord])
        structure = self._call_hooks.structure
        made = tuple(records)

        def finish() -> None:
            try:
                for record, value in zip(made, raw, strict=True):
                    structure(value, None, record)
            except _UNFIT as exc:
                raise _unfit(data, exc) from exc

        return UnfinishedPage(
            made,
            shell.total,
            shell.size,
            shell.current,
            shell.pages,
            finish=finish,
        )


#: What a converter raises for data that does not fit the model.
_UNFIT: Final = (KeyError, TypeError, ValueError, AttributeError)


def _unfit(data: object, exc: Exception) -> MalformedResponseError:
    """The error for a reply's ``data`` that does not fit the model (``exc`` says why)."""
    return MalformedResponseError(
        f"unexpected 'data': {type(exc).__name__}: {exc}",
        status_code=200,
        body=json.dumps(data)[:500],
    )


def _check_voice_id(voice_id: object) -> str:
    if not isinstance(voice_id, str):
        raise TypeError(f"voice_id must be a str, got {type(voice_id).__name__}")
    if not voice_id or not voice_id.isprintable() or any(c.isspace() for c in voice_id):
        raise ValueError(f"voice_id must be a non-empty id without spaces, got {voice_id!r}")
    return voice_id
