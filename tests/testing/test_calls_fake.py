"""The fake vendor's task detail and call-record endpoints, pinned to the vendor's rules
with raw signed httpx requests (not the client)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from itnio_async.testing import (
    FakeVendor,
    Fault,
    FaultPlan,
    call_account,
)

from ._support import client, signed_headers

PLUS8 = timezone(timedelta(hours=8))
#: The fake's clock: 30 June 2026, 12:00 at +08:00.
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=PLUS8)
CALLS_PATH = "/voice/recordGroupQuery"


def make_fake(**kwargs: Any) -> FakeVendor:
    tasks, calls = call_account(
        30, seed=3, start=datetime(2026, 5, 1), end=datetime(2026, 6, 30), tz=PLUS8
    )
    return FakeVendor(dataset=tasks, calls=calls, tz=PLUS8, clock=lambda: NOW.timestamp(), **kwargs)


def query(
    current: int = 1,
    size: int = 20,
    start: str = "2026-05-01T00:00:00+08:00",
    end: str = "2026-05-31T00:00:00+08:00",
) -> dict[str, Any]:
    return {"current": current, "size": size, "params": {"strTime": start, "endTime": end}}


async def post_calls(fake: FakeVendor, payload: Any) -> dict[str, Any]:
    async with client(fake) as http:
        reply = await http.post(CALLS_PATH, json=payload, headers=signed_headers(fake))
    assert reply.status_code == 200
    return reply.json()  # type: ignore[no-any-return]


async def get(fake: FakeVendor, path: str) -> dict[str, Any]:
    async with client(fake) as http:
        reply = await http.get(path, headers=signed_headers(fake))
    assert reply.status_code == 200
    return reply.json()  # type: ignore[no-any-return]


def test_each_tasks_call_num_matches_its_calls() -> None:
    fake = make_fake()
    assert len(fake.dataset) == 30
    assert len(fake.calls) == sum(task.call_num for task in fake.dataset)
    for task in fake.dataset:
        calls = fake.calls.for_job(task.job_id)
        assert len(calls) == task.call_num
        assert sum(call.established for call in calls) == task.success
        assert all(call.submit_time > task.created_time.replace(tzinfo=PLUS8) for call in calls)


async def test_the_call_query_answers_status_reason_with_iso_times_newest_first() -> None:
    fake = make_fake()
    answer = await post_calls(fake, query(size=100))
    assert answer["status"] == "0"
    assert answer["reason"] == "success"
    data = answer["data"]
    assert set(data) == {"records", "total", "size", "current", "pages", "searchCount"}
    records = data["records"]
    expected = fake.expected_calls(
        datetime(2026, 5, 1, tzinfo=PLUS8), datetime(2026, 5, 31, tzinfo=PLUS8)
    )
    assert data["total"] == len(expected) > 0
    assert [r["voiceId"] for r in records] == [c.voice_id for c in expected[:100]]
    times = [datetime.fromisoformat(r["submitTime"]) for r in records]
    assert times == sorted(times, reverse=True)
    assert records[0]["submitTime"].endswith("+08:00")
    for field in ("callee", "code", "terminationCode", "cost", "billPeriod", "baseCost"):
        assert isinstance(records[0][field], str)


async def test_the_window_bounds_submit_time_at_both_ends_in_any_offset() -> None:
    fake = make_fake()
    some = fake.calls.select(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 31, tzinfo=UTC))
    at = some[len(some) // 2].submit_time
    utc = at.astimezone(UTC).isoformat()
    answer = await post_calls(fake, query(size=100, start=utc, end=utc))
    ids = {r["voiceId"] for r in answer["data"]["records"]}
    assert ids == {c.voice_id for c in some if c.submit_time == at}


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (query(start="2026-05-01 00:00:00"), "ISO 8601"),
        (query(start="2026-05-01T00:00:00"), "ISO 8601"),
        (query(end="2026-06-01T00:00:01+08:00"), "31 days"),
        (query(start="2026-04-29T00:00:00+08:00", end="2026-05-20T00:00:00+08:00"), "months"),
        (query(start="2026-05-02T00:00:00+08:00", end="2026-05-01T00:00:00+08:00"), "before"),
        ({"size": 20, "params": {}}, "cannot be passed empty"),
        (query(size=101), "size"),
    ],
)
async def test_the_call_query_refuses_what_the_vendor_refuses(payload: Any, why: str) -> None:
    answer = await post_calls(make_fake(), payload)
    assert answer["status"] == "-22"
    assert why in answer["reason"]


async def test_status_can_be_sent_as_a_number() -> None:
    answer = await post_calls(make_fake(status_as_number=True), query())
    assert answer["status"] == 0


async def test_a_bad_signature_is_refused_in_the_status_envelope() -> None:
    fake = make_fake()
    async with client(fake) as http:
        reply = await http.post(
            CALLS_PATH, json=query(), headers=signed_headers(fake, secret="wrong")
        )
    assert reply.json()["status"] == "-1"
    assert "code" not in reply.json()


async def test_faults_apply_to_every_endpoint_in_its_envelope() -> None:
    fake = make_fake(faults=FaultPlan(by_request={1: Fault.code(-18), 2: Fault.code(-18)}))
    assert (await post_calls(fake, query()))["status"] == "-18"
    job_id = next(iter(fake.dataset)).job_id
    assert (await get(fake, f"/voice/group/call/detail/{job_id}"))["code"] == -18
    assert (await get(fake, f"/voice/group/call/detail/{job_id}"))["code"] == 0


async def test_the_detail_is_the_task_with_its_documented_fields() -> None:
    fake = make_fake()
    task = max(fake.dataset, key=lambda t: t.call_num)
    answer = await get(fake, f"/voice/group/call/detail/{task.job_id}")
    assert answer["code"] == 0
    data = answer["data"]
    assert data["jobId"] == task.job_id
    assert data["callNum"] == data["callTotal"] == task.call_num
    assert data["code"] == "86"  # a country code inside data
    for field in ("displayNum", "text", "successRate", "sendTime", "appId", "acd", "lan"):
        assert field in data
    calls = fake.calls.for_job(task.job_id)
    assert data["callDuration"] == sum(call.call_duration for call in calls)


async def test_an_unknown_task_or_call_does_not_exist() -> None:
    fake = make_fake()
    assert (await get(fake, "/voice/group/call/detail/1"))["code"] == -24
    assert (await get(fake, "/voice/group/call/detail/x1"))["code"] == -22
    assert (await get(fake, "/voice/recordGroup/nope"))["status"] == "-24"


async def test_one_call_record_by_id() -> None:
    fake = make_fake()
    call = fake.expected_calls(NOW - timedelta(days=20), NOW)[0]
    answer = await get(fake, f"/voice/recordGroup/{call.voice_id}")
    assert answer["status"] == "0"
    assert answer["data"] == call.to_wire(PLUS8)


async def test_a_call_older_than_two_months_is_gone() -> None:
    old = datetime(2026, 4, 1, tzinfo=PLUS8)
    fake = make_fake()
    (call,) = fake.insert_calls(1, job_id=next(iter(fake.dataset)).job_id, submit_time=old)
    assert (await get(fake, f"/voice/recordGroup/{call.voice_id}"))["status"] == "-24"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", CALLS_PATH, 405),
        ("POST", "/voice/recordGroup/abc", 405),
        ("POST", "/voice/group/call/detail/1", 405),
        ("GET", "/voice/recordGroup/", 404),
        ("GET", "/voice/recordGroup/a/b", 404),
    ],
)
async def test_routes_and_methods(method: str, path: str, status: int) -> None:
    fake = make_fake()
    async with client(fake) as http:
        reply = await http.request(method, path, headers=signed_headers(fake))
    assert reply.status_code == status


async def test_inserted_calls_grow_the_task_and_enter_the_window() -> None:
    fake = make_fake()
    task = next(iter(fake.dataset))
    before = fake.calls.count_for(task.job_id)
    made = fake.insert_calls(5, job_id=task.job_id, submit_time=NOW - timedelta(hours=1))
    assert fake.calls.count_for(task.job_id) == before + 5
    grown = fake.dataset.get(task.job_id)
    assert grown is not None
    assert grown.call_num == task.call_num + 5
    assert grown.success == task.success + 5
    newest = fake.expected_calls(NOW - timedelta(days=1), NOW)
    assert {c.voice_id for c in made} <= {c.voice_id for c in newest}
    fake.remove_calls([made[0].voice_id])
    assert fake.calls.get(made[0].voice_id) is None
    shrunk = fake.dataset.get(task.job_id)
    assert shrunk is not None
    assert (shrunk.call_num, shrunk.success) == (task.call_num + 4, task.success + 4)
    assert shrunk.call_num == fake.calls.count_for(task.job_id)


async def test_a_removed_calls_voice_id_is_never_given_to_a_new_call() -> None:
    """A client that saw a call must never meet its voice id again on another call."""
    fake = make_fake()
    task = next(iter(fake.dataset))
    made = fake.insert_calls(3, job_id=task.job_id, submit_time=NOW - timedelta(hours=1))
    fake.remove_calls([made[-1].voice_id])
    (again,) = fake.insert_calls(1, job_id=task.job_id, submit_time=NOW - timedelta(hours=1))
    assert again.voice_id not in {c.voice_id for c in made}


async def test_removing_calls_with_an_unknown_voice_id_removes_none() -> None:
    fake = make_fake()
    task = next(iter(fake.dataset))
    made = fake.insert_calls(2, job_id=task.job_id, submit_time=NOW - timedelta(hours=1))
    held = fake.dataset.get(task.job_id)
    with pytest.raises(KeyError):
        fake.remove_calls([made[0].voice_id, "no-such-call"])
    assert fake.calls.get(made[0].voice_id) is not None
    assert fake.dataset.get(task.job_id) == held
