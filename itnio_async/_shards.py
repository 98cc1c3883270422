"""Splitting a big window into slices of about equal task counts, one per worker.

The vendor orders a result newest first and pages it by offset, so the task at position
``p`` of the result is page ``p`` of a query with ``size=1``: one cheap request tells the
creation time at any position. ``plan_shards`` asks for the times at the positions that
cut the result into ``n`` equal parts, turns them into whole-second time slices, and
counts each slice exactly with one more such request.

The slices do not overlap and together cover the window exactly: the wire's times have
whole seconds and both ends of a window are inclusive, so slice ``k`` ends one second
before slice ``k + 1`` starts. A task belongs to the one slice holding its second. Tasks
that share a second are never split, so counts are equal only as far as that allows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from ._query import check_positive_int

if TYPE_CHECKING:
    from ._client import AsyncVoiceClient

__all__ = ["Shard", "plan_shards"]

_SECOND = timedelta(seconds=1)


@attrs.frozen(slots=True)
class Shard:
    """One slice of a window: stream it with ``iter_group_calls(shard.start, shard.end)``."""

    #: Position of the slice, from 0 (oldest) up.
    index: int
    #: First second of the slice (inclusive).
    start: datetime
    #: Last second of the slice (inclusive).
    end: datetime
    #: Tasks the slice held when it was planned.
    estimated_count: int


def _in_callers_form(value: datetime, like: datetime, client: AsyncVoiceClient) -> datetime:
    """A naive server-zone time, given back aware if the caller's time was aware."""
    zone = client.server_timezone
    if like.tzinfo is not None and zone is not None:
        return value.replace(tzinfo=zone).astimezone(like.tzinfo)
    return value


async def plan_shards(
    client: AsyncVoiceClient,
    start: datetime,
    end: datetime,
    shards: int,
    *,
    statuses: Any = None,
    app_id: int | None = None,
    search: str | None = None,
) -> list[Shard]:
    """Split ``[start, end]`` into at most ``shards`` time slices of about equal task counts.

    Costs ``2 * shards - 1`` requests of one record each. Fewer slices come back when the window
    holds fewer tasks (or fewer distinct seconds) than ``shards``; an empty window gives
    one slice. Pass the same filters as the workers will, so the counts match theirs.
    """
    shards = check_positive_int("shards", shards)
    query = client._build_query(start, end, statuses, app_id, search)
    first = await client._fetch_page(query, 1, 1)
    total = first.total
    if total == 0 or shards == 1:
        return [Shard(0, start, end, total)]

    # Position p (1 = newest) holds the p-th newest task, so the oldest m tasks are at
    # positions total - m + 1 .. total, the newest of them at total - m + 1: the cut.
    cuts: list[tuple[datetime, int]] = []  # (last second of the older part, tasks in it)
    for k in range(1, shards):
        oldest = (k * total) // shards
        if oldest == 0:
            continue
        position = total - oldest + 1
        page = await client._fetch_page(query, position, 1)
        if not page.records:
            continue  # the result shrank meanwhile; fewer slices
        created = page.records[0].created_time.replace(tzinfo=None, microsecond=0)
        if cuts and created <= cuts[-1][0]:
            continue  # same second as the previous cut: those tasks cannot be split
        if created >= query.end:
            continue
        # Tasks sharing the cut's second all fall in the older slice: count them exactly.
        older = await client._fetch_page(query.with_end(created), 1, 1)
        cuts.append((created, older.total))

    slices: list[Shard] = []
    lower = query.start
    counted = 0
    for index, (older_end, older_count) in enumerate(cuts):
        slices.append(
            Shard(
                index,
                _in_callers_form(lower, start, client),
                _in_callers_form(older_end, start, client),
                older_count - counted,
            )
        )
        lower = older_end + _SECOND
        counted = older_count
    slices.append(
        Shard(
            len(slices),
            _in_callers_form(lower, start, client),
            _in_callers_form(query.end, end, client),
            total - counted,
        )
    )
    return slices
