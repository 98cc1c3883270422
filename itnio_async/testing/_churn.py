"""Tasks that change while a client pages: :class:`Churn`, :class:`Pick`, :class:`ChurnEvent`.

A :class:`Churn` attaches to a fake (through :meth:`FakeVendor.on_request`) and, before
chosen requests are answered, moves tasks into or out of a status filter, creates
tasks or removes them, recording every move. Offset paging shifts under each move,
so a client that trusts offsets loses or repeats records; the record tells a test
what a correct client must still deliver::

    at_start = fake.expected(START, END, statuses=[CALLING])
    churn = Churn(fake, [CALLING], every=2, count=3)   # 3 leave, 3 older ones enter
    ...                                                # page with statusList=[CALLING]
    assert churn.stayed(at_start) <= got <= churn.ever(at_start)

Everything is deterministic: which requests trigger a move is fixed by ``every`` and
``at``, which tasks move by the :class:`Pick` rules and ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from . import _rng
from ._dataset import STATUS_COMPLETED, STATUS_WAITING, FakeTask, Order, Query

if TYPE_CHECKING:
    from ._vendor import FakeVendor

__all__ = ["Churn", "ChurnEvent", "ChurnKind", "ChurnMode", "Pick", "PickWhich"]

#: What one churn event does: ``"balanced"`` moves ``count`` tasks out of the filter
#: and ``count`` others into it (the filter's total stays the same); ``"leave"`` and
#: ``"enter"`` move one way only; ``"create"`` adds new tasks; ``"remove"`` deletes.
ChurnMode = Literal["balanced", "enter", "leave", "create", "remove"]
#: What one recorded move was.
ChurnKind = Literal["leave", "enter", "create", "remove"]
#: Which of the candidate tasks a :class:`Pick` takes.
PickWhich = Literal["newest", "oldest", "random"]

_MODES: Final = ("balanced", "enter", "leave", "create", "remove")
_KNOWN_STATUSES: Final = frozenset(range(7))  # the vendor's documented status values
_PICK_STREAM: Final = 3_000  # hash streams of the random picks (+0 leaving, +1 entering)


def _optional_time(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(microsecond=0)


@attrs.frozen
class Pick:
    """Which tasks a churn event moves, among those it may move.

    ``which``: the ``"newest"`` (in the vendor's order, ``createdTime`` then
    ``jobId``), the ``"oldest"``, or seeded ``"random"`` ones. ``start`` and ``end``
    (inclusive, either optional) keep only tasks created within them: "newer than"
    and "older than" a given time.
    """

    which: PickWhich = "newest"
    start: datetime | None = attrs.field(default=None, converter=_optional_time)
    end: datetime | None = attrs.field(default=None, converter=_optional_time)

    def __attrs_post_init__(self) -> None:
        if self.which not in ("newest", "oldest", "random"):
            raise ValueError(f"which must be 'newest', 'oldest' or 'random', not {self.which!r}")

    def query(self, statuses: Iterable[int] | None) -> Query:
        """The candidates: tasks in ``statuses`` (``None``: any) created within the bounds."""
        return Query.build(self.start or datetime.min, self.end or datetime.max, statuses)


def _pick(value: Pick | PickWhich) -> Pick:
    return value if isinstance(value, Pick) else Pick(value)


@attrs.frozen
class ChurnEvent:
    """One recorded move: before request ``request`` was answered, ``job_ids`` did ``kind``.

    ``request`` is the arrival number (1-based; 0 for a manual :meth:`Churn.step`).
    """

    request: int
    kind: ChurnKind
    job_ids: tuple[int, ...]


class Churn:
    """Move tasks into and out of a status filter while a client pages; record each move.

    Args:
        fake: the :class:`FakeVendor` whose ``dataset`` changes; the churn registers
            itself with :meth:`FakeVendor.on_request`.
        statuses: the status filter a client pages with (e.g. ``[1]``, calling);
            required by ``"balanced"``, ``"enter"`` and ``"leave"``; for
            ``"create"`` and ``"remove"``, ``None`` means any status.
        mode: one :data:`ChurnMode`, or several done in the given order per event.
        count: tasks each mode moves per event (fewer when fewer can move; a
            balanced event moves as many in as out).
        every: an event before every ``every``-th request (``n % every == 0``).
        at: events before these request numbers too. With neither ``every`` nor
            ``at``, only :meth:`step` moves tasks.
        leave: which tasks leave the filter or are removed (default the newest).
        enter: which tasks enter the filter (default the oldest outside it).
        leave_as: the status a leaving task takes (default 2, completed).
        enter_from: the statuses entering tasks are taken from (default every
            documented status outside ``statuses``).
        enter_as: the status an entering or created task takes (default the first
            of ``statuses``, or 0 without them).
        create_at: the creation time of created tasks: a datetime, or
            ``create_at(n)`` for request ``n`` (default the fake's :meth:`~FakeVendor.now`).
        seed: seeds ``"random"`` picks, with the request number.

    The record (:attr:`events`, :attr:`moved_out`, :attr:`moved_in`, :attr:`created`,
    :attr:`removed`) gives :meth:`stayed` and :meth:`ever`, assuming nothing else
    changes the tasks under the filter.
    """

    def __init__(
        self,
        fake: FakeVendor,
        statuses: Iterable[int] | None = None,
        *,
        mode: ChurnMode | Iterable[ChurnMode] = "balanced",
        count: int = 1,
        every: int | None = None,
        at: Iterable[int] = (),
        leave: Pick | PickWhich = "newest",
        enter: Pick | PickWhich = "oldest",
        leave_as: int = STATUS_COMPLETED,
        enter_from: Iterable[int] | None = None,
        enter_as: int | None = None,
        create_at: datetime | Callable[[int], datetime] | None = None,
        seed: int = 0,
    ) -> None:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
        bad = [m for m in modes if m not in _MODES]
        if bad or not modes:
            raise ValueError(f"mode must be among {', '.join(_MODES)}, not {bad or modes!r}")
        order = tuple(dict.fromkeys(statuses)) if statuses is not None else None
        if not order and {"balanced", "enter", "leave"} & set(modes):
            raise ValueError("statuses are required to move tasks into or out of them")
        if count < 1:
            raise ValueError("count must be >= 1")
        if every is not None and every < 1:
            raise ValueError("every must be >= 1 (or None)")
        self.fake = fake
        self.statuses: frozenset[int] | None = frozenset(order) if order else None
        self.modes: tuple[ChurnMode, ...] = modes
        self.count = count
        self.every = every
        self.at = frozenset(at)
        self.leave = _pick(leave)
        self.enter = _pick(enter)
        self.leave_as = leave_as
        inside = self.statuses or frozenset()
        self.enter_from = (
            frozenset(enter_from) if enter_from is not None else _KNOWN_STATUSES - inside
        )
        self.enter_as = (
            enter_as if enter_as is not None else (order[0] if order else STATUS_WAITING)
        )
        if self.statuses is not None:
            if leave_as in self.statuses:
                raise ValueError("leave_as must be a status outside statuses")
            if self.enter_as not in self.statuses:
                raise ValueError("enter_as must be one of statuses")
            if self.enter_from & self.statuses:
                raise ValueError("enter_from must not overlap statuses")
        self.create_at = create_at
        self.seed = seed
        self.active = True  # False after stop(): requests no longer trigger moves
        #: every move so far, in order
        self.events: list[ChurnEvent] = []
        self._keys = (_rng.stream_key(seed, _PICK_STREAM), _rng.stream_key(seed, _PICK_STREAM + 1))
        fake.on_request(self._on_request)

    # ---------------------------------------------------------------- the record

    def _ids(self, kind: ChurnKind) -> tuple[int, ...]:
        return tuple(i for event in self.events if event.kind == kind for i in event.job_ids)

    @property
    def moved_out(self) -> tuple[int, ...]:
        """Job ids that left the filter, in order (one may appear more than once)."""
        return self._ids("leave")

    @property
    def moved_in(self) -> tuple[int, ...]:
        """Job ids that entered the filter, in order."""
        return self._ids("enter")

    @property
    def created(self) -> tuple[int, ...]:
        """Job ids of the tasks created, in order."""
        return self._ids("create")

    @property
    def removed(self) -> tuple[int, ...]:
        """Job ids of the tasks removed, in order."""
        return self._ids("remove")

    def stayed(self, at_start: Iterable[FakeTask | int]) -> set[int]:
        """The job ids that matched the filter at every moment, given those at the start.

        ``at_start`` is what the filter matched before the first move (e.g.
        ``fake.expected(...)`` taken then). A correct client delivers all of them.
        """
        return _job_ids(at_start) - set(self.moved_out) - set(self.removed)

    def ever(self, at_start: Iterable[FakeTask | int]) -> set[int]:
        """The job ids that matched the filter at some moment: those of ``at_start`` (the
        tasks or job ids matching when the stream began), those moved in and those
        created since. A correct client delivers no others."""
        return _job_ids(at_start) | set(self.moved_in) | set(self.created)

    # ------------------------------------------------------------------ moving

    def stop(self) -> None:
        """Stop moving tasks on requests (the record stays; :meth:`step` still works)."""
        self.active = False

    def triggers(self, n: int) -> bool:
        """Whether request ``n`` triggers an event (while active)."""
        return n in self.at or (self.every is not None and n % self.every == 0)

    def _on_request(self, n: int, body: dict[str, Any]) -> None:
        if self.active and self.triggers(n):
            self.step(n)

    def step(self, n: int = 0) -> list[ChurnEvent]:
        """Do one event now, recorded as before request ``n``; return its moves."""
        done: list[ChurnEvent] = []
        for mode in self.modes:
            if mode == "balanced":
                leaving = self._choose(self.leave, self.statuses, n, 0, self.count)
                entering = self._choose(self.enter, self.enter_from, n, 1, self.count)
                moved = min(len(leaving), len(entering))
                done += self._move(n, "leave", leaving[:moved])
                done += self._move(n, "enter", entering[:moved])
            elif mode == "leave":
                done += self._move(n, "leave", self._choose(self.leave, self.statuses, n, 0))
            elif mode == "enter":
                done += self._move(n, "enter", self._choose(self.enter, self.enter_from, n, 1))
            elif mode == "remove":
                done += self._move(n, "remove", self._choose(self.leave, self.statuses, n, 0))
            else:
                done += self._create(n)
        self.events += done
        return done

    def _choose(
        self, pick: Pick, statuses: frozenset[int] | None, n: int, stream: int, count: int = 0
    ) -> list[int]:
        """Job ids of up to ``count`` (default :attr:`count`) candidates, as ``pick`` says."""
        count = count or self.count
        if statuses is not None and not statuses:
            return []  # an empty Query status set would mean "any status"
        dataset = self.fake.dataset
        query = pick.query(statuses)
        if pick.which != "random":
            order: Order = "newest_first" if pick.which == "newest" else "oldest_first"
            return [task.job_id for task in dataset.page(query, 1, count, order=order)[1]]
        total, _ = dataset.page(query, 1, 1)
        key = _rng.draw(self._keys[stream], n)
        chosen: list[int] = []  # Floyd's sample of min(count, total) distinct ranks
        for j in range(max(0, total - count), total):
            rank = _rng.draw(key, j) % (j + 1)
            chosen.append(j if rank in chosen else rank)
        return [dataset.page(query, rank + 1, 1)[1][0].job_id for rank in chosen]

    def _move(self, n: int, kind: ChurnKind, job_ids: list[int]) -> list[ChurnEvent]:
        if not job_ids:
            return []
        if kind == "remove":
            self.fake.remove_tasks(job_ids)
        else:
            self.fake.change_status(job_ids, self.leave_as if kind == "leave" else self.enter_as)
        return [ChurnEvent(n, kind, tuple(job_ids))]

    def _create(self, n: int) -> list[ChurnEvent]:
        when = self.create_at(n) if callable(self.create_at) else self.create_at
        tasks = self.fake.insert_tasks(self.count, created_time=when, status=self.enter_as)
        return [ChurnEvent(n, "create", tuple(task.job_id for task in tasks))]


def _job_ids(tasks: Iterable[FakeTask | int]) -> set[int]:
    return {task.job_id if isinstance(task, FakeTask) else task for task in tasks}
