"""The fake's data: generated and explicit datasets, filters, order, paging, mutations."""

from __future__ import annotations

import math
import time
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itnio_async.testing import Dataset, FakeTask, FakeVendor, Query

from ._support import END, START, body, client, fetch_all, post

T0 = datetime(2024, 3, 1, 12, 0, 0)


def task(
    job_id: int, created: datetime, *, status: int = 2, name: str = "", app_id: int = 1
) -> FakeTask:
    return FakeTask(
        job_id=job_id,
        task_name=name or f"task {job_id}",
        status=status,
        rate="100",
        num_cnt=10,
        call_num=10,
        success=7,
        fail=3,
        created_time=created,
        app_id=app_id,
    )


def wire(tasks: list[FakeTask]) -> list[dict[str, Any]]:
    return [t.to_wire() for t in tasks]


# ------------------------------------------------------------------ generation


def test_a_generated_dataset_is_deterministic_given_its_seed() -> None:
    first = list(Dataset.generate(300, seed=7))
    assert first == list(Dataset.generate(300, seed=7))
    assert first != list(Dataset.generate(300, seed=8))
    # job ids depend on the creation index only, not on the dataset's size
    assert [t.job_id for t in first[-3:]] == [t.job_id for t in Dataset.generate(3, seed=7)]


def test_a_generated_dataset_is_realistic_and_consistent() -> None:
    start, end = datetime(2024, 1, 1), datetime(2024, 1, 2)
    tasks = list(Dataset.generate(5_000, seed=1, start=start, end=end, app_ids=(4, 9)))
    assert len(tasks) == 5_000
    assert all(start <= t.created_time < end for t in tasks)
    keys = [t.sort_key for t in tasks]
    assert keys == sorted(keys, reverse=True)  # newest first
    assert len({t.job_id for t in tasks}) == 5_000
    statuses = Counter(t.status for t in tasks)
    assert set(statuses) == set(range(7))
    assert statuses[2] > 0.6 * len(tasks)  # most are completed
    for t in tasks:
        assert t.num_cnt >= 1
        assert 0 <= t.call_num <= t.num_cnt
        assert t.success + t.fail == t.call_num
        assert t.rate == str(t.call_num * 100 // t.num_cnt)
        assert t.app_id in (4, 9)
        if t.status == 2:
            assert t.rate == "100"
        if t.status in (0, 6):
            assert t.call_num == 0
    per_second = Counter(t.created_time for t in tasks)
    assert max(per_second.values()) >= 4  # tasks often share a second
    names = {t.task_name for t in tasks}
    assert len(names) > 2_000
    assert any(name[:4] == "2024" for name in names)  # the console's default names


def test_a_sparse_generated_dataset_still_has_bursts_in_one_second() -> None:
    tasks = list(Dataset.generate(400, seed=3))  # six months: about one task per 11 hours
    per_second = Counter(t.created_time for t in tasks)
    assert max(per_second.values()) == 4


def test_generate_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="count"):
        Dataset.generate(-1)
    with pytest.raises(ValueError, match="end"):
        Dataset.generate(1, start=datetime(2024, 2, 1), end=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="app_ids"):
        Dataset.generate(1, app_ids=())


def test_an_explicit_dataset_is_served_in_vendor_order() -> None:
    tasks = [
        task(1, T0),
        task(3, T0),
        task(2, T0 + timedelta(seconds=1)),
        task(9, T0 - timedelta(days=1)),
    ]
    ordered = list(Dataset(tasks))
    assert [t.job_id for t in ordered] == [2, 3, 1, 9]
    assert len(Dataset(tasks)) == 4
    assert 3 in Dataset(tasks)
    assert 4 not in Dataset(tasks)
    with pytest.raises(ValueError, match="duplicate"):
        Dataset([task(1, T0), task(1, T0)])


def test_fake_tasks_are_naive_and_whole_seconds() -> None:
    assert task(1, T0.replace(microsecond=999)).created_time == T0
    with pytest.raises(ValueError, match="naive"):
        task(1, datetime(2024, 1, 1, tzinfo=datetime.now().astimezone().tzinfo))
    with pytest.raises(TypeError):
        task(1, "2024-01-01 00:00:00")  # type: ignore[arg-type]


# ------------------------------------------------------- filtering and paging


async def test_paging_through_a_window_gives_exactly_what_expected_promises() -> None:
    fake = FakeVendor(dataset=Dataset.generate(700, seed=5))
    window = {"start": "2024-02-10 00:00:00", "end": "2024-05-20 23:59:59"}
    want = wire(fake.expected("2024-02-10 00:00:00", "2024-05-20 23:59:59"))
    assert 300 < len(want) < 500
    async with client(fake) as http:
        for size in (1, 7, 100):
            assert await fetch_all(http, fake, size, **window) == want
        filtered = await fetch_all(http, fake, 9, statusList=[1, 3, 5], idxAppId=2, **window)
        searched = await fetch_all(http, fake, 10, searchCondition="PROMO")
    assert filtered == wire(fake.expected(window["start"], window["end"], [1, 3, 5], 2))
    assert {r["status"] for r in filtered} <= {1, 3, 5}
    assert searched == wire(fake.expected(START, END, search="promo"))
    assert searched
    assert all("promo" in r["taskName"].lower() for r in searched)


async def test_the_time_window_is_inclusive_at_both_ends() -> None:
    edges = [task(1, T0 - timedelta(seconds=1)), task(2, T0), task(3, T0 + timedelta(hours=1)),
             task(4, T0 + timedelta(hours=1, seconds=1))]  # fmt: skip
    fake = FakeVendor(dataset=edges)
    async with client(fake) as http:
        answer = (
            await post(http, fake, body(start="2024-03-01 12:00:00", end="2024-03-01 13:00:00"))
        ).json()
        single = (
            await post(http, fake, body(start="2024-03-01 12:00:00", end="2024-03-01 12:00:00"))
        ).json()
    assert [r["jobId"] for r in answer["data"]["records"]] == [3, 2]
    assert [r["jobId"] for r in single["data"]["records"]] == [2]


async def test_records_are_newest_first_and_ties_go_to_the_larger_job_id() -> None:
    tasks = [task(10, T0), task(30, T0), task(20, T0), task(5, T0 + timedelta(seconds=1))]
    fake = FakeVendor(dataset=tasks)
    async with client(fake) as http:
        records = (await post(http, fake, body())).json()["data"]["records"]
    assert [r["jobId"] for r in records] == [5, 30, 20, 10]


@pytest.mark.parametrize(
    ("count", "size", "pages"),
    [(0, 10, 0), (1, 10, 1), (10, 10, 1), (20, 10, 2), (21, 10, 3), (100, 100, 1), (5, 1, 5)],
)
async def test_total_and_pages_follow_mybatis_plus(count: int, size: int, pages: int) -> None:
    fake = FakeVendor(dataset=[task(i, T0 + timedelta(minutes=i)) for i in range(1, count + 1)])
    async with client(fake) as http:
        first = (await post(http, fake, body(size=size))).json()["data"]
        past_end = (await post(http, fake, body(current=pages + 1, size=size))).json()["data"]
    assert (first["total"], first["pages"], first["size"], first["current"]) == (
        count,
        pages,
        size,
        1,
    )
    assert len(first["records"]) == min(count, size)
    assert past_end["records"] == []
    assert (past_end["total"], past_end["pages"], past_end["current"]) == (count, pages, pages + 1)
    assert pages == math.ceil(count / size)


async def test_status_app_and_search_filters_combine() -> None:
    tasks = [
        task(1, T0, status=2, app_id=1, name="Spring PROMO 1"),
        task(2, T0, status=1, app_id=1, name="spring promo 2"),
        task(3, T0, status=2, app_id=2, name="Spring promo 3"),
        task(4, T0, status=4, app_id=1, name="Summer notice"),
    ]
    fake = FakeVendor(dataset=tasks)

    async def ids(**params: Any) -> list[int]:
        answer = (await post(http, fake, body(**params))).json()
        return [r["jobId"] for r in answer["data"]["records"]]

    async with client(fake) as http:
        assert await ids() == [4, 3, 2, 1]
        assert await ids(statusList=[]) == [4, 3, 2, 1]
        assert await ids(statusList=[2]) == [3, 1]
        assert await ids(statusList=[2, 4, 99]) == [4, 3, 1]
        assert await ids(idxAppId=1) == [4, 2, 1]
        assert await ids(searchCondition="Promo") == [3, 2, 1]
        assert await ids(searchCondition="") == [4, 3, 2, 1]
        assert await ids(searchCondition="promo", statusList=[2], idxAppId=1) == [1]
        assert await ids(idxAppId=3) == []


def test_select_accepts_datetimes_and_wire_strings_alike() -> None:
    dataset = Dataset.generate(100, seed=4)
    assert dataset.select(datetime(2024, 2, 1), datetime(2024, 3, 1)) == dataset.select(
        "2024-02-01 00:00:00", "2024-03-01 00:00:00"
    )
    assert dataset.select(END, START) == []


# ---------------------------------------------------------------- mutations


async def test_tasks_inserted_between_two_pages_shift_the_offsets() -> None:
    fake = FakeVendor(
        dataset=Dataset.generate(30, seed=6), clock=lambda: datetime(2024, 8, 1).timestamp()
    )
    before = fake.expected(START, "2024-12-31 00:00:00")
    inserted: list[FakeTask] = []

    @fake.on_request
    def insert_before_page_two(n: int, payload: dict[str, Any]) -> None:
        if n == 2:
            assert payload["current"] == 2
            inserted.extend(fake.insert_tasks(3))

    async with client(fake) as http:
        pages = [
            (await post(http, fake, body(current=c, size=10, end="2024-12-31 00:00:00"))).json()[
                "data"
            ]
            for c in (1, 2, 3, 4)
        ]
    seen = [r["jobId"] for page in pages for r in page["records"]]
    assert [p["total"] for p in pages] == [30, 33, 33, 33]
    assert len(seen) == 33  # the three newest of page 1 come again on page 2
    assert seen[10:13] == seen[7:10]
    assert set(seen) == {t.job_id for t in before}
    assert min(t.job_id for t in inserted) > max(t.job_id for t in before)
    assert all(t.created_time == datetime(2024, 8, 1) and t.status == 0 for t in inserted)
    assert fake.expected(START, "2024-12-31 00:00:00")[:3] == sorted(
        inserted, key=lambda t: t.job_id, reverse=True
    )


async def test_an_async_on_request_callback_is_awaited_before_the_answer() -> None:
    fake = FakeVendor(dataset=Dataset.generate(10, seed=1))
    victim = fake.expected(START, END)[0]

    async def remove_first(n: int, payload: dict[str, Any]) -> None:
        fake.remove_tasks([victim.job_id])

    fake.on_request(remove_first)
    async with client(fake) as http:
        data = (await post(http, fake, body())).json()["data"]
    assert data["total"] == 9
    assert victim.job_id not in [r["jobId"] for r in data["records"]]


def test_status_changes_and_removals_overlay_a_generated_dataset() -> None:
    fake = FakeVendor(dataset=Dataset.generate(200, seed=9))
    tasks = fake.expected(START, END)
    calling = [t for t in tasks if t.status == 1]
    target = next(t for t in tasks if t.status == 2)
    fake.change_status([target.job_id], 1)
    changed = fake.dataset.get(target.job_id)
    assert changed == attrs.evolve(target, status=1)
    assert fake.expected(START, END, statuses=[1]) == sorted(
        [*calling, changed], key=lambda t: t.sort_key, reverse=True
    )
    fake.change_status([target.job_id], 4)  # a second change of the same task
    assert fake.dataset.get(target.job_id).status == 4
    other = next(t for t in tasks if t.job_id != target.job_id)
    fake.remove_tasks([target.job_id, other.job_id, other.job_id])
    assert len(fake.dataset) == 198
    assert target.job_id not in fake.dataset
    with pytest.raises(KeyError):
        fake.remove_tasks([target.job_id])
    with pytest.raises(KeyError):
        fake.change_status([123], 2)
    inserted = fake.insert_tasks(2, created_time=datetime(2024, 6, 30), status=6, app_id=3)
    fake.change_status([inserted[0].job_id], 2)
    fake.remove_tasks([inserted[1].job_id])
    assert [t.status for t in fake.expected(START, END) if t.job_id == inserted[0].job_id] == [2]
    assert len(fake.dataset) == 199
    fake.dataset.insert([task(1, T0)])
    with pytest.raises(ValueError, match="duplicate"):
        fake.dataset.insert([task(tasks[5].job_id, T0)])
    assert len(fake.dataset) == 200


# ----------------------------------------------- paging agrees with a model


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Dataset, Query, int]:
    dataset = Dataset.generate(
        draw(st.integers(0, 60)),
        seed=draw(st.integers(0, 3)),
        start=datetime(2024, 1, 1),
        end=datetime(2024, 1, 1, 0, 2),  # two minutes: many tasks per second
        app_ids=(1, 2),
    )
    for _ in range(draw(st.integers(0, 6))):
        present = [t.job_id for t in dataset]
        action = draw(st.sampled_from(["insert", "status", "remove"]))
        when = datetime(2024, 1, 1) + timedelta(seconds=draw(st.integers(0, 130)))
        if action == "insert" or not present:
            dataset.add_new(draw(st.integers(1, 3)), when, status=draw(st.integers(0, 6)))
        elif action == "status":
            dataset.change_status(
                draw(st.lists(st.sampled_from(present), max_size=3)), draw(st.integers(0, 6))
            )
        else:
            dataset.remove(draw(st.lists(st.sampled_from(present), max_size=3)))
    lo = draw(st.integers(-5, 130))
    query = Query.build(
        datetime(2024, 1, 1) + timedelta(seconds=lo),
        datetime(2024, 1, 1) + timedelta(seconds=lo + draw(st.integers(0, 130))),
        draw(st.one_of(st.none(), st.lists(st.integers(0, 6), max_size=3))),
        draw(st.one_of(st.none(), st.integers(1, 2))),
        draw(st.one_of(st.none(), st.sampled_from(["a", "PROMO", "Wave", "2024", "#1"]))),
    )
    return dataset, query, draw(st.integers(1, 7))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_page_of_every_query_agrees_with_a_brute_force_model(
    scenario: tuple[Dataset, Query, int],
) -> None:
    dataset, query, size = scenario
    model = sorted((t for t in dataset if query.match(t)), key=lambda t: t.sort_key, reverse=True)
    pages = math.ceil(len(model) / size)
    for current in range(1, pages + 2):
        total, records = dataset.page(query, current, size)
        assert total == len(model)
        assert records == model[(current - 1) * size : current * size]
    assert list(dataset) == sorted(dataset, key=lambda t: t.sort_key, reverse=True)


# --------------------------------------------------------------- scale


async def test_a_million_tasks_page_quickly_in_little_memory() -> None:
    tracemalloc.start()
    try:
        began = time.perf_counter()
        fake = FakeVendor(dataset=Dataset.generate(1_000_000, seed=11))
        assert len(fake.dataset) == 1_000_000
        async with client(fake) as http:
            first = (await post(http, fake, body(size=100))).json()["data"]
            assert first["total"] == 1_000_000
            assert first["pages"] == 10_000
            last = (await post(http, fake, body(current=10_000, size=100))).json()["data"]
            assert len(last["records"]) == 100
            assert last["records"][-1]["createdTime"] >= "2024-01-01 00:00:00"
            morning = {"start": "2024-03-10 06:00:00", "end": "2024-03-10 11:59:59"}
            completed = await fetch_all(http, fake, 100, statusList=[2], **morning)
            fake.insert_tasks(5, created_time=datetime(2024, 3, 10, 12))
            fake.remove_tasks([first["records"][0]["jobId"]])
            hour = {"start": "2024-03-10 11:30:00", "end": "2024-03-10 12:30:00"}
            assert await fetch_all(http, fake, 37, **hour) == wire(
                fake.expected(hour["start"], hour["end"])
            )
        elapsed = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 800 < len(completed) < 1_200  # 6 hours hold about 1,370 tasks, 70% completed
    assert all(r["status"] == 2 for r in completed)
    assert elapsed < 10.0
    assert peak < 50 * 1024 * 1024
