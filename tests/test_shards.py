"""Splitting a window into slices of about equal task counts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itnio_async import AsyncVoiceClient, GroupCallStatus, StreamCursor, plan_shards
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


async def test_a_shard_resumed_from_its_cursor_after_churn_is_exact() -> None:
    calling = [GroupCallStatus.CALLING]
    fake = FakeVendor(dataset=Dataset.generate(6_000, seed=8))
    async with client_for(fake) as client:
        shard = (await plan_shards(client, START, END, 3, statuses=calling))[1]
        tasks = {t.job_id: t for t in fake.expected(shard.start, shard.end)}
        # A worker streams three pages of the slice, then stops (killed, say).
        first: list[FakeTask] = []
        stream = client.iter_group_call_pages(
            shard.start, shard.end, statuses=calling, page_size=20, concurrency=4
        )
        async with stream:
            async for page in stream:
                first += [tasks[r.job_id] for r in page.records]
                if len(first) >= 60:
                    break
        saved = str(stream.progress.resume_from)
        last = first[-1].sort_key

        # Meanwhile: five written tasks leave the filter, five unread ones enter it, five
        # unread ones are deleted, and new tasks appear above and below the cursor.
        fake.change_status([t.job_id for t in first[10:15]], GroupCallStatus.COMPLETED)
        unread = [t for t in fake.expected(shard.start, shard.end) if t.sort_key < last]
        entering = [t.job_id for t in unread if t.status != GroupCallStatus.CALLING][-5:]
        fake.change_status(entering, GroupCallStatus.CALLING)
        leaving = [t.job_id for t in unread if t.status == GroupCallStatus.CALLING][5:10]
        fake.remove_tasks(leaving)
        assert len(entering) == len(leaving) == 5
        above = fake.insert_tasks(3, created_time=shard.end, status=GroupCallStatus.CALLING)
        fake.insert_tasks(3, created_time=shard.start, status=GroupCallStatus.CALLING)

        cursor = StreamCursor.from_string(saved)
        assert (cursor.start, cursor.end) == (shard.start, shard.end)
        rest = [
            r.job_id
            async for r in client.iter_group_calls(
                shard.start, shard.end, statuses=calling, page_size=20, resume_from=saved
            )
        ]

    # Every task that stayed arrives exactly once, in order; those created above the
    # cursor belong to a later export, those that entered below it arrive.
    done = {t.job_id for t in first} | {t.job_id for t in above}
    now = fake.expected(shard.start, shard.end, statuses=calling)
    assert rest == [t.job_id for t in now if t.job_id not in done]
    assert set(entering) <= set(rest)
    assert not set(leaving) & set(rest)
    assert len(first) + len(rest) == len({t.job_id for t in first} | set(rest))


async def test_bad_shard_counts_are_refused_before_any_request() -> None:
    fake = FakeVendor()
    async with client_for(fake) as client:
        with pytest.raises(ValueError, match="shards"):
            await plan_shards(client, START, END, 0)
    assert fake.stats.requests == 0
