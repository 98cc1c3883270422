"""Replicas that disagree, on demand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan

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
