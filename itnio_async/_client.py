"""``AsyncVoiceClient``: the layers put together.

One call goes ``retry → connection slot → rate limit → sign → transport``:

* **retry** (``_retry``): a fresh tenacity loop per call; each pass is one attempt;
* **connection slot**: a semaphore as large as the connection pool, so the client never
  oversubscribes its own pool and no caller sees a pool timeout;
* **rate limit** (``_limiter``): one token per attempt, taken just before sending;
* **sign** (``_signing``): an ``httpx.Auth`` that stamps ``Timestamp`` and ``Sign`` as the
  request leaves, after any wait, with the clock corrected by what ``-16`` taught us;
* **transport**: ``httpx``; its exceptions become ours (``_errors``) right here.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, tzinfo
from types import TracebackType
from typing import Any, Final, Self

import httpx
from tenacity import RetryCallState

from ._converter import Envelope, decode_envelope, make_converter
from ._errors import (
    ClientStateError,
    ItnioAPIError,
    ItnioError,
    ItnioHTTPError,
    ItnioTimeoutError,
    ItnioTransportError,
    MalformedResponseError,
    RateLimitedError,
    TimestampExpiredError,
    VendorServerError,
)
from ._group_calls import GroupCallPageStream, GroupCallStream, group_call_spec
from ._hooks import AttemptEvent, CallTally, ClientHooks, PageEvent, RetryEvent, call_hook
from ._limiter import LocalRateLimiter, RateLimiter
from ._models import GroupCallRecord, GroupCallStatus, Page
from ._paging import StreamCursor
from ._query import GroupCallQuery, check_page, check_positive_int
from ._retry import RetryPolicy
from ._signing import CONTENT_TYPE, Credentials, ServerClock, SigningAuth, parse_http_date
from ._stream import ProgressCallback, StreamOptions

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "AsyncVoiceClient"]

logger = logging.getLogger("itnio_async")

#: The vendor's production endpoint.
DEFAULT_BASE_URL: Final = "https://api.itniotech.com"
#: Finite by default: 10 s to connect, 30 s for each read, write or pool wait.
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
#: Requests per second when none is given. The vendor publishes no limit; this is a
#: conservative start that an account with a known quota should raise.
DEFAULT_RATE_LIMIT: Final = 10.0
#: Connections (and so requests in flight) per client.
DEFAULT_MAX_CONNECTIONS: Final = 32
#: This many -18 replies within one second pause the whole (possibly shared) limiter.
SERVER_FAULT_BURST: Final = 3

GROUP_CALL_QUERY_PATH: Final = "/voice/group/call/query"

_ENV_KEY = "ITNIO_API_KEY"
_ENV_SECRET = "ITNIO_API_SECRET"  # noqa: S105 - the variable's name, not a secret
_ENV_BASE_URL = "ITNIO_BASE_URL"

_DEFAULT_RETRY: Final = RetryPolicy()


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


def outcome_label(exc: BaseException) -> str:
    """A short, low-cardinality label for how an attempt failed (for logs and metrics)."""
    if isinstance(exc, ItnioAPIError):
        return f"vendor:{exc.code}"
    if isinstance(exc, ItnioHTTPError):
        return f"http:{exc.status_code}"
    if isinstance(exc, ItnioTransportError):
        return f"transport:{type(exc.__cause__ or exc).__name__}"
    if isinstance(exc, MalformedResponseError):
        return "malformed"
    return type(exc).__name__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str) -> httpx.URL:
    url = httpx.URL(base_url)
    if url.scheme == "https" and url.host:
        return url
    if url.scheme == "http" and url.host and _is_loopback(url.host):
        return url
    raise ValueError(
        f"base_url must be https:// (plain http:// only to a loopback host), got {base_url!r}"
    )


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date measured from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = parse_http_date(value)
    return None if when is None else max(0.0, when - time.time())


class AsyncVoiceClient:
    """An asyncio client for the Itniotech voice API.

    Create one per process (or per event loop) and share it between all tasks: it holds
    the connection pool, the rate limiter and the learned server clock. Open it with
    ``async with`` (or call ``aclose()`` when done). See the README for every argument.
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
        server_timezone: tzinfo | None = None,
        clock_correction: bool = True,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        hooks: ClientHooks | None = None,
    ) -> None:
        api_key = api_key if api_key is not None else os.environ.get(_ENV_KEY)
        api_secret = api_secret if api_secret is not None else os.environ.get(_ENV_SECRET)
        if not api_key:
            raise ValueError(f"api_key is required: pass api_key= or set {_ENV_KEY}")
        if not api_secret:
            raise ValueError(f"api_secret is required: pass api_secret= or set {_ENV_SECRET}")
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
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        max_connections = check_positive_int("max_connections", max_connections)

        self._base_url = _check_base_url(
            base_url or os.environ.get(_ENV_BASE_URL) or DEFAULT_BASE_URL
        )
        self._credentials = Credentials(api_key, api_secret)
        self._clock = ServerClock(enabled=clock_correction)
        self._auth = SigningAuth(self._credentials, self._clock)
        # Our own limiter validates rate_limit and burst now, but binds to a loop only later.
        self._limiter: RateLimiter = (
            limiter if limiter is not None else LocalRateLimiter(rate_limit, burst)
        )
        self._retry = retry
        self._server_timezone = server_timezone
        self._converter = make_converter(server_timezone)
        self._structure_page: Callable[[Any, Any], Page[GroupCallRecord]] = (
            self._converter.get_structure_hook(Page[GroupCallRecord])
        )
        self._max_connections = max_connections
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self._state = _State.UNOPENED
        # The loop this client first ran on; every later call must come from it.
        self._loop: asyncio.AbstractEventLoop | None = None
        # One slot per pooled connection, made lazily on that loop.
        self._slots: asyncio.Semaphore | None = None
        self._hooks = hooks
        # Absolute URL of each endpoint path, joined once.
        self._urls: dict[str, httpx.URL] = {}
        # Loop times of recent -18 replies, to tell a burst from a blip.
        self._server_faults: deque[float] = deque()
        # Test seam: how retry waits sleep (tests swap in a recorder; nothing else should).
        self._retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    # -- lifecycle -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"AsyncVoiceClient(api_key={self._credentials.api_key!r}, "
            f"base_url={str(self._base_url)!r}, state={self._state.value!r})"
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
        """Close the client and its connection pool (an injected ``http_client`` stays open)."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_http:
            await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        """Whether ``aclose()`` has run."""
        return self._state is _State.CLOSED

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        if self._state is _State.CLOSED:
            raise ClientStateError("the client is closed; create a new AsyncVoiceClient")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._slots = asyncio.Semaphore(self._max_connections)
            self._state = _State.OPENED
        elif loop is not self._loop:
            raise ClientStateError(
                "this AsyncVoiceClient belongs to another event loop; an asyncio client "
                "cannot move between loops, so create one client per event loop"
            )
        return loop

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

        ``start`` and ``end`` are inclusive; naive values are taken in the vendor's zone,
        aware ones are converted to ``server_timezone`` (required for them). ``statuses``
        keeps only tasks in those states (``None``: all). ``size`` is 1..100.
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

        Records come newest first. ``resume_from`` (a ``StreamCursor`` or its string, from
        ``stream.progress.resume_from`` or ``error.resume_from``) goes on exactly where an
        earlier stream of the same window and filters stopped. ``start_page`` pages by
        page number from that page instead (offset mode; see the README's guarantees).
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
        after each page, ``stream.progress.resume_from`` is the cursor to save."""
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

    # -- the send path --------------------------------------------------------------------

    async def _fetch_page(
        self, query: GroupCallQuery, page: int, size: int, tally: CallTally | None = None
    ) -> Page[GroupCallRecord]:
        """One page of a checked query, through every layer."""
        envelope = await self._call(GROUP_CALL_QUERY_PATH, query.body(page, size), tally)
        try:
            return self._structure_page(envelope.data, Page[GroupCallRecord])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponseError(
                f"unexpected 'data': {type(exc).__name__}: {exc}",
                status_code=200,
                body=json.dumps(envelope.data)[:500],
            ) from exc

    async def _call(
        self, path: str, payload: dict[str, Any], tally: CallTally | None = None
    ) -> Envelope:
        """POST ``payload`` to ``path`` with retries; return the successful envelope."""
        self._bind_loop()
        content = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        url = self._urls.get(path)
        if url is None:
            # httpx parses a URL several times over; joining once per path took about a
            # fifth of a call's own cost.
            url = self._urls[path] = self._base_url.join(path)
        attempt_number = 0

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if self._hooks is not None and exc is not None:
                reason = outcome_label(exc)
                event = RetryEvent(path, state.attempt_number, reason, state.upcoming_sleep)
                call_hook(self._hooks, "on_retry", event)
            logger.warning(
                "retrying POST %s in %.2fs (attempt %d failed: %s)",
                path,
                state.upcoming_sleep,
                state.attempt_number,
                exc,
            )

        retrying = self._retry.retrying(sleep=self._retry_sleep, before_sleep=before_sleep)
        try:
            async for attempt in retrying:
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    if tally is not None:
                        tally.attempts += 1
                        if attempt_number > 1:
                            tally.retries += 1
                    return await self._attempt(url, path, content, attempt_number, tally)
        except ItnioError as exc:
            exc.attempts = attempt_number
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _attempt(
        self,
        url: httpx.URL,
        path: str,
        content: bytes,
        attempt_number: int,
        tally: CallTally | None,
    ) -> Envelope:
        """One request: slot, token, sign, send, and read the reply into a typed result."""
        assert self._slots is not None  # set by _bind_loop
        loop_time = asyncio.get_running_loop().time
        outcome: str | None = None  # stays None if cancelled: no event for those
        status_code: int | None = None
        limiter_wait = 0.0
        started = loop_time()
        try:
            async with self._slots:
                await self._limiter.acquire()
                limiter_wait = loop_time() - started
                if tally is not None:
                    tally.limiter_wait += limiter_wait
                if self._state is _State.CLOSED:
                    raise ClientStateError("the client was closed while the request waited")
                started = loop_time()
                sent_at = self._clock.wall()
                response = await self._send(url, path, content, attempt_number)
                received_at = self._clock.wall()
            status_code = response.status_code
            envelope = await self._read(response, path, attempt_number, sent_at, received_at)
            outcome = "ok"
            return envelope
        except ItnioError as exc:
            outcome = outcome_label(exc)
            if isinstance(exc, VendorServerError):
                await self._note_server_fault()
            raise
        finally:
            if outcome is not None and self._hooks is not None:
                event = AttemptEvent(
                    path, attempt_number, outcome, status_code, loop_time() - started, limiter_wait
                )
                call_hook(self._hooks, "on_attempt", event)

    async def _send(
        self, url: httpx.URL, path: str, content: bytes, attempt_number: int
    ) -> httpx.Response:
        """The transport, its exceptions turned into ours."""
        try:
            return await self._http.post(
                url, content=content, headers={"Content-Type": CONTENT_TYPE}, auth=self._auth
            )
        except httpx.TimeoutException as exc:
            logger.debug("POST %s attempt=%d timeout: %r", path, attempt_number, exc)
            raise ItnioTimeoutError(f"POST {path} timed out: {type(exc).__name__}") from exc
        except httpx.RequestError as exc:
            logger.debug("POST %s attempt=%d transport error: %r", path, attempt_number, exc)
            raise ItnioTransportError(f"POST {path} failed: {type(exc).__name__}: {exc}") from exc

    async def _note_server_fault(self) -> None:
        """Count a -18; on a burst, hold off every task sharing the limiter.

        One -18 is retried by its own call. Several within a second mean the vendor is
        struggling: pausing the shared limiter (for every process, with a shared one)
        backs everyone off together instead of each task hammering on its own.
        """
        now = asyncio.get_running_loop().time()
        recent = self._server_faults
        recent.append(now)
        while now - recent[0] > 1.0:
            recent.popleft()
        if len(recent) >= SERVER_FAULT_BURST:
            extra = len(recent) - SERVER_FAULT_BURST
            pause = self._retry.backoff_ceiling(extra + 1)
            logger.warning(
                "%d '-18' replies within a second: pausing for %.2fs", len(recent), pause
            )
            await self._limiter.pause(pause)

    async def _read(
        self,
        response: httpx.Response,
        path: str,
        attempt_number: int,
        sent_at: float,
        received_at: float,
    ) -> Envelope:
        status = response.status_code
        retry_after = _parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            # Pause every task sharing the limiter, not only this one.
            await self._limiter.pause(min(retry_after, self._retry.max_retry_after))
        if not 200 <= status < 300:
            logger.debug("POST %s attempt=%d http=%d", path, attempt_number, status)
            error_cls = RateLimitedError if status == 429 else ItnioHTTPError
            raise error_cls(
                status, response.text, reason=response.reason_phrase, retry_after=retry_after
            )
        try:
            envelope = decode_envelope(response.content, status)
        except TimestampExpiredError as exc:
            before = self._clock.offset
            learned = self._clock.learn(response.headers, sent_at, received_at)
            # Only a real change of the offset earns an immediate retry; a server that keeps
            # answering -16 with the same Date gets the usual backoff.
            exc.clock_corrected = learned and abs(self._clock.offset - before) >= 1.0
            if learned and self._clock.offset != before:
                call_hook(self._hooks, "on_clock_offset", self._clock.offset)
            logger.debug(
                "POST %s attempt=%d code=-16 clock_offset=%.3fs (corrected=%s)",
                path,
                attempt_number,
                self._clock.offset,
                exc.clock_corrected,
            )
            raise
        except ItnioError as exc:
            logger.debug("POST %s attempt=%d http=%d error=%s", path, attempt_number, status, exc)
            raise
        logger.debug("POST %s attempt=%d http=%d code=0", path, attempt_number, status)
        return envelope
