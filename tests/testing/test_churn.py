"""Churn: tasks move into and out of a status filter, appear and vanish, while a client pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from itnio_async.testing import Churn, ChurnEvent, Dataset, FakeVendor, Pick

from ._support import END, START, body, client, post

CALLING, COMPLETED = 1, 2


def calling_fake(count: int = 400, seed: int = 3) -> FakeVendor:
    return FakeVendor(dataset=Dataset.generate(count, seed=seed))


def calling_ids(fake: FakeVendor) -> list[int]:
    return [t.job_id for t in fake.expected(START, END, statuses=[CALLING])]


def watch(fake: FakeVendor) -> list[set[int]]:
    """Snapshot the filter's job ids before every request, after any churn has moved.

    Callbacks run in the order they were added, so add this after the churn.
    """
    seen: list[set[int]] = [set(calling_ids(fake))]

    @fake.on_request
    def snapshot(n: int, payload: dict[str, Any]) -> None:
        seen.append(set(calling_ids(fake)))

    return seen


async def naive_pages(fake: FakeVendor, size: int, **params: Any) -> list[dict[str, Any]]:
    """Page by offset until ``current >= pages``, trusting every answer (as a naive client)."""
    answers: list[dict[str, Any]] = []
    async with client(fake) as http:
        current = 1
        while True:
            answer = (await post(http, fake, body(current=current, size=size, **params))).json()
            assert answer["code"] == 0, answer
            answers.append(answer["data"])
            if current >= answer["data"]["pages"]:
                return answers
            current += 1


# ----------------------------------------------------------------- balanced


async def test_balanced_churn_keeps_the_filters_total_while_records_move() -> None:
    fake = calling_fake()
    at_start = fake.expected(START, END, statuses=[CALLING])
    churn = Churn(fake, [CALLING], every=2, count=2)
    moments = watch(fake)
    answers = await naive_pages(fake, 5, statusList=[CALLING])
    got = [r["jobId"] for a in answers for r in a["records"]]

    assert 20 < len(at_start) < 50
    assert {a["total"] for a in answers} == {len(at_start)}
    events = churn.events
    assert [(e.request, e.kind, len(e.job_ids)) for e in events[:4]] == [
        (2, "leave", 2),
        (2, "enter", 2),
        (4, "leave", 2),
        (4, "enter", 2),
    ]
    assert len(events) == 2 * (len(answers) // 2)
    # the newest left first; older tasks from outside the filter came in
    assert events[0].job_ids == tuple(t.job_id for t in at_start[:2])
    assert all(fake.dataset.get(i).status == COMPLETED for i in set(churn.moved_out))
    assert all(fake.dataset.get(i).status == CALLING for i in churn.moved_in)
    oldest_start = min(t.created_time for t in at_start)
    assert all(fake.dataset.get(i).created_time < oldest_start for i in churn.moved_in[:2])
    # stayed and ever are what the filter held at every moment and at some moment
    assert churn.stayed(at_start) == set.intersection(*moments)
    assert churn.ever(at_start) == set.union(*moments)
    assert set(got) <= churn.ever(at_start)
    assert churn.stayed(at_start) - set(got)  # a naive offset pager loses records


async def test_random_picks_within_time_bounds_are_seeded() -> None:
    lo, hi = datetime(2024, 2, 1), datetime(2024, 4, 30, 23, 59, 59)

    def moves(seed: int) -> list[ChurnEvent]:
        fake = calling_fake(1_000)
        churn = Churn(
            fake,
            [CALLING],
            at={3, 5},
            count=4,
            leave=Pick("random", start=lo, end=hi),
            enter=Pick("random", end=lo),
            enter_from=[COMPLETED, 4],
            leave_as=5,
            seed=seed,
        )
        before = {t.job_id: t for t in fake.dataset}
        for n in range(1, 7):
            if churn.triggers(n):
                churn.step(n)
        for i in churn.moved_out:
            assert before[i].status == CALLING
            assert lo <= before[i].created_time <= hi
            assert fake.dataset.get(i).status == 5
        for i in churn.moved_in:
            assert before[i].status in (COMPLETED, 4)
            assert before[i].created_time <= lo
        assert len(set(churn.moved_out)) == len(set(churn.moved_in)) == 8
        return churn.events

    first, again, other = moves(1), moves(1), moves(2)
    assert first == again
    assert first != other
    assert [e.request for e in first] == [3, 3, 5, 5]


async def test_the_newest_or_oldest_pick_follows_the_vendors_order() -> None:
    fake = calling_fake()
    at_start = calling_ids(fake)
    churn = Churn(fake, [CALLING], mode="leave", leave="oldest", count=3)
    churn.step()
    assert churn.moved_out == tuple(reversed(at_start[-3:]))
    assert calling_ids(fake) == at_start[:-3]


# ----------------------------------------------------------- one-way modes


async def test_enter_and_leave_churn_move_one_way_and_change_the_total() -> None:
    fake = calling_fake()
    size = len(calling_ids(fake))
    enter = Churn(fake, [CALLING], mode="enter", at={2}, count=3, enter="newest")
    leave = Churn(fake, [CALLING], mode="leave", at={3}, count=5)
    answers = await naive_pages(fake, 100, statusList=[CALLING])
    async with client(fake) as http:
        for _ in range(2):
            answers += [(await post(http, fake, body(statusList=[CALLING]))).json()["data"]]
    assert [a["total"] for a in answers] == [size, size + 3, size - 2]
    assert len(enter.moved_in) == 3
    assert enter.moved_out == leave.moved_in == ()
    assert len(leave.moved_out) == 5
    assert len(calling_ids(fake)) == size - 2


async def test_create_churn_adds_tasks_at_the_windows_head() -> None:
    fake = calling_fake()
    at_start = fake.expected(START, END, statuses=[CALLING])
    heads = iter([datetime(2024, 6, 30, 23, 0), datetime(2024, 6, 30, 23, 30)])
    churn = Churn(fake, [CALLING], mode="create", every=1, count=2, create_at=lambda n: next(heads))
    answers = await naive_pages(fake, 100, statusList=[CALLING])
    assert [a["total"] for a in answers] == [len(at_start) + 2]
    async with client(fake) as http:
        data = (await post(http, fake, body(size=3, statusList=[CALLING]))).json()["data"]
    assert data["total"] == len(at_start) + 4
    created = churn.created
    assert [r["jobId"] for r in data["records"]] == [created[3], created[2], created[1]]
    assert min(created) > max(t.job_id for t in fake.dataset if t.job_id not in created)
    assert churn.stayed(at_start) == {t.job_id for t in at_start}
    assert churn.ever(at_start) == {t.job_id for t in at_start} | set(created)


async def test_create_churn_without_statuses_makes_waiting_tasks_at_the_servers_now() -> None:
    fake = FakeVendor(
        dataset=Dataset.generate(20, seed=1), clock=lambda: datetime(2024, 6, 30).timestamp()
    )
    churn = Churn(fake, mode="create", at={1}, count=1)
    answers = await naive_pages(fake, 100)
    (new,) = churn.created
    assert answers[0]["total"] == 21
    assert answers[0]["records"][0]["jobId"] == new
    assert fake.dataset.get(new).status == 0
    assert fake.dataset.get(new).created_time == fake.now()


async def test_remove_churn_deletes_picked_tasks() -> None:
    fake = calling_fake()
    at_start = fake.expected(START, END, statuses=[CALLING])
    churn = Churn(fake, [CALLING], mode="remove", every=3, count=1, leave="oldest")
    answers = await naive_pages(fake, 4, statusList=[CALLING])
    totals = [a["total"] for a in answers]
    assert totals[:4] == [len(at_start)] * 2 + [len(at_start) - 1] * 2
    assert all(i not in fake.dataset for i in churn.removed)
    assert churn.removed[0] == at_start[-1].job_id
    assert churn.stayed(at_start) == {t.job_id for t in at_start} - set(churn.removed)


async def test_several_modes_per_event_run_in_order_and_stop_ends_them() -> None:
    fake = calling_fake()
    size = len(calling_ids(fake))
    churn = Churn(
        fake,
        [CALLING],
        mode=["balanced", "create", "remove"],
        every=1,
        count=1,
        create_at=datetime(2024, 6, 30, 23, 59),
    )
    async with client(fake) as http:
        first = (await post(http, fake, body(statusList=[CALLING]))).json()["data"]
        churn.stop()
        second = (await post(http, fake, body(statusList=[CALLING]))).json()["data"]
    assert [e.kind for e in churn.events] == ["leave", "enter", "create", "remove"]
    assert churn.removed == churn.created  # the newest is the one just created
    assert first["total"] == second["total"] == size
    assert len(churn.events) == 4
    assert churn.step(9)[0].request == 9  # step still works after stop


async def test_a_balanced_event_moves_no_more_out_than_can_move_in() -> None:
    fake = calling_fake(200)
    inside = calling_ids(fake)
    outside = sorted((t for t in fake.dataset if t.status != CALLING), key=lambda t: t.sort_key)
    oldest_two = Pick("oldest", end=outside[1].created_time)
    can_enter = [t for t in outside if t.created_time <= outside[1].created_time]
    churn = Churn(fake, [CALLING], count=len(inside), enter=oldest_two)
    churn.step()
    assert 2 <= len(can_enter) < len(inside)
    assert churn.moved_in == tuple(t.job_id for t in can_enter)
    assert churn.moved_out == tuple(inside[: len(can_enter)])
    assert len(calling_ids(fake)) == len(inside)
    nothing = Churn(fake, [CALLING], enter_from=[], mode="enter")
    assert nothing.step() == []


async def test_a_random_pick_of_more_than_there_are_takes_each_once() -> None:
    fake = calling_fake(40)
    inside = calling_ids(fake)
    churn = Churn(fake, [CALLING], mode="leave", leave="random", count=len(inside) + 5, seed=9)
    churn.step()
    assert sorted(churn.moved_out) == sorted(inside)
    assert calling_ids(fake) == []


def test_churn_refuses_nonsense() -> None:
    fake = calling_fake(10)
    with pytest.raises(ValueError, match="mode"):
        Churn(fake, [CALLING], mode="shuffle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="statuses"):
        Churn(fake)
    with pytest.raises(ValueError, match="count"):
        Churn(fake, [CALLING], count=0)
    with pytest.raises(ValueError, match="every"):
        Churn(fake, [CALLING], every=0)
    with pytest.raises(ValueError, match="leave_as"):
        Churn(fake, [CALLING], leave_as=CALLING)
    with pytest.raises(ValueError, match="enter_as"):
        Churn(fake, [CALLING], enter_as=COMPLETED)
    with pytest.raises(ValueError, match="enter_from"):
        Churn(fake, [CALLING], enter_from=[CALLING, COMPLETED])
    with pytest.raises(ValueError, match="which"):
        Pick("middle")  # type: ignore[arg-type]
    assert Pick(start=datetime(2024, 1, 1, 0, 0, 0, 500)).start == datetime(2024, 1, 1)
