"""The stream against servers that lie, disagree or follow other rules, in virtual time.

Each lie is one the fake can tell on demand (``Lies``); a stream must either deliver the
window exactly or end with ``MalformedResponseError``, never lose or repeat records
silently, and never loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from itnio_async import MalformedResponseError
from itnio_async.testing import Dataset, Lies

from .test_stream import END, START, ids, make_client, make_fake, virtual

RECORDS = 1000


def stream_all(
    fake_options: dict[str, Any], concurrency: int, **stream_options: Any
) -> tuple[list[int], list[int], BaseException | None, str, int]:
    async def main() -> tuple[list[int], list[int], BaseException | None, str, int]:
        fake = make_fake(RECORDS, **fake_options)
        expected = ids(fake.expected(START, END))
        got: list[int] = []
        error: BaseException | None = None
        async with make_client(fake) as client:
            stream = client.iter_group_calls(START, END, concurrency=concurrency, **stream_options)
            try:
                async for record in stream:
                    got.append(record.job_id)
            except MalformedResponseError as exc:
                error = exc
        return got, expected, error, stream.progress.mode, fake.stats.requests

    return virtual(main)


def assert_all_once_or_a_typed_error(
    got: Sequence[object], expected: Sequence[object], error: BaseException | None
) -> None:
    """``got`` is all of ``expected``, or a strict prefix of it ended by ``error``."""
    assert len(got) == len(set(got)), "a record arrived twice"
    assert list(got) == list(expected[: len(got)]), "records out of order, or not the window's"
    if error is None:
        assert list(got) == list(expected)
    else:
        assert isinstance(error, MalformedResponseError)
        assert len(got) < len(expected)


@pytest.mark.parametrize("concurrency", [1, 4, 16])
@pytest.mark.parametrize(
    "lies",
    [
        pytest.param(Lies(cap_size=50), id="capped page that says size 50"),
        pytest.param(Lies(fixed_page=True), id="page 1 for every page number"),
        pytest.param(Lies(total=10**9), id="a total of a billion"),
        pytest.param(Lies(empty_pages=(3,)), id="an empty page in the middle"),
        pytest.param(Lies(half_pages=(3,)), id="a half page in the middle"),
        pytest.param(Lies(pages=7), id="pages that do not match the total"),
    ],
)
def test_a_lying_server_gives_every_record_or_a_typed_error_never_silent_loss(
    lies: Lies, concurrency: int
) -> None:
    got, expected, error, _, sent = stream_all({"lies": lies}, concurrency)
    assert_all_once_or_a_typed_error(got, expected, error)
    assert sent <= 2 * RECORDS // 100 + 4 * concurrency + 16


def test_a_server_that_caps_pages_is_refused_at_the_first_page() -> None:
    got, _, error, _, sent = stream_all({"lies": Lies(cap_size=50)}, 4)
    assert got == []
    assert isinstance(error, MalformedResponseError)
    assert "says 50" in str(error)
    assert sent == 1


def test_a_server_that_lies_about_the_page_number_still_gives_every_record_once() -> None:
    # It answers page 1 for every page but says it is the page asked for: offsets are
    # worthless, the time cursor is not.
    got, expected, error, mode, _ = stream_all({"lies": Lies(fixed_page=True, lie_current=True)}, 4)
    assert error is None
    assert mode == "cursor"
    assert got == expected


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_an_exclusive_end_time_loses_nothing(concurrency: int) -> None:
    got, expected, error, mode, _ = stream_all({"end_exclusive": True}, concurrency)
    assert error is None
    assert mode == "cursor"
    assert got == expected


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_a_server_that_orders_oldest_first_is_paged_by_number_with_one_warning(
    concurrency: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="itnio_async"):
        got, expected, error, mode, _ = stream_all({"order": "oldest_first"}, concurrency)
    assert error is None
    assert mode == "offset"
    assert got == expected
    warnings = [r for r in caplog.records if "time order" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_replicas_that_disagree_on_the_total_end_in_every_record_once(concurrency: int) -> None:
    async def main() -> tuple[list[int], list[int], int]:
        dataset = Dataset.generate(RECORDS, seed=RECORDS)
        lagging = dataset.copy()
        lagging.remove(ids(dataset.select(START, END))[:1])  # the newest is not there yet
        fake = make_fake(0, dataset=dataset, replicas=[lagging])
        expected = ids(fake.expected(START, END))
        async with make_client(fake) as client:
            got = [
                r.job_id async for r in client.iter_group_calls(START, END, concurrency=concurrency)
            ]
        return got, expected, fake.stats.requests

    got, expected, sent = virtual(main)
    assert len(got) == len(set(got))
    # The newest task is on one replica only: it may or may not come; all else must.
    assert [j for j in got if j != expected[0]] == expected[1:]
    assert sent <= RECORDS // 100 + 2 * concurrency + 2
