"""The fake vendor speaks the vendor's protocol: signing, clock, validation, envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from itnio_async.testing import Dataset, FakeTask, FakeVendor

from ._support import END, PATH, START, body, client, post, sign, signed_headers

NOW = 1_700_000_000.0


def fixed_clock() -> float:
    return NOW


@pytest.fixture
def fake() -> FakeVendor:
    return FakeVendor(dataset=Dataset.generate(50, seed=2), clock=fixed_clock)


async def test_the_published_signature_vector_is_accepted() -> None:
    assert sign("bDqJFiq9", "7bz1lzh9", "1630468800") == "05d7a50893e22a5c4bb3216ae3396c7c"
    fake = FakeVendor("bDqJFiq9", "7bz1lzh9", clock=lambda: 1630468800.0)
    headers = {
        "Content-Type": "application/json;charset=UTF-8",
        "Sign": "05d7a50893e22a5c4bb3216ae3396c7c",
        "Timestamp": "1630468800",
        "Api-Key": "bDqJFiq9",
    }
    async with client(fake) as http:
        answer = (await http.post(PATH, json=body(), headers=headers)).json()
    assert answer["code"] == 0
    assert answer["msg"] == "success"


async def test_the_sign_is_compared_case_insensitively(fake: FakeVendor) -> None:
    headers = signed_headers(fake)
    headers["Sign"] = headers["Sign"].upper()
    async with client(fake) as http:
        answer = (await http.post(PATH, json=body(), headers=headers)).json()
    assert answer["code"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"Sign": "0" * 32},
        {"Api-Key": "someone-else"},
        {"Api-Key": None},
        {"Sign": None},
        {"Timestamp": None},
    ],
    ids=["wrong sign", "unknown key", "no key", "no sign", "no timestamp"],
)
async def test_bad_credentials_are_refused_with_minus_one_in_http_200(
    fake: FakeVendor, change: dict[str, str | None]
) -> None:
    headers: dict[str, str] = signed_headers(fake)
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    async with client(fake) as http:
        response = await http.post(PATH, json=body(), headers=headers)
    assert response.status_code == 200
    assert response.json()["code"] == -1
    assert response.json()["data"] is None
    assert response.json()["msg"].startswith("Authentication error")


async def test_a_correctly_signed_but_stale_timestamp_is_refused_with_minus_sixteen(
    fake: FakeVendor,
) -> None:
    async def code_for(timestamp: str) -> Any:
        headers = signed_headers(fake, timestamp=timestamp)
        return (await http.post(PATH, json=body(), headers=headers)).json()["code"]

    async with client(fake) as http:
        assert await code_for(str(int(NOW) - 300)) == 0  # the tolerance is inclusive
        assert await code_for(str(int(NOW) + 300)) == 0
        assert await code_for(str(int(NOW) - 301)) == -16
        assert await code_for(str(int(NOW) + 301)) == -16
        assert await code_for(str(int(NOW * 1000))) == -16  # milliseconds, a classic bug
        assert await code_for("yesterday") == -16


async def test_a_wrong_sign_wins_over_a_stale_timestamp(fake: FakeVendor) -> None:
    headers = signed_headers(fake, timestamp=str(int(NOW) - 10_000), secret="nope")
    async with client(fake) as http:
        answer = (await http.post(PATH, json=body(), headers=headers)).json()
    assert answer["code"] == -1


async def test_the_date_header_tells_the_servers_clock_with_its_offset(fake: FakeVendor) -> None:
    async with client(fake) as http:
        first = await post(http, fake, body())
        fake.clock_offset = 3600.0
        ahead = await http.post(
            PATH, json=body(), headers=signed_headers(fake, timestamp=str(int(NOW)))
        )
        fake.clock_offset = -90.5
        behind = await post(http, fake, body())
    assert parsedate_to_datetime(first.headers["Date"]).timestamp() == NOW
    assert parsedate_to_datetime(ahead.headers["Date"]).timestamp() == NOW + 3600
    assert ahead.json()["code"] == -16  # signed with the real time, refused by a fast server
    assert parsedate_to_datetime(behind.headers["Date"]) == datetime.fromtimestamp(
        int(NOW - 90.5), UTC
    )
    assert behind.json()["code"] == 0
    assert first.headers["Date"].endswith(" GMT")


def test_the_servers_now_is_a_naive_local_datetime_in_its_zone() -> None:
    fake = FakeVendor(clock=lambda: 0.5, tz=timezone(timedelta(hours=8)), clock_offset=60)
    assert fake.now() == datetime(1970, 1, 1, 8, 1, 0)
    assert fake.time() == 60.5


async def test_success_has_the_vendors_envelope_and_record_shape(fake: FakeVendor) -> None:
    async with client(fake) as http:
        response = await post(http, fake, body(size=3))
    assert response.headers["Content-Type"].startswith("application/json")
    answer = response.json()
    assert list(answer) == ["code", "msg", "data"]
    assert answer["code"] == 0
    assert answer["msg"] == "success"
    data = answer["data"]
    assert set(data) == {"records", "total", "size", "current", "pages", "searchCount"}
    assert (data["total"], data["size"], data["current"], data["searchCount"]) == (50, 3, 1, True)
    assert data["pages"] == 17
    record = data["records"][0]
    assert list(record) == [
        "jobId", "taskName", "status", "rate", "numCnt", "callNum", "success", "fail",
        "createdTime",
    ]  # fmt: skip
    types = {name: type(value) for name, value in record.items()}
    assert types == {
        "jobId": int, "taskName": str, "status": int, "rate": str, "numCnt": int,
        "callNum": int, "success": int, "fail": int, "createdTime": str,
    }  # fmt: skip
    assert datetime.strptime(record["createdTime"], "%Y-%m-%d %H:%M:%S")
    assert (
        FakeTask.from_wire(record, app_id=fake.dataset.get(record["jobId"]).app_id)
        == (fake.expected(START, END)[0])
    )


async def test_code_can_be_sent_as_a_string_for_every_answer(fake: FakeVendor) -> None:
    fake.code_as_string = True
    async with client(fake) as http:
        ok = (await post(http, fake, body())).json()
        bad = (await post(http, fake, {"current": 0})).json()
        headers = signed_headers(fake, secret="wrong")
        refused = (await http.post(PATH, json=body(), headers=headers)).json()
    assert (ok["code"], bad["code"], refused["code"]) == ("0", "-22", "-1")
    assert ok["data"]["total"] == 50


BAD_BODIES: list[tuple[str, Any]] = [
    ("a JSON array", [1, 2]),
    ("no current", {"size": 10, "params": {"strTime": START, "endTime": END}}),
    ("current zero", body(current=0)),
    ("current as a string", {**body(), "current": "1"}),
    ("current as a boolean", {**body(), "current": True}),
    ("current as a float", {**body(), "current": 1.5}),
    ("no size", {"current": 1, "params": {"strTime": START, "endTime": END}}),
    ("size zero", body(size=0)),
    ("size above 100", body(size=101)),
    ("no params", {"current": 1, "size": 10}),
    ("params not an object", {"current": 1, "size": 10, "params": [START, END]}),
    ("no strTime", {"current": 1, "size": 10, "params": {"endTime": END}}),
    ("no endTime", {"current": 1, "size": 10, "params": {"strTime": START}}),
    ("ISO T separator", body(start="2024-01-01T00:00:00")),
    ("date only", body(end="2024-07-01")),
    ("no such day", body(end="2024-02-30 00:00:00")),
    ("a number as time", {"current": 1, "size": 10, "params": {"strTime": 0, "endTime": END}}),
    ("end before start", body(start=END, end=START)),
    ("statusList not a list", body(statusList=2)),
    ("statusList of strings", body(statusList=["2"])),
    ("statusList of booleans", body(statusList=[True])),
    ("idxAppId as a string", body(idxAppId="1")),
    ("searchCondition a number", body(searchCondition=5)),
]


@pytest.mark.parametrize(("case", "payload"), BAD_BODIES, ids=[case for case, _ in BAD_BODIES])
async def test_invalid_bodies_are_refused_with_minus_twenty_two_and_a_reason(
    fake: FakeVendor, case: str, payload: Any
) -> None:
    async with client(fake) as http:
        answer = (await post(http, fake, payload)).json()
    assert answer["code"] == -22, case
    assert answer["data"] is None
    assert answer["msg"].startswith("Parameter exception: ")
    assert len(answer["msg"]) > len("Parameter exception: ") + 5


async def test_a_body_that_is_not_json_is_refused_with_minus_twenty_two(fake: FakeVendor) -> None:
    async with client(fake) as http:
        for content in (b"current=1&size=10", b"", b"\xff\xfe{", b'{"current": 1,'):
            response = await http.post(PATH, content=content, headers=signed_headers(fake))
            assert response.json()["code"] == -22


async def test_null_optional_filters_and_unknown_fields_are_ignored(fake: FakeVendor) -> None:
    payload = body(statusList=None, idxAppId=None, searchCondition=None, extra=1)
    async with client(fake) as http:
        answer = (await post(http, fake, {**payload, "idxAppId": 2})).json()
    assert answer["code"] == 0
    assert answer["data"]["total"] == 50  # idxAppId outside params filters nothing


async def test_a_body_sent_without_a_json_content_type_is_refused_with_415(
    fake: FakeVendor,
) -> None:
    headers = signed_headers(fake)
    headers["Content-Type"] = "text/plain"
    async with client(fake) as http:
        response = await http.post(PATH, content=json.dumps(body()), headers=headers)
    assert response.status_code == 415
    assert "Date" in response.headers


async def test_only_post_on_the_query_path_is_served(fake: FakeVendor) -> None:
    async with client(fake) as http:
        wrong_method = await http.get(PATH, headers=signed_headers(fake))
        wrong_path = await http.post("/voice/group/call/list", json=body())
        trailing = await http.post(PATH + "/", json=body(), headers=signed_headers(fake))
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"
    assert wrong_path.status_code == 404
    assert wrong_path.json()["path"] == "/voice/group/call/list"
    assert trailing.status_code == 404
    assert all("Date" in r.headers for r in (wrong_method, wrong_path, trailing))
    assert fake.stats.codes == {405: 1, 404: 2}


async def test_the_app_answers_the_asgi_lifespan_protocol() -> None:
    fake = FakeVendor()
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await fake.app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with pytest.raises(RuntimeError, match="HTTP only"):
        await fake({"type": "websocket"}, receive, send)


async def test_a_client_that_disconnects_before_its_body_is_counted_but_not_answered() -> None:
    fake = FakeVendor()
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": PATH, "headers": []}
    await fake(scope, receive, send)
    assert sent == []
    assert fake.stats.codes == {"disconnect": 1}


def test_invalid_settings_are_refused_early() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        FakeVendor(rate_limit=0)
    with pytest.raises(ValueError, match="latency"):
        FakeVendor(latency=-1)


async def test_a_read_timeout_shorter_than_the_fakes_latency_raises_read_timeout() -> None:
    fake = FakeVendor(latency=5.0)
    async with client(fake) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(PATH, json=body(), headers=signed_headers(fake), timeout=0.01)
    assert fake.stats.in_flight == 0
