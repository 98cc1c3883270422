"""Splitting a window into slices of about equal task counts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itnio_async import AsyncVoiceClient, plan_shards
from itnio_async.testing import Dataset, FakeTask, FakeVendor

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)


def client_for(fake: FakeVendor, **kwargs: object) -> AsyncVoiceClient:
    return AsyncVoiceClient(
        fake.api_key,
        fake.api_secret,
        base_url="https://fake.itnio.test",
        transport=fake.transport(),
        rate_limit=None,
        **kwargs,  # type: ignore[arg-type]
    )


async def stream_all(client: AsyncVoiceClient, start: datetime, end: datetime) -> list[int]:
    return [r.job_id async for r in client.iter_group_calls(start, end)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(total=st.integers(0, 3000), shards=st.integers(1, 9), seed=st.integers(0, 1000))
async def test_slices_tile_the_window_and_every_task_lands_in_exactly_one(
    total: int, shards: int, seed: int
) -> None:
    fake = FakeVendor(dataset=Dataset.generate(total, seed=seed))
    async with client_for(fake) as client:
        plan = await plan_shards(client, START, END, shards)
        fake.stats.reset()
        parts = [await stream_all(client, s.start, s.end) for s in plan]
    assert 1 <= len(plan) <= shards
    assert plan[0].start == START
    assert plan[-1].end == END
    for older, newer in itertools.pairwise(plan):
        assert newer.start == older.end + timedelta(seconds=1)
    # Newest first overall = the newest slice first.
    assert [job for part in reversed(parts) for job in part] == [
        t.job_id for t in fake.expected(START, END)
    ]
    assert [len(p) for p in parts] == [s.estimated_count for s in plan]
    assert sum(s.estimated_count for s in plan) == total


async def test_slices_have_about_equal_counts() -> None:
    fake = FakeVendor(dataset=Dataset.generate(10_000, seed=4))
    async with client_for(fake) as client:
        plan = await plan_shards(client, START, END, 4)
        assert fake.stats.requests == 7  # 2 * 4 - 1 cheap requests of one record
    assert len(plan) == 4
    for shard in plan:
        assert 2400 <= shard.estimated_count <= 2600


async def test_tasks_sharing_a_second_are_never_split() -> None:
    when = datetime(2024, 3, 3, 3, 3, 3)
    tasks = [FakeTask(job_id, f"t{job_id}", 2, "100", 1, 1, 1, 0, when) for job_id in range(1, 101)]
    fake = FakeVendor(dataset=tasks)
    async with client_for(fake) as client:
        plan = await plan_shards(client, START, END, 5)
    assert len(plan) == 2  # cut at that second; nothing newer remains
    assert plan[0].end == when
    assert [s.estimated_count for s in plan] == [100, 0]


async def test_aware_windows_come_back_aware() -> None:
    fake = FakeVendor(dataset=Dataset.generate(500, seed=1))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = datetime(2024, 7, 1, tzinfo=UTC)
    async with client_for(fake, server_timezone=UTC) as client:
        plan = await plan_shards(client, start, end, 3)
        parts = [await stream_all(client, s.start, s.end) for s in plan]
    assert all(s.start.tzinfo is not None and s.end.tzinfo is not None for s in plan)
    assert sum(len(p) for p in parts) == 500


async def test_bad_shard_counts_are_refused_before_any_request() -> None:
    fake = FakeVendor()
    async with client_for(fake) as client:
        with pytest.raises(ValueError, match="shards"):
            await plan_shards(client, START, END, 0)
    assert fake.stats.requests == 0
