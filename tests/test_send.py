"""The send path: reading a reply as data, the -18 burst detector, and what each step
does when something around it misbehaves (a limiter, the server, the caller)."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from itnio_async import (
    AsyncVoiceClient,
    AttemptEvent,
    ClientHooks,
    ClientStateError,
    ItnioError,
    ItnioHTTPError,
    ItnioTimeoutError,
    MalformedResponseError,
    RateLimitedError,
    RetryEvent,
    RetryPolicy,
    TimestampExpiredError,
    VendorServerError,
)
from itnio_async._client import DEFAULT_MAX_RESPONSE_BYTES
from itnio_async._errors import LimiterUnavailableError
from itnio_async._reply import RawReply, ServerFaultBurst, classify, parse_retry_after
from itnio_async._stream import StreamProgress
from itnio_async.testing import Dataset, FakeVendor, aserve, serve

from .conftest import (
    KEY,
    SECRET,
    PassThroughLimiter,
    ScriptedVendor,
    run_virtual,
    vendor_error,
    vendor_page,
)

START = datetime(2024, 6, 3, 0, 0, 0)
END = datetime(2024, 6, 3, 23, 59, 59)


def raw(status: int = 200, body: bytes = b"", **headers: str) -> RawReply:
    return RawReply(status, "", httpx.Headers(headers), body)


# -- classify: a pure reading ---------------------------------------------------------------


def test_a_success_is_read_into_its_envelope() -> None:
    reply = classify(raw(body=b'{"code": 0, "msg": "success", "data": {"x": 1}}'))
    assert reply.error is None
    assert reply.envelope is not None
    assert reply.envelope.data == {"x": 1}


def test_a_stale_timestamp_is_read_with_the_servers_clock_and_changes_nothing() -> None:
    date = formatdate(1_700_000_000, usegmt=True)
    reply = classify(raw(body=b'{"code": -16, "msg": "expired"}', Date=date))
    assert isinstance(reply.error, TimestampExpiredError)
    assert reply.server_time == 1_700_000_000
    assert reply.error.clock_corrected is False  # deciding that is the send path's job


def test_a_cached_date_is_no_clock_reading() -> None:
    date = formatdate(1_700_000_000, usegmt=True)
    reply = classify(raw(body=b'{"code": -16, "msg": "expired"}', Date=date, Age="3"))
    assert reply.server_time is None


def test_an_http_error_is_read_with_its_retry_after() -> None:
    reply = classify(raw(429, b"slow down", **{"Retry-After": "7"}))
    assert isinstance(reply.error, RateLimitedError)
    assert reply.retry_after == 7.0
    assert reply.error.retry_after == 7.0


@pytest.mark.parametrize(
    ("location", "named"),
    [
        ("https://v2.example.test/x", "to v2.example.test"),
        ("/moved", "on the same host"),
        ("http://x:abc/", "on the same host"),
    ],
)
def test_a_redirect_is_read_as_an_error_naming_only_the_host(location: str, named: str) -> None:
    reply = classify(raw(302, b"", Location=location))
    assert isinstance(reply.error, ItnioHTTPError)
    assert named in str(reply.error)
    assert reply.retry_after is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    later = parse_retry_after(formatdate(time.time() + 120, usegmt=True))
    assert later is not None
    assert 115 <= later <= 120
    assert parse_retry_after(formatdate(time.time() + 120)[:-6]) is not None  # no zone: GMT
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None


def test_the_burst_detector_counts_faults_within_a_second() -> None:
    burst = ServerFaultBurst(RetryPolicy(initial_backoff=0.5, max_backoff=4.0))
    assert burst.note(0.0) is None
    assert burst.note(0.4) is None
    assert burst.note(0.8) == 0.5  # the third within a second
    assert burst.note(0.9) == 1.0  # each further one doubles the pause
    assert burst.note(5.0) is None  # a second later the count starts again


# -- a limiter of the user's that fails ------------------------------------------------------


class BrokenLimiter:
    def __init__(self, *, acquire: BaseException | None = None) -> None:
        self.acquire_error = acquire
        self.pauses: list[float] = []

    async def acquire(self) -> None:
        if self.acquire_error is not None:
            raise self.acquire_error

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        raise ConnectionError("the limiter's store is down")


async def test_a_limiter_that_fails_its_own_way_raises_a_typed_error(make_client: Any) -> None:
    vendor = ScriptedVendor(vendor_page())
    limiter = BrokenLimiter(acquire=ConnectionError("the limiter's store is down"))
    client = make_client(vendor, limiter=limiter)
    with pytest.raises(LimiterUnavailableError, match="ConnectionError") as caught:
        await client.query_group_calls(START, END)
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert vendor.requests == []


async def test_a_limiter_that_raises_our_own_error_passes_it_through(make_client: Any) -> None:
    error = LimiterUnavailableError("redis is down")
    client = make_client(ScriptedVendor(vendor_page()), limiter=BrokenLimiter(acquire=error))
    with pytest.raises(LimiterUnavailableError) as caught:
        await client.query_group_calls(START, END)
    assert caught.value is error


def test_http_errors_and_vendor_faults_stay_typed() -> None:
    assert isinstance(classify(raw(502, b"bad gateway")).error, ItnioHTTPError)
    assert isinstance(classify(raw(body=b'{"code": -18, "msg": "x"}')).error, VendorServerError)


# -- Retry-After: only where it means "slow down" ---------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        vendor_page(headers={"Retry-After": "30"}),
        vendor_error(-22, "bad param", **{"Retry-After": "30"}),
        httpx.Response(500, text="oops", headers={"Retry-After": "30"}),
        httpx.Response(404, text="no", headers={"Retry-After": "30"}),
    ],
    ids=["200 page", "200 vendor error", "500", "404"],
)
async def test_a_retry_after_on_other_replies_pauses_nobody(
    make_client: Any, sleeps: Any, reply: httpx.Response
) -> None:
    limiter = PassThroughLimiter()
    client = make_client(ScriptedVendor(reply, vendor_page()), limiter=limiter)
    error: ItnioError | None = None
    try:
        await client.query_group_calls(START, END)
    except ItnioError as exc:
        error = exc
    assert getattr(error, "retry_after", None) is None
    assert limiter.pauses == []
    assert all(wait < 30 for wait in sleeps.waits)


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retry_after_on_429_and_503_pauses_every_task(
    make_client: Any, sleeps: Any, status: int
) -> None:
    limiter = PassThroughLimiter()
    reply = httpx.Response(status, text="busy", headers={"Retry-After": "7"})
    client = make_client(ScriptedVendor(reply, vendor_page()), limiter=limiter)
    await client.query_group_calls(START, END)
    assert limiter.pauses == [7.0]
    assert sleeps.waits == [7.0]


async def test_a_limiter_failing_to_pause_does_not_hide_the_vendors_error(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reply = httpx.Response(429, text="slow down", headers={"Retry-After": "2"})
    limiter = BrokenLimiter()
    client = make_client(ScriptedVendor(reply), limiter=limiter, retry=RetryPolicy(max_retries=0))
    with pytest.raises(RateLimitedError) as caught:
        await client.query_group_calls(START, END)
    assert caught.value.retry_after == 2.0
    assert limiter.pauses == [2.0]
    assert any("pause" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


async def test_a_limiter_failing_to_pause_on_a_fault_burst_keeps_the_fault(
    make_client: Any,
) -> None:
    limiter = BrokenLimiter()
    client = make_client(ScriptedVendor(vendor_error(-18)), limiter=limiter)
    with pytest.raises(VendorServerError):
        await client.query_group_calls(START, END)
    assert limiter.pauses  # the burst was noticed; the limiter's failure was not raised


# -- base_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "sent_to"),
    [
        ("https://gw.example.test/itnio", "https://gw.example.test/itnio/voice/group/call/query"),
        ("https://gw.example.test/v3/", "https://gw.example.test/v3/voice/group/call/query"),
        ("https://gw.example.test", "https://gw.example.test/voice/group/call/query"),
        ("https://gw.example.test:8443/", "https://gw.example.test:8443/voice/group/call/query"),
    ],
)
async def test_a_path_prefix_of_base_url_is_kept(
    make_client: Any, base_url: str, sent_to: str
) -> None:
    vendor = ScriptedVendor(vendor_page())
    await make_client(vendor, base_url=base_url).query_group_calls(START, END)
    assert [str(request.url) for request in vendor.requests] == [sent_to]


@pytest.mark.parametrize(
    "base_url",
    [
        "https://user:hunter2@gw.example.test",
        "https://:hunter2@gw.example.test/v3",
        "http://user:hunter2@10.0.0.5",
        "http://user:hunter2@127.0.0.1:8000",
    ],
)
def test_a_password_in_base_url_is_refused_without_showing_it(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url") as caught:
        AsyncVoiceClient(KEY, SECRET, base_url=base_url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "base_url", ["https://gw.example.test/v3?x=1", "https://gw.example.test#a"]
)
def test_a_query_or_fragment_in_base_url_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        AsyncVoiceClient(KEY, SECRET, base_url=base_url)


# -- arguments checked before any request ------------------------------------------------------


def _library_locals(exc: BaseException) -> list[tuple[object, str]]:
    """Each local of the library's frames in ``exc``'s traceback, with its repr."""
    found = []
    tb = exc.__traceback__
    while tb is not None:
        if "itnio_async" in tb.tb_frame.f_code.co_filename:
            for value in tb.tb_frame.f_locals.values():
                try:
                    text = repr(value)
                except Exception:  # a half-built object; it shows nothing either
                    text = ""
                found.append((value, text))
        tb = tb.tb_next
    return found


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"timeout": None}, ValueError, "timeout"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"timeout": float("inf")}, ValueError, "timeout"),
        ({"timeout": True}, TypeError, "timeout"),
        ({"timeout": "30"}, TypeError, "timeout"),
        ({"timeout": httpx.Timeout(None)}, ValueError, "timeout"),
        ({"timeout": httpx.Timeout(5.0, read=None)}, ValueError, "read"),
        ({"timeout": httpx.Timeout(5.0, connect=0)}, ValueError, "connect"),
        ({"rate_limit": 1e-300}, ValueError, "rate_limit"),
        ({"rate_limit": 1e-5}, ValueError, "rate_limit"),
        ({"base_url": 443}, TypeError, "base_url"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=named) as caught:
        AsyncVoiceClient(KEY, SECRET, **kwargs)
    assert all(SECRET not in text for _, text in _library_locals(caught.value))


def test_a_slow_but_sane_rate_is_accepted() -> None:
    AsyncVoiceClient(KEY, SECRET, rate_limit=1 / 3600)


SECRET_VALUE = "s3cr3t-never-shown"


@pytest.mark.parametrize(
    ("key", "secret", "error", "named", "hidden"),
    [
        (12345678, SECRET_VALUE, TypeError, "api_key", SECRET_VALUE),
        ("key", 987654321, TypeError, "api_secret", "987654321"),
        ("key", b"bytes-secret", TypeError, "api_secret", "bytes-secret"),
        ("key\r\nX-Injected: 1", SECRET_VALUE, ValueError, "api_key", SECRET_VALUE),
        ("key", SECRET_VALUE + "\n", ValueError, "api_secret", SECRET_VALUE),
        ("kéy", SECRET_VALUE, ValueError, "api_key", SECRET_VALUE),
        ("key", "s3cr3t never", ValueError, "api_secret", "s3cr3t never"),
        ("key", "s3cr3t\x00", ValueError, "api_secret", "s3cr3t"),
    ],
)
def test_bad_credentials_are_refused_at_construction_without_showing_the_secret(
    key: Any, secret: Any, error: type[Exception], named: str, hidden: str
) -> None:
    with pytest.raises(error, match=named) as caught:
        AsyncVoiceClient(key, secret)
    assert hidden not in str(caught.value)
    for value, text in _library_locals(caught.value):
        assert hidden not in text
        assert value is not secret


def test_bad_credentials_from_the_environment_name_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ITNIO_API_KEY", "key")
    monkeypatch.setenv("ITNIO_API_SECRET", SECRET_VALUE + "\r\n")
    with pytest.raises(ValueError, match="ITNIO_API_SECRET") as caught:
        AsyncVoiceClient()
    assert SECRET_VALUE not in str(caught.value)


async def test_a_lone_surrogate_in_search_is_refused_at_the_call(make_client: Any) -> None:
    vendor = ScriptedVendor(vendor_page())
    client = make_client(vendor)
    with pytest.raises(ValueError, match="search"):
        await client.query_group_calls(START, END, search="promo \ud800")
    with pytest.raises(ValueError, match="search"):
        client.iter_group_calls(START, END, search="\udfff")
    assert vendor.requests == []


# -- one attempt is bounded: in time and in size ------------------------------------------------


class Body:
    """A reply body served chunk by chunk, counting what the client read of it."""

    def __init__(self, chunk: bytes, *, chunks: int | None = None, every: float = 0.0) -> None:
        self.chunk = chunk
        self.chunks = chunks
        self.every = every
        self.served = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        count = 0
        while self.chunks is None or count < self.chunks:
            if self.every:
                await asyncio.sleep(self.every)
            self.served += len(self.chunk)
            count += 1
            yield self.chunk


def test_a_body_dripping_byte_by_byte_cannot_outlive_the_timeout() -> None:
    body = Body(b" ", every=0.25)

    async def main() -> tuple[BaseException, float]:
        loop = asyncio.get_running_loop()
        handler = lambda request: httpx.Response(200, content=body)  # noqa: E731
        async with AsyncVoiceClient(
            KEY,
            SECRET,
            transport=httpx.MockTransport(handler),
            rate_limit=None,
            timeout=2,
            retry=RetryPolicy(max_retries=0),
        ) as client:
            started = loop.time()
            with pytest.raises(ItnioTimeoutError) as caught:
                # A guard, so that the test itself ends if the client never does.
                await asyncio.wait_for(client.query_group_calls(START, END), 60)
            return caught.value, loop.time() - started

    error, took = run_virtual(main)
    assert took == pytest.approx(2.0, abs=0.3)
    assert "deadline" in str(error)
    assert body.served <= 9


async def test_an_endless_body_fails_at_the_size_cap(make_client: Any) -> None:
    body = Body(b"x" * 65536, chunks=64)  # endless as far as a 1 MB cap can tell
    vendor = ScriptedVendor(lambda request: httpx.Response(200, content=body))
    client = make_client(vendor, max_response_bytes=1_000_000)
    with pytest.raises(MalformedResponseError, match="max_response_bytes") as caught:
        await client.query_group_calls(START, END)
    assert body.served <= 1_000_000 + 65536
    assert len(vendor.requests) == 1  # not retried: the next one would be as big
    assert len(caught.value.body) <= 200


async def test_a_declared_huge_body_fails_before_it_is_read(make_client: Any) -> None:
    body = Body(b"x" * 65536, chunks=3200)  # 200 MB
    reply = lambda request: httpx.Response(  # noqa: E731
        200, headers={"Content-Length": str(65536 * 3200)}, content=body
    )
    with pytest.raises(MalformedResponseError, match="max_response_bytes"):
        await make_client(ScriptedVendor(reply)).query_group_calls(START, END)
    assert body.served <= 65536


async def test_the_default_cap_is_a_few_megabytes(make_client: Any) -> None:
    assert 1 << 20 <= DEFAULT_MAX_RESPONSE_BYTES <= 16 << 20
    body = Body(b"x" * (1 << 20), chunks=20)
    client = make_client(ScriptedVendor(lambda request: httpx.Response(200, content=body)))
    with pytest.raises(MalformedResponseError, match="max_response_bytes"):
        await client.query_group_calls(START, END)
    assert body.served <= DEFAULT_MAX_RESPONSE_BYTES + (1 << 20)


async def test_a_huge_error_page_is_cut_before_it_is_read_whole(make_client: Any) -> None:
    body = Body(b"<p>maintenance</p>" + b" " * (1 << 20) + b"x" * 100, chunks=20)  # ~20 MB
    vendor = ScriptedVendor(lambda request: httpx.Response(500, content=body))
    client = make_client(vendor, retry=RetryPolicy(max_retries=0))
    with pytest.raises(ItnioHTTPError) as caught:
        await client.query_group_calls(START, END)
    assert body.served <= len(body.chunk)  # one chunk read, not twenty
    assert caught.value.body.startswith("<p>maintenance</p>")
    assert len(caught.value.body) <= 200


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError)]
)
def test_max_response_bytes_is_checked(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_response_bytes"):
        AsyncVoiceClient(KEY, SECRET, max_response_bytes=value)


# -- retry: the first attempt outside tenacity, counted as its own ---------------------------------


def test_the_retry_deadline_counts_the_first_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    # tenacity measures its deadline on time.monotonic: 50 s pass in the first attempt.
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])

    def handler(request: httpx.Request) -> httpx.Response:
        now[0] += 50.0
        return httpx.Response(503, text="busy", headers={"Retry-After": "15"})

    async def main() -> ItnioHTTPError:
        policy = RetryPolicy(max_retries=5, initial_backoff=0.0, max_backoff=0.0, deadline=60.0)
        async with AsyncVoiceClient(
            KEY,
            SECRET,
            transport=httpx.MockTransport(handler),
            limiter=PassThroughLimiter(),
            retry=policy,
        ) as client:
            with pytest.raises(ItnioHTTPError) as caught:
                await client.query_group_calls(START, END)
            return caught.value

    error = run_virtual(main)
    assert error.attempts == 1  # 50 s gone + a 15 s wait would end past the 60 s deadline


async def test_a_failed_first_attempt_is_retried_reported_and_counted_as_attempt_one(
    make_client: Any, sleeps: Any
) -> None:
    class Recorder(ClientHooks):
        def __init__(self) -> None:
            self.events: list[object] = []

        def on_attempt(self, event: AttemptEvent) -> None:
            self.events.append(("attempt", event.attempt, event.outcome))

        def on_retry(self, event: RetryEvent) -> None:
            self.events.append(("retry", event.attempt, event.reason))

    hooks = Recorder()
    vendor = ScriptedVendor(vendor_error(-18), vendor_error(-18), vendor_page())
    client = make_client(vendor, hooks=hooks)
    stream = client.iter_group_calls(START, END)
    assert [record async for record in stream] == []
    assert hooks.events == [
        ("attempt", 1, "vendor:-18"),
        ("retry", 1, "vendor:-18"),
        ("attempt", 2, "vendor:-18"),
        ("retry", 2, "vendor:-18"),
        ("attempt", 3, "ok"),
    ]
    assert (stream.progress.requests, stream.progress.retries) == (3, 2)
    assert len(sleeps.waits) == 2


# -- the waits, reported apart ---------------------------------------------------------------


class EventRecorder(ClientHooks):
    def __init__(self) -> None:
        self.attempts: list[AttemptEvent] = []

    def on_attempt(self, event: AttemptEvent) -> None:
        self.attempts.append(event)


class SlowLimiter:
    """Lets each acquire through after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def acquire(self) -> None:
        await asyncio.sleep(self.delay)

    async def pause(self, seconds: float) -> None:
        pass


async def _slow_page(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(1.0)
    return vendor_page([])


def test_the_wait_for_a_connection_slot_is_not_counted_as_limiter_wait() -> None:
    hooks = EventRecorder()

    async def main() -> None:
        async with AsyncVoiceClient(
            KEY,
            SECRET,
            transport=httpx.MockTransport(_slow_page),
            limiter=SlowLimiter(0.25),
            max_connections=1,
            hooks=hooks,
        ) as client:
            await asyncio.gather(*(client.query_group_calls(START, END) for _ in range(2)))

    run_virtual(main)
    first, second = sorted(hooks.attempts, key=lambda event: event.slot_wait)
    assert first.slot_wait == pytest.approx(0.0, abs=1e-6)
    assert first.limiter_wait == pytest.approx(0.25, abs=1e-6)
    # The second waited for the only connection (the first's limiter wait and request),
    # then for the limiter on its own.
    assert second.slot_wait == pytest.approx(1.25, abs=1e-6)
    assert second.limiter_wait == pytest.approx(0.25, abs=1e-6)


def test_a_streams_progress_reports_the_two_waits_apart() -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(1000, seed=3), latency=1.0)

    async def main() -> StreamProgress:
        async with AsyncVoiceClient(
            KEY, SECRET, transport=fake.transport(), limiter=SlowLimiter(0.5), max_connections=1
        ) as client:
            stream = client.iter_group_calls(
                datetime(2024, 1, 1), datetime(2024, 7, 1), concurrency=4
            )
            async for _ in stream:
                pass
            return stream.progress

    progress = run_virtual(main)
    assert progress.requests > 4
    # Every request waited 0.5 s for the limiter, and no more is counted as such ...
    assert progress.limiter_wait == pytest.approx(0.5 * progress.requests, abs=1e-6)
    # ... while the fetches queued behind the one connection show as slot waits.
    assert progress.slot_wait > progress.requests


async def test_a_call_tally_adds_up_both_waits() -> None:
    from itnio_async._hooks import CallTally

    tally = CallTally()
    assert (tally.slot_wait, tally.limiter_wait) == (0.0, 0.0)


# -- the clock: corrected within bounds only ------------------------------------------------


def _server_clock_reply(server_offset: float) -> Any:
    """The vendor, with its clock ``server_offset`` s ahead: -16 unless the stamp fits."""

    def reply(request: httpx.Request) -> httpx.Response:
        server_now = time.time() + server_offset
        headers = {"Date": formatdate(server_now, usegmt=True)}
        if abs(int(request.headers["Timestamp"]) - server_now) > 60:
            return vendor_error(-16, "timestamp expired", **headers)
        return vendor_page(headers=headers)

    return reply


async def test_a_clock_skew_beyond_an_hour_is_reported_not_trusted(
    make_client: Any, sleeps: Any, caplog: pytest.LogCaptureFixture
) -> None:
    offsets: list[float] = []

    class Hooks(ClientHooks):
        def on_clock_offset(self, offset: float) -> None:
            offsets.append(offset)

    vendor = ScriptedVendor(_server_clock_reply(5999))
    client = make_client(vendor, retry=RetryPolicy(max_retries=2), hooks=Hooks())
    with pytest.raises(TimestampExpiredError) as caught:
        await client.query_group_calls(START, END)
    assert client.clock_offset == 0.0
    assert offsets == []
    assert caught.value.clock_corrected is False
    assert len(vendor.requests) == 3
    assert all(wait > 0 for wait in sleeps.waits)  # backed off, not retried at once
    assert any("not trusted" in note for note in getattr(caught.value, "__notes__", []))
    assert any("not trusted" in r.getMessage() for r in caplog.records)


async def test_a_skew_within_the_bound_is_still_corrected(make_client: Any) -> None:
    vendor = ScriptedVendor(_server_clock_reply(-3000))
    client = make_client(vendor)
    await client.query_group_calls(START, END)
    assert client.clock_offset == pytest.approx(-3000, abs=2)
    assert len(vendor.requests) == 2


# -- an injected http_client -------------------------------------------------------------------


def test_an_injected_clients_pool_sizes_the_connection_slots() -> None:
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=3))
    assert AsyncVoiceClient(KEY, SECRET, http_client=http).max_connections == 3
    # A smaller max_connections still holds; an unlimited pool leaves the default.
    assert AsyncVoiceClient(KEY, SECRET, http_client=http, max_connections=2).max_connections == 2
    unlimited = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))
    assert AsyncVoiceClient(KEY, SECRET, http_client=unlimited).max_connections == 32


async def test_an_injected_clients_small_pool_never_times_out() -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(50, seed=4))
    # Two connections, and a pool wait that anything but an immediate connection exceeds.
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with (
        aserve(fake) as url,
        httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(5.0, pool=0.0005)) as http,
    ):
        client = AsyncVoiceClient(
            KEY,
            SECRET,
            base_url=url,
            http_client=http,
            rate_limit=None,
            retry=RetryPolicy(max_retries=0),
        )
        async with client:
            pages = await asyncio.gather(
                *(
                    client.query_group_calls(datetime(2024, 1, 1), datetime(2024, 7, 1))
                    for _ in range(20)
                )
            )
    assert all(page.total == 50 for page in pages)
    assert fake.stats.max_in_flight <= 2


def test_timeout_is_refused_with_an_injected_client() -> None:
    http = httpx.AsyncClient()
    with pytest.raises(ValueError, match="timeout") as caught:
        AsyncVoiceClient(KEY, SECRET, http_client=http, timeout=5.0)
    assert "http_client" in str(caught.value)


def test_an_injected_client_without_a_finite_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="http_client"):
        AsyncVoiceClient(KEY, SECRET, http_client=httpx.AsyncClient(timeout=None))


def _redirecting(request: httpx.Request) -> httpx.Response:
    if request.url.host == "api.itniotech.com":
        return httpx.Response(302, headers={"Location": "https://collector.example/x?k=1"})
    return vendor_page()


async def test_a_redirect_is_never_followed_and_names_the_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _redirecting(request)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), follow_redirects=True
    ) as http:
        client = AsyncVoiceClient(KEY, SECRET, http_client=http, rate_limit=None)
        with pytest.raises(ItnioHTTPError) as caught:
            await client.query_group_calls(START, END)
    assert [request.url.host for request in seen] == ["api.itniotech.com"]
    assert caught.value.status_code == 302
    assert caught.value.attempts == 1  # not retried
    assert "collector.example" in str(caught.value)
    assert "k=1" not in str(caught.value)
    assert "Sign" not in str(caught.value)


@pytest.mark.parametrize("status", [301, 307, 308])
async def test_a_redirect_of_the_own_client_is_a_typed_error(make_client: Any, status: int) -> None:
    reply = httpx.Response(status, headers={"Location": "https://v2.example.test/voice"})
    vendor = ScriptedVendor(reply)
    with pytest.raises(ItnioHTTPError, match=r"v2\.example\.test") as caught:
        await make_client(vendor).query_group_calls(START, END)
    assert caught.value.status_code == status
    assert len(vendor.requests) == 1


# -- closing -------------------------------------------------------------------------------------


class CountingServer:
    """An HTTP server on loopback that notes when each request arrives; it answers an
    empty page at once, or holds every answer until ``release`` is set."""

    def __init__(self, *, hold: bool = False) -> None:
        self.arrivals: list[float] = []
        self.hold = hold
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = (
            b'{"code":0,"msg":"ok","data":{"records":[],"total":0,"size":100,'
            b'"current":1,"pages":0}}'
        )
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                self.arrivals.append(asyncio.get_running_loop().time())
                self.arrived.set()
                if self.hold:
                    await self.release.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_aclose_while_requests_connect_lets_none_of_them_through() -> None:
    server = CountingServer()
    async with server as url:
        client = AsyncVoiceClient(
            KEY, SECRET, base_url=url, rate_limit=None, retry=RetryPolicy(max_retries=0)
        )
        calls = [asyncio.create_task(client.query_group_calls(START, END)) for _ in range(4)]
        await asyncio.sleep(0)  # every call is on its way: connecting
        closing = asyncio.get_running_loop().time()
        await client.aclose()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        await asyncio.sleep(0.05)  # what was left running would arrive by now
    assert [type(outcome) for outcome in outcomes] == [ClientStateError] * 4
    assert [t for t in server.arrivals if t >= closing] == []


async def test_aclose_while_a_stream_runs_ends_it_and_nothing_reaches_the_server() -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(2000, seed=6))
    async with aserve(fake) as url:
        client = AsyncVoiceClient(KEY, SECRET, base_url=url, rate_limit=None)
        stream = client.iter_group_call_pages(
            datetime(2024, 1, 1), datetime(2024, 7, 1), page_size=10, concurrency=8
        )

        async def consume() -> None:
            async for _ in stream:
                pass

        second = asyncio.Event()
        fake.on_request(lambda n, body: n >= 2 and second.set())
        consumer = asyncio.create_task(consume())
        await second.wait()  # the first page is in: the stream's fetches are starting
        await client.aclose()
        sent = fake.stats.requests
        with pytest.raises(ClientStateError):
            await consumer
        await asyncio.sleep(0.05)  # what was left running would arrive by now
        assert fake.stats.requests == sent


def test_aclose_after_the_first_loop_has_closed_closes_cleanly() -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(20, seed=5))
    with serve(fake) as url:
        client = AsyncVoiceClient(KEY, SECRET, base_url=url)

        async def one() -> int:
            page = await client.query_group_calls(datetime(2024, 1, 1), datetime(2024, 7, 1))
            return page.total

        assert asyncio.run(one()) == 20  # leaves a pooled connection on that loop
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            asyncio.run(client.aclose())
            gc.collect()  # no socket of the first loop is left to warn about
    assert client.is_closed
    with pytest.raises(ClientStateError, match="event loop"):
        asyncio.run(one())


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_aclose_after_a_loop_closed_without_shutting_down_does_not_raise() -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(20, seed=5))
    with serve(fake) as url:
        client = AsyncVoiceClient(KEY, SECRET, base_url=url)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(
            client.query_group_calls(datetime(2024, 1, 1), datetime(2024, 7, 1))
        )
        loop.close()  # no shutdown_asyncgens(): the pool is left open on a dead loop
        asyncio.run(client.aclose())
        assert client.is_closed
        del client, loop
        gc.collect()  # its sockets, left with the dead loop, are reclaimed (and warn) now


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(value: str) -> None:
    from itnio_async._reply import parse_retry_after

    assert parse_retry_after(value) is None


def test_a_retry_after_date_and_a_number_are_read_as_seconds() -> None:
    from itnio_async._reply import parse_retry_after

    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 01 Sep 2021 04:00:00 GMT") == 0.0  # in the past
