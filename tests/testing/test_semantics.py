"""Other server semantics on demand: an exclusive window end, oldest-first order, copies."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itnio_async.testing import Dataset, FakeTask, FakeVendor, Query

from ._support import END, START, body, client, fetch_all, post

T0 = datetime(2024, 3, 1, 12, 0, 0)
HOUR = "2024-03-01 13:00:00"


def task(job_id: int, created: datetime, *, status: int = 2) -> FakeTask:
    return FakeTask(
        job_id=job_id,
        task_name=f"task {job_id}",
        status=status,
        rate="100",
        num_cnt=10,
        call_num=10,
        success=7,
        fail=3,
        created_time=created,
    )


def edges() -> list[FakeTask]:
    return [
        task(1, T0 - timedelta(seconds=1)),
        task(2, T0),
        task(5, T0),
        task(3, T0 + timedelta(hours=1)),
        task(4, T0 + timedelta(hours=1, seconds=1)),
    ]


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["jobId"] for r in records]


# ------------------------------------------------------------- exclusive end


async def test_an_exclusive_end_serves_only_tasks_created_before_end_time() -> None:
    fake = FakeVendor(dataset=edges(), end_exclusive=True)
    window = {"start": "2024-03-01 12:00:00", "end": HOUR}
    async with client(fake) as http:
        answer = (await post(http, fake, body(**window))).json()["data"]
        same_second = (
            await post(http, fake, body(start="2024-03-01 12:00:00", end="2024-03-01 12:00:00"))
        ).json()
        fake.end_exclusive = False
        inclusive = (await post(http, fake, body(**window))).json()["data"]
    assert ids(answer["records"]) == [5, 2]
    assert (answer["total"], answer["pages"]) == (2, 1)
    assert same_second["code"] == 0  # start == end is an empty window, not a bad request
    assert same_second["data"]["records"] == []
    assert same_second["data"]["total"] == 0
    assert ids(inclusive["records"]) == [3, 5, 2]


async def test_expected_follows_an_exclusive_end() -> None:
    fake = FakeVendor(dataset=Dataset.generate(400, seed=5), end_exclusive=True)
    start, end = "2024-02-10 00:00:00", "2024-05-20 00:00:00"
    want = fake.expected(start, end)
    fake.end_exclusive = False
    inclusive = fake.expected(start, end)
    fake.end_exclusive = True
    assert [t.to_wire() for t in want] == [
        t.to_wire() for t in inclusive if t.created_time < datetime(2024, 5, 20)
    ]
    # a task exactly at the end second is left out; one a second earlier is in
    at_end = fake.insert_tasks(1, created_time=datetime(2024, 5, 20))[0]
    before_end = fake.insert_tasks(1, created_time=datetime(2024, 5, 19, 23, 59, 59))[0]
    assert fake.expected(start, end) == [before_end, *want]
    assert fake.dataset.select(start, end)[0] == at_end
    async with client(fake) as http:
        served = await fetch_all(http, fake, 7, start=start, end=end)
    assert served == [t.to_wire() for t in fake.expected(start, end)]


def test_query_build_resolves_an_exclusive_end_to_the_last_second_before_it() -> None:
    assert (
        Query.build(T0, T0 + timedelta(seconds=10)).hi_sec
        == Query.build(T0, T0 + timedelta(seconds=11), end_exclusive=True).hi_sec
    )
    fractional = T0 + timedelta(seconds=10, microseconds=500)
    # created < 12:00:10.0005 holds for 12:00:10 itself
    assert (
        Query.build(T0, fractional, end_exclusive=True).hi_sec
        == Query.build(T0, T0 + timedelta(seconds=10)).hi_sec
    )


# ---------------------------------------------------------------- oldest first


async def test_oldest_first_serves_created_time_then_job_id_ascending() -> None:
    fake = FakeVendor(dataset=edges(), order="oldest_first")
    async with client(fake) as http:
        first = (await post(http, fake, body(size=2))).json()["data"]
        second = (await post(http, fake, body(current=2, size=2))).json()["data"]
        third = (await post(http, fake, body(current=3, size=2))).json()["data"]
        past = (await post(http, fake, body(current=4, size=2))).json()["data"]
    assert [ids(p["records"]) for p in (first, second, third, past)] == [[1, 2], [5, 3], [4], []]
    assert [p["total"] for p in (first, second, third, past)] == [5] * 4
    assert first["pages"] == 3
    assert [t.job_id for t in fake.expected(START, END)] == [1, 2, 5, 3, 4]


async def test_oldest_first_paging_gives_what_expected_promises_with_filters_and_overlay() -> None:
    fake = FakeVendor(dataset=Dataset.generate(500, seed=8), order="oldest_first")
    fake.insert_tasks(3, created_time=datetime(2024, 3, 3), status=1)
    fake.remove_tasks([t.job_id for t in fake.expected(START, END)[10:14]])
    fake.change_status([fake.expected(START, END)[20].job_id], 1)
    want = fake.expected(START, END, statuses=[1, 2])
    assert [t.sort_key for t in want] == sorted(t.sort_key for t in want)
    assert want == fake.dataset.select(START, END, statuses=[1, 2])[::-1]
    async with client(fake) as http:
        for size in (1, 9, 100):
            got = await fetch_all(http, fake, size, statusList=[1, 2])
            assert got == [t.to_wire() for t in want]


async def test_oldest_first_and_an_exclusive_end_combine() -> None:
    fake = FakeVendor(dataset=edges(), order="oldest_first", end_exclusive=True)
    async with client(fake) as http:
        answer = (await post(http, fake, body(start=START, end=HOUR))).json()["data"]
    assert ids(answer["records"]) == [1, 2, 5]
    assert [t.job_id for t in fake.expected(START, HOUR)] == [1, 2, 5]


def test_unknown_orders_are_refused() -> None:
    with pytest.raises(ValueError, match="order"):
        FakeVendor(order="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        Dataset(edges()).select(START, END, order="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        Dataset(edges()).page(Query.build(START, END), 1, 1, order="up")  # type: ignore[arg-type]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Dataset, Query, int]:
    dataset = Dataset.generate(
        draw(st.integers(0, 50)),
        seed=draw(st.integers(0, 3)),
        start=datetime(2024, 1, 1),
        end=datetime(2024, 1, 1, 0, 2),
        app_ids=(1, 2),
    )
    for _ in range(draw(st.integers(0, 5))):
        present = [t.job_id for t in dataset]
        when = datetime(2024, 1, 1) + timedelta(seconds=draw(st.integers(0, 130)))
        if draw(st.booleans()) or not present:
            dataset.add_new(draw(st.integers(1, 3)), when, status=draw(st.integers(0, 6)))
        else:
            dataset.change_status(
                draw(st.lists(st.sampled_from(present), max_size=3)), draw(st.integers(0, 6))
            )
    lo = draw(st.integers(-5, 130))
    query = Query.build(
        datetime(2024, 1, 1) + timedelta(seconds=lo),
        datetime(2024, 1, 1) + timedelta(seconds=lo + draw(st.integers(0, 130))),
        draw(st.one_of(st.none(), st.lists(st.integers(0, 6), max_size=3))),
        end_exclusive=draw(st.booleans()),
    )
    return dataset, query, draw(st.integers(1, 7))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_oldest_first_page_agrees_with_a_brute_force_model(
    scenario: tuple[Dataset, Query, int],
) -> None:
    dataset, query, size = scenario
    model = sorted((t for t in dataset if query.match(t)), key=lambda t: t.sort_key)
    for current in range(1, math.ceil(len(model) / size) + 2):
        total, records = dataset.page(query, current, size, order="oldest_first")
        assert total == len(model)
        assert records == model[(current - 1) * size : current * size]


# ------------------------------------------------------------------- copies


def test_a_copy_holds_the_same_tasks_and_changes_apart() -> None:
    original = Dataset.generate(40, seed=2)
    original.change_status([next(iter(original)).job_id], 6)
    twin = original.copy()
    assert list(twin) == list(original)
    kept = list(original)[3]
    newest = twin.add_new(1, datetime(2024, 6, 30))[0]
    twin.remove([t.job_id for t in list(twin)[5:7]])
    original.change_status([kept.job_id], 4 if kept.status != 4 else 5)
    assert len(twin) == 39
    assert len(original) == 40
    assert newest.job_id in twin
    assert newest.job_id not in original
    assert twin.get(kept.job_id) == kept
    assert original.get(kept.job_id) != kept
    assert original.add_new(1, datetime(2024, 6, 30))[0].job_id == newest.job_id  # own ids
