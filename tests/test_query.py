"""The group-call query's arguments: checks, zone conversion and the request body."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from itnio_async._converter import WIRE_TIME_FORMAT
from itnio_async._models import GroupCallStatus
from itnio_async._query import MAX_PAGE_SIZE, GroupCallQuery, check_page, check_positive_int

SHANGHAI = ZoneInfo("Asia/Shanghai")
MINUS_FIVE = timezone(timedelta(hours=-5))

#: The vendor's LocalDateTime, exactly.
LOCAL_DATE_TIME = re.compile(r"\A\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\Z")

START = datetime(2024, 1, 1, 0, 0, 0)
END = datetime(2024, 6, 3, 15, 13, 1)


def build(**overrides: Any) -> GroupCallQuery:
    arguments: dict[str, Any] = {"start": START, "end": END, **overrides}
    return GroupCallQuery.build(arguments.pop("start"), arguments.pop("end"), **arguments)


# -- the body ------------------------------------------------------------------------------


def test_the_body_matches_the_vendors_example_exactly() -> None:
    body = build().body(1, 10)
    assert body == {
        "current": 1,
        "size": 10,
        "params": {
            "strTime": "2024-01-01 00:00:00",
            "endTime": "2024-06-03 15:13:01",
            "statusList": [],
        },
    }
    assert json.loads(json.dumps(body)) == body


def test_status_list_is_always_present_and_empty_means_all() -> None:
    assert build().body(1, 1)["params"]["statusList"] == []
    assert build(statuses=None).body(1, 1)["params"]["statusList"] == []
    assert build(statuses=[]).body(1, 1)["params"]["statusList"] == []


def test_app_id_and_search_travel_inside_params_only_when_given() -> None:
    body = build(statuses=[2, 4], app_id=17, search="promo").body(3, 100)
    assert body == {
        "current": 3,
        "size": 100,
        "params": {
            "strTime": "2024-01-01 00:00:00",
            "endTime": "2024-06-03 15:13:01",
            "statusList": [2, 4],
            "idxAppId": 17,
            "searchCondition": "promo",
        },
    }
    assert set(build().body(1, 1)) == {"current", "size", "params"}
    assert set(build().body(1, 1)["params"]) == {"strTime", "endTime", "statusList"}


def test_app_id_zero_is_sent() -> None:
    assert build(app_id=0).body(1, 1)["params"]["idxAppId"] == 0


def test_an_empty_search_is_not_sent() -> None:
    query = build(search="")
    assert query.search is None
    assert "searchCondition" not in query.body(1, 1)["params"]


def test_statuses_go_out_as_plain_ints_in_order_without_repeats() -> None:
    query = build(
        statuses=[GroupCallStatus.CANCELLED, 1, GroupCallStatus.CALLING, 6, GroupCallStatus(4)]
    )
    assert query.statuses == (4, 1, 6)
    status_list = query.body(1, 1)["params"]["statusList"]
    assert status_list == [4, 1, 6]
    assert all(type(value) is int for value in status_list)
    assert json.dumps(status_list) == "[4, 1, 6]"


@pytest.mark.parametrize(
    "statuses",
    [(0, 6), {0, 6}, frozenset({6, 0}), (s for s in (0, 6)), {0: "a", 6: "b"}.keys()],
    ids=["tuple", "set", "frozenset", "generator", "dict keys"],
)
def test_any_iterable_of_statuses_is_accepted(statuses: Any) -> None:
    assert sorted(build(statuses=statuses).statuses) == [0, 6]


def test_every_documented_status_may_be_asked_for() -> None:
    assert build(statuses=list(GroupCallStatus)).statuses == (0, 1, 2, 3, 4, 5, 6)


# -- times ---------------------------------------------------------------------------------


def test_naive_times_go_out_unchanged_without_microseconds() -> None:
    query = build(
        start=datetime(2024, 6, 4, 14, 49, 36, 999_999), end=datetime(2024, 6, 4, 23, 59, 59, 1)
    )
    assert query.start == datetime(2024, 6, 4, 14, 49, 36)
    assert query.end == datetime(2024, 6, 4, 23, 59, 59)
    params = query.body(1, 1)["params"]
    assert params["strTime"] == "2024-06-04 14:49:36"
    assert params["endTime"] == "2024-06-04 23:59:59"


def test_naive_times_go_out_unchanged_even_with_a_server_timezone() -> None:
    query = build(start=START, end=END, server_timezone=SHANGHAI)
    assert (query.start, query.end) == (START, END)
    assert query.start.tzinfo is None


def test_aware_times_are_converted_to_the_server_timezone() -> None:
    query = build(
        start=datetime(2024, 6, 4, 6, 49, 36, tzinfo=UTC),
        end=datetime(2024, 6, 4, 10, 0, 0, 500, tzinfo=MINUS_FIVE),  # 15:00 UTC
        server_timezone=SHANGHAI,
    )
    assert query.start == datetime(2024, 6, 4, 14, 49, 36)
    assert query.end == datetime(2024, 6, 4, 23, 0, 0)
    assert query.start.tzinfo is None
    assert query.end.tzinfo is None
    params = query.body(1, 1)["params"]
    assert (params["strTime"], params["endTime"]) == ("2024-06-04 14:49:36", "2024-06-04 23:00:00")


def test_aware_times_are_converted_to_a_fixed_offset_server_timezone() -> None:
    query = build(
        start=datetime(2024, 6, 4, 14, 49, 36, tzinfo=SHANGHAI),  # 06:49:36 UTC
        end=datetime(2024, 6, 4, 6, 49, 37, tzinfo=UTC),
        server_timezone=MINUS_FIVE,
    )
    assert query.start == datetime(2024, 6, 4, 1, 49, 36)
    assert query.end == datetime(2024, 6, 4, 1, 49, 37)


def test_a_naive_and_an_aware_time_may_be_mixed_with_a_server_timezone() -> None:
    query = build(
        start=datetime(2024, 6, 4, 0, 0, 0),
        end=datetime(2024, 6, 4, 0, 0, 0, tzinfo=UTC),
        server_timezone=SHANGHAI,
    )
    assert query.start == datetime(2024, 6, 4, 0, 0, 0)
    assert query.end == datetime(2024, 6, 4, 8, 0, 0)


@pytest.mark.parametrize("which", ["start", "end"])
def test_an_aware_time_without_a_server_timezone_is_refused(which: str) -> None:
    """Guessing the vendor's zone would shift the window silently."""
    aware = {"start": START, "end": END, which: datetime(2024, 3, 1, tzinfo=UTC)}
    with pytest.raises(ValueError, match="server_timezone") as info:
        build(**aware)
    assert str(info.value).startswith(which)


def test_the_end_is_compared_with_the_start_after_conversion() -> None:
    """08:00 in Shanghai is midnight UTC: an end of 07:00 UTC is after it, not before."""
    query = build(
        start=datetime(2024, 6, 4, 8, 0, 0),
        end=datetime(2024, 6, 4, 7, 0, 0, tzinfo=UTC),
        server_timezone=SHANGHAI,
    )
    assert query.end == datetime(2024, 6, 4, 15, 0, 0)
    with pytest.raises(ValueError, match="end"):
        build(
            start=datetime(2024, 6, 4, 16, 0, 0),
            end=datetime(2024, 6, 4, 7, 0, 0, tzinfo=UTC),
            server_timezone=SHANGHAI,
        )


class _NoOffset(tzinfo):
    """A zone that does not know its offset: such a datetime counts as naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_a_time_whose_zone_has_no_offset_counts_as_naive() -> None:
    query = build(start=datetime(2024, 1, 1, 12, 0, 0, tzinfo=_NoOffset()))
    assert query.start == datetime(2024, 1, 1, 12, 0, 0)
    assert query.start.tzinfo is None


def test_start_equal_to_end_is_a_valid_one_second_window() -> None:
    query = build(start=END, end=END)
    assert query.start == query.end == END


def test_times_before_year_1000_go_out_with_four_digit_years() -> None:
    """``datetime.min`` ("from the very beginning") must still be a LocalDateTime.

    ``strftime("%Y")`` does not pad the year on glibc, so year 1 goes out as
    ``"1-01-01 00:00:00"``, which the vendor cannot parse.
    """
    query = build(start=datetime.min, end=datetime(999, 12, 31, 23, 59, 59))
    params = query.body(1, 1)["params"]
    assert params["strTime"] == "0001-01-01 00:00:00"
    assert params["endTime"] == "0999-12-31 23:59:59"


def test_with_end_moves_only_the_end() -> None:
    query = build(statuses=[1], app_id=2, search="x")
    frozen = query.with_end(datetime(2024, 2, 1, 0, 0, 0))
    assert frozen.end == datetime(2024, 2, 1, 0, 0, 0)
    assert attrs.evolve(frozen, end=query.end) == query
    assert query.end == END


def test_the_query_is_frozen() -> None:
    query = build()
    with pytest.raises(AttributeError):
        query.start = END  # type: ignore[misc]


# -- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["start", "end"])
@pytest.mark.parametrize(
    "value",
    ["2024-01-01 00:00:00", date(2024, 1, 1), 1704067200, 1704067200.0, None],
    ids=["str", "date", "int", "float", "None"],
)
def test_a_time_that_is_not_a_datetime_is_refused_naming_it(which: str, value: object) -> None:
    with pytest.raises(TypeError, match=rf"^{which} must be a datetime"):
        build(**{which: value})


def test_an_end_before_the_start_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"end .* before start") as info:
        build(start=END, end=START)
    assert "2024-06-03 15:13:01" in str(info.value)


@pytest.mark.parametrize("statuses", [1, GroupCallStatus.CALLING, "12", b"\x01", 1.5, object()])
def test_statuses_that_are_not_a_collection_are_refused(statuses: object) -> None:
    """A bare int or str is a likely slip for ``[value]``; iterating a str would be wrong."""
    with pytest.raises(TypeError, match="statuses"):
        build(statuses=statuses)


@pytest.mark.parametrize("value", [True, False, 1.0, None, b"1", ["completed"]])
def test_a_status_that_is_not_an_int_or_a_str_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="statuses"):
        build(statuses=[0, value])


@pytest.mark.parametrize("value", [-1, 7, 9, 100, GroupCallStatus(9)])
def test_a_status_outside_the_documented_table_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match=rf"statuses: {int(value)} is not a documented"):
        build(statuses=[value])


@pytest.mark.parametrize(
    ("text", "member"),
    [
        ("completed", GroupCallStatus.COMPLETED),
        ("COMPLETED", GroupCallStatus.COMPLETED),
        (" Submission-Failed ", GroupCallStatus.SUBMISSION_FAILED),
        ("submission_failed", GroupCallStatus.SUBMISSION_FAILED),
        ("waiting", GroupCallStatus.WAITING_FOR_SUBMISSION),
        ("waiting-for-submission", GroupCallStatus.WAITING_FOR_SUBMISSION),
        ("failed", GroupCallStatus.SUBMISSION_FAILED),
        ("canceled", GroupCallStatus.CANCELLED),
        ("Cancelled", GroupCallStatus.CANCELLED),
        ("6", GroupCallStatus.SUBMITTING),
        (" 0 ", GroupCallStatus.WAITING_FOR_SUBMISSION),
        (1, GroupCallStatus.CALLING),
        (GroupCallStatus.SUSPENDED, GroupCallStatus.SUSPENDED),
    ],
)
def test_a_status_parses_from_a_member_a_number_or_a_name(
    text: GroupCallStatus | int | str, member: GroupCallStatus
) -> None:
    assert GroupCallStatus.parse(text) is member


def test_statuses_by_name_go_out_as_numbers() -> None:
    query = build(statuses=["completed", "Calling", "2", GroupCallStatus.CANCELLED, 4])
    assert query.statuses == (2, 1, 4)


@pytest.mark.parametrize("name", ["ringing", "complete", "", "0x1", "1.0", "²"])
def test_an_unknown_status_name_is_refused_listing_the_names(name: str) -> None:
    with pytest.raises(
        ValueError, match=r"^statuses: unknown status .*submission_failed.*canceled"
    ):
        build(statuses=[name])


@pytest.mark.parametrize("value", ["-1", "7", 7, GroupCallStatus(9)])
def test_an_undocumented_status_number_is_refused_by_parse(value: int | str) -> None:
    with pytest.raises(ValueError, match=r"is not a documented status: use 0-6 or a name"):
        GroupCallStatus.parse(value)


@pytest.mark.parametrize("value", [True, 1.5, None, b"2"])
def test_parse_refuses_what_is_not_a_status(value: Any) -> None:
    with pytest.raises(TypeError, match="GroupCallStatus, an int or a str"):
        GroupCallStatus.parse(value)


def test_mypy_catches_a_status_of_the_wrong_type(tmp_path: Path) -> None:
    """The types say what is accepted: names and numbers pass, a float does not."""
    from mypy import api

    code = (
        "from datetime import datetime\n"
        "from itnio_async import AsyncVoiceClient, GroupCallStatus\n"
        "async def f(c: AsyncVoiceClient, t: datetime) -> None:\n"
        "    await c.query_group_calls(t, t, statuses=['completed', 2, GroupCallStatus.CALLING])\n"
        "    c.iter_group_calls(t, t, statuses=[1.5])\n"
        "    c.iter_group_call_pages(t, t, statuses=[b'2'])\n"
    )
    (tmp_path / "snippet.py").write_text(code)
    out, _, status = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), str(tmp_path / "snippet.py")]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1
    assert [line.split(":")[1] for line in errors] == ["5", "6"], out


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (True, TypeError), (1.0, TypeError), ("17", TypeError)],
)
def test_a_bad_app_id_is_refused_naming_it(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^'?app_id"):
        build(app_id=value)


@pytest.mark.parametrize("value", [1, b"promo", ["promo"], True])
def test_a_search_that_is_not_a_str_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match=r"^search must be a str"):
        build(search=value)


def test_a_query_checks_its_fields_however_it_is_made() -> None:
    query = build()
    with pytest.raises(TypeError, match="app_id"):
        attrs.evolve(query, app_id="17")
    with pytest.raises(TypeError, match="end"):
        query.with_end("2024-06-30")  # type: ignore[arg-type]
    assert build(search="").search is None


# -- check_page ------------------------------------------------------------------------------


def test_check_page_returns_valid_page_and_size() -> None:
    assert check_page(1, 1) == (1, 1)
    assert check_page(574, MAX_PAGE_SIZE) == (574, 100)


@pytest.mark.parametrize(
    ("page", "size", "error", "name"),
    [
        (1, 0, ValueError, "size"),
        (1, 101, ValueError, "size"),
        (1, -5, ValueError, "size"),
        (0, 10, ValueError, "page"),
        (-1, 10, ValueError, "page"),
        (True, 10, TypeError, "page"),
        (1, True, TypeError, "size"),
        (1.0, 10, TypeError, "page"),
        (1, 10.0, TypeError, "size"),
        ("1", 10, TypeError, "page"),
        (1, None, TypeError, "size"),
    ],
)
def test_a_bad_page_or_size_is_refused_naming_it(
    page: object, size: object, error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=f"^{name} must be"):
        check_page(page, size)


def test_check_positive_int_reports_its_bounds() -> None:
    with pytest.raises(ValueError, match=r"^size must be 1\.\.100, got 0$"):
        check_positive_int("size", 0, maximum=100)
    with pytest.raises(ValueError, match=r"^page must be >= 1, got 0$"):
        check_positive_int("page", 0)
    assert check_positive_int("app_id", 0, minimum=0) == 0


# -- properties ------------------------------------------------------------------------------

# Years below 1000 have their own (failing) test above: test_times_before_year_1000_...
_naive_times = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31))
_zones = st.sampled_from([UTC, MINUS_FIVE, timezone(timedelta(hours=8)), timezone.min])
_aware_times = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=_zones
)


def _wire(value: str) -> datetime:
    assert LOCAL_DATE_TIME.match(value), value
    return datetime.strptime(value, WIRE_TIME_FORMAT)


@given(
    first=_naive_times,
    second=_naive_times,
    statuses=st.lists(st.integers(min_value=0, max_value=6)),
    app_id=st.none() | st.integers(min_value=0, max_value=2**31),
    search=st.none() | st.text(),
    page=st.integers(min_value=1, max_value=10**6),
    size=st.integers(min_value=1, max_value=MAX_PAGE_SIZE),
)
def test_valid_naive_arguments_always_build_and_round_trip_the_wire_times(
    first: datetime,
    second: datetime,
    statuses: list[int],
    app_id: int | None,
    search: str | None,
    page: int,
    size: int,
) -> None:
    start, end = sorted([first, second])
    query = GroupCallQuery.build(start, end, statuses=statuses, app_id=app_id, search=search)
    body = json.loads(json.dumps(query.body(*check_page(page, size))))
    assert (body["current"], body["size"]) == (page, size)
    assert _wire(body["params"]["strTime"]) == start.replace(microsecond=0)
    assert _wire(body["params"]["endTime"]) == end.replace(microsecond=0)
    assert body["params"]["statusList"] == list(dict.fromkeys(statuses))
    assert body["params"].get("idxAppId") == app_id
    assert body["params"].get("searchCondition") == (search or None)


@given(first=_aware_times, second=_aware_times, server=_zones)
def test_valid_aware_times_go_out_as_the_same_instant_in_the_server_zone(
    first: datetime, second: datetime, server: tzinfo
) -> None:
    start, end = sorted([first, second])
    query = GroupCallQuery.build(start, end, server_timezone=server)
    params = query.body(1, 1)["params"]
    sent_start = _wire(params["strTime"]).replace(tzinfo=server)
    sent_end = _wire(params["endTime"]).replace(tzinfo=server)
    assert sent_start == start - timedelta(microseconds=start.microsecond)
    assert sent_end == end - timedelta(microseconds=end.microsecond)


@given(
    page=st.integers(min_value=1, max_value=10**9),
    size=st.integers().filter(lambda n: not 1 <= n <= MAX_PAGE_SIZE),
)
def test_any_size_outside_1_to_100_is_refused_naming_size(page: int, size: int) -> None:
    with pytest.raises(ValueError, match=f"^size must be 1..100, got {size}$"):
        check_page(page, size)


@given(page=st.integers(max_value=0), size=st.integers(min_value=1, max_value=MAX_PAGE_SIZE))
def test_any_page_below_1_is_refused_naming_page(page: int, size: int) -> None:
    with pytest.raises(ValueError, match=f"^page must be >= 1, got {page}$"):
        check_page(page, size)


@given(
    value=st.floats() | st.booleans() | st.text() | st.none() | st.decimals(allow_nan=False),
    which=st.sampled_from(["page", "size"]),
)
def test_any_page_or_size_that_is_not_an_int_is_refused_naming_it(
    value: object, which: str
) -> None:
    arguments: dict[str, object] = {"page": 1, "size": 10, which: value}
    with pytest.raises(TypeError, match=f"^{which} must be an int"):
        check_page(**arguments)
