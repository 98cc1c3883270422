"""The fake vendor's call records: :class:`FakeCall` and the :class:`CallLog` that holds them.

A call belongs to a task (``job_id``); :func:`call_account` makes tasks and their calls
together, so that each task's ``callNum`` (and ``success``/``fail``) matches the calls
the log holds for it. Times are kept aware; the log orders calls by ``submitTime``
(whole seconds), newest first, ties broken by ``voiceId`` descending, and a window
bounds ``submitTime`` at both ends, as the fake serves ``/voice/recordGroupQuery``.
"""

from __future__ import annotations

import functools
import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

import attrs

from . import _rng
from ._dataset import Dataset, FakeTask, Order

__all__ = ["CallLog", "FakeCall", "call_account"]

_SECOND: Final = timedelta(seconds=1)
#: Wire forms of calls kept formatted (a benchmark's whole window).
_WIRE_CACHE: Final = 50_000
_S_CALL: Final = 3_000  # hash stream of a call's fields
_S_TASK: Final = 3_001  # hash stream of call_account's tasks
_REASONS: Final = {
    "200": "OK",
    "486": "Busy Here",
    "480": "Temporarily Unavailable",
    "404": "Not Found",
    "487": "Request Terminated",
}
_FAILED_CODES: Final = ("486", "480", "404", "487")
_AREAS: Final = ("86", "63", "62", "84", "91", "55", "52")
_CURRENCIES: Final = (None, None, None, "CNY", "EUR")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("call times must be aware (the wire carries an offset)")
    return value.astimezone(UTC).replace(microsecond=0)


@attrs.frozen
class FakeCall:
    """One call a task made, as the vendor stores it (times aware, whole seconds).

    ``to_wire`` gives the ``/voice/recordGroupQuery`` record: ``terminationReason`` is
    derived from ``termination_code``, and a ``currency`` adds the four settlement
    fields (``settleRate`` ``"0.13"``, ``quoteExchange`` ``"7.1"``, ``settlePay`` the
    ``cost``).

    Attributes (also the constructor's arguments, in this order):
        voice_id: Call id (``voiceId``); unique within a :class:`CallLog`.
        job_id: The task that made the call.
        submit_time: When it was submitted (``submitTime``): aware, kept in UTC and cut
            to whole seconds; a naive time raises ``ValueError``.
        callee: The number called (``callee``). Default ``"8613800000000"``.
        display_num: Caller id shown (``displayNum``). Default ``"100200"``.
        area_code: The operator's area (``code``). Default ``"86"``.
        dial_after: Seconds from submission to dialling (``callTime``), or ``None``:
            never reached (null on the wire). Default ``1``.
        ring_after: Likewise to ringing (``ringingTime``); ``None`` as for a call that
            failed before it rang. Default ``3``.
        answer_after: Likewise to the answer (``answerTime``). Default ``8``.
        hangup_after: Likewise to the hang-up (``hangupTime``). Default ``30``.
        call_duration: Seconds talked (``callDuration``). Default ``22``.
        charged_duration: Seconds charged (``chargedDuration``). Default ``40``.
        termination_code: The SIP result (``terminationCode``); ``"200"`` is
            established. Default ``"200"``.
        cost: Amount (``cost``). Default ``"0.0120"``.
        bill_period: Billing increments (``billPeriod``). Default ``"20+20"``.
        rate: The rate (``rate``). Default ``"0.0180"``.
        base_cost: The cost in USD (``baseCost``). Default ``"0.0120"``.
        voice_file_id: Voice file id (``voiceFileId``). Default ``"vf-1"``.
        feedback_value: The key pressed (``feedbackValue``). Default ``"-1"``: none.
        called_info: About the callee (``calledInfo``). Default ``""``.
        currency: The quoted currency (``currency``). Default ``None``: USD, and no
            settlement fields.
    """

    voice_id: str
    job_id: int
    submit_time: datetime = attrs.field(converter=_utc)
    callee: str = "8613800000000"
    display_num: str = "100200"
    area_code: str = "86"
    #: Seconds from submission to dialling, ringing, answer and hang-up (``None``:
    #: never reached, as for a call that failed before it rang).
    dial_after: int | None = 1
    ring_after: int | None = 3
    answer_after: int | None = 8
    hangup_after: int | None = 30
    call_duration: int = 22
    charged_duration: int = 40
    termination_code: str = "200"
    cost: str = "0.0120"
    bill_period: str = "20+20"
    rate: str = "0.0180"
    base_cost: str = "0.0120"
    voice_file_id: str = "vf-1"
    feedback_value: str = "-1"
    called_info: str = ""
    currency: str | None = None

    @property
    def sort_key(self) -> tuple[datetime, str]:
        """``(submit second in UTC, voice id)``: the fake orders by this, descending."""
        return (self.submit_time, self.voice_id)

    @property
    def established(self) -> bool:
        """Whether the call connected (SIP 200)."""
        return self.termination_code == "200"

    def to_wire(self, tz: tzinfo = UTC) -> dict[str, Any]:
        """The record exactly as the vendor's JSON carries it, its times in ``tz``
        (a new dict each time; the fake serves a cached one, see ``wire_cached``)."""
        return dict(_wire(self, tz))

    def _to_wire(self, tz: tzinfo) -> dict[str, Any]:

        def at(after: int | None) -> str | None:
            if after is None:
                return None
            return (self.submit_time + timedelta(seconds=after)).astimezone(tz).isoformat()

        record: dict[str, Any] = {
            "voiceId": self.voice_id,
            "callee": self.callee,
            "displayNum": self.display_num,
            "code": self.area_code,
            "submitTime": self.submit_time.astimezone(tz).isoformat(),
            "callTime": at(self.dial_after),
            "ringingTime": at(self.ring_after),
            "answerTime": at(self.answer_after),
            "hangupTime": at(self.hangup_after),
            "callDuration": self.call_duration,
            "chargedDuration": self.charged_duration,
            "terminationCode": self.termination_code,
            "terminationReason": _REASONS.get(self.termination_code, "Unknown"),
            "cost": self.cost,
            "billPeriod": self.bill_period,
            "rate": self.rate,
            "baseCost": self.base_cost,
            "voiceFileId": self.voice_file_id,
            "feedbackValue": self.feedback_value,
            "calledInfo": self.called_info,
        }
        if self.currency is not None:
            record |= {
                "settleRate": "0.13",
                "quoteExchange": "7.1",
                "settlePay": self.cost,
                "currency": self.currency,
            }
        return record


def make_call(seed: int, job_id: int, index: int, submitted: datetime, *, ok: bool) -> FakeCall:
    """A realistic call number ``index`` of task ``job_id``, fixed by ``seed``."""
    draw = _rng.draw(_rng.stream_key(seed, _S_CALL), job_id * 1_000_003 + index)
    talk = 5 + draw % 120 if ok else 0
    period = 20 if draw & 1 else 60
    charged = -(-talk // period) * period if talk else 0
    cost = f"{charged * 0.0003:.4f}"
    return FakeCall(
        voice_id=f"{job_id}{index:07d}",
        job_id=job_id,
        submit_time=submitted,
        callee=f"{_AREAS[(draw >> 8) % len(_AREAS)]}{(draw >> 16) % 10**10:010d}",
        area_code=_AREAS[(draw >> 8) % len(_AREAS)],
        dial_after=1,
        ring_after=3 if ok or draw & 2 else None,
        answer_after=3 + (draw >> 40) % 10 if ok else None,
        hangup_after=(3 + (draw >> 40) % 10 + talk) if ok else 5,
        call_duration=talk,
        charged_duration=charged,
        termination_code="200" if ok else _FAILED_CODES[(draw >> 24) % len(_FAILED_CODES)],
        cost=cost,
        bill_period=f"{period}+{period}",
        base_cost=cost,
        voice_file_id=f"vf-{job_id}",
        feedback_value="-1" if (draw >> 32) % 4 else str((draw >> 34) % 10),
        currency=_CURRENCIES[(draw >> 48) % len(_CURRENCIES)],
    )


@functools.lru_cache(maxsize=_WIRE_CACHE)
def _wire(call: FakeCall, tz: tzinfo) -> dict[str, Any]:
    # Formatting five times is most of a page's cost to the fake: a benchmark's pages are
    # served from here. Never mutated (``to_wire`` hands out copies).
    return call._to_wire(tz)


def wire_cached(call: FakeCall, tz: tzinfo) -> dict[str, Any]:
    """``call.to_wire(tz)`` from a bounded cache, not to be mutated (the fake's pages)."""
    return _wire(call, tz)


class CallLog:
    """The calls a :class:`~itnio_async.testing.FakeVendor` serves, kept in the order it
    serves them. Mutable (:meth:`add`, :meth:`remove`) and thread-safe.

    Args:
        calls: the calls to hold (:class:`FakeCall`), in any order (default none).

    Raises:
        ValueError: a voice id given twice.
    """

    def __init__(self, calls: Iterable[FakeCall] = ()) -> None:
        self._lock = threading.RLock()
        items = sorted(calls, key=lambda call: call.sort_key)
        self._calls: list[FakeCall] = items
        self._keys: list[tuple[datetime, str]] = [call.sort_key for call in items]
        self._by_id: dict[str, FakeCall] = {}
        self._per_job: Counter[int] = Counter()
        # Calls each task was ever given: never lowered by a removal, so that a new call's
        # voice id is never one a client has already seen (see ``next_index``).
        self._issued: Counter[int] = Counter()
        for call in items:
            if call.voice_id in self._by_id:
                raise ValueError(f"duplicate voiceId {call.voice_id}")
            self._by_id[call.voice_id] = call
            self._per_job[call.job_id] += 1
            self._issued[call.job_id] += 1

    @classmethod
    def for_tasks(cls, tasks: Iterable[FakeTask], *, seed: int = 0, tz: tzinfo = UTC) -> CallLog:
        """A log of exactly ``task.call_num`` calls for each of ``tasks``.

        The first ``task.success`` of a task's calls are connected (SIP 200), the rest
        fail; they are submitted from one second after its ``created_time`` (naive,
        read in ``tz``) on, three to a second. Voice ids are the job id followed by
        the call's number in seven digits.

        Args:
            tasks: the tasks (:class:`FakeTask`) whose calls to make.
            seed: fixes the calls' numbers, durations, codes and currencies (default
                ``0``).
            tz: the zone ``created_time`` is read in (default UTC).

        Returns:
            A new ``CallLog``.

        Raises:
            ValueError: two tasks with calls share a job id (their voice ids collide).
        """
        calls: list[FakeCall] = []
        for task in tasks:
            created = task.created_time.replace(tzinfo=tz)
            for index in range(task.call_num):
                submitted = created + timedelta(seconds=1 + index // 3)
                calls.append(
                    make_call(seed, task.job_id, index, submitted, ok=index < task.success)
                )
        return cls(calls)

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def get(self, voice_id: str) -> FakeCall | None:
        """The call whose ``voice_id`` is ``voice_id``, or ``None`` if the log holds none."""
        with self._lock:
            return self._by_id.get(voice_id)

    def count_for(self, job_id: int) -> int:
        """How many calls task ``job_id`` has."""
        with self._lock:
            return self._per_job[job_id]

    def next_index(self, job_id: int) -> int:
        """The number a new call of task ``job_id`` takes: how many it was ever given,
        removed ones included, so a voice id is never reused."""
        with self._lock:
            return self._issued[job_id]

    def for_job(self, job_id: int) -> list[FakeCall]:
        """Task ``job_id``'s calls, newest first."""
        with self._lock:
            return [call for call in reversed(self._calls) if call.job_id == job_id]

    def add(self, calls: Iterable[FakeCall]) -> None:
        """Store more calls (``ValueError`` for a voice id already held)."""
        with self._lock:
            for call in calls:
                if call.voice_id in self._by_id:
                    raise ValueError(f"duplicate voiceId {call.voice_id}")
                index = bisect_left(self._keys, call.sort_key)
                self._keys.insert(index, call.sort_key)
                self._calls.insert(index, call)
                self._by_id[call.voice_id] = call
                self._per_job[call.job_id] += 1
                self._issued[call.job_id] += 1

    def remove(self, voice_ids: Iterable[str]) -> list[FakeCall]:
        """Delete the calls ``voice_ids``, all or none.

        Returns:
            The calls deleted, in the order of ``voice_ids``.

        Raises:
            KeyError: an unknown voice id (or one given twice); nothing is deleted.
        """
        with self._lock:
            wanted = list(voice_ids)
            unknown = [v for v in wanted if v not in self._by_id]
            if unknown or len(set(wanted)) != len(wanted):
                raise KeyError(unknown[0] if unknown else "a voice id given twice")
            gone = []
            for voice_id in wanted:
                call = self._by_id.pop(voice_id)
                gone.append(call)
                index = bisect_left(self._keys, call.sort_key)
                del self._keys[index], self._calls[index]
                self._per_job[call.job_id] -= 1
            return gone

    def _bounds(self, start: datetime, end: datetime, end_exclusive: bool) -> tuple[int, int]:
        lo, hi = _utc(start), _utc(end)
        first = bisect_left(self._keys, (lo, ""))
        last = bisect_left(self._keys, (hi if end_exclusive else hi + _SECOND, ""))
        return first, max(first, last)

    def _window(self, start: datetime, end: datetime, end_exclusive: bool) -> list[FakeCall]:
        first, last = self._bounds(start, end, end_exclusive)
        return self._calls[first:last]

    def select(
        self,
        start: datetime,
        end: datetime,
        *,
        end_exclusive: bool = False,
        order: Order = "newest_first",
    ) -> list[FakeCall]:
        """Every call with ``start <= submitTime <= end``, in ``order``.

        Args:
            start: window start, inclusive; aware (cut to whole seconds).
            end: window end, aware; inclusive to its whole second.
            end_exclusive: ``submitTime < end`` instead (default ``False``).
            order: ``"newest_first"`` (default; ``submitTime``, then ``voiceId``,
                descending) or ``"oldest_first"``.

        Returns:
            A new list of the calls (:class:`FakeCall`).

        Raises:
            ValueError: a naive ``start`` or ``end``, or another ``order``.
        """
        _check_order(order)
        with self._lock:
            window = self._window(start, end, end_exclusive)
        return window[::-1] if order == "newest_first" else list(window)

    def page(
        self,
        start: datetime,
        end: datetime,
        page: int,
        size: int,
        *,
        end_exclusive: bool = False,
        order: Order = "newest_first",
    ) -> tuple[int, list[FakeCall]]:
        """``(total, calls)``: the window's total, and page ``page`` of ``size`` of it.

        Offset paging over :meth:`select`'s calls: calls ``(page - 1) * size`` onwards
        in ``order``; a page past the end is empty but keeps the total.

        Args:
            start: window start, inclusive; aware (cut to whole seconds).
            end: window end, aware; inclusive to its whole second.
            page: the page's number, from 1.
            size: calls per page, from 1.
            end_exclusive: ``submitTime < end`` instead (default ``False``).
            order: ``"newest_first"`` (default) or ``"oldest_first"``.

        Raises:
            ValueError: a naive ``start`` or ``end``, ``page`` or ``size`` below 1, or
                another ``order``.
        """
        if page.__class__ is not int or page < 1:
            raise ValueError(f"page must be an int >= 1, got {page!r}")
        if size.__class__ is not int or size < 1:
            raise ValueError(f"size must be an int >= 1, got {size!r}")
        _check_order(order)
        # Only the page is copied: a window of many calls is not, on every request.
        with self._lock:
            first, last = self._bounds(start, end, end_exclusive)
            total = last - first
            skip = (page - 1) * size
            if order == "newest_first":
                top = last - skip
                chunk = self._calls[max(first, top - size) : max(first, top)][::-1]
            else:
                chunk = self._calls[first + skip : min(last, first + skip + size)]
        return total, chunk


def _check_order(order: object) -> None:
    if order not in ("newest_first", "oldest_first"):
        raise ValueError(f"order must be 'newest_first' or 'oldest_first', got {order!r}")


def call_account(
    tasks: int,
    *,
    seed: int = 0,
    start: datetime,
    end: datetime,
    calls_per_task: tuple[int, int] = (0, 40),
    tz: tzinfo = UTC,
    first_job_id: int = 6_000_000,
) -> tuple[Dataset, CallLog]:
    """``tasks`` group-call tasks created in ``[start, end)`` (naive, in ``tz``) and their
    calls, fixed by ``seed``: each task's ``callNum`` is drawn from ``calls_per_task``
    (inclusive) and matches its calls, ``success`` of them connected (SIP 200).

    The tasks are completed (status 2, ``rate`` ``"100"``, ``numCnt == callNum``), of
    application 1, created evenly spread over the window, with 40 to 95% of their
    calls successful (rounded down); their calls are :meth:`CallLog.for_tasks`'s.

    Args:
        tasks: how many tasks, ``>= 0``.
        seed: fixes the tasks and their calls (default ``0``).
        start: the first task's creation time, naive (in ``tz``).
        end: the tasks are created before it; after ``start``.
        calls_per_task: ``(low, high)``, the inclusive range each task's call count is
            drawn from (default ``(0, 40)``).
        tz: the zone of ``start``, ``end`` and the tasks' ``created_time`` (default UTC).
        first_job_id: the first task's job id; the others follow it by one
            (default ``6_000_000``).

    Returns:
        ``(dataset, calls)``: a :class:`Dataset` of the tasks and the :class:`CallLog`
        of their calls, to hand to ``FakeVendor(dataset=..., calls=...)``.

    Raises:
        ValueError: ``tasks`` below 0, ``end`` not after ``start``, or
            ``calls_per_task`` not ``(low, high)`` with ``0 <= low <= high``.
    """
    if tasks < 0:
        raise ValueError("tasks must be >= 0")
    if end <= start:
        raise ValueError("end must be after start")
    low, high = calls_per_task
    if not 0 <= low <= high:
        raise ValueError("calls_per_task must be (low, high) with 0 <= low <= high")
    key = _rng.stream_key(seed, _S_TASK)
    span = int((end - start).total_seconds())
    made: list[FakeTask] = []
    for i in range(tasks):
        draw = _rng.draw(key, i)
        created = start + timedelta(seconds=span * i // max(1, tasks))
        calls = low + draw % (high - low + 1)
        success = calls * (40 + (draw >> 20) % 56) // 100
        made.append(
            FakeTask(
                job_id=first_job_id + i,
                task_name=f"calls {first_job_id + i}",
                status=2,
                rate="100",
                num_cnt=calls,
                call_num=calls,
                success=success,
                fail=calls - success,
                created_time=created,
                app_id=1,
            )
        )
    return Dataset(made), CallLog.for_tasks(made, seed=seed, tz=tz)
