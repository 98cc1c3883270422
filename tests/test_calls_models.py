"""Decoding a task's details and its call records, and the ``status``/``reason`` envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from itnio_async._converter import decode_envelope, format_iso_time, make_converter
from itnio_async._errors import (
    AuthenticationError,
    InvalidParameterError,
    ItnioAPIError,
    MalformedResponseError,
    TimestampExpiredError,
    VendorServerError,
)
from itnio_async._models import CallRecord, GroupCallDetail, GroupCallStatus, Page
from itnio_async._reply import RawReply, classify
from itnio_async._retry import is_retryable

PLUS8 = timezone(timedelta(hours=8))

#: A call record with every documented field, as the vendor's pages list them.
CALL: dict[str, Any] = {
    "voiceId": "v-1001",
    "callee": "8613800000000",
    "displayNum": "100200",
    "code": "86",
    "submitTime": "2022-02-18T10:00:00+08:00",
    "callTime": "2022-02-18T10:00:01+08:00",
    "ringingTime": "2022-02-18T10:00:03+08:00",
    "answerTime": "2022-02-18T10:00:09+08:00",
    "hangupTime": "2022-02-18T10:00:40+08:00",
    "callDuration": 31,
    "chargedDuration": 40,
    "terminationCode": "200",
    "terminationReason": "OK",
    "cost": "0.0120",
    "billPeriod": "20+20",
    "rate": "0.0180",
    "baseCost": "0.0120",
    "voiceFileId": "vf-9",
    "feedbackValue": "-1",
    "calledInfo": "",
    "settleRate": "0.13",
    "quoteExchange": "7.1",
    "settlePay": "0.085",
    "currency": "CNY",
}

#: A task's details with every documented field.
DETAIL: dict[str, Any] = {
    "jobId": 5000602,
    "taskName": "June wave",
    "status": 2,
    "rate": "100",
    "numCnt": 3,
    "callNum": 3,
    "success": 2,
    "fail": 1,
    "createdTime": "2024-06-04 14:49:36",
    "displayNum": "100200",
    "text": "Hello",
    "chargeLen": 60,
    "toseatNum": 0,
    "successRate": "66.67",
    "toseatNumRate": "0",
    "sendTime": "2024-06-04 14:50:00",
    "mdfTime": "2024-06-04 15:00:00",
    "finishTime": "2024-06-04 15:10:00",
    "appId": "app-1",
    "source": 3,
    "voiceFileId": "vf-9",
    "calloutRate": 5,
    "keyFeedbackNum": 1,
    "uploadName": "numbers.xlsx",
    "baseFile": "base.wav",
    "callLossNum": 0,
    "callDuration": 95,
    "callLossNumRate": "0",
    "code": "86",
    "maxCalls": 10,
    "loopCount": 1,
    "lan": "en",
    "allCallToseatNum": 0,
    "callTotal": 3,
    "acd": 31.67,
}


def test_a_call_record_decodes_every_documented_field() -> None:
    record = make_converter().structure(CALL, CallRecord)
    assert record.voice_id == "v-1001"
    assert record.area_code == "86"
    assert record.submit_time == datetime(2022, 2, 18, 10, 0, tzinfo=PLUS8)
    assert record.hangup_time == datetime(2022, 2, 18, 2, 0, 40, tzinfo=UTC)
    assert (record.call_duration, record.charged_duration) == (31, 40)
    assert record.termination_code == "200"
    assert (record.cost, record.base_cost, record.bill_period) == ("0.0120", "0.0120", "20+20")
    assert (record.settle_rate, record.quote_exchange, record.settle_pay) == (
        "0.13",
        "7.1",
        "0.085",
    )
    assert record.currency == "CNY"
    assert record.extra == {}


def test_call_times_are_aware_and_in_the_server_timezone_when_set() -> None:
    record = make_converter(UTC).structure(CALL, CallRecord)
    assert record.submit_time == datetime(2022, 2, 18, 2, 0, tzinfo=UTC)
    assert record.submit_time is not None
    assert record.submit_time.tzinfo is UTC


def test_a_call_time_without_an_offset_needs_a_server_timezone() -> None:
    naive = {**CALL, "submitTime": "2022-02-18 10:00:00"}
    record = make_converter(PLUS8).structure(naive, CallRecord)
    assert record.submit_time == datetime(2022, 2, 18, 10, 0, tzinfo=PLUS8)
    with pytest.raises(ValueError, match="no offset"):
        make_converter().structure(naive, CallRecord)


def test_nulls_empty_times_and_missing_fields_are_none() -> None:
    sparse = {"voiceId": "v-2", "callee": None, "answerTime": "", "hangupTime": None}
    record = make_converter().structure(sparse, CallRecord)
    assert record == CallRecord("v-2")
    assert record.currency is None
    assert record.answer_time is None


def test_unknown_fields_survive_in_extra_and_do_not_break_hashing() -> None:
    record = make_converter().structure({**CALL, "newField": [1, 2], "x": None}, CallRecord)
    assert dict(record.extra) == {"newField": [1, 2], "x": None}
    with pytest.raises(TypeError):
        record.extra["y"] = 1  # type: ignore[index]
    assert hash(record) == hash(make_converter().structure(CALL, CallRecord))


@pytest.mark.parametrize(
    ("field", "value"),
    [("voiceId", None), ("callDuration", "x"), ("callDuration", True), ("submitTime", 5)],
)
def test_a_wrong_value_is_refused(field: str, value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        make_converter().structure({**CALL, field: value}, CallRecord)


def test_a_record_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(TypeError):
        make_converter().structure(["voiceId", "v"], CallRecord)


def test_a_page_of_call_records_decodes() -> None:
    data = {
        "records": [CALL],
        "total": 1,
        "size": 20,
        "current": 1,
        "pages": 1,
        "searchCount": True,
    }
    page = make_converter().structure(data, Page[CallRecord])
    assert page.records[0].voice_id == "v-1001"
    assert (page.total, page.size, page.current, page.pages) == (1, 20, 1, 1)


def test_the_detail_decodes_every_documented_field_and_code_is_a_country() -> None:
    detail = make_converter().structure(DETAIL, GroupCallDetail)
    assert detail.job_id == 5000602
    assert detail.status is GroupCallStatus.COMPLETED
    assert detail.country_code == "86"
    assert detail.created_time == datetime(2024, 6, 4, 14, 49, 36)
    assert detail.finish_time == datetime(2024, 6, 4, 15, 10)
    assert detail.source == 3
    assert detail.acd == pytest.approx(31.67)
    assert (detail.call_num, detail.call_total, detail.max_calls) == (3, 3, 10)
    assert detail.extra == {}


def test_the_detail_reads_local_times_in_the_server_timezone() -> None:
    detail = make_converter(PLUS8).structure(DETAIL, GroupCallDetail)
    assert detail.created_time == datetime(2024, 6, 4, 14, 49, 36, tzinfo=PLUS8)


def test_every_detail_field_but_the_id_may_be_null() -> None:
    nulls = dict.fromkeys(DETAIL) | {"jobId": 7, "future": {"a": 1}}
    detail = make_converter().structure(nulls, GroupCallDetail)
    assert attrs.evolve(detail, extra={}) == GroupCallDetail(7)
    assert dict(detail.extra) == {"future": {"a": 1}}


def test_an_unknown_detail_status_is_kept() -> None:
    detail = make_converter().structure({"jobId": 7, "status": 9}, GroupCallDetail)
    assert detail.status == 9
    assert detail.status is not None
    assert not detail.status.is_known


def test_the_iso_format_keeps_the_offset_and_drops_the_fraction() -> None:
    value = datetime(2022, 2, 18, 0, 0, 0, 123, tzinfo=PLUS8)
    assert format_iso_time(value) == "2022-02-18T00:00:00+08:00"


# -- the status/reason envelope ----------------------------------------------------------


def _body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize("status", ["0", 0])
def test_status_and_reason_mean_success_as_a_string_or_a_number(status: object) -> None:
    envelope = decode_envelope(_body(status=status, reason="success", data={"x": 1}), 200)
    assert envelope.data == {"x": 1}
    assert envelope.msg == "success"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("-1", AuthenticationError),
        (-16, TimestampExpiredError),
        ("-18", VendorServerError),
        (-22, InvalidParameterError),
        ("-24", ItnioAPIError),
    ],
)
def test_a_status_is_the_same_error_as_the_same_code(status: object, error: type) -> None:
    with pytest.raises(error) as info:
        decode_envelope(_body(status=status, reason="why", data=None), 200)
    assert info.value.code == int(str(status))  # type: ignore[attr-defined]
    assert info.value.msg == "why"  # type: ignore[attr-defined]
    with pytest.raises(error):
        decode_envelope(_body(code=status, msg="why"), 200)


@pytest.mark.parametrize("body", [_body(reason="x"), _body(status="ok"), _body(status=None)])
def test_a_status_envelope_without_a_numeric_status_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponseError, match="'status'"):
        decode_envelope(body, 200)


@given(st.integers(min_value=-(10**6), max_value=10**6), st.booleans())
def test_status_and_code_classify_alike(code: int, as_string: bool) -> None:
    value: object = str(code) if as_string else code

    def outcome(body: bytes) -> tuple[object, ...]:
        reply = classify(RawReply(200, "OK", httpx.Headers(), body))
        error = reply.error
        if error is None:
            return ("ok",)
        return (type(error), getattr(error, "code", None), is_retryable(error))

    assert outcome(_body(status=value, reason="m")) == outcome(_body(code=value, msg="m"))


def test_the_call_record_hook_reads_every_field_of_the_model() -> None:
    # The hook is written out field by field: a field added to the model and not to the
    # hook must fail here.
    from itnio_async._converter import wire_names

    names = wire_names(CallRecord)
    assert set(names.values()) <= set(CALL)
    record = make_converter().structure(CALL, CallRecord)
    fields: dict[str, Any] = {
        name: (datetime.fromisoformat(CALL[wire]) if name.endswith("_time") else CALL[wire])
        for name, wire in names.items()
    }
    built = CallRecord(**fields)
    assert record == built
    assert [f.name for f in attrs.fields(CallRecord)] == [*names, "extra"]


@pytest.mark.parametrize(
    "drop", [(), ("settleRate",), ("answerTime",), ("currency", "settlePay"), ("callee",)]
)
def test_an_unknown_field_is_kept_whichever_documented_fields_are_missing(
    drop: tuple[str, ...],
) -> None:
    # The fast path counts keys: an undocumented one must never hide behind a missing one.
    wire = {key: value for key, value in CALL.items() if key not in drop} | {"newField": 7}
    record = make_converter().structure(wire, CallRecord)
    assert dict(record.extra) == {"newField": 7}
    nulls = {key: value for key, value in CALL.items() if key not in drop} | {"settleRate": None}
    assert make_converter().structure(nulls, CallRecord).extra == {}


def test_the_fast_and_the_generated_call_record_hooks_agree() -> None:
    converter = make_converter(PLUS8)
    full = converter.structure(CALL, CallRecord)
    # Without answerTime (not null: absent) the record takes cattrs' generated hook.
    partial = converter.structure({k: v for k, v in CALL.items() if k != "answerTime"}, CallRecord)
    assert attrs.evolve(partial, answer_time=full.answer_time) == full


@pytest.mark.parametrize("zone", [None, PLUS8])
@pytest.mark.parametrize(
    "change",
    [
        {},
        {"answerTime": None},
        {"newField": 7},
        {"callDuration": "61"},
        {"submitTime": "2024-03-01T10:00:00"},  # no offset: the zone's, or refused
    ],
)
def test_a_record_made_in_two_steps_is_the_record_made_at_once(
    zone: timezone | None, change: dict[str, Any]
) -> None:
    # What a stream does: the two keys first, every field later, into the same record.
    from itnio_async._converter import make_converter_with_hooks

    converter, hooks = make_converter_with_hooks(zone)
    wire = CALL | change
    try:
        whole = converter.structure(wire, CallRecord)
    except (TypeError, ValueError):
        assert hooks.keyed(wire) is None  # refused later by the whole hook, not half made
        return
    keyed = hooks.keyed(wire)
    assert keyed is not None
    assert (keyed.voice_id, keyed.submit_time) == (whole.voice_id, whole.submit_time)
    assert hooks.structure(wire, None, keyed) is keyed
    assert keyed == whole
    # Without a documented field the whole hook is cattrs' generated one: the same.
    absent = {key: value for key, value in wire.items() if key != "answerTime"}
    second = hooks.keyed(absent)
    assert second is not None
    assert hooks.structure(absent, None, second) == converter.structure(absent, CallRecord)


@pytest.mark.parametrize(
    "wire", [[], {"voiceId": 1, "submitTime": "x"}, {"voiceId": "v", "submitTime": ""}]
)
def test_a_record_of_another_shape_is_not_keyed(wire: Any) -> None:
    from itnio_async._converter import make_converter_with_hooks

    assert make_converter_with_hooks()[1].keyed(wire) is None
