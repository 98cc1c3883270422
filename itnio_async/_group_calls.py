"""The group-call task stream: the generic stream (``_stream``) bound to the task query."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from ._hooks import PageEvent
from ._models import GroupCallRecord
from ._query import GroupCallQuery
from ._stream import FetchPage, PageStream, RecordStream, StreamSpec, canonical_filters

__all__ = ["GroupCallPageStream", "GroupCallStream", "group_call_spec"]

#: The endpoint's name in stream cursors.
ENDPOINT = "group_calls"


def _created_second(record: GroupCallRecord) -> datetime:
    # Naive in the vendor's zone: an aware time is already in ``server_timezone``. The wire
    # has whole seconds, so without a zone the time is already the key: skipping the
    # ``replace`` saved 1.6% of the latency-bound benchmark's time.
    created = record.created_time
    if created.tzinfo is None and not created.microsecond:
        return created
    return created.replace(tzinfo=None, microsecond=0)


def _job_id(record: GroupCallRecord) -> int:
    return record.job_id


def group_call_spec(
    query: GroupCallQuery,
    fetch: FetchPage[GroupCallRecord],
    *,
    zone: tzinfo | None,
    now: Callable[[], datetime] | None,
    on_page: Callable[[PageEvent], None] | None,
) -> StreamSpec[GroupCallRecord]:
    """The stream of a checked task query: newest first by ``createdTime``, ids ``jobId``."""
    return StreamSpec(
        endpoint=ENDPOINT,
        start=query.start,
        end=query.end,
        filters=canonical_filters(**query.filters()),
        fetch=fetch,
        time_of=_created_second,
        id_of=_job_id,
        zone=zone,
        now=now,
        on_page=on_page,
    )


class GroupCallPageStream(PageStream[GroupCallRecord]):
    """An async iterator of ``Page``s of a window (see ``iter_group_call_pages``)."""


class GroupCallStream(RecordStream[GroupCallRecord]):
    """An async iterator of every ``GroupCallRecord`` of a window (see ``iter_group_calls``)."""
