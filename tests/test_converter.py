"""Decoding the vendor's replies: the envelope, its error codes, pages and records."""

from __future__ import annotations

import contextlib
import gc
import json
import pickle
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itnio_async import _converter
from itnio_async._converter import (
    WIRE_TIME_FORMAT,
    decode_envelope,
    format_wire_time,
    make_converter,
)
from itnio_async._errors import (
    BODY_EXCERPT_CHARS,
    AuthenticationError,
    InvalidParameterError,
    IPRestrictedError,
    ItnioAPIError,
    ItnioError,
    MalformedResponseError,
    TimestampExpiredError,
    VendorServerError,
)
from itnio_async._models import (
    UNKNOWN_STATUSES_CACHED,
    GroupCallRecord,
    GroupCallStatus,
    Page,
    _unknown_status,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")

#: The vendor's documented example response, byte for byte as API.md shows it.
VENDOR_EXAMPLE = b"""{"code": 0, "msg": "success",
 "data": {"records": [{"jobId": 5000602, "taskName": "2024-06-04 14:49:17111",
   "status": 0, "rate": "0", "numCnt": 1, "callNum": 0, "success": 0,
   "fail": 0, "createdTime": "2024-06-04 14:49:36"}],
  "total": 574, "size": 1, "current": 1, "searchCount": true, "pages": 574}}"""

EXAMPLE_RECORD = GroupCallRecord(
    job_id=5000602,
    task_name="2024-06-04 14:49:17111",
    status=GroupCallStatus.WAITING_FOR_SUBMISSION,
    rate="0",
    num_cnt=1,
    call_num=0,
    success=0,
    fail=0,
    created_time=datetime(2024, 6, 4, 14, 49, 36),
)


def wire_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "jobId": 7,
        "taskName": "spring promo",
        "status": 2,
        "rate": "100",
        "numCnt": 3,
        "callNum": 3,
        "success": 2,
        "fail": 1,
        "createdTime": "2024-06-04 14:49:36",
    }
    record.update(overrides)
    return record


def wire_page(records: list[Any], **overrides: Any) -> dict[str, Any]:
    page: dict[str, Any] = {
        "records": records,
        "total": len(records),
        "size": 100,
        "current": 1,
        "pages": 1,
        "searchCount": True,
    }
    page.update(overrides)
    return page


def structure_page(data: Any, server_timezone: Any = None) -> Page[GroupCallRecord]:
    """Decode ``data`` the way the client does."""
    converter = make_converter(server_timezone)
    hook = converter.get_structure_hook(Page[GroupCallRecord])
    return hook(data, Page[GroupCallRecord])


def structure_record(data: Any, server_timezone: Any = None) -> GroupCallRecord:
    page = structure_page(wire_page([data]), server_timezone)
    assert len(page.records) == 1
    return page.records[0]


# -- the documented example ------------------------------------------------------------------


def test_the_vendors_documented_example_decodes_into_a_page_of_records() -> None:
    envelope = decode_envelope(VENDOR_EXAMPLE, 200)
    assert envelope.msg == "success"
    page = structure_page(envelope.data)
    assert page == Page(records=(EXAMPLE_RECORD,), total=574, size=1, current=1, pages=574)
    (record,) = page.records
    assert type(record.status) is GroupCallStatus
    assert record.status.is_known
    assert record.created_time.tzinfo is None


def test_the_page_hook_is_the_one_the_converter_hands_out_for_page_of_records() -> None:
    converter = make_converter()
    data = json.loads(VENDOR_EXAMPLE)["data"]
    via_structure = converter.structure(data, Page[GroupCallRecord])
    via_hook = converter.get_structure_hook(Page[GroupCallRecord])(data, Page[GroupCallRecord])
    assert via_structure == via_hook
    assert via_hook.records == (EXAMPLE_RECORD,)


def test_an_empty_page_decodes_to_no_records() -> None:
    page = structure_page(wire_page([], total=0, pages=0))
    assert page.records == ()
    assert (page.total, page.pages) == (0, 0)


def test_records_keep_the_servers_order() -> None:
    page = structure_page(wire_page([wire_record(jobId=n) for n in (9, 3, 7, 1)]))
    assert [r.job_id for r in page.records] == [9, 3, 7, 1]
    assert isinstance(page.records, tuple)


# -- the envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, "0"])
def test_code_zero_is_success_as_a_number_or_a_string(code: object) -> None:
    body = json.dumps({"code": code, "msg": "success", "data": {"x": 1}}).encode()
    envelope = decode_envelope(body, 200)
    assert envelope.data == {"x": 1}
    assert envelope.msg == "success"


def test_a_missing_or_non_string_msg_on_success_reads_as_empty() -> None:
    assert decode_envelope(b'{"code": 0, "data": null}', 200).msg == ""
    assert decode_envelope(b'{"code": 0, "msg": 5, "data": null}', 200).msg == ""


def test_unknown_envelope_fields_are_ignored() -> None:
    body = b'{"code": "0", "msg": "ok", "data": [], "traceId": "abc", "extra": {"a": 1}}'
    assert decode_envelope(body, 200).data == []


DOCUMENTED_CODES = [
    (-1, AuthenticationError),
    (-2, IPRestrictedError),
    (-16, TimestampExpiredError),
    (-18, VendorServerError),
    (-22, InvalidParameterError),
]


@pytest.mark.parametrize("as_string", [False, True], ids=["int", "str"])
@pytest.mark.parametrize(("code", "cls"), DOCUMENTED_CODES)
def test_each_documented_code_raises_its_typed_error_whether_int_or_string(
    code: int, cls: type[ItnioAPIError], as_string: bool
) -> None:
    wire_code: object = str(code) if as_string else code
    body = json.dumps({"code": wire_code, "msg": "the vendor says no", "data": None}).encode()
    with pytest.raises(cls) as info:
        decode_envelope(body, 200)
    assert type(info.value) is cls
    assert info.value.code == code
    assert type(info.value.code) is int
    assert info.value.msg == "the vendor says no"
    assert info.value.status_code == 200


@pytest.mark.parametrize("wire_code", [-3, "-3", 1, "42", -99999, "-17"])
def test_an_unknown_code_raises_a_plain_api_error_keeping_code_and_message(
    wire_code: object,
) -> None:
    body = json.dumps({"code": wire_code, "msg": "brand new failure"}).encode()
    with pytest.raises(ItnioAPIError) as info:
        decode_envelope(body, 200)
    assert type(info.value) is ItnioAPIError
    assert info.value.code == int(wire_code)  # type: ignore[call-overload]
    assert type(info.value.code) is int
    assert info.value.msg == "brand new failure"
    assert "brand new failure" in str(info.value)


def test_an_error_code_without_a_message_keeps_an_empty_msg() -> None:
    with pytest.raises(VendorServerError) as info:
        decode_envelope(b'{"code": -18}', 200)
    assert info.value.msg == ""


MALFORMED_BODIES = {
    "empty": b"",
    "not JSON": b"this is not json",
    "truncated JSON": b'{"code": 0, "msg": "succ',
    "not UTF-8": b"\xff\xfe\xfa not utf-8",
    "HTML page": b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>\n"
    + b"<!-- padding -->\n" * 200
    + b"</body></html>\n",
    "JSON list": b'[{"code": 0}]',
    "JSON string": b'"0"',
    "JSON number": b"0",
    "JSON null": b"null",
    "missing code": b'{"msg": "success", "data": {}}',
    "null code": b'{"code": null, "msg": "success"}',
    "non-numeric code": b'{"code": "OK", "msg": "success"}',
    "empty code": b'{"code": "", "msg": "success"}',
    "float code": b'{"code": 0.5, "msg": "success"}',
    "bool code": b'{"code": false, "msg": "success"}',
    "object code": b'{"code": {"value": 0}, "msg": "success"}',
    "list code": b'{"code": [0], "msg": "success"}',
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
@pytest.mark.parametrize("status_code", [200, 502])
def test_an_unreadable_body_raises_malformed_response_error(body: bytes, status_code: int) -> None:
    """Never a bare ``KeyError``, ``TypeError`` or ``JSONDecodeError``."""
    with pytest.raises(MalformedResponseError) as info:
        decode_envelope(body, status_code)
    error = info.value
    assert type(error) is MalformedResponseError
    assert error.status_code == status_code
    assert f"HTTP {status_code}" in str(error)
    assert len(error.body) <= BODY_EXCERPT_CHARS
    assert "\n" not in error.body


def test_malformed_response_error_keeps_a_shortened_excerpt_of_an_html_page() -> None:
    with pytest.raises(MalformedResponseError) as info:
        decode_envelope(MALFORMED_BODIES["HTML page"], 502)
    error = info.value
    assert error.body.startswith("<!DOCTYPE html> <html><head><title>502 Bad Gateway</title>")
    assert error.body.endswith("…")
    assert len(error.body) == BODY_EXCERPT_CHARS
    assert len(str(error)) < 2 * BODY_EXCERPT_CHARS + 100
    assert error.reason == "not JSON"
    assert error.__cause__ is not None


def test_a_pathologically_nested_body_raises_malformed_response_error() -> None:
    """A body nested deeper than the interpreter's recursion limit (a broken or hostile
    proxy) makes ``json.loads`` raise ``RecursionError``, which is neither ``ValueError``
    nor ``UnicodeDecodeError`` and so escapes ``decode_envelope`` untyped."""
    body = b'{"code": 0, "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(MalformedResponseError) as info:
        decode_envelope(body, 200)
    assert len(info.value.body) <= BODY_EXCERPT_CHARS


def test_malformed_response_error_says_which_part_was_wrong() -> None:
    with pytest.raises(MalformedResponseError, match="not a JSON object"):
        decode_envelope(b"[1, 2]", 200)
    with pytest.raises(MalformedResponseError, match="code") as info:
        decode_envelope(b'{"msg": "x"}', 200)
    assert isinstance(info.value.__cause__, KeyError)


def test_a_body_that_is_not_utf8_keeps_a_readable_excerpt() -> None:
    with pytest.raises(MalformedResponseError) as info:
        decode_envelope(b"\xff\xfe\xfa oops", 200)
    assert info.value.body.endswith("oops")


# -- records -------------------------------------------------------------------------------------


def test_unknown_record_and_page_fields_are_ignored() -> None:
    record = wire_record(newField="x", voiceFile={"id": 1}, idxAppId=3)
    page = structure_page(wire_page([record], searchCount=False, orders=[], optimizeCountSql=True))
    assert page.records[0].job_id == 7


def test_unknown_status_keeps_its_number() -> None:
    """A state the vendor adds later decodes to a member that keeps its number."""
    record = structure_record(wire_record(status=9))
    assert isinstance(record.status, GroupCallStatus)
    assert int(record.status) == 9
    assert record.status == 9
    assert not record.status.is_known
    assert record.status.name == "UNKNOWN_9"


def test_an_unknown_status_does_not_break_the_rest_of_the_page() -> None:
    records = [
        wire_record(jobId=1, status=2),
        wire_record(jobId=2, status=42),
        wire_record(jobId=3),
    ]
    page = structure_page(wire_page(records))
    assert [int(r.status) for r in page.records] == [2, 42, 2]
    assert [r.status.is_known for r in page.records] == [True, False, True]


def test_a_negative_unknown_status_gets_a_readable_name() -> None:
    status = structure_record(wire_record(status=-3)).status
    assert int(status) == -3
    assert status.name == "UNKNOWN_MINUS_3"
    assert not status.is_known


def test_unknown_statuses_are_not_kept_for_good() -> None:
    """Each unknown value used to be cached in the enum's own value map, forever: 200,000
    distinct values kept 77 MB after the client was gone. Now the map keeps only the
    documented members, and a small cache at most ``UNKNOWN_STATUSES_CACHED`` others."""
    gc.collect()
    members = len(GroupCallStatus._value2member_map_)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        page = structure_page(wire_page([wire_record(status=1000 + n) for n in range(20_000)]))
        assert {int(r.status) for r in page.records} == set(range(1000, 21_000))
        del page
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(GroupCallStatus._value2member_map_) == members
    assert _unknown_status.cache_info().currsize <= UNKNOWN_STATUSES_CACHED
    # 20,000 cached members would be ~8 MB; the bounded cache holds well under 1 MB.
    assert after - before < 1_000_000


def test_an_unknown_status_made_twice_is_equal_and_hashes_as_its_number() -> None:
    one, other = GroupCallStatus(10_001), GroupCallStatus(10_001)
    assert one == other == 10_001
    assert hash(one) == hash(other) == hash(10_001)
    assert {one: "x"}[other] == "x"
    assert (int(one), one.name, one.is_known) == (10_001, "UNKNOWN_10001", False)
    assert GroupCallStatus(10_002) != one
    again = pickle.loads(pickle.dumps(one))
    assert (type(again), again, again.name) == (GroupCallStatus, 10_001, "UNKNOWN_10001")


def test_a_status_value_that_is_not_an_int_is_not_a_member() -> None:
    with pytest.raises(ValueError, match="not a valid GroupCallStatus"):
        GroupCallStatus("9")  # type: ignore[arg-type]


def test_every_documented_status_is_known() -> None:
    for value in range(7):
        status = structure_record(wire_record(status=value)).status
        assert status is GroupCallStatus(value)
        assert status.is_known


def test_numbers_sent_as_numeric_strings_are_read() -> None:
    """The vendor documents ``code`` as a string but sends a number; its other fields may
    drift the same way, so numeric strings are read as numbers."""
    record = structure_record(
        wire_record(jobId="5000602", status="1", numCnt="4", callNum="3", success="2", fail="1")
    )
    assert (record.job_id, record.num_cnt, record.call_num, record.success, record.fail) == (
        5000602,
        4,
        3,
        2,
        1,
    )
    assert record.status is GroupCallStatus.CALLING


def test_a_numeric_rate_or_task_name_is_read_as_text() -> None:
    record = structure_record(wire_record(rate=87, taskName=2024))
    assert record.rate == "87"
    assert record.task_name == "2024"


@pytest.mark.parametrize(
    "field",
    ["jobId", "taskName", "status", "rate", "numCnt", "callNum", "success", "fail", "createdTime"],
)
def test_a_missing_record_field_raises(field: str) -> None:
    record = wire_record()
    del record[field]
    with pytest.raises(KeyError, match=field):
        structure_record(record)


WRONGLY_TYPED = [
    ("jobId", None),
    ("jobId", "abc"),
    ("jobId", 1.5),
    ("jobId", True),
    ("jobId", [1]),
    ("taskName", None),
    ("taskName", ["a"]),
    ("taskName", False),
    ("rate", None),
    ("rate", 0.5),
    ("numCnt", {"n": 1}),
    ("callNum", "three"),
    ("success", None),
    ("fail", 2.0),
    ("status", None),
    ("status", "calling"),
    ("status", 9.5),
    ("status", [1]),
    ("createdTime", None),
    ("createdTime", 1717483776),
    ("createdTime", "yesterday"),
    ("createdTime", "2024-13-01 00:00:00"),
]


@pytest.mark.parametrize(("field", "value"), WRONGLY_TYPED)
def test_a_wrongly_typed_record_field_raises(field: str, value: object) -> None:
    """The client turns these into ``MalformedResponseError``; nothing is guessed."""
    with pytest.raises((TypeError, ValueError)):
        structure_record(wire_record(**{field: value}))


@pytest.mark.parametrize("value", [True, False, 1.0, 2.0])
def test_a_status_sent_as_a_bool_or_a_float_raises_like_any_other_int_field(value: object) -> None:
    """``status: true`` must not decode as ``CALLING`` (nor ``1.0``, nor ``false`` as
    ``WAITING_FOR_SUBMISSION``): every other integer field refuses bools and floats, and
    so does ``status`` for values outside the table (``9.0`` raises ``TypeError``).

    The fast path looks the raw value up in a dict keyed by int, and ``True == 1 == 1.0``
    hash alike, so these slip through before ``_as_int`` can refuse them.
    """
    with pytest.raises(TypeError):
        structure_record(wire_record(status=value))


@pytest.mark.parametrize("data", [None, [], "records", 5], ids=["null", "list", "str", "int"])
def test_data_that_is_not_an_object_raises(data: object) -> None:
    with pytest.raises(TypeError):
        structure_page(data)


@pytest.mark.parametrize("records", [None, {}, "abc", (), 5], ids=repr)
def test_records_that_are_not_a_list_raise(records: object) -> None:
    data = wire_page([])
    data["records"] = records
    with pytest.raises(TypeError, match="records: expected a list"):
        structure_page(data)


@pytest.mark.parametrize("field", ["total", "size", "current", "pages"])
@pytest.mark.parametrize("value", [None, "many", 1.5, True])
def test_a_wrongly_typed_page_count_raises(field: str, value: object) -> None:
    data = wire_page([wire_record()])
    data[field] = value
    with pytest.raises((TypeError, ValueError)):
        structure_page(data)


def test_an_aware_converter_also_refuses_a_time_that_is_not_a_string() -> None:
    with pytest.raises(TypeError, match="time string"):
        structure_record(wire_record(createdTime=1717483776), SHANGHAI)


@pytest.mark.parametrize("field", ["records", "total", "size", "current", "pages"])
def test_a_missing_page_field_raises(field: str) -> None:
    data = wire_page([wire_record()])
    del data[field]
    with pytest.raises(KeyError, match=field):
        structure_page(data)


@pytest.mark.parametrize("item", [None, 5, "record", [1, 2]])
def test_a_record_that_is_not_an_object_raises(item: object) -> None:
    with pytest.raises(TypeError):
        structure_page(wire_page([wire_record(), item]))


# -- times -----------------------------------------------------------------------------------------


def test_without_a_server_timezone_created_time_stays_naive() -> None:
    record = structure_record(wire_record(createdTime="2024-06-04 14:49:36"))
    assert record.created_time == datetime(2024, 6, 4, 14, 49, 36)
    assert record.created_time.tzinfo is None


def test_a_server_timezone_makes_created_time_aware_in_that_zone() -> None:
    record = structure_record(wire_record(createdTime="2024-06-04 14:49:36"), SHANGHAI)
    assert record.created_time.tzinfo is SHANGHAI
    assert record.created_time.replace(tzinfo=None) == datetime(2024, 6, 4, 14, 49, 36)
    assert record.created_time == datetime(2024, 6, 4, 6, 49, 36, tzinfo=UTC)


def test_a_fixed_offset_server_timezone_makes_created_time_aware_too() -> None:
    minus_five = timezone(timedelta(hours=-5))
    record = structure_record(wire_record(createdTime="2024-06-04 14:49:36"), minus_five)
    assert record.created_time.utcoffset() == timedelta(hours=-5)
    assert record.created_time == datetime(2024, 6, 4, 19, 49, 36, tzinfo=UTC)


def test_a_time_that_carries_its_own_offset_is_converted_to_the_server_timezone() -> None:
    record = structure_record(wire_record(createdTime="2024-06-04T06:49:36+00:00"), SHANGHAI)
    assert record.created_time.tzinfo is SHANGHAI
    assert record.created_time.replace(tzinfo=None) == datetime(2024, 6, 4, 14, 49, 36)


def test_each_converter_keeps_its_own_server_timezone() -> None:
    naive = structure_record(wire_record())
    aware = structure_record(wire_record(), SHANGHAI)
    again = structure_record(wire_record())
    assert naive.created_time.tzinfo is None
    assert aware.created_time.tzinfo is SHANGHAI
    assert again.created_time.tzinfo is None


@pytest.mark.parametrize(
    ("created", "zone"),
    [
        ("9999-12-31T23:59:59+00:00", SHANGHAI),
        ("9999-12-31T23:59:59-05:00", timezone(timedelta(hours=8))),
        ("0001-01-01T00:00:00+00:00", ZoneInfo("America/New_York")),
        ("0001-01-01T00:00:00+00:00", timezone(timedelta(hours=-5))),
    ],
)
def test_a_time_that_its_zone_would_carry_past_year_1_or_9999_raises_value_error(
    created: str, zone: Any
) -> None:
    """``astimezone`` raises ``OverflowError`` there, which the client would let through."""
    with pytest.raises(ValueError, match="out of range"):
        structure_record(wire_record(createdTime=created), zone)


def test_a_naive_time_at_the_edge_of_the_range_is_kept_in_the_server_zone() -> None:
    for created in ("0001-01-01 00:00:00", "9999-12-31 23:59:59"):
        record = structure_record(wire_record(createdTime=created), SHANGHAI)
        assert record.created_time.replace(tzinfo=None) == datetime.fromisoformat(created)


def test_format_wire_time_is_the_vendors_local_date_time() -> None:
    assert format_wire_time(datetime(2024, 6, 3, 15, 13, 1, 999_999)) == "2024-06-03 15:13:01"
    assert WIRE_TIME_FORMAT == "%Y-%m-%d %H:%M:%S"


# -- property: whatever the vendor sends, we read back what it meant -----------------------------

_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_statuses = st.sampled_from(list(GroupCallStatus)) | st.integers(
    min_value=-1000, max_value=1000
).map(GroupCallStatus)
_times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda t: t.replace(microsecond=0)
)
_records = st.builds(
    GroupCallRecord,
    job_id=_ints,
    task_name=st.text(),
    status=_statuses,
    rate=st.text(),
    num_cnt=_ints,
    call_num=_ints,
    success=_ints,
    fail=_ints,
    created_time=_times,
)


def to_wire(record: GroupCallRecord) -> dict[str, Any]:
    """The record as the vendor would send it (written independently of the decoder)."""
    return {
        "jobId": record.job_id,
        "taskName": record.task_name,
        "status": int(record.status),
        "rate": record.rate,
        "numCnt": record.num_cnt,
        "callNum": record.call_num,
        "success": record.success,
        "fail": record.fail,
        "createdTime": record.created_time.isoformat(sep=" "),
    }


@given(records=st.lists(_records, max_size=10), total=_ints, current=st.integers(1, 10**6))
def test_generated_records_survive_json_and_decode_equal_field_by_field(
    records: list[GroupCallRecord], total: int, current: int
) -> None:
    body = json.dumps(
        {
            "code": 0,
            "msg": "success",
            "data": wire_page(
                [to_wire(r) for r in records], total=total, current=current, pages=7, size=100
            ),
        }
    ).encode()
    page = structure_page(decode_envelope(body, 200).data)
    assert (page.total, page.size, page.current, page.pages) == (total, 100, current, 7)
    assert len(page.records) == len(records)
    for decoded, original in zip(page.records, records, strict=True):
        assert decoded.job_id == original.job_id
        assert decoded.task_name == original.task_name
        assert type(decoded.status) is GroupCallStatus
        assert int(decoded.status) == int(original.status)
        assert decoded.status.is_known == (0 <= int(original.status) <= 6)
        assert decoded.rate == original.rate
        assert decoded.num_cnt == original.num_cnt
        assert decoded.call_num == original.call_num
        assert decoded.success == original.success
        assert decoded.fail == original.fail
        assert decoded.created_time == original.created_time
        assert decoded.created_time.tzinfo is None
        assert decoded == original


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
_zones = st.none() | st.timezones()
# Anywhere in datetime's range, and often within a day of either end of it.
_wire_times = (
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59), timezones=_zones)
    | st.datetimes(datetime(1, 1, 1), datetime(1, 1, 2), timezones=_zones)
    | st.datetimes(datetime(9999, 12, 31), datetime(9999, 12, 31, 23, 59, 59), timezones=_zones)
).map(lambda t: t.isoformat(sep=" "))
_record_fields = st.sampled_from(sorted(wire_record()))


@given(field=_record_fields, value=_json_values | _wire_times, zone=_zones)
def test_whatever_a_field_holds_decoding_fails_only_in_ways_the_client_reports(
    field: str, value: object, zone: Any
) -> None:
    """``KeyError``, ``TypeError`` and ``ValueError`` become ``MalformedResponseError``;
    nothing else may escape (an ``OverflowError`` once did)."""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        structure_record(wire_record(**{field: value}), zone)


@given(created=_wire_times, zone=_zones)
def test_any_time_in_any_zone_decodes_or_fails_as_a_value_error(created: str, zone: Any) -> None:
    with contextlib.suppress(ValueError):
        record = structure_record(wire_record(createdTime=created), zone)
        if zone is not None:
            assert record.created_time.tzinfo is zone


@given(code=_ints.filter(lambda n: n != 0), as_string=st.booleans(), msg=st.text())
def test_any_non_zero_code_raises_an_api_error_with_its_int_code(
    code: int, as_string: bool, msg: str
) -> None:
    body = json.dumps({"code": str(code) if as_string else code, "msg": msg}).encode()
    with pytest.raises(ItnioAPIError) as info:
        decode_envelope(body, 200)
    assert info.value.code == code
    assert info.value.msg == msg


@given(body=st.binary())
def test_arbitrary_bytes_never_escape_as_anything_but_the_documented_errors(body: bytes) -> None:
    with contextlib.suppress(MalformedResponseError, ItnioAPIError):
        decode_envelope(body, 200)


# -- the two JSON parsers: orjson where installed, json otherwise -------------------------

needs_orjson = pytest.mark.skipif(
    _converter._fast_loads is None, reason="orjson (the speedups extra) is not installed"
)


def _same(a: object, b: object) -> bool:
    """Equal, type for type, with NaN equal to itself and -0.0 apart from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _outcome(body: bytes, *, fast: bool) -> tuple[str, object]:
    """What decode_envelope makes of ``body`` through one parser: the envelope's fields,
    or the error's type, message, status and excerpt."""
    saved = _converter._fast_loads
    _converter._fast_loads = saved if fast else None
    try:
        envelope = decode_envelope(body, 200)
    except ItnioError as exc:
        excerpt = getattr(exc, "body", None)
        return "error", (type(exc), str(exc), getattr(exc, "status_code", None), excerpt)
    finally:
        _converter._fast_loads = saved
    return "ok", (envelope.data, envelope.msg)


def _both_alike(body: bytes) -> None:
    fast, slow = _outcome(body, fast=True), _outcome(body, fast=False)
    assert fast[0] == slow[0], (body, fast, slow)
    if fast[0] == "ok":
        assert _same(fast[1], slow[1]), (body, fast, slow)
    else:
        assert fast[1] == slow[1]


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@needs_orjson
def test_the_fast_path_is_the_one_taken_when_orjson_is_installed() -> None:
    import orjson

    assert _converter._fast_loads is orjson.loads


@needs_orjson
@given(data=_json_values, code=st.sampled_from([0, "0", 5, "-16", None, 2.0]))
def test_both_parsers_read_any_envelope_alike(data: object, code: object) -> None:
    envelope = {"code": code, "msg": "success", "data": data}
    for ensure_ascii in (True, False):
        _both_alike(
            json.dumps(envelope, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
        )


@needs_orjson
@given(body=st.binary(max_size=64))
def test_both_parsers_refuse_any_bytes_alike(body: bytes) -> None:
    _both_alike(body)


@needs_orjson
@given(
    data=_json_values,
    cut=st.integers(min_value=0, max_value=200),
    junk=st.sampled_from([b"", b"\xff", b"\xef\xbb\xbf", b"NaN", b"\x00", b"}", b'"\\ud800"']),
)
def test_both_parsers_treat_a_damaged_body_alike(data: object, cut: int, junk: bytes) -> None:
    body = json.dumps({"code": 0, "msg": "ok", "data": data}).encode()
    _both_alike(body[:cut] + junk + body[cut:])
    _both_alike(junk + body)


@needs_orjson
@pytest.mark.parametrize(
    "body",
    [
        b'{"code":0,"msg":"ok","data":NaN}',  # json's extension, refused by orjson
        b'{"code":0,"msg":"ok","data":123456789012345678901234567890}',  # past 64 bits
        b'{"code":0,"msg":"ok","data":"\\ud800"}',  # a lone surrogate
        b'\xef\xbb\xbf{"code":0,"msg":"ok","data":1}',  # a UTF-8 byte-order mark
        '{"code":0,"msg":"ok","data":"é"}'.encode("utf-16"),  # json reads UTF-16 too
        b'{"code":0,"msg":"ok","data":' + b"[" * 5000 + b"]" * 5000 + b"}",  # too deep
        b'{"code":0,"code":5,"msg":"dup","data":null}',  # the last duplicate wins
    ],
)
def test_what_orjson_refuses_is_decided_by_json(body: bytes) -> None:
    _both_alike(body)


@needs_orjson
@pytest.mark.parametrize("depth", [200, 300, 990, 1010, 1030])
def test_a_deeply_nested_body_is_read_as_json_reads_it(depth: int) -> None:
    # orjson nests up to 1,024 levels, json only as deep as the recursion limit allows
    # from where it runs: unknown fields are ignored, so this body is a success to
    # whichever parser can read it.
    nested = b"[" * depth + b"]" * depth
    _both_alike(b'{"code":0,"msg":"ok","data":{"records":[],"x":' + nested + b"}}")
