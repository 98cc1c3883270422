"""Splitting a big window into slices of about equal task counts, one per worker.

The vendor orders a result newest first and pages it by offset, so the task at position
``p`` of the result is page ``p`` of a query with ``size=1``: one cheap request tells the
creation time at any position. ``plan_shards`` asks for the times at the positions that
cut the result into ``n`` equal parts, turns them into whole-second time slices, and
counts each slice exactly with one more such request. It uses the client's public API
only (``query_group_calls``).

The slices do not overlap and together cover the window exactly: the wire's times have
whole seconds and both ends of a window are inclusive, so slice ``k`` ends one second
before slice ``k + 1`` starts. A task belongs to the one slice holding its second. Tasks
that share a second are never split, so counts are equal only as far as that allows.

Each slice is an ordinary window: a worker streams it with ``iter_group_calls(shard.start,
shard.end)`` (with the same filters), checkpoints ``stream.progress.resume_from`` as it
goes, and when run again passes that cursor as ``resume_from=`` to go on exactly where it
stopped, whatever changed in the slice meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from ._query import check_positive_int

if TYPE_CHECKING:
    from ._client import AsyncVoiceClient
    from ._models import GroupCallRecord, GroupCallStatus, Page

__all__ = ["Shard", "plan_shards"]

_SECOND = timedelta(seconds=1)


@attrs.frozen(slots=True)
class Shard:
    """One slice of a window: stream it with ``iter_group_calls(shard.start, shard.end)``,
    and resume it with ``resume_from=`` the cursor its stream last reported.

    Attributes (also the constructor's arguments, in this order):
        index: Position of the slice, from 0 (oldest) up.
        start: First second of the slice (inclusive).
        end: Last second of the slice (inclusive).
        estimated_count: Tasks the slice held when it was planned.
    """

    #: Position of the slice, from 0 (oldest) up.
    index: int
    #: First second of the slice (inclusive).
    start: datetime
    #: Last second of the slice (inclusive).
    end: datetime
    #: Tasks the slice held when it was planned.
    estimated_count: int


def _in_server_zone(value: datetime, client: AsyncVoiceClient) -> datetime:
    """``value`` as the wire has it: naive, whole seconds, in the vendor's zone.

    Called only once the client has accepted ``value`` in a query, so an aware value has a
    ``server_timezone`` to be converted to.
    """
    zone = client.server_timezone
    if value.utcoffset() is not None and zone is not None:
        value = value.astimezone(zone)
    return value.replace(tzinfo=None, microsecond=0)


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
    statuses: Iterable[GroupCallStatus | int | str] | None = None,
    app_id: int | None = None,
    search: str | None = None,
) -> list[Shard]:
    """Split ``[start, end]`` into at most ``shards`` time slices of about equal task counts.

    Costs ``2 * shards - 1`` requests of one record each (``query_group_calls`` with
    ``size=1``). Fewer slices come back when the window holds fewer tasks (or fewer
    distinct seconds) than ``shards``; an empty window gives one slice. Pass the same
    filters as the workers will, so the counts match theirs.

    Each ``Shard`` is streamed with ``iter_group_calls(shard.start, shard.end, ...)`` and
    the same filters; a worker run again after a failure or a restart goes on exactly
    where it stopped with ``resume_from=`` the last ``stream.progress.resume_from`` (or
    ``error.resume_from``) it saved.

    Args:
        client: the ``AsyncVoiceClient`` to ask.
        start: the window's first second, inclusive, as for ``query_group_calls``.
        end: its last second, inclusive.
        shards: the most slices wanted, an ``int`` >= 1.
        statuses: the workers' status filter, as for ``query_group_calls`` (default
            ``None``: all).
        app_id: the workers' application filter (default: all).
        search: the workers' search text (default: none).

    Returns:
        The ``Shard``s, oldest first (``index`` from 0); they do not overlap and cover
        the window.

    Raises:
        TypeError, ValueError: a bad argument, naming it, before any request.
        ItnioError: what the vendor or the network did, as for ``query_group_calls``.
    """
    shards = check_positive_int("shards", shards)

    async def probe(until: datetime, position: int) -> Page[GroupCallRecord]:
        """The task at ``position`` (1 = newest) of ``[start, until]``, with their total."""
        return await client.query_group_calls(
            start, until, statuses=statuses, app_id=app_id, search=search, page=position, size=1
        )

    first = await probe(end, 1)  # the client checks every argument before it sends this
    total = first.total
    if total == 0 or shards == 1:
        return [Shard(0, start, end, total)]
    lowest, highest = _in_server_zone(start, client), _in_server_zone(end, client)

    # Position p (1 = newest) holds the p-th newest task, so the oldest m tasks are at
    # positions total - m + 1 .. total, the newest of them at total - m + 1: the cut.
    cuts: list[tuple[datetime, int]] = []  # (last second of the older part, tasks in it)
    for k in range(1, shards):
        oldest = (k * total) // shards
        if oldest == 0:
            continue
        position = total - oldest + 1
        page = await probe(end, position)
        if not page.records:
            continue  # the result shrank meanwhile; fewer slices
        created = page.records[0].created_time.replace(tzinfo=None, microsecond=0)
        if cuts and created <= cuts[-1][0]:
            continue  # same second as the previous cut: those tasks cannot be split
        if created >= highest:
            continue
        # Tasks sharing the cut's second all fall in the older slice: count them exactly.
        # ``created`` is naive in the vendor's zone, which is how the client takes it.
        older = await probe(created, 1)
        cuts.append((created, older.total))

    slices: list[Shard] = []
    lower = lowest
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
            _in_callers_form(highest, end, client),
            total - counted,
        )
    )
    return slices
