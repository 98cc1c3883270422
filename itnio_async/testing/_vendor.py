"""The fake vendor server: :class:`FakeVendor`, a raw ASGI app, and its in-process transport.

The fake is an independent implementation of the vendor's published rules (see the
package docstring); it shares no code with the client, so it catches client bugs.
Order of processing for one request:

1. count it (:attr:`FakeVendor.stats`), then run the ``on_request`` callbacks;
2. route: the task query, a task's detail, the call-record query and one call record
   (else HTTP 404, or 405 with ``Allow``);
3. the per-key rate limit, like a proxy in front of the vendor (HTTP 429);
4. the fault plan (which may replace the answer; misrouted and rate-limited
   requests consume no fault);
5. unless a fault replaces it, the vendor proper, from what the fake holds as the
   request arrives: ``Api-Key`` (-1), ``Sign`` (-1), ``Timestamp`` (-16), the
   ``Content-Type`` (HTTP 415 unless JSON), the body (-22), then the page (0): read
   from the dataset or one of its ``replicas`` (:meth:`FakeVendor.replica_for`),
   under the fake's ``end_exclusive`` and ``order``, and bent by ``lies`` if set;
6. the answer leaves ``latency``, jitter and any ``Fault.delay`` after the request
   arrived (a fault's answer, or a dropped connection, comes then too).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import time as _time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, Literal
from urllib.parse import unquote

import attrs
import httpx

from . import _rng
from ._calls import CallLog, FakeCall, make_call, wire_cached
from ._dataset import Dataset, FakeTask, Order, Query
from ._faults import Fault, FaultCursor, FaultPlan
from ._lies import Lies
from ._stats import FakeStats
from ._wire import (
    CALL_MAX_WINDOW,
    CALL_PATH_PREFIX,
    CALL_QUERY_PATH,
    CALL_RETENTION_MONTHS,
    CODE_AUTH,
    CODE_MESSAGES,
    CODE_NOT_FOUND,
    CODE_OK,
    CODE_PARAMS,
    CODE_TIMESTAMP,
    DETAIL_PATH_PREFIX,
    JSON_CONTENT_TYPE,
    QUERY_PATH,
    dumps,
    http_date,
    months_back,
    nginx_error_page,
    parse_iso_time,
    parse_wire_time,
    retry_after_value,
    sign_matches,
    spring_error,
)

__all__ = ["DroppedConnection", "FakeTransport", "FakeVendor", "ReplicaOrder", "RequestCallback"]

#: ASGI shapes, loosely typed as the spec leaves them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: ``callback(n, body)`` run before request ``n`` is answered; may return an awaitable.
RequestCallback = Callable[[int, dict[str, Any]], object]

#: How a fake picks the dataset that answers a request: in turn, or seeded at random.
ReplicaOrder = Literal["round_robin", "random"]

_JITTER_STREAM: Final = 2_000  # hash stream of the per-request jitter draw
_REPLICA_STREAM: Final = 2_001  # hash stream of the per-request replica draw
_TRUTH: Final = Lies()  # the answer of a fake that tells the truth
_MAX_SIZE: Final = 100  # the vendor's largest page
_DEFAULT_TASKS: Final = 200  # tasks in the default generated dataset
#: What a dropped response manages to send before the connection dies.
_DROP_PREFIX: Final = b'{"code":0,"msg":"success","data":{"records":[{"jobId":'


class DroppedConnection(Exception):
    """Raised by the app after a partial response to make the server drop the connection."""


class _BadRequest(Exception):
    """A body the vendor refuses with -22; the message explains why."""


@attrs.frozen
class _Answer:
    """A complete HTTP answer, built before the latency sleep or after it."""

    status: int
    body: bytes
    content_type: bytes = JSON_CONTENT_TYPE
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()
    tag: int | str = 0  # what FakeStats.codes counts for this answer


def _header_map(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        headers[bytes(name).decode("latin-1").lower()] = bytes(value).decode("latin-1")
    return headers


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return parsed if isinstance(parsed, dict) else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_field(obj: dict[str, Any], name: str, label: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise _BadRequest(f"{label} must be an integer, got {json.dumps(value)}")
    return int(value)


def _time_field(params: dict[str, Any], name: str) -> datetime:
    value = params.get(name)
    if value is None:
        raise _BadRequest(f"params.{name} is required")
    if not isinstance(value, str):
        raise _BadRequest(f"params.{name} must be a string 'YYYY-MM-DD HH:MM:SS'")
    try:
        return parse_wire_time(value)
    except ValueError:
        raise _BadRequest(
            f"params.{name} must be 'YYYY-MM-DD HH:MM:SS', got {json.dumps(value)}"
        ) from None


def parse_query_body(
    body: dict[str, Any] | None, *, end_exclusive: bool = False
) -> tuple[int, int, Query]:
    """Validate a query body as the vendor does: ``(current, size, query)`` or ``_BadRequest``.

    ``end_exclusive`` resolves the window as ``strTime <= createdTime < endTime``.
    """
    if body is None:
        raise _BadRequest("the request body must be a JSON object")
    current = _int_field(body, "current", "current")
    if current is None:
        raise _BadRequest("current is required")
    if current < 1:
        raise _BadRequest(f"current must be >= 1, got {current}")
    size = _int_field(body, "size", "size")
    if size is None:
        raise _BadRequest("size is required")
    if not 1 <= size <= _MAX_SIZE:
        raise _BadRequest(f"size must be between 1 and {_MAX_SIZE}, got {size}")
    params = body.get("params")
    if params is None:
        raise _BadRequest("params is required")
    if not isinstance(params, dict):
        raise _BadRequest("params must be a JSON object")
    start = _time_field(params, "strTime")
    end = _time_field(params, "endTime")
    if end < start:
        raise _BadRequest("params.endTime must not be before params.strTime")
    statuses = params.get("statusList")
    if statuses is not None and (
        not isinstance(statuses, list) or not all(_is_int(s) for s in statuses)
    ):
        raise _BadRequest("params.statusList must be a list of integers")
    app_id = _int_field(params, "idxAppId", "params.idxAppId")
    search = params.get("searchCondition")
    if search is not None and not isinstance(search, str):
        raise _BadRequest("params.searchCondition must be a string")
    return (
        current,
        size,
        Query.build(start, end, statuses, app_id, search, end_exclusive=end_exclusive),
    )


def _iso_field(params: dict[str, Any], name: str) -> datetime:
    value = params.get(name)
    if value is None:
        raise _BadRequest(f"params.{name} is required")
    if not isinstance(value, str):
        raise _BadRequest(f"params.{name} must be an ISO 8601 string with an offset")
    try:
        return parse_iso_time(value)
    except ValueError:
        raise _BadRequest(
            f"params.{name} must be ISO 8601 with an offset, got {json.dumps(value)}"
        ) from None


def parse_call_query_body(
    body: dict[str, Any] | None, *, now: datetime
) -> tuple[int, int, datetime, datetime]:
    """Validate a call-record query as the vendor does: ``(current, size, start, end)``
    (aware) or ``_BadRequest``. ``now`` (aware) sets the two months that can be queried."""
    if body is None:
        raise _BadRequest("the request body must be a JSON object")
    current = _int_field(body, "current", "current")
    size = _int_field(body, "size", "size")
    if current is None or size is None:
        raise _BadRequest("current and size cannot be passed empty")
    if current < 1:
        raise _BadRequest(f"current must be >= 1, got {current}")
    if not 1 <= size <= _MAX_SIZE:
        raise _BadRequest(f"size must be between 1 and {_MAX_SIZE}, got {size}")
    params = body.get("params")
    if not isinstance(params, dict):
        raise _BadRequest("params is required and must be a JSON object")
    start = _iso_field(params, "strTime")
    end = _iso_field(params, "endTime")
    if end < start:
        raise _BadRequest("params.endTime must not be before params.strTime")
    if end - start > CALL_MAX_WINDOW:
        raise _BadRequest("the time between strTime and endTime cannot exceed 31 days")
    if start < months_back(now, CALL_RETENTION_MONTHS):
        raise _BadRequest(f"only the last {CALL_RETENTION_MONTHS} months can be queried")
    return current, size, start, end


class FakeTransport(httpx.AsyncBaseTransport):
    """An in-process ``httpx`` transport to a fake vendor: no sockets, same answers.

    Wraps ``httpx.ASGITransport`` and makes it behave like the network where it
    matters to a client: a :meth:`Fault.drop` raises ``httpx.RemoteProtocolError``,
    and a request's read timeout (``httpx.Timeout(read=...)``) raises
    ``httpx.ReadTimeout`` when the fake is slower than that.

    Args:
        app: the ASGI app to serve, usually a ``FakeVendor`` (``fake.transport()`` makes
            one).
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to the app and return its complete response."""
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read") if isinstance(timeouts, dict) else None
        try:
            async with asyncio.timeout(read_timeout):
                return await self._inner.handle_async_request(request)
        except DroppedConnection as exc:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body",
                request=request,
            ) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out", request=request) from exc

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


class FakeVendor:
    """An in-process fake of the vendor's group-call API: ``POST /voice/group/call/query``,
    ``GET /voice/group/call/detail/{id}``, ``POST /voice/recordGroupQuery`` and
    ``GET /voice/recordGroup/{voiceId}``.

    Args:
        api_key: the one account's ``Api-Key``.
        api_secret: its secret (``Sign`` = md5 of key + secret + ``Timestamp``).
        dataset: a :class:`Dataset`, a sequence of :class:`FakeTask`, or ``None``
            for ``Dataset.generate(200, seed=seed)``. The fake mutates it.
        timestamp_tolerance: the largest accepted ``|Timestamp - server time|``, in
            seconds; beyond it the answer is -16.
        clock_offset: seconds the server's clock runs ahead of (``> 0``) or behind
            ``clock``; settable at any time.
        code_as_string: send ``code`` as a string (``"0"``), as the vendor's
            document types it, instead of a number.
        faults: a :class:`FaultPlan`; settable (setting it restarts ``by_page``).
        rate_limit: requests per second per ``Api-Key`` in any 1-second sliding
            window (``None``: unlimited); a fractional rate below 1 allows one request
            per ``1 / rate`` seconds, above 1 it rounds down. Beyond it: HTTP 429
            with ``Retry-After``.
        latency: seconds from a request's arrival to its answer (the answer is made
            as the request arrives, so a burst of requests is not answered late).
        jitter: up to this many more seconds, uniform and seeded per request.
        seed: seeds the default dataset and the jitter (read at construction).
        clock: the wall clock, unix seconds (default ``time.time``).
        monotonic: the clock of the rate limit and of arrival times (default
            ``time.monotonic``).
        tz: the zone of the vendor's ``LocalDateTime``: :meth:`now` and the creation
            time of :meth:`insert_tasks` use it (default UTC).
        end_exclusive: serve the window ``strTime <= createdTime < endTime`` instead
            of the vendor's inclusive end; settable.
        order: ``"newest_first"`` (the vendor's) or ``"oldest_first"`` (``createdTime``
            then ``jobId`` ascending); settable.
        replicas: more datasets that answer in turn with ``dataset`` (see
            :meth:`replica_for`), like replicas behind a load balancer that disagree;
            settable. Mutations (:meth:`insert_tasks`...) touch ``dataset`` only.
        replica_order: ``"round_robin"`` or ``"random"`` (seeded by ``seed`` and the
            request's arrival number); settable.
        lies: a :class:`Lies` that bends each correct page (``None``: the truth);
            settable.
        calls: a :class:`CallLog` of the tasks' calls (``None``: none; see
            :func:`call_account` for tasks and calls that match). The fake mutates it.
        status_as_number: send the call-record endpoints' ``status`` as a number
            (``0``) instead of the documented string (``"0"``); settable.

    The call-record endpoints answer ``{"status", "reason", "data"}``; their windows are
    ISO 8601 with an offset, at most 31 days long, within the last two calendar months
    of the fake's clock (counted in UTC), bounding ``submitTime`` at both ends (or
    before ``endTime`` when ``end_exclusive``), newest first (or the ``order`` set).
    Faults, rate limits, latency, ``on_request`` and ``lies`` apply to every endpoint;
    ``replicas`` answer the task query only.

    ``fake.app`` (or the fake itself) is the ASGI 3 application; :meth:`transport`
    an in-process httpx transport; :func:`~itnio_async.testing.serve` serves it on
    loopback.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        api_secret: str = "test-secret",  # noqa: S107 - a test double's default
        *,
        dataset: Dataset | Sequence[FakeTask] | None = None,
        timestamp_tolerance: float = 300.0,
        clock_offset: float = 0.0,
        code_as_string: bool = False,
        faults: FaultPlan | None = None,
        rate_limit: float | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] | None = None,
        tz: tzinfo = UTC,
        end_exclusive: bool = False,
        order: Order = "newest_first",
        replicas: Iterable[Dataset | Sequence[FakeTask]] = (),
        replica_order: ReplicaOrder = "round_robin",
        lies: Lies | None = None,
        calls: CallLog | None = None,
        status_as_number: bool = False,
    ) -> None:
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError("rate_limit must be > 0 (or None for no limit)")
        if min(latency, jitter, timestamp_tolerance) < 0:
            raise ValueError("latency, jitter and timestamp_tolerance must be >= 0")
        if order not in ("newest_first", "oldest_first"):
            raise ValueError(f"order must be 'newest_first' or 'oldest_first', not {order!r}")
        if replica_order not in ("round_robin", "random"):
            raise ValueError(
                f"replica_order must be 'round_robin' or 'random', not {replica_order!r}"
            )
        self.api_key = api_key
        self.api_secret = api_secret
        if dataset is None:
            dataset = Dataset.generate(_DEFAULT_TASKS, seed=seed)
        elif not isinstance(dataset, Dataset):
            dataset = Dataset(dataset)
        self.dataset: Dataset = dataset
        self.timestamp_tolerance = timestamp_tolerance
        self.clock_offset = clock_offset
        self.code_as_string = code_as_string
        self.rate_limit = rate_limit
        self.latency = latency
        self.jitter = jitter
        self.seed = seed
        self.clock: Callable[[], float] = clock or _time.time
        self.monotonic: Callable[[], float] = monotonic or _time.monotonic
        self.tz = tz
        self.end_exclusive = end_exclusive
        self.order: Order = order
        self.replicas: list[Dataset] = [
            r if isinstance(r, Dataset) else Dataset(r) for r in replicas
        ]
        self.replica_order: ReplicaOrder = replica_order
        self.lies = lies
        self.calls: CallLog = calls if calls is not None else CallLog()
        self.status_as_number = status_as_number
        self.stats = FakeStats()
        self._cursor = FaultCursor(faults)  # the fault plan and how far by_page got
        self._callbacks: list[RequestCallback] = []  # run in order before each answer
        self._windows: dict[str, deque[float]] = {}  # per Api-Key: admitted arrival times
        self._jitter_key = _rng.stream_key(seed, _JITTER_STREAM)
        self._replica_key = _rng.stream_key(seed, _REPLICA_STREAM)

    # -------------------------------------------------------------- public API

    @property
    def app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """The ASGI 3 application (the fake itself)."""
        return self

    @property
    def faults(self) -> FaultPlan | None:
        """The fault plan; assigning one starts its ``by_page`` queues afresh."""
        return self._cursor.plan

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        self._cursor = FaultCursor(plan)

    def time(self) -> float:
        """The server's clock, unix seconds: ``clock() + clock_offset``."""
        return self.clock() + self.clock_offset

    def now(self) -> datetime:
        """The server's clock as a naive ``LocalDateTime`` in ``tz``, whole seconds."""
        return datetime.fromtimestamp(self.time(), self.tz).replace(tzinfo=None, microsecond=0)

    def transport(self) -> FakeTransport:
        """A new in-process ``httpx.AsyncBaseTransport`` to this fake."""
        return FakeTransport(self)

    def expected(
        self,
        start: datetime | str,
        end: datetime | str,
        statuses: Iterable[int] | None = None,
        app_id: int | None = None,
        search: str | None = None,
    ) -> list[FakeTask]:
        """Exactly what a correct client streams for this window and filters, in order.

        The window is inclusive at both ends (``start <= createdTime <= end``), or
        ends before ``end`` when the fake is ``end_exclusive``; the records come in
        the fake's ``order`` (newest first unless it is ``"oldest_first"``).
        ``statuses`` (numbers) empty or ``None`` means all; ``app_id`` keeps one
        application's tasks (``None``: all); ``search`` is a case-insensitive substring
        of the task name. ``start`` and ``end`` are ``datetime``s or the wire's
        ``"YYYY-MM-DD HH:MM:SS"``. Reflects ``dataset`` as it is now (not its
        ``replicas``), whatever ``lies`` the fake tells. Returns the ``FakeTask``s.
        """
        return self.dataset.select(
            start,
            end,
            statuses=statuses,
            app_id=app_id,
            search=search,
            end_exclusive=self.end_exclusive,
            order=self.order,
        )

    def replica_for(self, n: int) -> int:
        """Which dataset answers request ``n``: 0 for ``dataset``, ``i`` for ``replicas[i - 1]``.

        Round-robin: request ``n`` goes to ``(n - 1) % (1 + len(replicas))``; random:
        a draw seeded by ``seed`` and ``n``. Every request counts (see :meth:`on_request`),
        so a fault or a refusal also takes its turn.
        """
        count = 1 + len(self.replicas)
        if self.replica_order == "random":
            return _rng.draw(self._replica_key, n) % count
        return (n - 1) % count

    def insert_tasks(
        self,
        n: int,
        *,
        created_time: datetime | None = None,
        status: int = 0,
        app_id: int | None = None,
    ) -> list[FakeTask]:
        """Create ``n`` new tasks (fresh job ids above all others) at ``created_time``
        (default: the server's :meth:`now`), in ``status`` (default 0, waiting) and
        application ``app_id`` (default: the dataset's first); return them."""
        when = created_time if created_time is not None else self.now()
        return self.dataset.add_new(n, when, status=status, app_id=app_id)

    def change_status(self, job_ids: Iterable[int], status: int) -> None:
        """Set the ``status`` of the tasks ``job_ids`` (``KeyError`` for an unknown job
        id, and then nothing changes)."""
        self.dataset.change_status(job_ids, status)

    def remove_tasks(self, job_ids: Iterable[int]) -> None:
        """Delete the tasks ``job_ids`` (``KeyError`` for an unknown job id, and then
        nothing changes)."""
        self.dataset.remove(job_ids)

    def expected_calls(self, start: datetime, end: datetime) -> list[FakeCall]:
        """Exactly what a correct client streams of the calls submitted in the window
        (aware bounds, inclusive unless the fake is ``end_exclusive``), in the fake's
        ``order``; reflects ``calls`` as it is now, whatever ``lies`` the fake tells.

        Args:
            start: window start, aware, inclusive.
            end: window end, aware: inclusive to its whole second, or exclusive when
                the fake is ``end_exclusive``.

        Returns:
            A new list of the calls (:class:`FakeCall`), as :meth:`CallLog.select`
            gives them.

        Raises:
            ValueError: a naive ``start`` or ``end``.
        """
        return self.calls.select(start, end, end_exclusive=self.end_exclusive, order=self.order)

    def insert_calls(
        self, n: int, *, job_id: int, submit_time: datetime | None = None, ok: bool = True
    ) -> list[FakeCall]:
        """Append ``n`` calls of task ``job_id`` submitted at ``submit_time``, as a
        running task does; the task's ``callNum`` (and ``success`` or ``fail``) grows
        with them, if the dataset holds it (calls of a task it does not hold are added
        all the same). Their voice ids go on from every call the task was ever given
        (a removed call's id is never reused), stepping past any id ``calls`` holds.

        Args:
            n: how many calls.
            job_id: the task that makes them.
            submit_time: when they are submitted, aware (default ``None``: the server's
                clock, :meth:`time`, now, to the second).
            ok: the calls connect (SIP 200, counted as ``success``; the default
                ``True``), or fail with another SIP code (counted as ``fail``).

        Returns:
            The new calls (:class:`FakeCall`).

        Raises:
            ValueError: a naive ``submit_time``.
        """
        when = submit_time or datetime.fromtimestamp(int(self.time()), UTC)
        first = self.calls.next_index(job_id)
        made = [make_call(self.seed, job_id, first + i, when, ok=ok) for i in range(n)]
        while any(self.calls.get(call.voice_id) for call in made):
            first += n  # a call added by hand under a number of the task's own
            made = [make_call(self.seed, job_id, first + i, when, ok=ok) for i in range(n)]
        self.calls.add(made)
        task = self.dataset.get(job_id)
        if task is not None:
            grown = attrs.evolve(
                task,
                call_num=task.call_num + n,
                success=task.success + (n if ok else 0),
                fail=task.fail + (0 if ok else n),
            )
            self.dataset.remove([job_id])
            self.dataset.insert([grown])
        return made

    def remove_calls(self, voice_ids: Iterable[str]) -> None:
        """Delete the calls ``voice_ids`` from ``calls``, all or none; each task the
        dataset holds has its ``callNum`` (and ``success`` or ``fail``) lowered with them,
        so that it still matches its calls.

        Args:
            voice_ids: the calls' voice ids.

        Raises:
            KeyError: an unknown voice id (or one given twice); nothing is deleted.
        """
        gone = self.calls.remove(voice_ids)
        for job_id in {call.job_id for call in gone}:
            task = self.dataset.get(job_id)
            if task is None:
                continue
            mine = [call for call in gone if call.job_id == job_id]
            connected = sum(call.termination_code == "200" for call in mine)
            shrunk = attrs.evolve(
                task,
                call_num=max(0, task.call_num - len(mine)),
                success=max(0, task.success - connected),
                fail=max(0, task.fail - (len(mine) - connected)),
            )
            self.dataset.remove([job_id])
            self.dataset.insert([shrunk])

    def on_request(self, callback: RequestCallback) -> RequestCallback:
        """Run ``callback(n, body)`` before request ``n`` (1-based arrival order) is answered.

        ``body`` is the parsed JSON object (``{}`` if there is none). The callback
        may be a coroutine function. Returns the callback, so it works as a decorator.
        """
        self._callbacks.append(callback)
        return callback

    # -------------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"the fake vendor speaks HTTP only, not {scope['type']}")
        arrival = self.monotonic()
        # What the latency counts from, on the loop's own clock (virtual in tests).
        arrived = asyncio.get_running_loop().time()
        body = await self._read_body(receive)
        n = self.stats.arrive(arrival)
        tag: int | str = "disconnect"
        try:
            if body is not None:
                tag = await self._respond(n, scope, body, send, arrived)
        except DroppedConnection:
            tag = "drop"
            raise
        finally:
            self.stats.finish(tag)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _read_body(receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _respond(
        self, n: int, scope: Scope, body: bytes, send: Send, arrived: float
    ) -> int | str:
        headers = _header_map(scope)
        parsed = _json_object(body)
        page = parsed.get("current") if parsed is not None else None
        if not _is_int(page):
            page = None
        if page is not None:
            self.stats.per_page[page] += 1
        for callback in list(self._callbacks):
            result = callback(n, parsed if parsed is not None else {})
            if inspect.isawaitable(result):
                await result

        path = scope.get("path", "")
        answer: _Answer | None = None
        fault: Fault | None = None
        allowed = _route(path)
        if allowed is None:
            answer = self._http_error(404, path)
        elif scope.get("method") != allowed:
            answer = self._http_error(405, path, extra=((b"allow", allowed.encode()),))
        else:
            answer = self._rate_limited(headers.get("api-key", ""))
            if answer is None:
                fault = self._cursor.next_fault(n, page)

        delay = self.latency
        if self.jitter > 0:
            delay += self.jitter * _rng.unit(self._jitter_key, n)
        if fault is not None and fault.kind == "delay":
            delay += fault.seconds
            fault = None
        if answer is None and fault is None:
            # The vendor proper answers from what it holds as the request arrives, and
            # the answer leaves ``delay`` after the arrival. Built after the wait
            # instead, the answers of a burst of requests queued behind each other in
            # the fake's one thread, each later than the latency asked for, which a
            # vendor's servers do not do (and which the benchmarks then measured).
            answer = self._vendor_answer(n, headers, parsed, path)
        if delay > 0:
            await asyncio.sleep(max(0.0, arrived + delay - asyncio.get_running_loop().time()))

        if fault is not None:
            if fault.kind == "drop":
                await self._drop(send)
            answer = self._fault_answer(fault, path)
        if answer is None:
            answer = self._vendor_answer(n, headers, parsed, path)
        await self._send(send, answer)
        return answer.tag

    # ----------------------------------------------------------------- answers

    def _code(self, code: int | str) -> int | str:
        return str(code) if self.code_as_string and isinstance(code, int) else code

    def _envelope(
        self, code: int | str, msg: str, data: Any = None, *, path: str = QUERY_PATH
    ) -> _Answer:
        if _status_style(path):
            status: int | str = code
            if isinstance(code, int) and not self.status_as_number:
                status = str(code)
            payload = {"status": status, "reason": msg, "data": data}
        else:
            payload = {"code": self._code(code), "msg": msg, "data": data}
        tag = code if isinstance(code, int) else _int_or_str(code)
        return _Answer(200, dumps(payload), tag=tag)

    def _http_error(
        self, status: int, path: str, message: str = "", extra: tuple[tuple[bytes, bytes], ...] = ()
    ) -> _Answer:
        body = spring_error(status, path, self.time(), message)
        return _Answer(status, body, b"application/json", extra, tag=status)

    def _rate_limited(self, api_key: str) -> _Answer | None:
        rate = self.rate_limit
        if rate is None:
            return None
        window, capacity = (1.0, int(rate)) if rate >= 1 else (1.0 / rate, 1)
        now = self.monotonic()
        admitted = self._windows.setdefault(api_key, deque())
        while admitted and now - admitted[0] >= window:
            admitted.popleft()
        if len(admitted) < capacity:
            admitted.append(now)
            return None
        wait = max(1, math.ceil(admitted[0] + window - now))
        body = dumps(
            {
                "status": 429,
                "error": "Too Many Requests",
                "message": f"rate limit of {rate:g} requests per second exceeded",
            }
        )
        return _Answer(429, body, b"application/json", ((b"retry-after", str(wait).encode()),), 429)

    def _fault_answer(self, fault: Fault, path: str) -> _Answer:
        if fault.kind == "code":
            code = fault.vendor_code if fault.vendor_code is not None else CODE_OK
            msg = fault.msg
            if msg is None:
                number = _int_or_none(code)
                msg = "unknown error" if number is None else CODE_MESSAGES.get(number, "error")
            return self._envelope(code, msg, path=path)
        status = fault.status or 500
        extra: tuple[tuple[bytes, bytes], ...] = ()
        if fault.retry_after is not None:
            extra = ((b"retry-after", retry_after_value(fault.retry_after)),)
        if fault.html:
            return _Answer(
                status,
                nginx_error_page(status),
                b"text/html",
                ((b"server", b"nginx"), *extra),
                tag=status,
            )
        return self._http_error(status, path, extra=extra)

    def _vendor_answer(
        self, n: int, headers: dict[str, str], body: dict[str, Any] | None, path: str
    ) -> _Answer:
        refusal = self._authenticate(headers, path)
        if refusal is not None:
            return refusal
        if path.startswith(DETAIL_PATH_PREFIX):
            return self._detail_answer(path[len(DETAIL_PATH_PREFIX) :], path)
        if path.startswith(CALL_PATH_PREFIX):
            return self._call_answer(unquote(path[len(CALL_PATH_PREFIX) :]), path)
        if "json" not in headers.get("content-type", "").lower():
            return self._http_error(415, path, "Content-Type must be application/json")
        if path == CALL_QUERY_PATH:
            return self._call_page_answer(n, body, path)
        try:
            current, size, query = parse_query_body(body, end_exclusive=self.end_exclusive)
        except _BadRequest as exc:
            return self._envelope(CODE_PARAMS, f"Parameter exception: {exc}")
        which = self.replica_for(n)
        dataset = self.dataset if which == 0 else self.replicas[which - 1]
        order = self.order
        lies = self._lies_for(n, body)
        records, said = lies.serve(
            current, size, lambda page, per_page: dataset.page(query, page, per_page, order=order)
        )
        return self._page_answer([task.to_wire() for task in records], said, path)

    def _authenticate(self, headers: dict[str, str], path: str) -> _Answer | None:
        """The refusal of a request that is not signed right, or ``None``."""
        api_key = headers.get("api-key")
        if api_key is None:
            message = "Authentication error: Api-Key header is missing"
            return self._envelope(CODE_AUTH, message, path=path)
        if api_key != self.api_key:
            return self._envelope(CODE_AUTH, "Authentication error: unknown Api-Key", path=path)
        sign = headers.get("sign")
        timestamp = headers.get("timestamp")
        if sign is None or timestamp is None:
            message = "Authentication error: Sign and Timestamp headers are required"
            return self._envelope(CODE_AUTH, message, path=path)
        if not sign_matches(sign, self.api_key, self.api_secret, timestamp):
            return self._envelope(CODE_AUTH, "Authentication error: Sign does not match", path=path)
        try:
            seconds = int(timestamp.strip())
        except ValueError:
            return self._envelope(CODE_TIMESTAMP, "Timestamp expires: not unix seconds", path=path)
        if abs(seconds - self.time()) > self.timestamp_tolerance:
            return self._envelope(CODE_TIMESTAMP, "Timestamp expires", path=path)
        return None

    def _lies_for(self, n: int, body: dict[str, Any] | None) -> Lies:
        lies = self.lies
        if lies is None or not lies.applies(n, body if body is not None else {}):
            return _TRUTH
        return lies

    def _page_answer(
        self, records: list[dict[str, Any]], said: dict[str, int], path: str
    ) -> _Answer:
        data = {
            "records": records,
            "total": said["total"],
            "size": said["size"],
            "current": said["current"],
            "searchCount": True,
            "pages": said["pages"],
        }
        return self._envelope(CODE_OK, CODE_MESSAGES[CODE_OK], data, path=path)

    def _utc_now(self) -> datetime:
        return datetime.fromtimestamp(int(self.time()), UTC)

    def _call_page_answer(self, n: int, body: dict[str, Any] | None, path: str) -> _Answer:
        try:
            current, size, start, end = parse_call_query_body(body, now=self._utc_now())
        except _BadRequest as exc:
            return self._envelope(CODE_PARAMS, f"Parameter exception: {exc}", path=path)
        calls, order, exclusive = self.calls, self.order, self.end_exclusive
        lies = self._lies_for(n, body)

        def page(number: int, per_page: int) -> tuple[int, list[FakeCall]]:
            return calls.page(start, end, number, per_page, end_exclusive=exclusive, order=order)

        records, said = lies.serve(current, size, page)
        tz = self.tz
        return self._page_answer([wire_cached(call, tz) for call in records], said, path)

    def _detail_answer(self, raw_id: str, path: str) -> _Answer:
        if not raw_id.isdigit():
            message = f"Parameter exception: the task id must be a number, got {raw_id!r}"
            return self._envelope(CODE_PARAMS, message, path=path)
        task = self.dataset.get(int(raw_id))
        if task is None:
            return self._envelope(CODE_NOT_FOUND, CODE_MESSAGES[CODE_NOT_FOUND], path=path)
        return self._envelope(CODE_OK, CODE_MESSAGES[CODE_OK], self._detail(task), path=path)

    def _detail(self, task: FakeTask) -> dict[str, Any]:
        """The task's details: the query's fields, then the detail page's, consistent
        with its calls where the log holds them."""
        calls = self.calls.for_job(task.job_id) if self.calls.count_for(task.job_id) else []
        duration = sum(call.call_duration for call in calls)
        established = sum(1 for call in calls if call.established)
        created = task.created_time
        finished = None if task.status != 2 else created + timedelta(hours=1)
        return {
            **task.to_wire(),
            "displayNum": "100200",
            "text": f"Hello from {task.task_name}",
            "chargeLen": sum(call.charged_duration for call in calls),
            "toseatNum": 0,
            "successRate": f"{100 * task.success / task.call_num:.2f}" if task.call_num else "0",
            "toseatNumRate": "0",
            "sendTime": (created + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S"),
            "mdfTime": (created + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S"),
            "finishTime": None if finished is None else finished.strftime("%Y-%m-%d %H:%M:%S"),
            "appId": str(task.app_id),
            "source": 3,
            "voiceFileId": f"vf-{task.job_id}",
            "calloutRate": 5,
            "keyFeedbackNum": sum(1 for call in calls if call.feedback_value != "-1"),
            "uploadName": None,
            "baseFile": None,
            "callLossNum": task.call_num - established if calls else 0,
            "callDuration": duration,
            "callLossNumRate": "0",
            "code": "86",
            "maxCalls": 10,
            "loopCount": 1,
            "lan": "en",
            "allCallToseatNum": 0,
            "callTotal": task.call_num,
            "acd": round(duration / established, 2) if established else 0,
        }

    def _call_answer(self, voice_id: str, path: str) -> _Answer:
        call = self.calls.get(voice_id)
        earliest = months_back(self._utc_now(), CALL_RETENTION_MONTHS)
        if call is None or call.submit_time < earliest:
            return self._envelope(CODE_NOT_FOUND, CODE_MESSAGES[CODE_NOT_FOUND], path=path)
        return self._envelope(CODE_OK, CODE_MESSAGES[CODE_OK], call.to_wire(self.tz), path=path)

    # ----------------------------------------------------------------- sending

    async def _send(self, send: Send, answer: _Answer) -> None:
        headers = [
            (b"content-type", answer.content_type),
            (b"content-length", str(len(answer.body)).encode()),
            (b"date", http_date(self.time())),
            *answer.extra_headers,
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})

    async def _drop(self, send: Send) -> None:
        headers = [
            (b"content-type", JSON_CONTENT_TYPE),
            (b"content-length", str(len(_DROP_PREFIX) + 4096).encode()),
            (b"date", http_date(self.time())),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _DROP_PREFIX, "more_body": True})
        raise DroppedConnection("the fake vendor dropped the connection mid-response")


def _route(path: str) -> str | None:
    """The method a path is served for, or ``None`` for a path the fake does not serve."""
    if path in (QUERY_PATH, CALL_QUERY_PATH):
        return "POST"
    for prefix in (DETAIL_PATH_PREFIX, CALL_PATH_PREFIX):
        if path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]:
            return "GET"
    return None


def _status_style(path: str) -> bool:
    """Whether a path answers ``status``/``reason`` (the call-record endpoints)."""
    return path == CALL_QUERY_PATH or path.startswith(CALL_PATH_PREFIX)


def _int_or_none(code: int | str) -> int | None:
    if isinstance(code, int):
        return code
    try:
        return int(code)
    except ValueError:
        return None


def _int_or_str(code: str) -> int | str:
    value = _int_or_none(code)
    return code if value is None else value
