"""Wire format: decoding the vendor's JSON into models, and formatting times for it.

One private ``cattrs`` converter per client, built by :func:`make_converter`, which
registers every hook in one place. cattrs generates the record and page hooks from the
models, with the vendor's field names as overrides; we write only one hook per kind of
value. They stay strict where it matters: a missing field or a value of the wrong kind
raises ``KeyError``, ``TypeError`` or ``ValueError``, and the client turns that into
``MalformedResponseError``.

No hand-written record hook: the benchmark's ``decoding`` case measured the generated one
at 0.45-0.47 of ``json.loads``'s rate (medians of six runs, 2-core x86_64, Python 3.11),
at or above the 0.45 target, against 0.50 for the hand-written hook it replaced. Each value hook
takes the common case with one class check before any ``isinstance``; that fast path is
what keeps the generated hook above the target.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Any, Final, TypeVar, get_args

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._errors import MalformedResponseError, api_error
from ._models import (
    NO_EXTRA,
    CallRecord,
    GroupCallDetail,
    GroupCallRecord,
    GroupCallStatus,
    Page,
)

_fast_loads: Callable[[bytes], Any] | None
try:  # the speedups extra
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - the tests run with the speedups installed
    _fast_loads = None

__all__ = [
    "WIRE_TIME_FORMAT",
    "Envelope",
    "decode_envelope",
    "format_iso_time",
    "format_wire_time",
    "CallRecordHooks",
    "make_converter",
    "make_converter_with_hooks",
    "parse_json",
]

T = TypeVar("T")

#: The vendor's ``LocalDateTime``: no zone, second precision.
WIRE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Every documented status by value: a dict lookup is several times faster than
#: ``GroupCallStatus(value)``, which is kept only for unknown values.
_STATUS_BY_VALUE: dict[object, GroupCallStatus] = {m.value: m for m in GroupCallStatus}


def format_wire_time(value: datetime) -> str:
    """Format a (naive, already zone-converted) datetime as the vendor's LocalDateTime.

    Written out by hand: ``strftime("%Y")`` does not pad years before 1000 on glibc.
    """
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


def format_iso_time(value: datetime) -> str:
    """Format an aware datetime as ISO 8601 with its offset, to the second
    (``2022-02-18T00:00:00+08:00``), as the call-record query takes it."""
    return value.replace(microsecond=0).isoformat()


def _as_str(value: object, _: object = None) -> str:
    # The class check first: the common case costs one comparison and no isinstance.
    if value.__class__ is str:
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _as_int(value: object, _: object = None) -> int:
    if value.__class__ is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return int(value)  # "12" -> 12; "x" raises ValueError
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _as_status(value: object, _: object = None) -> GroupCallStatus:
    # The class check keeps True and 2.0 (equal to 1 and 2 as dict keys) off the fast path.
    if value.__class__ is int:
        member = _STATUS_BY_VALUE.get(value)
        if member is not None:
            return member
    return GroupCallStatus(_as_int(value))


def _time_hook(server_timezone: tzinfo | None) -> Callable[[object, object], datetime]:
    """The one ``datetime`` hook: the vendor's LocalDateTime, read in ``server_timezone``.

    Any failure is a ``TypeError`` or a ``ValueError``, which the client reports as a
    malformed reply: a time near year 1 or 9999 that the zone would carry out of
    ``datetime``'s range raises ``OverflowError`` in ``astimezone``, reported as a
    ``ValueError`` here.
    """
    fromisoformat = datetime.fromisoformat

    if server_timezone is None:

        def naive(value: object, _: object = None) -> datetime:
            if value.__class__ is not str:
                raise TypeError(f"expected a time string, got {type(value).__name__}")
            return fromisoformat(value)

        return naive

    def aware(value: object, _: object = None) -> datetime:
        if value.__class__ is not str:
            raise TypeError(f"expected a time string, got {type(value).__name__}")
        parsed = fromisoformat(value)
        try:
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=server_timezone)
            return parsed.astimezone(server_timezone)
        except OverflowError as exc:
            raise ValueError(f"time out of range in {server_timezone}: {value!r}") from exc

    return aware


def make_converter(server_timezone: tzinfo | None = None) -> cattrs.Converter:
    """Build the converter for one client; times are read in ``server_timezone``."""
    return make_converter_with_hooks(server_timezone)[0]


def make_converter_with_hooks(
    server_timezone: tzinfo | None = None,
) -> tuple[cattrs.Converter, CallRecordHooks]:
    """:func:`make_converter`'s converter, and its ``CallRecord`` hooks (for streams).

    cattrs generates the record and page hooks from the models; we give it one hook per
    kind of value (``int``, ``str``, ``GroupCallStatus``, ``datetime``), strict where it
    matters (a bool or a float is not an int), and the vendor's field names.
    """
    converter = cattrs.Converter(detailed_validation=False)
    converter.register_structure_hook(int, _as_int)
    converter.register_structure_hook(str, _as_str)
    converter.register_structure_hook(GroupCallStatus, _as_status)
    converter.register_structure_hook(datetime, _time_hook(server_timezone))
    converter.register_structure_hook(
        GroupCallRecord,
        # The vendor's names, where they are not ours (it writes camelCase).
        make_dict_structure_fn(
            GroupCallRecord,
            converter,
            job_id=override(rename="jobId"),
            task_name=override(rename="taskName"),
            num_cnt=override(rename="numCnt"),
            call_num=override(rename="callNum"),
            created_time=override(rename="createdTime"),
        ),
    )

    def page_hook_factory(page_type: Any) -> Callable[[Any, Any], Page[Any]]:
        (item_type,) = get_args(page_type) or (Any,)
        structure_item = converter.get_structure_hook(item_type)

        def structure_records(records: object, _: object = None) -> tuple[Any, ...]:
            # A list and nothing else: cattrs would take any iterable, even a dict or a str.
            if records.__class__ is not list:
                raise TypeError(f"records: expected a list, got {type(records).__name__}")
            return tuple([structure_item(item, item_type) for item in records])

        return make_dict_structure_fn(
            Page[item_type],  # type: ignore[valid-type]
            converter,
            records=override(struct_hook=structure_records),
        )

    converter.register_structure_hook_factory(
        lambda cls: getattr(cls, "__origin__", cls) is Page, page_hook_factory
    )
    return converter, _register_calls(converter, server_timezone)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _optional(hook: Callable[[object, object], Any]) -> Callable[[object, object], Any]:
    """``hook`` for a field that may be null (``None``), as every detail field may."""

    def structure(value: object, _: object = None) -> Any:
        return None if value is None else hook(value, None)

    return structure


def _as_float(value: object, _: object = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _iso_time_hook(server_timezone: tzinfo | None) -> Callable[[object, object], datetime | None]:
    """A call record's time: ISO 8601 with an offset, aware (in ``server_timezone`` if
    set). Null or ``""`` (a call never answered) is ``None``; a time without an offset is
    read in ``server_timezone``, and refused without one: it would be a guess."""
    fromisoformat = datetime.fromisoformat

    def structure(value: object, _: object = None) -> datetime | None:
        if value is None or value == "":
            return None
        if value.__class__ is datetime:
            parsed: datetime = value  # parsed by the record hook
        elif value.__class__ is not str:
            raise TypeError(f"expected a time string, got {type(value).__name__}")
        else:
            parsed = fromisoformat(value)
        try:
            if parsed.tzinfo is None:
                if server_timezone is None:
                    raise ValueError(
                        f"time {value!r} has no offset and the client has no server_timezone"
                    )
                return parsed.replace(tzinfo=server_timezone)
            return parsed if server_timezone is None else parsed.astimezone(server_timezone)
        except OverflowError as exc:
            raise ValueError(f"time out of range in {server_timezone}: {value!r}") from exc

    return structure


#: Wire names that are not the camelCase of ours.
_RENAMES: dict[str, str] = {"country_code": "code", "area_code": "code"}


def wire_names(cls: type[Any]) -> dict[str, str]:
    """The vendor's name of each field of ``cls`` but ``extra``, by ours."""
    return {
        field.name: _RENAMES.get(field.name, _camel(field.name))
        for field in attrs.fields(cls)
        if field.name != "extra"
    }


#: Every documented key of a call record.
_CALL_RECORD_KEYS: frozenset[str] = frozenset(wire_names(CallRecord).values())
#: Every field of a call record.
_CALL_RECORD_FIELDS: tuple[str, ...] = tuple(field.name for field in attrs.fields(CallRecord))


@attrs.frozen
class CallRecordHooks:
    """A converter's two ways to make a ``CallRecord`` from its JSON object.

    ``structure(value)`` makes the whole record. A stream makes each record in two steps
    instead: ``keyed(value)`` makes one with only the two fields its paging engine reads
    (``voice_id`` and ``submit_time``; ``None`` when the object is not of the common
    shape), and ``structure(value, into=record)`` later fills in every field, checked,
    before the record is handed out. The paging engine can then ask for a slice's next
    page before the records of the last one are made: the second step is most of the CPU
    a page of call records costs, and it is done while the requests are in flight.
    """

    structure: Callable[..., CallRecord]
    keyed: Callable[[Any], CallRecord | None]


def _register_calls(converter: cattrs.Converter, server_timezone: tzinfo | None) -> CallRecordHooks:
    """The hooks of ``GroupCallDetail`` and ``CallRecord``, generated by cattrs with the
    vendor's names and a null-tolerant hook per field, undocumented fields kept in
    ``extra``; a common ``CallRecord`` takes the fast path of ``_call_record_hook``."""
    iso_time = _iso_time_hook(server_timezone)
    local_time = _optional(converter.get_structure_hook(datetime))
    detail = _generated_hook(converter, GroupCallDetail, local_time)
    converter.register_structure_hook(GroupCallDetail, detail)
    generated = _generated_hook(converter, CallRecord, iso_time)
    hooks = _call_record_hook(iso_time, generated, converting=server_timezone is not None)
    converter.register_structure_hook(CallRecord, hooks.structure)
    return hooks


def _generated_hook(
    converter: cattrs.Converter, cls: type[Any], time: Callable[[object, object], Any]
) -> Callable[[Any, Any], Any]:
    by_type: dict[Any, Callable[[object, object], Any]] = {
        int | None: _optional(_as_int),
        str | None: _optional(_as_str),
        float | None: _optional(_as_float),
        GroupCallStatus | None: _optional(_as_status),
        datetime | None: time,
    }
    attrs.resolve_types(cls)
    overrides: dict[str, Any] = {"extra": override(omit=True)}
    names = wire_names(cls)
    for field in attrs.fields(cls):
        if field.name == "extra":
            continue
        hook = by_type.get(field.type)
        if hook is None:  # the required id: the strict hook of its type
            overrides[field.name] = override(rename=names[field.name])
        else:
            overrides[field.name] = override(rename=names[field.name], struct_hook=hook)
    generated = make_dict_structure_fn(cls, converter, **overrides)
    return _keeping_extra(cls, generated, frozenset(names.values()))


def _keeping_extra(
    cls: type[Any], generated: Callable[[Any, Any], Any], known: frozenset[str]
) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: object = None) -> Any:
        if value.__class__ is not dict:
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        record = generated(value, cls)
        if value.keys() - known:
            extra = {key: item for key, item in value.items() if key not in known}
            # The record is frozen; this is its construction, finished.
            object.__setattr__(record, "extra", MappingProxyType(extra))
        return record

    return structure


class Envelope:
    """The decoded envelope of a successful reply: ``{"code", "msg", "data"}``, or
    ``{"status", "reason", "data"}`` as the call-record endpoints write it."""

    __slots__ = ("data", "msg")

    def __init__(self, data: Any, msg: str) -> None:
        #: The ``data`` member as parsed JSON (not yet structured).
        self.data = data
        #: The vendor's ``msg``.
        self.msg = msg


#: Every digit as "0", "[" and "{" as "[", every other byte as a space: a run of digits
#: stays a run of "0"s, and the containers a body opens can be counted.
_SHAPE: Final = bytes(
    0x30 if 0x30 <= byte <= 0x39 else 0x5B if byte in b"[{" else 0x20 for byte in range(256)
)
#: The shortest integer orjson reads as a float, -9223372036854775809, has 19 digits.
_LONG_DIGIT_RUN: Final = b"0" * 19
#: Bodies that open more containers go to ``json``: orjson nests up to 1,024 deep, json
#: as deep as the interpreter's recursion limit lets it from where it is called (less
#: than 1,000), so between the two they would disagree. A page of 100 records opens 102.
_MOST_CONTAINERS: Final = 256


def parse_json(body: bytes) -> Any:
    """``json.loads(body)``, exactly: the same value or the same exception.

    With ``orjson`` installed (the ``speedups`` extra) it parses first, about three times
    as fast on a page of records. Whatever it refuses goes to ``json.loads``, which then
    decides: orjson is stricter (UTF-8 only, no ``NaN``, no lone surrogate, no byte-order
    mark, no infinite float), so a body it refuses may still be JSON to ``json``, and a
    body both refuse fails with ``json``'s own error. Two bodies orjson would read but
    ``json`` not alike go to ``json`` without asking orjson: one with a run of 19 digits
    or more (orjson reads an integer beyond 64 bits as a float; such an integer has 19
    digits at least), and one opening more than ``_MOST_CONTAINERS`` arrays and objects
    (orjson reads nesting deeper than ``json`` can). Spotting both costs a sixth of what
    orjson saves. Where both accept a body they read it alike (checked with hypothesis
    in ``tests/test_converter.py``).
    """
    if _fast_loads is not None:
        shape = body.translate(_SHAPE)
        if _LONG_DIGIT_RUN not in shape and shape.count(b"[") <= _MOST_CONTAINERS:
            try:
                return _fast_loads(body)
            except ValueError:  # orjson.JSONDecodeError; json.loads says what is wrong
                pass
    return json.loads(body)


def decode_envelope(body: bytes, status_code: int) -> Envelope:
    """Parse a reply body; raise the typed error for a non-zero code or a malformed body.

    ``code`` is accepted as a number or a numeric string (the vendor documents a string
    and its example sends a number). The call-record endpoints say ``status`` and
    ``reason`` instead of ``code`` and ``msg``: the same codes, read the same way.
    """
    try:
        parsed = parse_json(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedResponseError("not JSON", status_code=status_code, body=_text(body)) from exc
    if not isinstance(parsed, dict):
        raise MalformedResponseError("not a JSON object", status_code=status_code, body=_text(body))
    code_key, msg_key = ("code", "msg") if "code" in parsed else ("status", "reason")
    try:
        code = _as_int(parsed[code_key])
    except (KeyError, TypeError, ValueError) as exc:
        what = "'code'" if code_key == "code" else "'code' or 'status'"
        raise MalformedResponseError(
            f"missing or non-numeric {what}", status_code=status_code, body=_text(body)
        ) from exc
    msg = parsed.get(msg_key)
    msg = msg if isinstance(msg, str) else ""
    if code != 0:
        raise api_error(code, msg, status_code=status_code)
    return Envelope(parsed.get("data"), msg)


def _text(body: bytes) -> str:
    return body[:4096].decode("utf-8", errors="replace")  # an excerpt is all an error keeps


def _call_record_hook(
    time: Callable[..., datetime | None],
    generated: Callable[[Any, Any], CallRecord],
    *,
    converting: bool,
) -> CallRecordHooks:
    """The ``CallRecord`` hook for the common record, written out field by field; any
    other record (a documented field missing) goes to ``generated``, cattrs' hook.

    Hand-written, unlike the others: cattrs' hook (a null-tolerant hook per field, then
    ``CallRecord(**fields)``) decoded 0.28 of ``json.loads``'s rate in the benchmark's
    ``calls_decoding`` case, against the 0.45 target. This one reads the always-documented
    fields by subscript into locals, checks each with one class comparison, makes the
    record with ``object.__new__`` and fills its slots through their descriptors (what a
    frozen attrs ``__init__`` does through ``object.__setattr__``, at half the cost; the
    record stays frozen), and looks for undocumented fields only when the record has more
    keys than the documented ones it holds. ``test_calls_models`` checks both hooks
    against every field of the model, so a field added to ``CallRecord`` and not here
    fails a test.
    """
    known = _CALL_RECORD_KEYS
    known_superset = known.issuperset
    new = object.__new__
    cls = CallRecord
    # The common time, an ISO string with an offset and no zone to convert to, is parsed
    # here (one C call); ``time`` takes the rest: a zone, no offset, "", a wrong type.
    fromisoformat = datetime.fromisoformat
    convert = converting

    def slot(name: str) -> Callable[[CallRecord, object], None]:
        setter: Callable[[CallRecord, object], None] = getattr(cls, name).__set__
        return setter

    set_voice_id = slot("voice_id")
    set_callee = slot("callee")
    set_display_num = slot("display_num")
    set_area_code = slot("area_code")
    set_submit_time = slot("submit_time")
    set_call_time = slot("call_time")
    set_ringing_time = slot("ringing_time")
    set_answer_time = slot("answer_time")
    set_hangup_time = slot("hangup_time")
    set_call_duration = slot("call_duration")
    set_charged_duration = slot("charged_duration")
    set_termination_code = slot("termination_code")
    set_termination_reason = slot("termination_reason")
    set_cost = slot("cost")
    set_bill_period = slot("bill_period")
    set_rate = slot("rate")
    set_base_cost = slot("base_cost")
    set_voice_file_id = slot("voice_file_id")
    set_feedback_value = slot("feedback_value")
    set_called_info = slot("called_info")
    set_settle_rate = slot("settle_rate")
    set_quote_exchange = slot("quote_exchange")
    set_settle_pay = slot("settle_pay")
    set_currency = slot("currency")
    set_extra = slot("extra")

    def structure(value: Any, _: object = None, into: CallRecord | None = None) -> CallRecord:
        if value.__class__ is not dict:
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        get = value.get
        try:
            voice_id = value["voiceId"]
            callee = value["callee"]
            display_num = value["displayNum"]
            area_code = value["code"]
            submit_time = value["submitTime"]
            call_time = value["callTime"]
            ringing_time = value["ringingTime"]
            answer_time = value["answerTime"]
            hangup_time = value["hangupTime"]
            call_duration = value["callDuration"]
            charged_duration = value["chargedDuration"]
            termination_code = value["terminationCode"]
            termination_reason = value["terminationReason"]
            cost = value["cost"]
            bill_period = value["billPeriod"]
            rate = value["rate"]
            base_cost = value["baseCost"]
            voice_file_id = value["voiceFileId"]
            feedback_value = value["feedbackValue"]
            called_info = value["calledInfo"]
            settle_rate = get("settleRate")
            quote_exchange = get("quoteExchange")
            settle_pay = get("settlePay")
            currency = get("currency")
        except KeyError:
            made = generated(value, cls)
            if into is None:
                return made
            for field in _CALL_RECORD_FIELDS:
                getattr(cls, field).__set__(into, getattr(made, field))
            return into
        if voice_id.__class__ is not str:
            voice_id = _as_str(voice_id)
        if callee.__class__ is not str and callee is not None:
            callee = _as_str(callee)
        if display_num.__class__ is not str and display_num is not None:
            display_num = _as_str(display_num)
        if area_code.__class__ is not str and area_code is not None:
            area_code = _as_str(area_code)
        if submit_time is not None:
            if submit_time.__class__ is str and submit_time:
                submit_time = fromisoformat(submit_time)
                if convert or submit_time.tzinfo is None:
                    submit_time = time(submit_time)
            else:
                submit_time = time(submit_time)
        if call_time is not None:
            if call_time.__class__ is str and call_time:
                call_time = fromisoformat(call_time)
                if convert or call_time.tzinfo is None:
                    call_time = time(call_time)
            else:
                call_time = time(call_time)
        if ringing_time is not None:
            if ringing_time.__class__ is str and ringing_time:
                ringing_time = fromisoformat(ringing_time)
                if convert or ringing_time.tzinfo is None:
                    ringing_time = time(ringing_time)
            else:
                ringing_time = time(ringing_time)
        if answer_time is not None:
            if answer_time.__class__ is str and answer_time:
                answer_time = fromisoformat(answer_time)
                if convert or answer_time.tzinfo is None:
                    answer_time = time(answer_time)
            else:
                answer_time = time(answer_time)
        if hangup_time is not None:
            if hangup_time.__class__ is str and hangup_time:
                hangup_time = fromisoformat(hangup_time)
                if convert or hangup_time.tzinfo is None:
                    hangup_time = time(hangup_time)
            else:
                hangup_time = time(hangup_time)
        if call_duration.__class__ is not int and call_duration is not None:
            call_duration = _as_int(call_duration)
        if charged_duration.__class__ is not int and charged_duration is not None:
            charged_duration = _as_int(charged_duration)
        if termination_code.__class__ is not str and termination_code is not None:
            termination_code = _as_str(termination_code)
        if termination_reason.__class__ is not str and termination_reason is not None:
            termination_reason = _as_str(termination_reason)
        if cost.__class__ is not str and cost is not None:
            cost = _as_str(cost)
        if bill_period.__class__ is not str and bill_period is not None:
            bill_period = _as_str(bill_period)
        if rate.__class__ is not str and rate is not None:
            rate = _as_str(rate)
        if base_cost.__class__ is not str and base_cost is not None:
            base_cost = _as_str(base_cost)
        if voice_file_id.__class__ is not str and voice_file_id is not None:
            voice_file_id = _as_str(voice_file_id)
        if feedback_value.__class__ is not str and feedback_value is not None:
            feedback_value = _as_str(feedback_value)
        if called_info.__class__ is not str and called_info is not None:
            called_info = _as_str(called_info)
        if settle_rate.__class__ is not str and settle_rate is not None:
            settle_rate = _as_str(settle_rate)
        if quote_exchange.__class__ is not str and quote_exchange is not None:
            quote_exchange = _as_str(quote_exchange)
        if settle_pay.__class__ is not str and settle_pay is not None:
            settle_pay = _as_str(settle_pay)
        if currency.__class__ is not str and currency is not None:
            currency = _as_str(currency)
        record: CallRecord = new(cls) if into is None else into
        set_voice_id(record, voice_id)
        set_callee(record, callee)
        set_display_num(record, display_num)
        set_area_code(record, area_code)
        set_submit_time(record, submit_time)
        set_call_time(record, call_time)
        set_ringing_time(record, ringing_time)
        set_answer_time(record, answer_time)
        set_hangup_time(record, hangup_time)
        set_call_duration(record, call_duration)
        set_charged_duration(record, charged_duration)
        set_termination_code(record, termination_code)
        set_termination_reason(record, termination_reason)
        set_cost(record, cost)
        set_bill_period(record, bill_period)
        set_rate(record, rate)
        set_base_cost(record, base_cost)
        set_voice_file_id(record, voice_file_id)
        set_feedback_value(record, feedback_value)
        set_called_info(record, called_info)
        set_settle_rate(record, settle_rate)
        set_quote_exchange(record, quote_exchange)
        set_settle_pay(record, settle_pay)
        set_currency(record, currency)
        # The 20 keys read by subscript are there; with as many keys as those and the
        # settlement fields that have a value, it holds no other (an undocumented field,
        # or a settlement field that is null, takes the full check).
        present = 20 + (
            (settle_rate is not None)
            + (quote_exchange is not None)
            + (settle_pay is not None)
            + (currency is not None)
        )
        if len(value) == present or known_superset(value):
            set_extra(record, NO_EXTRA)
        else:
            extra = {key: item for key, item in value.items() if key not in known}
            set_extra(record, MappingProxyType(extra))
        return record

    def keyed(value: Any) -> CallRecord | None:
        # Only what the paging engine reads, taken exactly as ``structure`` takes it;
        # ``None`` for anything but the common shape (``structure`` then decides).
        if value.__class__ is not dict:
            return None
        voice_id = value.get("voiceId")
        submit_time = value.get("submitTime")
        if voice_id.__class__ is not str or submit_time.__class__ is not str or not submit_time:
            return None
        try:
            submitted = fromisoformat(submit_time)
            if convert or submitted.tzinfo is None:
                converted = time(submitted)
                if converted is None:
                    return None
                submitted = converted
        except (TypeError, ValueError):
            return None
        record: CallRecord = new(cls)
        set_voice_id(record, voice_id)
        set_submit_time(record, submitted)
        return record

    return CallRecordHooks(structure, keyed)
