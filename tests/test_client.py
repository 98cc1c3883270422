"""The client as its users meet it: construction, lifecycle, the call, errors and safety."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from itnio_async import (
    AsyncVoiceClient,
    AuthenticationError,
    ClientStateError,
    GroupCallStatus,
    InvalidParameterError,
    IPRestrictedError,
    ItnioAPIError,
    ItnioError,
    ItnioHTTPError,
    ItnioTimeoutError,
    ItnioTransportError,
    MalformedResponseError,
    RateLimitedError,
    RetryPolicy,
    TimestampExpiredError,
    VendorServerError,
    compute_sign,
)

from .conftest import (
    KEY,
    SECRET,
    PassThroughLimiter,
    ScriptedVendor,
    SleepRecorder,
    vendor_error,
    vendor_page,
    wire_record,
)

START = datetime(2024, 1, 1)
END = datetime(2024, 6, 3, 15, 13, 1)


# -- construction -------------------------------------------------------------------------


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITNIO_API_KEY", "env-key")
    monkeypatch.setenv("ITNIO_API_SECRET", "env-secret")
    monkeypatch.setenv("ITNIO_BASE_URL", "https://eu.example.test")
    client = AsyncVoiceClient()
    assert "env-key" in repr(client)
    assert client.base_url == "https://eu.example.test"


@pytest.mark.parametrize(
    ("key", "secret", "named"), [(None, "s", "api_key"), ("k", None, "api_secret")]
)
def test_missing_credentials_fail_at_construction_naming_the_argument(
    monkeypatch: pytest.MonkeyPatch, key: str | None, secret: str | None, named: str
) -> None:
    monkeypatch.delenv("ITNIO_API_KEY", raising=False)
    monkeypatch.delenv("ITNIO_API_SECRET", raising=False)
    with pytest.raises(ValueError, match=named):
        AsyncVoiceClient(key, secret)


def test_the_default_base_url_is_the_vendors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ITNIO_BASE_URL", raising=False)
    assert AsyncVoiceClient(KEY, SECRET).base_url == "https://api.itniotech.com"


@pytest.mark.parametrize(
    "url", ["http://api.itniotech.com", "http://10.0.0.5:8080", "ftp://x.test", "api.itniotech.com"]
)
def test_plain_http_is_refused_except_to_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        AsyncVoiceClient(KEY, SECRET, base_url=url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:9"])
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert AsyncVoiceClient(KEY, SECRET, base_url=url).base_url.startswith("http://")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": -1.0}, "rate_limit"),
        ({"rate_limit": "10"}, "rate_limit"),
        ({"burst": 0}, "burst"),
        ({"max_connections": 0}, "max_connections"),
        ({"retry": {"max_retries": 1}}, "retry"),
        ({"limiter": object()}, "limiter"),
        ({"server_timezone": "Asia/Shanghai"}, "server_timezone"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_setting(
    kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=named):
        AsyncVoiceClient(KEY, SECRET, **kwargs)


def test_the_owned_connection_pool_is_sized_for_the_clients_concurrency() -> None:
    # httpx's own pool (the aiohttp one: tests/test_transport.py).
    client = AsyncVoiceClient(KEY, SECRET, max_connections=7, http_backend="httpx")
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections == 7
    assert client.max_connections == 7


# -- the request on the wire --------------------------------------------------------------


async def test_a_query_sends_the_vendors_headers_and_body(make_client: Any) -> None:
    vendor = ScriptedVendor(vendor_page([wire_record(1)]))
    client = make_client(vendor)
    await client.query_group_calls(
        START, END, statuses=[GroupCallStatus.CALLING, 2], app_id=7, search="promo", page=3, size=10
    )
    (request,) = vendor.requests
    assert request.method == "POST"
    assert request.url == "https://api.itniotech.com/voice/group/call/query"
    assert request.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert request.headers["Api-Key"] == KEY
    timestamp = request.headers["Timestamp"]
    assert request.headers["Sign"] == compute_sign(KEY, SECRET, timestamp)
    assert json.loads(request.content) == {
        "current": 3,
        "size": 10,
        "params": {
            "strTime": "2024-01-01 00:00:00",
            "endTime": "2024-06-03 15:13:01",
            "statusList": [1, 2],
            "idxAppId": 7,
            "searchCondition": "promo",
        },
    }


async def test_a_query_returns_a_typed_page(make_client: Any) -> None:
    vendor = ScriptedVendor(vendor_page([wire_record(5, status=9)], total=574, size=1, code="0"))
    page = await make_client(vendor).query_group_calls(START, END, size=1)
    assert (page.total, page.size, page.current, page.pages) == (574, 1, 1, 574)
    (record,) = page.records
    assert record.job_id == 5
    assert int(record.status) == 9
    assert record.created_time == datetime(2024, 6, 4, 14, 49, 36)


async def test_times_come_back_aware_in_the_server_timezone(make_client: Any) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    vendor = ScriptedVendor(vendor_page([wire_record(5)]))
    client = make_client(vendor, server_timezone=zone)
    page = await client.query_group_calls(
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    )
    assert page.records[0].created_time == datetime(2024, 6, 4, 14, 49, 36, tzinfo=zone)
    params = vendor.bodies()[0]["params"]
    assert params["strTime"] == "2024-01-01 08:00:00"
    assert params["endTime"] == "2024-01-02 08:00:00"


@pytest.mark.parametrize(
    ("created", "zone"),
    [
        ("9999-12-31T23:59:59+00:00", "Asia/Shanghai"),
        ("0001-01-01T00:00:00+00:00", "America/New_York"),
        ("9999-12-31T23:59:59-05:00", "UTC"),
    ],
)
async def test_a_time_the_zone_carries_out_of_range_is_a_malformed_reply(
    make_client: Any, created: str, zone: str
) -> None:
    """Not a raw ``OverflowError``: every decode failure is a ``MalformedResponseError``."""
    vendor = ScriptedVendor(vendor_page([wire_record(5, createdTime=created)]))
    client = make_client(vendor, server_timezone=ZoneInfo(zone))
    with pytest.raises(MalformedResponseError, match="out of range") as caught:
        await client.query_group_calls(START, END)
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"size": 0}, "size"),
        ({"size": 101}, "size"),
        ({"page": 0}, "page"),
        ({"start": END, "end": START}, "end"),
        ({"start": "2024-01-01"}, "start"),
        ({"statuses": [7]}, "statuses"),
        ({"statuses": ["ringing"]}, "statuses"),
        ({"start": datetime(2024, 1, 1, tzinfo=UTC)}, "server_timezone"),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    make_client: Any, kwargs: dict[str, Any], named: str
) -> None:
    vendor = ScriptedVendor()
    client = make_client(vendor)
    args = {"start": START, "end": END} | kwargs
    with pytest.raises((ValueError, TypeError), match=named):
        await client.query_group_calls(**args)
    assert vendor.requests == []


# -- lifecycle ------------------------------------------------------------------------------


async def test_a_closed_client_refuses_calls_with_a_clear_error(make_client: Any) -> None:
    client = make_client(ScriptedVendor())
    async with client:
        await client.query_group_calls(START, END)
    assert client.is_closed
    await client.aclose()  # closing twice is harmless
    with pytest.raises(ClientStateError, match="closed"):
        await client.query_group_calls(START, END)


async def test_an_injected_http_client_stays_open_for_its_owner() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(ScriptedVendor()))
    async with AsyncVoiceClient(KEY, SECRET, http_client=http, rate_limit=None) as client:
        await client.query_group_calls(START, END)
    assert not http.is_closed
    await http.aclose()


def test_use_from_a_second_event_loop_fails_clearly_instead_of_hanging() -> None:
    client = AsyncVoiceClient(KEY, SECRET, transport=httpx.MockTransport(ScriptedVendor()))

    async def query() -> None:
        await client.query_group_calls(START, END)

    asyncio.run(query())
    with pytest.raises(ClientStateError, match="event loop"):
        asyncio.run(query())


async def test_concurrent_callers_never_exceed_the_pool_and_never_time_out_on_it() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return vendor_page()

    timeout = httpx.Timeout(5.0, pool=0.0001)
    async with AsyncVoiceClient(
        KEY,
        SECRET,
        transport=httpx.MockTransport(handler),
        rate_limit=None,
        max_connections=4,
        timeout=timeout,
    ) as client:
        await asyncio.gather(*(client.query_group_calls(START, END) for _ in range(40)))
    assert peak == 4


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        vendor_error(-18, "port program unusual"),
        vendor_error("-18"),
        httpx.Response(429, text="slow down"),
        httpx.Response(500, text="oops"),
        httpx.Response(502, html="<html><body><h1>502 Bad Gateway</h1></body></html>"),
        httpx.Response(503),
        httpx.Response(504),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadTimeout("slow read"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
async def test_transient_faults_are_retried_until_success(
    make_client: Any, sleeps: SleepRecorder, fault: Any
) -> None:
    vendor = ScriptedVendor(fault, fault, vendor_page([wire_record(1)]))
    page = await make_client(vendor).query_group_calls(START, END)
    assert [r.job_id for r in page.records] == [1]
    assert len(vendor.requests) == 3
    assert len(sleeps.waits) == 2


async def test_every_attempt_is_signed_afresh(make_client: Any) -> None:
    vendor = ScriptedVendor(vendor_error(-18), vendor_error(-18), vendor_page())
    client = make_client(vendor)
    ticks = iter(range(1_700_000_000, 1_700_000_100, 7))
    client._clock.wall = lambda: float(next(ticks))
    await client.query_group_calls(START, END)
    stamps = [request.headers["Timestamp"] for request in vendor.requests]
    assert len(set(stamps)) == 3
    for request in vendor.requests:
        assert request.headers["Sign"] == compute_sign(KEY, SECRET, request.headers["Timestamp"])


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (vendor_error(-1, "bad sign"), AuthenticationError, -1),
        (vendor_error("-2", "ip"), IPRestrictedError, -2),
        (vendor_error(-22, "bad param"), InvalidParameterError, -22),
        (vendor_error("-22"), InvalidParameterError, -22),
        (vendor_error(-99, "new code"), ItnioAPIError, -99),
    ],
)
async def test_permanent_vendor_errors_fail_at_once_with_their_code(
    make_client: Any,
    sleeps: SleepRecorder,
    fault: httpx.Response,
    error: type[ItnioAPIError],
    code: int,
) -> None:
    vendor = ScriptedVendor(fault)
    with pytest.raises(error) as caught:
        await make_client(vendor).query_group_calls(START, END)
    assert type(caught.value) is error
    assert caught.value.code == code
    assert caught.value.attempts == 1
    assert len(vendor.requests) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_other_http_errors_fail_at_once(make_client: Any, status: int) -> None:
    vendor = ScriptedVendor(httpx.Response(status, text="no"))
    with pytest.raises(ItnioHTTPError) as caught:
        await make_client(vendor).query_group_calls(START, END)
    assert caught.value.status_code == status
    assert len(vendor.requests) == 1


async def test_exhausted_retries_raise_the_last_real_error_with_the_attempt_count(
    make_client: Any,
) -> None:
    vendor = ScriptedVendor(httpx.Response(503), vendor_error(-18, "still unusual"))
    client = make_client(vendor, retry=RetryPolicy(max_retries=2))
    with pytest.raises(VendorServerError) as caught:
        await client.query_group_calls(START, END)
    assert caught.value.attempts == 3
    assert caught.value.msg == "still unusual"
    assert "after 3 attempts" in str(caught.value)


async def test_transport_faults_become_typed_errors_chained_to_the_cause(make_client: Any) -> None:
    client = make_client(
        ScriptedVendor(httpx.ReadTimeout("slow")), retry=RetryPolicy(max_retries=1)
    )
    with pytest.raises(ItnioTimeoutError) as caught:
        await client.query_group_calls(START, END)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert caught.value.attempts == 2

    client = make_client(
        ScriptedVendor(httpx.ConnectError("refused")), retry=RetryPolicy(max_retries=0)
    )
    with pytest.raises(ItnioTransportError) as caught_transport:
        await client.query_group_calls(START, END)
    assert isinstance(caught_transport.value.__cause__, httpx.ConnectError)
    assert caught_transport.value.attempts == 1


async def test_max_retries_zero_turns_retries_off(make_client: Any, sleeps: SleepRecorder) -> None:
    vendor = ScriptedVendor(vendor_error(-18))
    with pytest.raises(VendorServerError):
        await make_client(vendor, retry=RetryPolicy(max_retries=0)).query_group_calls(START, END)
    assert len(vendor.requests) == 1
    assert sleeps.waits == []


async def test_backoff_is_jittered_exponential_and_capped(
    make_client: Any, sleeps: SleepRecorder
) -> None:
    vendor = ScriptedVendor(vendor_error(-18))
    policy = RetryPolicy(max_retries=6, initial_backoff=1.0, max_backoff=4.0, deadline=None)
    with pytest.raises(VendorServerError):
        await make_client(vendor, retry=policy).query_group_calls(START, END)
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert len(sleeps.waits) == len(ceilings)
    for wait, ceiling in zip(sleeps.waits, ceilings, strict=True):
        assert 0.0 <= wait <= ceiling


async def test_retry_after_is_honoured_and_pauses_the_whole_client(
    make_client: Any, sleeps: SleepRecorder
) -> None:
    limiter = PassThroughLimiter()
    vendor = ScriptedVendor(httpx.Response(429, headers={"Retry-After": "7"}), vendor_page())
    client = make_client(
        vendor,
        limiter=limiter,
        retry=RetryPolicy(initial_backoff=0.01, max_retry_after=30),
    )
    await client.query_group_calls(START, END)
    assert limiter.pauses == [7.0]
    assert limiter.acquired == 2  # every attempt takes a token
    assert sleeps.waits[0] >= 7.0


@pytest.mark.parametrize("form", ["%a, %d %b %Y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y"])
async def test_a_retry_after_date_is_read_as_seconds_from_now(make_client: Any, form: str) -> None:
    when = time.gmtime(time.time() + 30)
    vendor = ScriptedVendor(httpx.Response(429, headers={"Retry-After": time.strftime(form, when)}))
    client = make_client(vendor, retry=RetryPolicy(max_retries=0))
    with pytest.raises(RateLimitedError) as caught:
        await client.query_group_calls(START, END)
    assert caught.value.retry_after == pytest.approx(30, abs=2)


async def test_retry_after_is_capped(make_client: Any, sleeps: SleepRecorder) -> None:
    limiter = PassThroughLimiter()
    vendor = ScriptedVendor(httpx.Response(503, headers={"Retry-After": "3600"}), vendor_page())
    await make_client(
        vendor, limiter=limiter, retry=RetryPolicy(max_retry_after=5.0, deadline=None)
    ).query_group_calls(START, END)
    assert sleeps.waits == [5.0]
    assert limiter.pauses == [5.0]


async def test_a_429_error_carries_retry_after(make_client: Any) -> None:
    vendor = ScriptedVendor(httpx.Response(429, headers={"Retry-After": "2"}, text="busy"))
    with pytest.raises(RateLimitedError) as caught:
        await make_client(vendor, retry=RetryPolicy(max_retries=0)).query_group_calls(START, END)
    assert caught.value.retry_after == 2.0
    assert caught.value.status_code == 429


async def test_the_deadline_stops_retries_whose_wait_would_pass_it(
    make_client: Any, sleeps: SleepRecorder
) -> None:
    vendor = ScriptedVendor(httpx.Response(503, headers={"Retry-After": "10"}))
    client = make_client(vendor, retry=RetryPolicy(max_retries=5, deadline=5.0))
    with pytest.raises(ItnioHTTPError) as caught:
        await client.query_group_calls(START, END)
    assert caught.value.attempts == 1
    assert sleeps.waits == []


# -- clock correction --------------------------------------------------------------------------


def _server_time_reply(server_offset: float, *, age: bool = False) -> Any:
    def reply(request: httpx.Request) -> httpx.Response:
        import time

        server_now = time.time() + server_offset
        headers = {"Date": formatdate(server_now, usegmt=True)}
        if age:
            headers["Age"] = "30"
        if abs(int(request.headers["Timestamp"]) - server_now) > 60:
            return vendor_error(-16, "timestamp expired", **headers)
        return vendor_page(headers=headers)

    return reply


async def test_a_stale_timestamp_teaches_the_clock_once_for_every_later_call(
    make_client: Any, sleeps: SleepRecorder
) -> None:
    vendor = ScriptedVendor(_server_time_reply(3600))
    client = make_client(vendor)
    await client.query_group_calls(START, END)
    assert len(vendor.requests) == 2
    assert sleeps.waits == [0.0]  # the corrected retry goes at once
    assert client.clock_offset == pytest.approx(3600, abs=2)
    for _ in range(5):
        await client.query_group_calls(START, END)
    assert len(vendor.requests) == 7  # one extra request in all, not one per call


@pytest.mark.parametrize("kwargs", [{"clock_correction": False}, {}])
async def test_no_correction_when_disabled_or_when_the_date_was_cached(
    make_client: Any, kwargs: dict[str, Any]
) -> None:
    vendor = ScriptedVendor(_server_time_reply(3600, age=not kwargs))
    client = make_client(vendor, retry=RetryPolicy(max_retries=2), **kwargs)
    with pytest.raises(TimestampExpiredError) as caught:
        await client.query_group_calls(START, END)
    assert caught.value.attempts == 3
    assert client.clock_offset == 0.0


# -- malformed replies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (httpx.Response(200, html="<html><body>maintenance</body></html>"), "not JSON"),
        (httpx.Response(200, json=[1, 2]), "object"),
        (httpx.Response(200, json={"msg": "x"}), "code"),
        (httpx.Response(200, json={"code": 0, "msg": "ok", "data": None}), "data"),
        (
            httpx.Response(200, json={"code": 0, "data": {"records": [{"jobId": 1}], "total": 1}}),
            "data",
        ),
        (
            httpx.Response(
                200,
                json={
                    "code": 0,
                    "data": {
                        "records": [wire_record(1, numCnt=None)],
                        "total": 1,
                        "size": 1,
                        "current": 1,
                        "pages": 1,
                    },
                },
            ),
            "data",
        ),
        (
            httpx.Response(
                200,
                json={
                    "code": 0,
                    "data": {"records": "x", "total": 1, "size": 1, "current": 1, "pages": 1},
                },
            ),
            "data",
        ),
    ],
)
async def test_malformed_replies_raise_a_typed_error_not_a_raw_one(
    make_client: Any, reply: httpx.Response, reason: str
) -> None:
    vendor = ScriptedVendor(reply)
    with pytest.raises(MalformedResponseError, match=reason) as caught:
        await make_client(vendor).query_group_calls(START, END)
    assert caught.value.status_code == 200
    assert len(vendor.requests) == 1
    assert caught.value.__cause__ is None or not isinstance(caught.value.__cause__, ItnioError)


# -- cancellation ------------------------------------------------------------------------------


async def test_cancelling_during_a_request_is_not_retried() -> None:
    arrived = asyncio.Event()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        arrived.set()
        await asyncio.sleep(3600)
        return vendor_page()  # pragma: no cover

    async with AsyncVoiceClient(
        KEY, SECRET, transport=httpx.MockTransport(handler), rate_limit=None
    ) as client:
        task = asyncio.create_task(client.query_group_calls(START, END))
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calls == 1
        # The client still works afterwards.
        slots = client._sender._slots
        assert slots is not None
        assert not slots.locked()


async def test_cancelling_during_a_backoff_wait_stops_retrying(make_client: Any) -> None:
    vendor = ScriptedVendor(vendor_error(-18))
    client = make_client(vendor)
    waiting = asyncio.Event()

    async def long_sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.sleep(3600)

    client._retry_sleep = long_sleep
    task = asyncio.create_task(client.query_group_calls(START, END))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(vendor.requests) == 1


# -- secrets and logs -----------------------------------------------------------------------------


async def test_the_secret_never_shows_in_repr_errors_or_logs(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vendor = ScriptedVendor(vendor_error(-18), vendor_error(-1, "bad sign"))
    client = make_client(vendor)
    with pytest.raises(AuthenticationError) as caught:
        await client.query_group_calls(START, END)
    signs = {request.headers["Sign"] for request in vendor.requests}
    texts = [
        repr(client),
        str(client),
        str(caught.value),
        repr(caught.value),
        repr(vars(caught.value)),
    ]
    texts += [record.getMessage() for record in caplog.records]
    for text in texts:
        assert SECRET not in text
        for sign in signs:
            assert sign not in text


async def test_logging_says_one_debug_line_per_attempt_and_warns_on_retries(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="itnio_async")
    vendor = ScriptedVendor(vendor_error(-18), vendor_page())
    await make_client(vendor).query_group_calls(START, END)
    ours = [r for r in caplog.records if r.name == "itnio_async"]
    debug = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    assert len(debug) == 2
    assert "attempt=1" in debug[0]
    assert "attempt=2" in debug[1]
    assert "/voice/group/call/query" in debug[0]
    assert len(warnings) == 1
    assert "retrying" in warnings[0]
    assert "-18" in warnings[0]


def test_the_time_window_stays_exactly_as_given_for_naive_times() -> None:
    # Nothing is shifted silently: naive datetimes are sent as they are.
    from itnio_async._query import GroupCallQuery

    query = GroupCallQuery.build(START, END + timedelta(microseconds=999))
    assert query.body(1, 10)["params"]["endTime"] == "2024-06-03 15:13:01"


@pytest.mark.parametrize(
    "url", ["https://api.test/?token=SECRET123", "https://api.test/v1#SECRET123"]
)
def test_a_base_url_with_a_query_is_refused_without_echoing_it(url: str) -> None:
    """A query or a fragment can carry a token: the error names the argument, not them."""
    with pytest.raises(ValueError, match="base_url must not have a query") as info:
        AsyncVoiceClient(KEY, SECRET, base_url=url)
    assert "SECRET123" not in str(info.value)
    assert "api.test" in str(info.value)
