"""The send path: one call to the vendor, top to bottom.

Each step is one method with one job, in the order a request meets them:

1. ``call``: **retry**, a fresh tenacity loop per call (started by the first failure);
   each pass is one attempt;
2. ``_attempt``: time the attempt, tally it and tell the hooks how it ended;
3. ``_in_slot``: a **connection slot**, a semaphore as large as the connection pool, so
   the client never oversubscribes its pool and no caller sees a pool timeout;
4. ``_in_turn``: the **limiter**, one token per attempt, taken just before signing;
5. ``_signed``: **sign**, ``Api-Key``, ``Timestamp`` and ``Sign`` stamped after every
   wait, on the clock corrected by what ``-16`` taught us;
6. ``_exchange``: the **transport**, under one deadline for the whole attempt, the body
   read as a stream and capped; its exceptions turned into ours;
7. ``_act_on``: do what the reply asks (read by the pure ``_reply.classify``): hold every
   task for a ``Retry-After``, correct the clock, count ``-18`` bursts; return or raise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import httpx
from tenacity import RetryCallState

from ._converter import Envelope
from ._errors import (
    ClientStateError,
    ItnioError,
    ItnioTimeoutError,
    ItnioTransportError,
    LimiterUnavailableError,
    MalformedResponseError,
    TimestampExpiredError,
    VendorServerError,
)
from ._hooks import AttemptEvent, CallTally, ClientHooks, RetryEvent, call_hook
from ._limiter import RateLimiter
from ._reply import (
    ERROR_BODY_BYTES,
    RawReply,
    Reply,
    ServerFaultBurst,
    classify,
    outcome_label,
)
from ._retry import RetryPolicy
from ._signing import Credentials, ServerClock, signed_headers

__all__ = ["Sender"]

logger = logging.getLogger("itnio_async")


@attrs.define(slots=True)
class _Attempt:
    """One attempt's request and what it measured on the way."""

    path: str
    url: httpx.URL
    content: bytes | None
    number: int
    #: Loop time the attempt started, then the time it was sent.
    started: float
    #: ``POST`` (with ``content``) or ``GET`` (none).
    method: str = "POST"
    slot_wait: float = 0.0
    limiter_wait: float = 0.0
    status_code: int | None = None
    #: Wall times around the exchange, for the clock correction.
    sent_at: float = 0.0
    received_at: float = 0.0


class Sender:
    """Sends one client's requests; the client owns it and sets it up once."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: httpx.URL,
        credentials: Credentials,
        clock: ServerClock,
        limiter: RateLimiter,
        retry: RetryPolicy,
        hooks: ClientHooks | None,
        *,
        deadline: float,
        max_response_bytes: int,
    ) -> None:
        self._http = http
        #: Seconds one attempt may take in all, connecting to the last byte of the reply.
        self._deadline = deadline
        self._max_response_bytes = max_response_bytes
        self._base_url = base_url
        self._credentials = credentials
        self._clock = clock
        self._limiter = limiter
        self._retry = retry
        self._hooks = hooks
        self._faults = ServerFaultBurst(retry)
        # Absolute URL of each endpoint path, joined once: httpx parses a URL several
        # times over, and joining on every call took about a fifth of a call's own cost.
        self._urls: dict[str, httpx.URL] = {}
        # One slot per pooled connection, made on the client's loop (see ``bind``).
        self._slots: asyncio.Semaphore | None = None
        self._time: Callable[[], float] = lambda: 0.0
        #: Set by ``close()``: no attempt starts after it.
        self.closed = False
        # The deadlines of the exchanges in flight: close() brings them forward.
        self._in_flight: set[asyncio.Timeout] = set()
        # Set when the last exchange in flight ends, once close() waits for that.
        self._drained: asyncio.Event | None = None
        #: Test seam: how retry waits sleep (tests swap in a recorder; nothing else should).
        self.retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def bind(self, loop: asyncio.AbstractEventLoop, slots: int) -> None:
        """Make the loop-bound parts, on the loop the client first runs on."""
        self._slots = asyncio.Semaphore(slots)
        self._time = loop.time

    async def close(self) -> None:
        """Refuse new attempts and end those in flight (each raises ``ClientStateError``);
        return once none is left, so that none opens a connection after the close."""
        self.closed = True
        if not self._in_flight:
            return
        now = asyncio.get_running_loop().time()
        for deadline in list(self._in_flight):
            if not deadline.expired():
                deadline.reschedule(now)
        self._drained = asyncio.Event()
        await self._drained.wait()

    # -- 1. retry -------------------------------------------------------------------------

    async def call(
        self,
        path: str,
        payload: dict[str, Any] | None,
        tally: CallTally | None = None,
        *,
        method: str = "POST",
    ) -> Envelope:
        """POST ``payload`` to ``path`` (or ``GET`` it, with no body) with retries; return
        the successful envelope. Both are signed and retried alike.

        The first attempt goes straight out. Only when it fails does a tenacity loop start,
        and it replays that failure as its own attempt 1, so that the waits, the hooks, the
        attempt count and the deadline are exactly tenacity's. A call that succeeds at once
        (nearly every call) so skips tenacity's machinery: some 11 us, a tenth of the cost
        of a call (see the client overhead case of ``benchmarks/``).
        """
        content = (
            None
            if payload is None
            else json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        )
        url = self._urls.get(path)
        if url is None:
            url = self._endpoint(path)
            if method == "POST":  # a GET's path names one record: not kept, memory stays flat
                self._urls[path] = url
        started = time.monotonic()  # tenacity's clock, which its deadline is measured on
        try:
            job = _Attempt(path, url, content, 1, self._time(), method)
            return await self._attempt(job, tally)
        except ItnioError as exc:
            first = exc

        def before_sleep(state: RetryCallState) -> None:
            self._before_retry(method, path, state)

        number = 1
        retrying = self._retry.retrying(sleep=self.retry_sleep, before_sleep=before_sleep)
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    if number == 1:
                        attempt.retry_state.start_time = started
                        raise first
                    job = _Attempt(path, url, content, number, self._time(), method)
                    return await self._attempt(job, tally)
        except ItnioError as exc:
            exc.attempts = number
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _endpoint(self, path: str) -> httpx.URL:
        # Appended to the base URL's path, as httpx does with its base_url, so a prefix
        # (a white-label deployment's "/v3") is kept; URL.join would replace it.
        base = self._base_url
        return base.copy_with(raw_path=base.raw_path.rstrip(b"/") + path.encode("ascii"))

    def _before_retry(self, method: str, path: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if self._hooks is not None and exc is not None:
            event = RetryEvent(path, state.attempt_number, outcome_label(exc), state.upcoming_sleep)
            call_hook(self._hooks, "on_retry", event)
        logger.warning(
            "retrying %s %s in %.2fs (attempt %d failed: %s)",
            method,
            path,
            state.upcoming_sleep,
            state.attempt_number,
            exc,
        )

    # -- 2. one attempt, reported ---------------------------------------------------------

    async def _attempt(self, job: _Attempt, tally: CallTally | None) -> Envelope:
        if tally is not None:
            tally.attempts += 1
            if job.number > 1:
                tally.retries += 1
        outcome: str | None = None  # stays None if cancelled: no event for those
        try:
            raw = await self._in_slot(job)
            envelope = await self._act_on(job, classify(raw))
            outcome = "ok"
            return envelope
        except ItnioError as exc:
            outcome = outcome_label(exc)
            raise
        finally:
            self._report(job, outcome, tally)

    def _report(self, job: _Attempt, outcome: str | None, tally: CallTally | None) -> None:
        if tally is not None:
            tally.slot_wait += job.slot_wait
            tally.limiter_wait += job.limiter_wait
        if outcome is None:
            return
        logger.debug(
            "%s %s attempt=%d http=%s outcome=%s clock_offset=%.3fs",
            job.method,
            job.path,
            job.number,
            job.status_code,
            outcome,
            self._clock.offset,
        )
        if self._hooks is not None:
            event = AttemptEvent(
                job.path,
                job.number,
                outcome,
                job.status_code,
                self._time() - job.started,
                job.limiter_wait,
                job.slot_wait,
            )
            call_hook(self._hooks, "on_attempt", event)

    # -- 3. connection slot ---------------------------------------------------------------

    async def _in_slot(self, job: _Attempt) -> RawReply:
        assert self._slots is not None  # made by bind()
        async with self._slots:
            job.slot_wait = self._time() - job.started
            return await self._in_turn(job)

    # -- 4. limiter -----------------------------------------------------------------------

    async def _in_turn(self, job: _Attempt) -> RawReply:
        waited_from = self._time()
        try:
            await self._limiter.acquire()
        except ItnioError:
            raise
        except Exception as exc:  # a user's limiter failing its own way: typed, not raw
            raise LimiterUnavailableError(
                f"the rate limiter failed: {type(exc).__name__}: {exc}"
            ) from exc
        job.started = self._time()
        job.limiter_wait = job.started - waited_from
        if self.closed:
            raise ClientStateError("the client was closed while the request waited")
        return await self._exchange(job, self._signed())

    # -- 5. sign --------------------------------------------------------------------------

    def _signed(self) -> dict[str, str]:
        return signed_headers(self._credentials, int(self._clock.now()))

    # -- 6. transport ---------------------------------------------------------------------

    async def _exchange(self, job: _Attempt, headers: dict[str, str]) -> RawReply:
        request = self._http.build_request(
            job.method, job.url, content=job.content, headers=headers
        )
        job.sent_at = self._clock.wall()
        try:
            # One deadline for the whole attempt: httpx's timeouts bound each read, so a
            # body trickling in a byte at a time would otherwise hold it open for good.
            # close() brings it forward to end the attempt at once.
            async with asyncio.timeout(self._deadline) as deadline:
                self._in_flight.add(deadline)
                try:
                    raw = await self._post(job, request)
                finally:
                    self._left(deadline)
        except TimeoutError as exc:
            if self.closed:
                raise ClientStateError(
                    "the client was closed while the request was in flight"
                ) from None
            raise ItnioTimeoutError(
                f"{job.method} {job.path} took longer than its {self._deadline:g}s deadline"
            ) from exc
        except httpx.TimeoutException as exc:
            # The whole URL (never with credentials: the base URL refuses them), so that a
            # wrong ITNIO_BASE_URL shows in the message.
            raise ItnioTimeoutError(
                f"{job.method} {job.url} timed out: {type(exc).__name__}"
            ) from exc
        except httpx.RequestError as exc:
            raise ItnioTransportError(
                f"{job.method} {job.url} failed: {type(exc).__name__}: {exc}"
            ) from exc
        job.received_at = self._clock.wall()
        return raw

    async def _post(self, job: _Attempt, request: httpx.Request) -> RawReply:
        # Never redirected: the signing headers must not follow a Location to another
        # host (httpx keeps custom headers across origins), and a 301/302 would turn the
        # POST into a GET. A 3xx is a typed error (see _reply.classify).
        response = await self._http.send(request, auth=None, follow_redirects=False, stream=True)
        job.status_code = response.status_code
        try:
            body = await read_body(response, self._max_response_bytes)
        finally:
            await response.aclose()
        return RawReply(response.status_code, response.reason_phrase, response.headers, body)

    def _left(self, deadline: asyncio.Timeout) -> None:
        self._in_flight.discard(deadline)
        if self._drained is not None and not self._in_flight:
            self._drained.set()

    # -- 7. what the reply asks -----------------------------------------------------------

    async def _act_on(self, job: _Attempt, reply: Reply) -> Envelope:
        if reply.retry_after is not None:
            await self._pause(min(reply.retry_after, self._retry.max_retry_after))
        error = reply.error
        if error is None:
            assert reply.envelope is not None
            return reply.envelope
        if isinstance(error, TimestampExpiredError):
            error.clock_corrected = self._learn_clock(job, reply.server_time, error)
        elif isinstance(error, VendorServerError):
            pause = self._faults.note(self._time())
            if pause is not None:
                logger.warning(
                    "%d '-18' replies within a second: pausing for %.2fs",
                    self._faults.recent,
                    pause,
                )
                await self._pause(pause)
        raise error

    def _learn_clock(
        self, job: _Attempt, server_time: float | None, error: TimestampExpiredError
    ) -> bool:
        """Correct the clock from a ``-16``; whether the retry may go at once."""
        clock = self._clock
        if server_time is None or not clock.enabled:
            return False
        offset = clock.offset_from(server_time, job.sent_at, job.received_at)
        if not clock.trusts(offset, job.sent_at, job.received_at):
            why = (
                f"the reply's Date puts the vendor's clock {offset:+.0f}s from this "
                f"machine's, more than the {clock.max_skew:.0f}s the client corrects: "
                "not trusted; check this machine's clock"
            )
            logger.warning("%s %s: %s", job.method, job.path, why)
            error.add_note(why)
            return False
        before = clock.offset
        clock.learn_time(server_time, job.sent_at, job.received_at)
        if clock.offset != before:
            call_hook(self._hooks, "on_clock_offset", clock.offset)
        # Only a real change earns an immediate retry; a server that keeps answering -16
        # with the same Date gets the usual backoff.
        return abs(clock.offset - before) >= 1.0

    async def _pause(self, seconds: float) -> None:
        """Hold every task sharing the limiter, not only this one. A limiter that fails
        to pause is logged: the reply's own error is the one the caller must see."""
        try:
            await self._limiter.pause(seconds)
        except Exception:
            logger.warning("the rate limiter failed to pause for %.2fs", seconds, exc_info=True)


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """A reply's body, read as a stream and capped so that memory stays bounded.

    A success body larger than ``limit`` is a ``MalformedResponseError`` (refused at once
    when ``Content-Length`` says so); of an error reply only the first
    ``ERROR_BODY_BYTES`` are read, all an error keeps of it.
    """
    status = response.status_code
    ok = 200 <= status < 300
    if not ok:
        limit = ERROR_BODY_BYTES
    else:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(status, limit, b"")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            if ok:
                raise _too_large(status, limit, chunks[0] if chunks else chunk)
            chunks.append(chunk[: len(chunk) - (size - limit)])
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(status: int, limit: int, start: bytes) -> MalformedResponseError:
    return MalformedResponseError(
        f"the reply is larger than max_response_bytes ({limit} bytes)",
        status_code=status,
        body=start[:ERROR_BODY_BYTES].decode("utf-8", errors="replace"),
    )
