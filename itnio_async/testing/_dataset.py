"""The fake vendor's data: :class:`FakeTask` records and the :class:`Dataset` that holds them.

A dataset is either an explicit list of tasks (``Dataset(tasks)``) or a *generated*
one (``Dataset.generate(count, seed=...)``). A generated dataset stores no tasks at
all: task ``i`` (in creation order) is computed on demand from ``(seed, i)`` by a
cheap hash, its creation time is monotone in ``i`` and its job id strictly
increasing in ``i``, so a time window maps to an index range by binary search and
a million tasks cost a few hundred bytes.

Mutations (new tasks, status changes, removals) *overlay* that immutable base:
changed or removed base tasks are masked out of it by index, and every explicit,
inserted or changed task lives in a small sorted overlay list. A query merges the
two by the vendor's order, newest first: ``createdTime`` descending, ties broken
by ``jobId`` descending.

Time windows are inclusive at both ends: a task matches when
``strTime <= createdTime <= endTime``. Times are naive ``datetime`` values in whole
seconds (the vendor's ``LocalDateTime`` has no zone and no fraction). For servers
that differ, a query can instead end before ``endTime`` (``end_exclusive``) and a
page or selection can be read oldest first (:data:`Order`).
"""

from __future__ import annotations

import functools
import heapq
import threading
from array import array
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import attrs

from . import _rng
from ._wire import format_wire_time, from_seconds, parse_wire_time, to_seconds, to_seconds_ceil

__all__ = ["Dataset", "FakeTask", "Order"]

#: The order records are served in: the vendor's ``"newest_first"`` (``createdTime``
#: desc, then ``jobId`` desc) or its exact reverse, ``"oldest_first"``.
Order = Literal["newest_first", "oldest_first"]
_ORDERS: Final = ("newest_first", "oldest_first")

#: Task status values the vendor documents (others may appear in future).
STATUS_WAITING: Final = 0
STATUS_CALLING: Final = 1
STATUS_COMPLETED: Final = 2
STATUS_FAILED: Final = 3
STATUS_CANCELLED: Final = 4
STATUS_SUSPENDED: Final = 5
STATUS_SUBMITTING: Final = 6

#: Percent-weighted status table for generated tasks: index = a roll in 0..99.
#: Most tasks are completed, as on a real account with history.
_STATUS_TABLE: Final[tuple[int, ...]] = (
    (STATUS_COMPLETED,) * 70
    + (STATUS_CALLING,) * 8
    + (STATUS_CANCELLED,) * 6
    + (STATUS_FAILED,) * 5
    + (STATUS_SUSPENDED,) * 4
    + (STATUS_WAITING,) * 4
    + (STATUS_SUBMITTING,) * 3
)

#: Word lists for campaign-like task names (mixed case, so searches must fold case).
_ADJECTIVES: Final = (
    "Spring", "Summer", "Autumn", "Winter", "Flash", "Loyalty", "VIP", "Weekend",
    "Holiday", "Win-back", "Welcome", "Renewal", "Black Friday", "New Year", "Ramadan",
    "Back to School",
)  # fmt: skip
_NOUNS: Final = (
    "promo", "reminder", "survey", "campaign", "offer", "notice", "follow-up", "alert",
    "greeting", "collection",
)  # fmt: skip
_PRODUCTS: Final = (
    "Loan", "Insurance", "Card", "Delivery", "OTP", "Payment", "Subscription", "Order",
    "Appointment", "Account",
)  # fmt: skip
_CITIES: Final = (
    "Jakarta", "Manila", "Lagos", "Mumbai", "Bangkok", "Lima", "Dhaka", "Nairobi", "Hanoi",
    "Karachi",
)  # fmt: skip

#: Month abbreviations, fixed (``%b`` would follow the process locale).
_MONTHS: Final = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip

#: Numbers per task: the low two bits of a draw pick one of these magnitudes.
_SCALES: Final = (10, 100, 1_000, 20_000)

#: Generated job ids start here, as in the vendor's documented example (5000602).
JOB_ID_BASE: Final = 5_000_000

#: Stream numbers of the hash draws for one generated task.
_S_MAIN, _S_COUNTS, _S_NAME, _S_JOB, _S_BURST = range(5)

#: How many base filter results (arrays of base indices) a dataset keeps.
_FILTER_CACHE_SIZE: Final = 16

_MIN_JOB_ID: Final = -(1 << 63)


def _check_order(order: str) -> None:
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {', '.join(_ORDERS)}, not {order!r}")


def _whole_seconds(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"created_time must be a datetime, not {type(value).__name__}")
    if value.tzinfo is not None:
        raise ValueError("created_time must be naive: the vendor's LocalDateTime has no zone")
    return value.replace(microsecond=0)


@attrs.frozen
class FakeTask:
    """One group-call task as the vendor stores it.

    ``created_time`` is a naive datetime, truncated to whole seconds (the vendor
    keeps no fraction); ``app_id`` is the application the task belongs to, used by
    the ``idxAppId`` filter but not sent on the wire.

    Attributes (also the constructor's arguments, in this order):
        job_id:
        task_name:
        status:
        rate:
        num_cnt:
        call_num:
        success:
        fail:
        created_time:
        app_id:  Default ``1``.
    """

    job_id: int
    task_name: str
    status: int
    rate: str
    num_cnt: int
    call_num: int
    success: int
    fail: int
    created_time: datetime = attrs.field(converter=_whole_seconds)
    app_id: int = 1

    @property
    def sort_key(self) -> tuple[int, int]:
        """``(created second, job id)``: the vendor orders by this, descending."""
        return (to_seconds(self.created_time), self.job_id)

    def to_wire(self) -> dict[str, Any]:
        """The record exactly as the vendor's JSON carries it."""
        return {
            "jobId": self.job_id,
            "taskName": self.task_name,
            "status": self.status,
            "rate": self.rate,
            "numCnt": self.num_cnt,
            "callNum": self.call_num,
            "success": self.success,
            "fail": self.fail,
            "createdTime": format_wire_time(self.created_time),
        }

    @classmethod
    def from_wire(cls, record: dict[str, Any], *, app_id: int = 1) -> FakeTask:
        """Build a task from a vendor JSON ``record`` (the inverse of :meth:`to_wire`),
        in application ``app_id`` (default 1; the wire does not carry it)."""
        return cls(
            job_id=int(record["jobId"]),
            task_name=str(record["taskName"]),
            status=int(record["status"]),
            rate=str(record["rate"]),
            num_cnt=int(record["numCnt"]),
            call_num=int(record["callNum"]),
            success=int(record["success"]),
            fail=int(record["fail"]),
            created_time=parse_wire_time(str(record["createdTime"])),
            app_id=app_id,
        )


@attrs.frozen
class Query:
    """A resolved filter: an inclusive window of whole seconds plus optional filters.

    ``statuses`` ``None`` means every status; ``search`` is already case-folded and
    ``None`` when no search applies. An exclusive end is resolved into this
    inclusive form by :meth:`build`.

    Attributes (also the constructor's arguments, in this order):
        lo_sec:
        hi_sec:
        statuses:  Default ``None``.
        app_id:  Default ``None``.
        search:  Default ``None``.
    """

    lo_sec: int
    hi_sec: int
    statuses: frozenset[int] | None = None
    app_id: int | None = None
    search: str | None = None

    @classmethod
    def build(
        cls,
        start: datetime | str,
        end: datetime | str,
        statuses: Iterable[int] | None = None,
        app_id: int | None = None,
        search: str | None = None,
        *,
        end_exclusive: bool = False,
    ) -> Query:
        """Resolve user-facing filter values (as the vendor reads its request body).

        ``start``/``end``: ``datetime``s or wire times; ``statuses``: numbers (``None``
        or empty: all); ``app_id``: one application (``None``: all); ``search``: a
        case-insensitive substring of the task name (``None``: none). ``end_exclusive``
        makes the window ``start <= createdTime < end`` instead of the vendor's inclusive
        ``<= end``.
        """
        start_dt = parse_wire_time(start) if isinstance(start, str) else start
        end_dt = parse_wire_time(end) if isinstance(end, str) else end
        status_set = frozenset(statuses) if statuses is not None else frozenset()
        return cls(
            lo_sec=to_seconds_ceil(start_dt),
            hi_sec=to_seconds_ceil(end_dt) - 1 if end_exclusive else to_seconds(end_dt),
            statuses=status_set or None,
            app_id=app_id,
            search=search.casefold() if search else None,
        )

    @property
    def filtered(self) -> bool:
        """Whether anything beyond the time window restricts the result."""
        return self.statuses is not None or self.app_id is not None or self.search is not None

    def match_fields(self, status: int, app_id: int, name: str | None) -> bool:
        """Whether a task's ``status``, ``app_id`` and task ``name`` pass the non-time
        filters; ``name`` may be ``None`` when no search applies."""
        if self.statuses is not None and status not in self.statuses:
            return False
        if self.app_id is not None and app_id != self.app_id:
            return False
        return self.search is None or (name is not None and self.search in name.casefold())

    def match(self, task: FakeTask) -> bool:
        """Whether ``task`` belongs to the result."""
        second = to_seconds(task.created_time)
        return self.lo_sec <= second <= self.hi_sec and self.match_fields(
            task.status, task.app_id, task.task_name
        )


def _counts(status: int, draw: int) -> tuple[str, int, int, int, int]:
    """Consistent ``(rate, num_cnt, call_num, success, fail)`` for a status and a draw."""
    num_cnt = 1 + (draw >> 2) % _SCALES[draw & 3]
    if status == STATUS_COMPLETED:
        call_num = num_cnt
    elif status in (STATUS_CALLING, STATUS_SUSPENDED, STATUS_CANCELLED):
        call_num = num_cnt * ((draw >> 24) % 100) // 100
    else:  # waiting, submitting, failed, or anything new: no call made yet
        call_num = 0
    success = call_num * (40 + (draw >> 40) % 56) // 100
    return str(call_num * 100 // num_cnt), num_cnt, call_num, success, call_num - success


def _name(draw: int, when: Callable[[], datetime]) -> str:
    """A campaign-like task name drawn from ``draw``, dated around ``when()``.

    ``when`` is called only by the templates that show a date (scans stay cheap).
    """
    adjective = _ADJECTIVES[draw % len(_ADJECTIVES)]
    noun = _NOUNS[(draw >> 8) % len(_NOUNS)]
    product = _PRODUCTS[(draw >> 16) % len(_PRODUCTS)]
    city = _CITIES[(draw >> 24) % len(_CITIES)]
    counter = 1 + (draw >> 32) % 999
    template = (draw >> 48) % 6
    if template == 1:
        return f"{product} {noun} #{counter}"
    if template == 3:
        return f"{product} {noun} {city} wave {counter % 12 + 1}"
    created = when()
    if template == 0:
        return f"{adjective} {noun} {created:%Y-%m-%d}"
    if template == 2:  # the vendor console's default: a time stamp plus three digits
        typed = created - timedelta(seconds=counter % 90)
        return f"{typed:%Y-%m-%d %H:%M:%S}{counter % 1000:03d}"
    if template == 4:
        return f"{adjective.upper()} {product} {created:%m%d}-{counter:03d}"
    return f"{city} {product.lower()} {noun} {_MONTHS[created.month - 1]} {created:%d}"


def make_task(seed: int, job_id: int, created: datetime, status: int, app_id: int) -> FakeTask:
    """A realistic task for a given job id, time and status (used for inserted tasks)."""
    counts_draw = _rng.draw(_rng.stream_key(seed, 100 + _S_COUNTS), job_id)
    name_draw = _rng.draw(_rng.stream_key(seed, 100 + _S_NAME), job_id)
    rate, num_cnt, call_num, success, fail = _counts(status, counts_draw)
    return FakeTask(
        job_id=job_id,
        task_name=_name(name_draw, lambda: created),
        status=status,
        rate=rate,
        num_cnt=num_cnt,
        call_num=call_num,
        success=success,
        fail=fail,
        created_time=created,
        app_id=app_id,
    )


class _Generated:
    """The immutable, lazily computed base of a generated dataset.

    Holds only the parameters; task ``i`` (0-based, creation order) is a pure
    function of them. Invariants the queries rely on: ``second(i)`` is
    non-decreasing and ``job_id(i)`` strictly increasing in ``i``, so ascending
    ``i`` is ascending ``(createdTime, jobId)``.
    """

    __slots__ = ("_burst", "_counts", "_job", "_main", "_names", "app_ids", "count", "span",
                 "start_sec", "task")  # fmt: skip

    def __init__(
        self, count: int, seed: int, start: datetime, end: datetime, app_ids: Sequence[int]
    ) -> None:
        self.count = count
        self.start_sec = to_seconds_ceil(start)
        self.span = max(1, to_seconds(end) - self.start_sec)  # seconds the tasks spread over
        self.app_ids = tuple(app_ids)
        self._main = _rng.stream_key(seed, _S_MAIN)  # time jitter, status, app
        self._counts = _rng.stream_key(seed, _S_COUNTS)  # numbers and progress
        self._names = _rng.stream_key(seed, _S_NAME)  # the task name
        self._job = _rng.stream_key(seed, _S_JOB)  # gaps between job ids
        self._burst = _rng.stream_key(seed, _S_BURST)  # groups of 4 sharing a second
        # Materialised tasks, most recently used kept: a page costs ~1.5 ms to build, and
        # clients page over the same tasks again and again (retries, re-reads, repeats).
        # 32k tasks (a few MB) hold the working set of a benchmark run of 200 pages.
        self.task: Callable[[int], FakeTask] = functools.lru_cache(maxsize=1 << 15)(self._build)

    def _raw_offset(self, i: int) -> int:
        # (i + u) * span / count with u in [0, 1): strictly spread, monotone in i.
        frac = _rng.draw(self._main, i) & 0xFFFF
        return ((i << 16) + frac) * self.span // (self.count << 16)

    def second(self, i: int) -> int:
        """Creation time of task ``i`` in whole seconds since 1970 (naive)."""
        group = i >> 2
        if _rng.draw(self._burst, group) & 3 == 0:  # a burst: 4 tasks submitted together
            i = group << 2
        return self.start_sec + self._raw_offset(i)

    def job_id(self, i: int) -> int:
        """Job id of task ``i``: strictly increasing, with small gaps like a shared sequence."""
        return JOB_ID_BASE + 3 * i + _rng.draw(self._job, i) % 3

    def key(self, i: int) -> tuple[int, int]:
        """The ordering key of task ``i``."""
        return (self.second(i), self.job_id(i))

    def index_of(self, job_id: int) -> int | None:
        """The index of the base task with ``job_id``, if there is one."""
        i = (job_id - JOB_ID_BASE) // 3
        if 0 <= i < self.count and self.job_id(i) == job_id:
            return i
        return None

    def status(self, i: int) -> int:
        """The base status of task ``i``."""
        return _STATUS_TABLE[((_rng.draw(self._main, i) >> 16) & 0xFFFF) % 100]

    def app_id(self, i: int) -> int:
        """The application of task ``i``."""
        return self.app_ids[(_rng.draw(self._main, i) >> 32) % len(self.app_ids)]

    def name(self, i: int) -> str:
        """The name of task ``i``."""
        return _name(_rng.draw(self._names, i), lambda: from_seconds(self.second(i)))

    def matches(self, i: int, query: Query) -> bool:
        """Whether base task ``i`` passes the non-time filters of ``query``."""
        main = _rng.draw(self._main, i)
        status = _STATUS_TABLE[((main >> 16) & 0xFFFF) % 100]
        app_id = self.app_ids[(main >> 32) % len(self.app_ids)]
        name = self.name(i) if query.search is not None else None
        return query.match_fields(status, app_id, name)

    def scan(self, query: Query, lo: int, hi: int) -> array[int]:
        """The indices in ``[lo, hi)`` that pass the non-time filters of ``query``, ascending.

        Equivalent to ``matches`` (the tests check one against the other) with the
        hash inlined: a status or app filter over a million tasks takes about a second.
        """
        found: array[int] = array("q")
        key, table, apps = self._main, _STATUS_TABLE, self.app_ids
        statuses, app_id, search = query.statuses, query.app_id, query.search
        mask, golden, mix1, mix2 = _rng.MASK64, _rng.GOLDEN, _rng.MIX1, _rng.MIX2
        for i in range(lo, hi):
            x = (key + (i + 1) * golden) & mask
            x = ((x ^ (x >> 30)) * mix1) & mask
            x = ((x ^ (x >> 27)) * mix2) & mask
            x ^= x >> 31
            if statuses is not None and table[((x >> 16) & 0xFFFF) % 100] not in statuses:
                continue
            if app_id is not None and apps[(x >> 32) % len(apps)] != app_id:
                continue
            if search is not None and search not in self.name(i).casefold():
                continue
            found.append(i)
        return found

    def _build(self, i: int) -> FakeTask:
        """Materialise task ``i`` (through the ``task`` cache)."""
        status = self.status(i)
        created = from_seconds(self.second(i))
        rate, num_cnt, call_num, success, fail = _counts(status, _rng.draw(self._counts, i))
        return FakeTask(
            job_id=self.job_id(i),
            task_name=_name(_rng.draw(self._names, i), lambda: created),
            status=status,
            rate=rate,
            num_cnt=num_cnt,
            call_num=call_num,
            success=success,
            fail=fail,
            created_time=created,
            app_id=self.app_id(i),
        )

    def first_at_or_after(self, second: int) -> int:
        """The smallest index whose creation second is ``>= second`` (``count`` if none)."""
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if self.second(mid) < second:
                lo = mid + 1
            else:
                hi = mid
        return lo


class _BaseView:
    """The base tasks one query selects: an ascending sequence of base indices
    (a ``range`` or a cached ``array``) minus masked positions, read newest first."""

    __slots__ = ("_gen", "_indices", "_masked_pos", "length")

    def __init__(self, gen: _Generated, indices: Sequence[int], masked_pos: list[int]) -> None:
        self._gen = gen
        self._indices = indices  # ascending base indices that match the query
        self._masked_pos = masked_pos  # ascending positions in _indices to skip
        self.length = len(indices) - len(masked_pos)

    def index_at_rank(self, rank: int) -> int:
        """The base index of the ``rank``-th visible task, counting from the newest (0)."""
        pos = len(self._indices) - 1 - rank
        for masked in reversed(self._masked_pos):  # each skipped slot at or above pushes us down
            if masked >= pos:
                pos -= 1
            else:
                break
        return self._indices[pos]

    def count_above(self, key: tuple[int, int]) -> int:
        """How many visible tasks order strictly before (are newer than) ``key``."""
        lo, hi = 0, len(self._indices)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._gen.key(self._indices[mid]) > key:
                hi = mid
            else:
                lo = mid + 1
        hidden = len(self._masked_pos) - bisect_left(self._masked_pos, lo)
        return len(self._indices) - lo - hidden


class Dataset:
    """The tasks a :class:`~itnio_async.testing.FakeVendor` serves.

    ``Dataset(tasks)`` holds an explicit list; :meth:`generate` builds a lazy one
    of any size. ``len(dataset)`` counts the tasks and iterating yields them in the
    vendor's order (newest first). :meth:`select` gives what a query should return.

    A dataset is mutable (see :meth:`add_new`, :meth:`change_status`, :meth:`remove`)
    and thread-safe; a :class:`FakeVendor` mutates the dataset it was given, so give
    each fake its own.
    """

    def __init__(self, tasks: Iterable[FakeTask] = ()) -> None:
        self._lock = threading.RLock()  # guards every field below (served fakes run in a thread)
        self._gen: _Generated | None = None  # lazy base of a generated dataset, never mutated
        self._seed = 0  # seeds the content of tasks made by add_new
        self._masked: list[int] = []  # sorted base indices hidden (removed or shadowed)
        self._overlay: list[FakeTask] = []  # explicit/new/changed tasks, ascending by sort_key
        self._overlay_keys: list[tuple[int, int]] = []  # sort keys parallel to _overlay
        self._by_id: dict[int, FakeTask] = {}  # overlay tasks by job id
        self._high_water = 0  # the largest job id ever used (ids are never reused)
        self._version = 0  # bumped by every mutation
        # base-index arrays per (filter, index range); the base is immutable, so no invalidation
        self._filter_cache: OrderedDict[tuple[Any, ...], array[int]] = OrderedDict()
        # overlay matches (newest first) per query; cleared by every mutation
        self._overlay_cache: dict[Query, list[FakeTask]] = {}
        self._app_ids: tuple[int, ...] = (1,)  # app ids given to add_new tasks by default
        items = sorted(tasks, key=lambda task: task.sort_key)
        for task in items:
            if task.job_id in self._by_id:
                raise ValueError(f"duplicate jobId {task.job_id}")
            self._by_id[task.job_id] = task
            self._high_water = max(self._high_water, task.job_id)
        self._overlay = items
        self._overlay_keys = [task.sort_key for task in items]
        if items:
            self._app_ids = tuple(sorted({task.app_id for task in items}))

    @classmethod
    def generate(
        cls,
        count: int,
        *,
        seed: int = 0,
        start: datetime = datetime(2024, 1, 1),
        end: datetime = datetime(2024, 7, 1),
        app_ids: Sequence[int] = (1, 2, 3),
    ) -> Dataset:
        """A lazy dataset of ``count`` tasks created in ``[start, end)``, fixed by ``seed``.

        Memory is constant in ``count``. Statuses are weighted (70% completed),
        counts are consistent (``call_num <= num_cnt``, ``success + fail ==
        call_num``, ``rate`` is the call progress in percent), several tasks often
        share a second, and job ids grow with creation time from 5,000,000 upwards.
        Tasks are spread over the applications ``app_ids`` (default 1, 2 and 3).
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        if end <= start:
            raise ValueError("end must be after start")
        if not app_ids:
            raise ValueError("app_ids must not be empty")
        dataset = cls()
        dataset._gen = _Generated(count, seed, start, end, app_ids)
        dataset._seed = seed
        dataset._app_ids = tuple(app_ids)
        dataset._high_water = dataset._gen.job_id(count - 1) if count else JOB_ID_BASE
        return dataset

    def copy(self) -> Dataset:
        """An independent dataset holding the same tasks (mutating one leaves the other).

        Cheap for a generated dataset: the lazy base is shared, the overlay copied.
        Handy for a replica that lags: ``lagging = fake.dataset.copy()``, then mutate
        the fake's dataset only.
        """
        with self._lock:
            twin = Dataset()
            twin._gen = self._gen
            twin._seed = self._seed
            twin._masked = list(self._masked)
            twin._overlay = list(self._overlay)
            twin._overlay_keys = list(self._overlay_keys)
            twin._by_id = dict(self._by_id)
            twin._high_water = self._high_water
            twin._app_ids = self._app_ids
            return twin

    # ----------------------------------------------------------------- reading

    @property
    def version(self) -> int:
        """A counter bumped by every mutation."""
        return self._version

    def __len__(self) -> int:
        with self._lock:
            base = self._gen.count - len(self._masked) if self._gen is not None else 0
            return base + len(self._overlay)

    def __iter__(self) -> Iterator[FakeTask]:
        """Every task, newest first (``createdTime`` desc, then ``jobId`` desc)."""
        return self._iterate(None)

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, int) and self.get(job_id) is not None

    def get(self, job_id: int) -> FakeTask | None:
        """The task with ``job_id``, or ``None``."""
        with self._lock:
            task = self._by_id.get(job_id)
            if task is not None:
                return task
            index = self._base_index(job_id)
            return self._gen.task(index) if index is not None and self._gen is not None else None

    def select(
        self,
        start: datetime | str,
        end: datetime | str,
        *,
        statuses: Iterable[int] | None = None,
        app_id: int | None = None,
        search: str | None = None,
        end_exclusive: bool = False,
        order: Order = "newest_first",
    ) -> list[FakeTask]:
        """Every task a query for this window and filters matches, newest first.

        The window is inclusive: ``start <= created_time <= end`` (``< end`` with
        ``end_exclusive``). ``statuses`` empty or ``None`` means all; ``search`` is a
        case-insensitive substring of the task name; ``app_id`` keeps one
        application's tasks (``None``: all). ``order="oldest_first"`` gives the same
        tasks in the reverse order.
        """
        _check_order(order)
        query = Query.build(start, end, statuses, app_id, search, end_exclusive=end_exclusive)
        found = list(self._iterate(query))
        if order == "oldest_first":
            found.reverse()
        return found

    def _iterate(self, query: Query | None) -> Iterator[FakeTask]:
        # A separate path from page(): a plain merge, so each checks the other in tests.
        with self._lock:
            gen = self._gen
            masked = frozenset(self._masked)
            if query is None:
                overlay = self._overlay[::-1]
                lo, hi = 0, gen.count if gen is not None else 0
            else:
                overlay = list(self._overlay_matches(query))
                lo = gen.first_at_or_after(query.lo_sec) if gen is not None else 0
                hi = gen.first_at_or_after(query.hi_sec + 1) if gen is not None else 0

        def base() -> Iterator[FakeTask]:
            if gen is None:
                return
            for i in range(hi - 1, lo - 1, -1):
                if i not in masked and (query is None or gen.matches(i, query)):
                    yield gen.task(i)

        return heapq.merge(base(), overlay, key=lambda task: task.sort_key, reverse=True)

    def page(
        self, query: Query, current: int, size: int, *, order: Order = "newest_first"
    ) -> tuple[int, list[FakeTask]]:
        """``(total, records)`` of page ``current`` (1-based) of ``size`` for ``query``.

        Offset paging as MyBatis-Plus does it: records ``(current - 1) * size`` onwards
        in the vendor's order (or from the oldest, with ``order="oldest_first"``); a
        page past the end is empty but keeps the total.
        """
        _check_order(order)
        with self._lock:
            view = self._base_view(query)
            overlay = self._overlay_matches(query)  # newest first
            total = (view.length if view is not None else 0) + len(overlay)
            offset = (current - 1) * size
            if offset >= total:
                return total, []
            end = min(offset + size, total)
            if order == "newest_first":
                return total, self._ranks(view, overlay, offset, end)
            records = self._ranks(view, overlay, total - end, total - offset)
            records.reverse()
            return total, records

    def _ranks(
        self, view: _BaseView | None, overlay: list[FakeTask], offset: int, end: int
    ) -> list[FakeTask]:
        """The tasks at newest-first ranks ``offset..end - 1`` of a query's view and overlay."""
        base_count = view.length if view is not None else 0
        if view is None or base_count == 0:
            return overlay[offset:end]
        gen = self._gen
        assert gen is not None
        if not overlay:
            return [gen.task(view.index_at_rank(r)) for r in range(offset, end)]

        def merged_position(j: int) -> int:
            # overlay[j] comes after j overlay tasks and every newer base task
            return j + view.count_above(overlay[j].sort_key)

        lo, hi = 0, len(overlay)  # first overlay task at or after the page start
        while lo < hi:
            mid = (lo + hi) // 2
            if merged_position(mid) < offset:
                lo = mid + 1
            else:
                hi = mid
        j, rank = lo, offset - lo
        next_at = merged_position(j) if j < len(overlay) else -1
        records: list[FakeTask] = []
        for position in range(offset, end):
            if position == next_at:
                records.append(overlay[j])
                j += 1
                next_at = merged_position(j) if j < len(overlay) else -1
            else:
                records.append(gen.task(view.index_at_rank(rank)))
                rank += 1
        return records

    def _base_index(self, job_id: int) -> int | None:
        if self._gen is None:
            return None
        index = self._gen.index_of(job_id)
        if index is None:
            return None
        at = bisect_left(self._masked, index)
        if at < len(self._masked) and self._masked[at] == index:
            return None
        return index

    def _base_view(self, query: Query) -> _BaseView | None:
        gen = self._gen
        if gen is None or gen.count == 0:
            return None
        lo = gen.first_at_or_after(query.lo_sec)
        hi = gen.first_at_or_after(query.hi_sec + 1)
        if lo >= hi:
            return None
        masked = self._masked[bisect_left(self._masked, lo) : bisect_left(self._masked, hi)]
        if not query.filtered:
            return _BaseView(gen, range(lo, hi), [m - lo for m in masked])
        indices = self._filtered_indices(gen, query, lo, hi)
        masked_pos = []
        for m in masked:
            at = bisect_left(indices, m)
            if at < len(indices) and indices[at] == m:
                masked_pos.append(at)
        return _BaseView(gen, indices, masked_pos)

    def _filtered_indices(self, gen: _Generated, query: Query, lo: int, hi: int) -> array[int]:
        key = (query.statuses, query.app_id, query.search, lo, hi)
        cached = self._filter_cache.get(key)
        if cached is not None:
            self._filter_cache.move_to_end(key)
            return cached
        found = gen.scan(query, lo, hi)
        self._filter_cache[key] = found
        if len(self._filter_cache) > _FILTER_CACHE_SIZE:
            self._filter_cache.popitem(last=False)
        return found

    def _overlay_matches(self, query: Query) -> list[FakeTask]:
        cached = self._overlay_cache.get(query)
        if cached is None:
            lo = bisect_left(self._overlay_keys, (query.lo_sec, _MIN_JOB_ID))
            hi = bisect_left(self._overlay_keys, (query.hi_sec + 1, _MIN_JOB_ID))
            cached = [task for task in self._overlay[lo:hi] if query.match(task)]
            cached.reverse()
            self._overlay_cache[query] = cached
        return cached

    # ---------------------------------------------------------------- mutating

    def _touch(self) -> None:
        self._version += 1
        self._overlay_cache.clear()

    def _overlay_add(self, task: FakeTask) -> None:
        key = task.sort_key
        at = bisect_left(self._overlay_keys, key)
        self._overlay_keys.insert(at, key)
        self._overlay.insert(at, task)
        self._by_id[task.job_id] = task
        self._high_water = max(self._high_water, task.job_id)

    def _overlay_drop(self, task: FakeTask) -> None:
        at = bisect_left(self._overlay_keys, task.sort_key)
        del self._overlay_keys[at]
        del self._overlay[at]
        del self._by_id[task.job_id]

    def _resolve(self, job_ids: Iterable[int]) -> list[tuple[int, FakeTask | None, int | None]]:
        found: list[tuple[int, FakeTask | None, int | None]] = []
        for job_id in dict.fromkeys(job_ids):
            task = self._by_id.get(job_id)
            index = None if task is not None else self._base_index(job_id)
            if task is None and index is None:
                raise KeyError(f"no task with jobId {job_id}")
            found.append((job_id, task, index))
        return found

    def insert(self, tasks: Iterable[FakeTask]) -> None:
        """Add explicit tasks; a job id that already exists raises ``ValueError``."""
        with self._lock:
            new = list(tasks)
            seen: set[int] = set()
            for task in new:
                if (
                    task.job_id in seen
                    or task.job_id in self._by_id
                    or self._base_index(task.job_id) is not None
                ):
                    raise ValueError(f"duplicate jobId {task.job_id}")
                seen.add(task.job_id)
            for task in new:
                self._overlay_add(task)
            self._touch()

    def add_new(
        self,
        n: int,
        created_time: datetime,
        *,
        status: int = STATUS_WAITING,
        app_id: int | None = None,
    ) -> list[FakeTask]:
        """Create ``n`` realistic new tasks at ``created_time`` with fresh, increasing job ids.

        New ids are above every id the dataset ever held, like an auto-increment
        column. ``status`` defaults to waiting (0); ``app_id`` defaults to the dataset's
        first application.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            created: list[FakeTask] = []
            for _ in range(n):
                job_id = self._high_water + 1
                task = make_task(
                    self._seed,
                    job_id,
                    created_time,
                    status,
                    self._app_ids[0] if app_id is None else app_id,
                )
                self._overlay_add(task)
                created.append(task)
            self._touch()
            return created

    def change_status(self, job_ids: Iterable[int], status: int) -> list[FakeTask]:
        """Set the ``status`` of the tasks ``job_ids``; an unknown job id raises
        ``KeyError`` (no change). Returns the tasks as they are now."""
        with self._lock:
            changed: list[FakeTask] = []
            for _, task, index in self._resolve(job_ids):
                if task is not None:
                    self._overlay_drop(task)
                else:
                    assert index is not None
                    assert self._gen is not None
                    insort(self._masked, index)
                    task = self._gen.task(index)
                new = attrs.evolve(task, status=status)
                self._overlay_add(new)
                changed.append(new)
            self._touch()
            return changed

    def remove(self, job_ids: Iterable[int]) -> None:
        """Delete the tasks ``job_ids``; an unknown job id raises ``KeyError`` (no change)."""
        with self._lock:
            for _, task, index in self._resolve(job_ids):
                if task is not None:
                    self._overlay_drop(task)
                else:
                    assert index is not None
                    insort(self._masked, index)
            self._touch()
