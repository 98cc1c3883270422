"""The detail and call-record methods against a scripted vendor: requests, checks, retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from itnio_async import (
    AsyncVoiceClient,
    InvalidParameterError,
    ItnioAPIError,
    MalformedResponseError,
    VendorServerError,
    compute_sign,
)

from .conftest import KEY, SECRET, ScriptedVendor

PLUS8 = timezone(timedelta(hours=8))
Factory = Callable[..., AsyncVoiceClient]


def status_reply(data: Any = None, status: object = "0", reason: str = "success") -> httpx.Response:
    return httpx.Response(200, json={"status": status, "reason": reason, "data": data})


def code_reply(data: Any = None, code: object = 0, msg: str = "success") -> httpx.Response:
    return httpx.Response(200, json={"code": code, "msg": msg, "data": data})


def call(voice_id: str = "v-1", submitted: str = "2026-11-20T10:00:00+08:00") -> dict[str, Any]:
    return {"voiceId": voice_id, "callee": "861380000", "submitTime": submitted, "cost": "0.01"}


def assert_signed(request: httpx.Request) -> None:
    headers = request.headers
    assert headers["Api-Key"] == KEY
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Sign"] == compute_sign(KEY, SECRET, int(headers["Timestamp"]))


# -- get_group_call ----------------------------------------------------------------------


async def test_get_group_call_sends_a_signed_get_and_decodes_the_detail(
    make_client: Factory,
) -> None:
    vendor = ScriptedVendor(code_reply({"jobId": 42, "code": "63", "callNum": 7, "x": 1}))
    detail = await make_client(vendor).get_group_call(42)
    (request,) = vendor.requests
    assert request.method == "GET"
    assert request.url.path == "/voice/group/call/detail/42"
    assert request.content == b""
    assert_signed(request)
    assert (detail.job_id, detail.country_code, detail.call_num) == (42, "63", 7)
    assert dict(detail.extra) == {"x": 1}


async def test_a_get_is_retried_like_the_query_and_signed_afresh(
    make_client: Factory, sleeps: Any
) -> None:
    vendor = ScriptedVendor(
        code_reply(code=-18, msg="port program unusual"),
        httpx.Response(503, text="busy"),
        httpx.ConnectError("refused"),
        code_reply({"jobId": 42}),
    )
    detail = await make_client(vendor).get_group_call(42)
    assert detail.job_id == 42
    assert len(vendor.requests) == 4
    assert len(sleeps.waits) == 3
    for request in vendor.requests:
        assert request.method == "GET"
        assert_signed(request)


async def test_a_refusal_of_a_get_is_not_retried(make_client: Factory) -> None:
    vendor = ScriptedVendor(code_reply(code="-24", msg="data does not exist"))
    with pytest.raises(ItnioAPIError) as info:
        await make_client(vendor).get_group_call(42)
    assert (info.value.code, info.value.msg) == (-24, "data does not exist")
    assert len(vendor.requests) == 1


async def test_a_detail_of_another_task_is_malformed(make_client: Factory) -> None:
    vendor = ScriptedVendor(code_reply({"jobId": 43}))
    with pytest.raises(MalformedResponseError, match="task 42"):
        await make_client(vendor).get_group_call(42)


@pytest.mark.parametrize("data", [None, [], {"taskName": "no id"}, {"jobId": "x"}])
async def test_a_detail_that_is_not_a_task_is_malformed(make_client: Factory, data: Any) -> None:
    with pytest.raises(MalformedResponseError):
        await make_client(ScriptedVendor(code_reply(data))).get_group_call(42)


@pytest.mark.parametrize(
    ("job_id", "error"), [("42", TypeError), (True, TypeError), (0, ValueError), (-1, ValueError)]
)
async def test_a_bad_job_id_is_refused_before_any_request(
    make_client: Factory, job_id: object, error: type[Exception]
) -> None:
    vendor = ScriptedVendor()
    with pytest.raises(error, match="job_id"):
        await make_client(vendor).get_group_call(job_id)  # type: ignore[arg-type]
    assert vendor.requests == []


async def test_a_get_keeps_the_base_urls_path_prefix(make_client: Factory) -> None:
    vendor = ScriptedVendor(code_reply({"jobId": 7}))
    client = make_client(vendor, base_url="https://white.example.test/v3")
    await client.get_group_call(7)
    assert vendor.requests[0].url == "https://white.example.test/v3/voice/group/call/detail/7"


# -- get_call_record ---------------------------------------------------------------------


async def test_get_call_record_reads_the_status_envelope(make_client: Factory) -> None:
    vendor = ScriptedVendor(status_reply(call("v-1"), status=0))
    record = await make_client(vendor).get_call_record("v-1")
    assert (record.voice_id, record.cost) == ("v-1", "0.01")


async def test_a_record_of_another_call_is_malformed(make_client: Factory) -> None:
    vendor = ScriptedVendor(status_reply(call("v-2")))
    with pytest.raises(MalformedResponseError, match="'v-1'"):
        await make_client(vendor).get_call_record("v-1")


async def test_get_call_record_quotes_the_id_into_the_path(make_client: Factory) -> None:
    vendor = ScriptedVendor(status_reply(call("a/b?c")))
    record = await make_client(vendor).get_call_record("a/b?c")
    (request,) = vendor.requests
    assert request.method == "GET"
    assert request.url.raw_path == b"/voice/recordGroup/a%2Fb%3Fc"
    assert_signed(request)
    assert record.submit_time == datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


async def test_a_status_minus_18_is_retried_and_minus_22_is_not(make_client: Factory) -> None:
    vendor = ScriptedVendor(status_reply(status="-18", reason="busy"), status_reply(call()))
    assert (await make_client(vendor).get_call_record("v-1")).voice_id == "v-1"
    assert len(vendor.requests) == 2
    refused = ScriptedVendor(status_reply(status=-22, reason="Parameter exception"))
    with pytest.raises(InvalidParameterError, match="Parameter exception"):
        await make_client(refused).get_call_record("v-1")
    assert len(refused.requests) == 1


async def test_a_status_that_keeps_failing_ends_in_the_typed_error(make_client: Factory) -> None:
    vendor = ScriptedVendor(status_reply(status="-18", reason="busy"))
    with pytest.raises(VendorServerError) as info:
        await make_client(vendor).get_call_record("v-1")
    assert info.value.attempts == 4


@pytest.mark.parametrize(
    ("voice_id", "error"),
    [(5, TypeError), ("", ValueError), ("a b", ValueError), ("\n", ValueError)],
)
async def test_a_bad_voice_id_is_refused_before_any_request(
    make_client: Factory, voice_id: object, error: type[Exception]
) -> None:
    vendor = ScriptedVendor()
    with pytest.raises(error, match="voice_id"):
        await make_client(vendor).get_call_record(voice_id)  # type: ignore[arg-type]
    assert vendor.requests == []


# -- query_call_records ------------------------------------------------------------------


def page_of(records: list[dict[str, Any]], size: int = 100, current: int = 1) -> httpx.Response:
    data = {
        "records": records,
        "total": len(records),
        "size": size,
        "current": current,
        "pages": -(-len(records) // size),
        "searchCount": True,
    }
    return status_reply(data)


def recent(days: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)


async def test_one_page_is_asked_with_iso_times_and_their_offset(make_client: Factory) -> None:
    vendor = ScriptedVendor(page_of([call()], size=20))
    client = make_client(vendor, server_timezone=PLUS8)
    start = recent(3)
    page = await client.query_call_records(start, start + timedelta(days=1), page=1, size=20)
    body = json.loads(vendor.requests[0].content)
    assert body == {
        "current": 1,
        "size": 20,
        "params": {
            "strTime": start.astimezone(PLUS8).isoformat(),
            "endTime": (start + timedelta(days=1)).astimezone(PLUS8).isoformat(),
        },
    }
    assert body["params"]["strTime"].endswith("+08:00")
    assert page.records[0].voice_id == "v-1"


async def test_naive_times_are_read_in_the_server_timezone(make_client: Factory) -> None:
    vendor = ScriptedVendor(page_of([]))
    client = make_client(vendor, server_timezone=PLUS8)
    start = recent(3).astimezone(PLUS8).replace(tzinfo=None)
    await client.query_call_records(start, start + timedelta(hours=1))
    params = json.loads(vendor.requests[0].content)["params"]
    assert params["strTime"] == start.isoformat() + "+08:00"


async def test_naive_times_without_a_server_timezone_are_refused(make_client: Factory) -> None:
    vendor = ScriptedVendor()
    start = recent(3).replace(tzinfo=None)
    with pytest.raises(ValueError, match=r"start is naive.*server_timezone"):
        await make_client(vendor).query_call_records(start, start)
    assert vendor.requests == []


async def test_one_page_over_31_days_is_refused(make_client: Factory) -> None:
    vendor = ScriptedVendor()
    start = recent(40)
    with pytest.raises(ValueError, match=r"31 days.*iter_call_records"):
        await make_client(vendor).query_call_records(start, start + timedelta(days=31, seconds=1))
    await make_client(vendor).query_call_records(start, start + timedelta(days=31))
    assert len(vendor.requests) == 1


async def test_a_window_older_than_two_months_is_refused_or_clamped(make_client: Factory) -> None:
    vendor = ScriptedVendor(page_of([]))
    client = make_client(vendor)
    start = recent(70)
    with pytest.raises(ValueError, match=r"only the last 2 months.*clamp_start=True"):
        await client.query_call_records(start, start + timedelta(days=20))
    assert vendor.requests == []
    await client.query_call_records(start, start + timedelta(days=20), clamp_start=True)
    sent = datetime.fromisoformat(json.loads(vendor.requests[0].content)["params"]["strTime"])
    assert sent > start + timedelta(days=7)
    with pytest.raises(ValueError, match="nothing of the window"):
        await client.query_call_records(start, start + timedelta(days=1), clamp_start=True)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"start": "2026-11-01"}, "start"),
        ({"end": 5}, "end"),
        ({"page": 0}, "page"),
        ({"size": 101}, "size"),
        ({"clamp_start": 1}, "clamp_start"),
    ],
)
async def test_bad_arguments_are_refused_naming_them(
    make_client: Factory, kwargs: dict[str, Any], named: str
) -> None:
    vendor = ScriptedVendor()
    arguments: dict[str, Any] = {"start": recent(3), "end": recent(2)} | kwargs
    with pytest.raises((TypeError, ValueError), match=named):
        await make_client(vendor).query_call_records(**arguments)
    assert vendor.requests == []


async def test_end_before_start_is_refused(make_client: Factory) -> None:
    with pytest.raises(ValueError, match="before start"):
        await make_client(ScriptedVendor()).query_call_records(recent(2), recent(3))


async def test_a_call_time_at_the_edge_of_the_calendar_is_malformed_not_a_hang(
    make_client: Factory,
) -> None:
    """Its UTC second overflows: raised where the engine took the reply, it went to the
    loop's exception handler, and the stream waited for ever."""
    vendor = ScriptedVendor(page_of([call(submitted="0001-01-01T00:30:00+01:00")]))
    stream = make_client(vendor).iter_call_records(recent(3), recent(1))
    async with asyncio.timeout(10):
        with pytest.raises(MalformedResponseError, match="out of range"):
            async for _ in stream:
                pass
