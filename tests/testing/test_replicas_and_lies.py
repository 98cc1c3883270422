"""Replicas that disagree and replies that lie, each on demand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan, Lies

from ._support import END, START, body, client, post

HEAD = datetime(2024, 6, 30, 12, 0, 0)


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["jobId"] for r in records]


async def pages(fake: FakeVendor, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``data`` of each request, sent one after the other."""
    async with client(fake) as http:
        answers = [(await post(http, fake, payload)).json() for payload in requests]
    assert all(a["code"] == 0 for a in answers), answers
    return [a["data"] for a in answers]


# ----------------------------------------------------------------- replicas


def lagging_fake(**kwargs: Any) -> FakeVendor:
    """A fake whose one replica lags: it misses the newest task of the window."""
    fake = FakeVendor(dataset=Dataset.generate(30, seed=4), **kwargs)
    fake.replicas = [fake.dataset.copy()]
    fake.insert_tasks(1, created_time=HEAD)
    return fake


async def test_replicas_answer_in_turn_so_the_total_flaps() -> None:
    fake = lagging_fake()
    head = fake.expected(START, END)[0]
    answers = await pages(fake, *[body(size=5) for _ in range(4)])
    assert [a["total"] for a in answers] == [31, 30, 31, 30]
    assert [a["pages"] for a in answers] == [7, 6, 7, 6]
    assert [a["records"][0]["jobId"] == head.job_id for a in answers] == [True, False] * 2
    sixth = fake.expected(START, END)[5].job_id
    assert ids(answers[1]["records"]) == [*ids(answers[0]["records"])[1:], sixth]
    assert [fake.replica_for(n) for n in range(1, 5)] == [0, 1, 0, 1]
    assert fake.expected(START, END)[0] == head  # expected follows the primary dataset


async def test_three_replicas_rotate_and_refused_requests_take_their_turn() -> None:
    fake = FakeVendor(
        dataset=Dataset.generate(10, seed=1),
        replicas=[Dataset.generate(11, seed=1), Dataset.generate(12, seed=1)],
        faults=FaultPlan(by_request={2: Fault.code(-18)}),
    )
    async with client(fake) as http:
        answers = [(await post(http, fake, body())).json() for _ in range(5)]
    assert [a["code"] for a in answers] == [0, -18, 0, 0, 0]
    assert [a["data"]["total"] for a in answers if a["code"] == 0] == [10, 12, 10, 11]


async def test_a_random_replica_order_is_seeded_per_request() -> None:
    async def totals(seed: int) -> list[int]:
        fake = lagging_fake(replica_order="random", seed=seed)
        answers = await pages(fake, *[body() for _ in range(40)])
        assert [a["total"] for a in answers] == [
            31 if fake.replica_for(n) == 0 else 30 for n in range(1, 41)
        ]
        return [a["total"] for a in answers]

    first, again, other = await totals(3), await totals(3), await totals(4)
    assert first == again
    assert first != other
    assert 5 < first.count(30) < 35
    assert first != [31, 30] * 20


def test_replicas_may_be_given_as_task_lists_and_refuse_an_unknown_order() -> None:
    fake = FakeVendor(replicas=[list(Dataset.generate(3, seed=1))])
    assert isinstance(fake.replicas[0], Dataset)
    assert len(fake.replicas[0]) == 3
    with pytest.raises(ValueError, match="replica_order"):
        FakeVendor(replica_order="sticky")  # type: ignore[arg-type]
    assert [FakeVendor().replica_for(n) for n in (1, 2, 3)] == [0, 0, 0]


# --------------------------------------------------------------------- lies


@pytest.fixture
def fake() -> FakeVendor:
    return FakeVendor(dataset=Dataset.generate(30, seed=7))


def truth(fake: FakeVendor) -> list[int]:
    return [t.job_id for t in fake.expected(START, END)]


async def test_a_capped_size_is_served_and_said(fake: FakeVendor) -> None:
    fake.lies = Lies(cap_size=4)
    first, second, small = await pages(
        fake, body(size=10), body(current=2, size=10), body(current=2, size=3)
    )
    assert ids(first["records"]) == truth(fake)[:4]
    assert (first["size"], first["total"], first["pages"], first["current"]) == (4, 30, 8, 1)
    assert ids(second["records"]) == truth(fake)[4:8]  # the offset follows the capped size
    assert ids(small["records"]) == truth(fake)[3:6]  # a smaller size is not touched
    assert small["size"] == 3


async def test_a_fixed_page_answers_page_one_saying_current_one_or_the_page_asked(
    fake: FakeVendor,
) -> None:
    fake.lies = Lies(fixed_page=True)
    (honest,) = await pages(fake, body(current=3, size=5))
    fake.lies = Lies(fixed_page=True, lie_current=True)
    (lying,) = await pages(fake, body(current=3, size=5))
    assert ids(honest["records"]) == ids(lying["records"]) == truth(fake)[:5]
    assert (honest["current"], lying["current"]) == (1, 3)
    assert honest["total"] == lying["total"] == 30


async def test_an_overridden_total_promises_pages_that_come_back_empty(fake: FakeVendor) -> None:
    fake.lies = Lies(total=10**9)
    first, beyond = await pages(fake, body(size=10), body(current=4, size=10))
    assert ids(first["records"]) == truth(fake)[:10]
    assert (first["total"], first["pages"]) == (10**9, 10**8)
    assert beyond["records"] == []
    assert beyond["total"] == 10**9


async def test_an_empty_page_in_the_middle_keeps_the_real_total(fake: FakeVendor) -> None:
    fake.lies = Lies(empty_pages={2})
    answers = await pages(fake, *[body(current=c, size=10) for c in (1, 2, 3)])
    assert [ids(a["records"]) for a in answers] == [truth(fake)[:10], [], truth(fake)[20:]]
    assert [(a["total"], a["pages"], a["current"]) for a in answers] == [
        (30, 3, 1),
        (30, 3, 2),
        (30, 3, 3),
    ]


async def test_a_half_page_in_the_middle_keeps_the_real_total(fake: FakeVendor) -> None:
    fake.lies = Lies(half_pages={2})
    answers = await pages(fake, *[body(current=c, size=7) for c in (1, 2, 3)])
    assert [ids(a["records"]) for a in answers] == [
        truth(fake)[:7],
        truth(fake)[7:10],
        truth(fake)[14:21],
    ]
    assert {a["total"] for a in answers} == {30}
    assert {a["size"] for a in answers} == {7}


async def test_pages_can_disagree_with_the_total(fake: FakeVendor) -> None:
    fake.lies = Lies(pages=1)
    (answer,) = await pages(fake, body(size=10))
    assert (answer["total"], answer["pages"]) == (30, 1)
    assert ids(answer["records"]) == truth(fake)[:10]


async def test_lies_apply_only_to_the_requests_chosen(fake: FakeVendor) -> None:
    fake.lies = Lies(total=0, requests={2, 4})
    answers = await pages(fake, *[body() for _ in range(4)])
    assert [a["total"] for a in answers] == [30, 0, 30, 0]
    fake.stats.reset()
    fake.lies = Lies(empty_pages={1, 2}, when=lambda n, payload: payload["size"] == 5)
    sized = await pages(fake, body(size=5), body(size=6), body(current=2, size=5))
    assert [len(a["records"]) for a in sized] == [0, 6, 0]
    assert Lies(when=lambda n, payload: False) == Lies()  # the predicate is not compared


async def test_lies_combine_and_are_switched_off_with_none(fake: FakeVendor) -> None:
    fake.lies = Lies(cap_size=5, total=12, half_pages={2})
    bent, half = await pages(fake, body(size=10), body(current=2, size=10))
    fake.lies = None
    (straight,) = await pages(fake, body(size=10))
    assert (bent["size"], bent["total"], bent["pages"]) == (5, 12, 3)
    assert ids(half["records"]) == truth(fake)[5:7]
    assert ids(straight["records"]) == truth(fake)[:10]
    assert (straight["total"], straight["pages"]) == (30, 3)


def test_lies_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="cap_size"):
        Lies(cap_size=0)
    with pytest.raises(ValueError, match="fixed_page"):
        Lies(lie_current=True)
    with pytest.raises(ValueError, match="total"):
        Lies(total=-1)
    with pytest.raises(ValueError, match="pages"):
        Lies(pages=-1)
    with pytest.raises(ValueError, match="page numbers"):
        Lies(empty_pages=[0])
    assert Lies(half_pages=[2, 2, 3]).half_pages == frozenset({2, 3})
