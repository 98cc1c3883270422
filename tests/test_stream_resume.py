"""Resuming a stream by its cursor: the cursor's edges (empty results, filter order)."""

from __future__ import annotations

from datetime import datetime

from itnio_async import GroupCallStatus, StreamCursor

from .test_stream import END, START, ids, make_client, make_fake, virtual


def test_a_stream_of_an_empty_window_ends_with_a_done_cursor() -> None:
    async def main() -> tuple[StreamCursor | None, int]:
        fake = make_fake(50)
        async with make_client(fake) as client:
            stream = client.iter_group_calls(datetime(2000, 1, 1), datetime(2000, 1, 2))
            assert [r async for r in stream] == []
            cursor = stream.progress.resume_from
            sent = fake.stats.requests
            again = client.iter_group_calls(
                datetime(2000, 1, 1), datetime(2000, 1, 2), resume_from=cursor
            )
            assert [r async for r in again] == []
        return cursor, fake.stats.requests - sent

    cursor, sent_on_resume = virtual(main)
    assert cursor is not None
    assert cursor.done
    assert sent_on_resume == 0


def test_the_same_statuses_in_another_order_resume_the_same_stream() -> None:
    calling, completed = GroupCallStatus.CALLING, GroupCallStatus.COMPLETED

    async def main() -> tuple[list[int], list[int]]:
        fake = make_fake(2000)
        expected = ids(fake.expected(START, END, statuses=[1, 2]))
        async with make_client(fake) as client:
            pages = client.iter_group_call_pages(START, END, statuses=[calling, completed])
            got: list[int] = []
            async for page in pages:
                got.extend(r.job_id for r in page.records)
                break
            cursor = str(pages.progress.resume_from)
            await pages.aclose()
            rest = client.iter_group_calls(
                START, END, statuses=[completed, calling], resume_from=cursor
            )
            got.extend([r.job_id async for r in rest])
        return got, expected

    got, expected = virtual(main)
    assert got == expected


def test_resuming_after_a_limit_that_cut_a_fully_fetched_slice_loses_nothing() -> None:
    # The whole window fits one page: the slice was done when the limit cut its records,
    # and its cursor used to say "done", losing what came after the limit.
    async def main() -> tuple[list[int], list[int]]:
        fake = make_fake(5)
        expected = ids(fake.expected(START, END))
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, page_size=10, limit=3)
            got = [r.job_id async for r in stream]
            cursor = stream.progress.resume_from
            assert cursor is not None
            assert not cursor.done
            rest = client.iter_group_calls(START, END, resume_from=cursor)
            got.extend([r.job_id async for r in rest])
        return got, expected

    got, expected = virtual(main)
    assert got == expected
