"""The vendor's data as frozen attrs classes.

Decoding from the wire lives in ``_converter``; these classes only describe the data.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import attrs

__all__ = [
    "CallRecord",
    "GroupCallDetail",
    "GroupCallRecord",
    "GroupCallStatus",
    "Page",
    "UnfinishedPage",
]

T = TypeVar("T")

#: How many distinct undocumented status values keep a shared member at once.
UNKNOWN_STATUSES_CACHED = 128


class GroupCallStatus(enum.IntEnum):
    """State of a group-call task (``status`` in replies, ``statusList`` in queries).

    The vendor may add states: an unknown value decodes to a member that keeps its number
    (``int(status) == 9``, ``status.name == "UNKNOWN_9"``) instead of breaking a stream.
    Such members compare and hash as their number (compare them with ``==``, not ``is``);
    they are not added to the enum, so unknown values cost no memory for good.
    Queries accept only the documented values below, as members, numbers or names (see
    ``parse``).
    """

    WAITING_FOR_SUBMISSION = 0
    CALLING = 1
    COMPLETED = 2
    SUBMISSION_FAILED = 3
    CANCELLED = 4
    SUSPENDED = 5
    SUBMITTING = 6

    @classmethod
    def _missing_(cls, value: object) -> GroupCallStatus | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        return _unknown_status(cls, int(value))

    @classmethod
    def parse(cls, value: GroupCallStatus | int | str) -> GroupCallStatus:
        """The documented state ``value`` names: a member, its number, or its name.

        A name is case-insensitive, with ``-`` and ``_`` alike (``"completed"``,
        ``"Submission-Failed"``), or one of the short forms ``waiting``, ``failed`` and
        ``canceled``; a str of digits is a number (``"2"``). The command line's
        ``--statuses`` takes the same spellings.

        Raises:
            TypeError: ``value`` is not a ``GroupCallStatus``, an ``int`` or a ``str``
                (a ``bool`` is refused too).
            ValueError: an undocumented number, or an unknown name; the message lists the
                accepted names.
        """
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(
                f"a status must be a GroupCallStatus, an int or a str, got {type(value).__name__}"
            )
        if isinstance(value, str):
            text = value.strip()
            key = text.lower().replace("-", "_")
            if _NUMBER.fullmatch(text):
                value = int(text)
            elif key in _STATUS_NAMES:
                return _STATUS_NAMES[key]
            else:
                raise ValueError(f"unknown status {text!r}: {_ACCEPTED}")
        member = _STATUS_NUMBERS.get(int(value))
        if member is None:
            raise ValueError(f"{int(value)} is not a documented status: {_ACCEPTED}")
        return member

    @property
    def is_known(self) -> bool:
        """Whether this is one of the documented states."""
        return self._name_ in type(self).__members__


#: Names ``GroupCallStatus.parse`` accepts (lower case, ``_``): the members', and short forms.
_STATUS_NAMES: dict[str, GroupCallStatus] = {
    **{member.name.lower(): member for member in GroupCallStatus},
    "waiting": GroupCallStatus.WAITING_FOR_SUBMISSION,
    "failed": GroupCallStatus.SUBMISSION_FAILED,
    "canceled": GroupCallStatus.CANCELLED,
}
#: The documented states by number.
_STATUS_NUMBERS: dict[int, GroupCallStatus] = {int(m): m for m in GroupCallStatus}
_NUMBER = re.compile(r"[+-]?[0-9]+")
_ACCEPTED = "use 0-6 or a name (" + ", ".join(_STATUS_NAMES) + ")"


@functools.lru_cache(maxsize=UNKNOWN_STATUSES_CACHED)
def _unknown_status(cls: type[GroupCallStatus], value: int) -> GroupCallStatus:
    """A pseudo-member for an undocumented value: equal to its number, named ``UNKNOWN_<n>``.

    Never put in the enum's own value map, which keeps what it holds forever (200,000
    distinct values once kept 77 MB after the client was gone); this small cache lets the
    records of one future state share a member, and forgets the rarest.
    """
    member = int.__new__(cls, value)
    member._name_ = f"UNKNOWN_{value}".replace("-", "MINUS_")
    member._value_ = value
    return member


@attrs.frozen(slots=True)
class GroupCallRecord:
    """One group-call task as the query returns it.

    Attributes (also the constructor's arguments, in this order):
        job_id: Task id (``jobId``), unique within the account.
        task_name: Task name (``taskName``).
        status: Task state (``status``); may be an unknown, future value (see
            ``GroupCallStatus``).
        rate: Call progress as the vendor formats it (``rate``, e.g. ``"87"``).
        num_cnt: Numbers in the task (``numCnt``).
        call_num: Calls made so far (``callNum``).
        success: Successful calls (``success``).
        fail: Failed calls (``fail``).
        created_time: Submission time (``createdTime``): naive, or aware in the client's
            ``server_timezone``.
    """

    #: Task id (``jobId``), unique within the account.
    job_id: int
    #: Task name (``taskName``).
    task_name: str
    #: Task state (``status``); may be an unknown, future value (see ``GroupCallStatus``).
    status: GroupCallStatus
    #: Call progress as the vendor formats it (``rate``, e.g. ``"87"``).
    rate: str
    #: Numbers in the task (``numCnt``).
    num_cnt: int
    #: Calls made so far (``callNum``).
    call_num: int
    #: Successful calls (``success``).
    success: int
    #: Failed calls (``fail``).
    fail: int
    #: Submission time (``createdTime``): naive, or aware in the client's ``server_timezone``.
    created_time: datetime


@attrs.frozen(slots=True)
class Page(Generic[T]):
    """One page of a paged query.

    Attributes (also the constructor's arguments, in this order):
        records: The page's records, in the server's order.
        total: Records in the whole result (every page).
        size: Records per page that were asked for.
        current: This page's number, from 1.
        pages: Pages in the whole result.
    """

    #: The page's records, in the server's order.
    records: tuple[T, ...]
    #: Records in the whole result (every page).
    total: int
    #: Records per page that were asked for.
    size: int
    #: This page's number, from 1.
    current: int
    #: Pages in the whole result.
    pages: int


@attrs.frozen(slots=True)
class UnfinishedPage(Page[T]):
    """A page whose records are made in two steps (internal: never handed out as is).

    Its records hold only what the paging engine reads until ``finish()`` fills in the
    rest, which raises ``MalformedResponseError`` when a record does not fit. A stream
    calls it before it hands out any record of the page (see ``_stream``).
    """

    finish: Callable[[], None] = attrs.field(kw_only=True, eq=False, repr=False)


#: The ``extra`` of a record that carried no undocumented field.
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


def _extra_field() -> Any:
    # Compared, but not hashed (a mapping has no hash) and not in the repr (it can be long).
    return attrs.field(default=NO_EXTRA, hash=False, repr=False, kw_only=True)


@attrs.frozen(slots=True)
class GroupCallDetail:
    """One group-call task in full, as ``GET /voice/group/call/detail/{id}`` returns it.

    Only ``job_id`` is required: the vendor documents the rest "among others" and any of
    them may be null, so each is ``None`` when missing or null. Times without a zone
    (``LocalDateTime``) are naive, or aware in the client's ``server_timezone``.
    Fields the vendor adds later are kept, by their wire names, in ``extra``.

    Attributes (also the constructor's arguments, in this order; each but ``job_id``
    defaults to ``None``, and ``extra``, keyword-only, to an empty mapping):
        job_id: Task id (``jobId``).
        task_name: Task name (``taskName``).
        status: Task state (``status``); may be an unknown, future value (see
            ``GroupCallStatus``).
        rate: Call progress as the vendor formats it (``rate``, e.g. ``"87"``).
        num_cnt: Numbers in the task (``numCnt``).
        call_num: Calls made so far (``callNum``).
        success: Successful calls (``success``).
        fail: Failed calls (``fail``).
        created_time: Submission time (``createdTime``).
        display_num: Caller id shown to the callee (``displayNum``).
        text: Text-to-speech text (``text``).
        charge_len: Charged length (``chargeLen``).
        toseat_num: Calls transferred to a seat (``toseatNum``).
        success_rate: Success rate as the vendor formats it (``successRate``).
        toseat_num_rate: Transfer-to-seat rate as the vendor formats it
            (``toseatNumRate``).
        send_time: Send time (``sendTime``).
        mdf_time: Last modification time (``mdfTime``).
        finish_time: Finish time (``finishTime``).
        app_id: Application id (``appId``).
        source: Where the voice came from (``source``): 1 an uploaded file, 2 a
            re-uploaded voice file, 3 text-to-speech; other values are kept as they are.
        voice_file_id: Voice file id (``voiceFileId``).
        callout_rate: Call-out rate (``calloutRate``).
        key_feedback_num: Calls where the callee pressed a key (``keyFeedbackNum``).
        upload_name: Uploaded file's name (``uploadName``).
        base_file: Base file (``baseFile``).
        call_loss_num: Lost calls (``callLossNum``).
        call_duration: Total call duration, seconds (``callDuration``).
        call_loss_num_rate: Lost-call rate as the vendor formats it
            (``callLossNumRate``).
        country_code: The task's **country code** (``code`` inside ``data``; not the
            envelope's status code).
        max_calls: Most concurrent calls (``maxCalls``).
        loop_count: Times the numbers are called over (``loopCount``).
        lan: Language (``lan``).
        all_call_toseat_num: All calls transferred to a seat (``allCallToseatNum``).
        call_total: Calls in all (``callTotal``).
        acd: Average call duration, seconds (``acd``).
        extra: Undocumented fields, by their wire names, with their JSON values
            (compared, but left out of the hash and the repr).
    """

    #: Task id (``jobId``).
    job_id: int
    #: Task name (``taskName``).
    task_name: str | None = None
    #: Task state (``status``); may be an unknown, future value.
    status: GroupCallStatus | None = None
    #: Call progress as the vendor formats it (``rate``).
    rate: str | None = None
    #: Numbers in the task (``numCnt``).
    num_cnt: int | None = None
    #: Calls made so far (``callNum``).
    call_num: int | None = None
    #: Successful calls (``success``).
    success: int | None = None
    #: Failed calls (``fail``).
    fail: int | None = None
    #: Submission time (``createdTime``).
    created_time: datetime | None = None
    #: Caller id shown to the callee (``displayNum``).
    display_num: str | None = None
    #: Text-to-speech text (``text``).
    text: str | None = None
    #: Charged length (``chargeLen``).
    charge_len: int | None = None
    #: Calls transferred to a seat (``toseatNum``).
    toseat_num: int | None = None
    #: Success rate as the vendor formats it (``successRate``).
    success_rate: str | None = None
    #: Transfer-to-seat rate (``toseatNumRate``).
    toseat_num_rate: str | None = None
    #: Send time (``sendTime``).
    send_time: datetime | None = None
    #: Last modification time (``mdfTime``).
    mdf_time: datetime | None = None
    #: Finish time (``finishTime``).
    finish_time: datetime | None = None
    #: Application id (``appId``).
    app_id: str | None = None
    #: Where the voice came from (``source``): 1 an uploaded file, 2 a re-uploaded voice
    #: file, 3 text-to-speech; other values are kept as they are.
    source: int | None = None
    #: Voice file id (``voiceFileId``).
    voice_file_id: str | None = None
    #: Call-out rate (``calloutRate``).
    callout_rate: int | None = None
    #: Calls where the callee pressed a key (``keyFeedbackNum``).
    key_feedback_num: int | None = None
    #: Uploaded file's name (``uploadName``).
    upload_name: str | None = None
    #: Base file (``baseFile``).
    base_file: str | None = None
    #: Lost calls (``callLossNum``).
    call_loss_num: int | None = None
    #: Total call duration, seconds (``callDuration``).
    call_duration: int | None = None
    #: Lost-call rate (``callLossNumRate``).
    call_loss_num_rate: str | None = None
    #: The task's **country code** (``code`` inside ``data``; not a status code).
    country_code: str | None = None
    #: Most concurrent calls (``maxCalls``).
    max_calls: int | None = None
    #: Times the numbers are called over (``loopCount``).
    loop_count: int | None = None
    #: Language (``lan``).
    lan: str | None = None
    #: All calls transferred to a seat (``allCallToseatNum``).
    all_call_toseat_num: int | None = None
    #: Calls in all (``callTotal``).
    call_total: int | None = None
    #: Average call duration (``acd``), seconds.
    acd: float | None = None
    #: Undocumented fields, by their wire names, with their JSON values.
    extra: Mapping[str, Any] = _extra_field()


@attrs.frozen(slots=True)
class CallRecord:
    """One call a group-call task made (``/voice/recordGroupQuery``, ``/voice/recordGroup``).

    Only ``voice_id`` is required; any other field is ``None`` when missing or null. Times
    are aware: as the vendor sent them (ISO 8601 with an offset), converted to the client's
    ``server_timezone`` when one is set. Amounts are strings, exactly as the vendor wrote
    them (use ``decimal.Decimal`` to compute with them). The four settlement fields come
    only when the quoted currency is not USD. Undocumented fields are kept in ``extra``.

    Attributes (also the constructor's arguments, in this order; each but ``voice_id``
    defaults to ``None``, and ``extra``, keyword-only, to an empty mapping):
        voice_id: Call id (``voiceId``), unique.
        callee: The number called (``callee``).
        display_num: Caller id shown (``displayNum``).
        area_code: The operator's area (``code``; not the envelope's status).
        submit_time: When the call was submitted (``submitTime``); the stream's order
            and window.
        call_time: When it was dialled (``callTime``).
        ringing_time: When it started ringing (``ringingTime``).
        answer_time: When it was answered (``answerTime``); ``None`` for a call never
            answered.
        hangup_time: When it hung up (``hangupTime``).
        call_duration: Call duration, seconds (``callDuration``).
        charged_duration: Charged duration, seconds (``chargedDuration``).
        termination_code: The SIP result (``terminationCode``): ``"200"`` is a call
            established.
        termination_reason: The SIP result in words (``terminationReason``).
        cost: What the call cost (``cost``), in the quoted currency.
        bill_period: Billing increments (``billPeriod``, e.g. ``"20+20"``, ``"60+60"``).
        rate: The rate (``rate``).
        base_cost: The cost in USD (``baseCost``).
        voice_file_id: Voice file id (``voiceFileId``).
        feedback_value: The key the callee pressed (``feedbackValue``); ``"-1"`` for
            none.
        called_info: About the callee (``calledInfo``).
        settle_rate: Settlement rate (``settleRate``), when the currency is not USD.
        quote_exchange: Exchange rate quoted (``quoteExchange``), when the currency is
            not USD.
        settle_pay: Settled amount (``settlePay``), when the currency is not USD.
        currency: The quoted currency (``currency``), when it is not USD.
        extra: Undocumented fields, by their wire names, with their JSON values
            (compared, but left out of the hash and the repr).
    """

    #: Call id (``voiceId``), unique.
    voice_id: str
    #: The number called (``callee``).
    callee: str | None = None
    #: Caller id shown (``displayNum``).
    display_num: str | None = None
    #: The operator's area (``code``).
    area_code: str | None = None
    #: When the call was submitted (``submitTime``); the stream's order and window.
    submit_time: datetime | None = None
    #: When it was dialled (``callTime``).
    call_time: datetime | None = None
    #: When it started ringing (``ringingTime``).
    ringing_time: datetime | None = None
    #: When it was answered (``answerTime``).
    answer_time: datetime | None = None
    #: When it hung up (``hangupTime``).
    hangup_time: datetime | None = None
    #: Call duration, seconds (``callDuration``).
    call_duration: int | None = None
    #: Charged duration, seconds (``chargedDuration``).
    charged_duration: int | None = None
    #: The SIP result (``terminationCode``): ``"200"`` is a call established.
    termination_code: str | None = None
    #: The SIP result in words (``terminationReason``).
    termination_reason: str | None = None
    #: What the call cost (``cost``), in the quoted currency.
    cost: str | None = None
    #: Billing increments (``billPeriod``, e.g. ``"20+20"``, ``"60+60"``).
    bill_period: str | None = None
    #: The rate (``rate``).
    rate: str | None = None
    #: The cost in USD (``baseCost``).
    base_cost: str | None = None
    #: Voice file id (``voiceFileId``).
    voice_file_id: str | None = None
    #: The key the callee pressed (``feedbackValue``); ``"-1"`` for none.
    feedback_value: str | None = None
    #: About the callee (``calledInfo``).
    called_info: str | None = None
    #: Settlement rate (``settleRate``), when the currency is not USD.
    settle_rate: str | None = None
    #: Exchange rate quoted (``quoteExchange``), when the currency is not USD.
    quote_exchange: str | None = None
    #: Settled amount (``settlePay``), when the currency is not USD.
    settle_pay: str | None = None
    #: The quoted currency (``currency``), when it is not USD.
    currency: str | None = None
    #: Undocumented fields, by their wire names, with their JSON values.
    extra: Mapping[str, Any] = _extra_field()
