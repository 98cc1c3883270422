"""One set of environment variables, read by ``Settings``, and what a newcomer meets
first: the variable named in its error, the host named in a connect error, one record
format and one reading of a typed time for the CLI and the examples alike."""

from __future__ import annotations

import json
import re
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from itnio_async import (
    DEFAULT_RATE_LIMIT,
    ENVIRONMENT,
    RECORD_COLUMNS,
    AsyncVoiceClient,
    GroupCallRecord,
    GroupCallStatus,
    ItnioTransportError,
    RetryPolicy,
    Settings,
    parse_time,
    record_row,
)
from itnio_async.cli import _commands as commands
from itnio_async.cli import _progress as cli_progress
from itnio_async.testing import Dataset, FakeVendor

KEY, SECRET = "env-key", "env-secret-never-shown"
WINDOW = ["--start", "2024-01-01", "--end", "2024-06-30"]
README = Path(__file__).resolve().parent.parent / "README.md"


# -- Settings ------------------------------------------------------------------------------


def test_settings_read_every_variable() -> None:
    settings = Settings.from_env(
        {
            "ITNIO_API_KEY": KEY,
            "ITNIO_API_SECRET": SECRET,
            "ITNIO_BASE_URL": "https://gw.example.com/v3",
            "ITNIO_RATE_LIMIT": "12.5",
            "ITNIO_SERVER_TIMEZONE": "Asia/Shanghai",
        }
    )
    assert settings == Settings(
        KEY, SECRET, "https://gw.example.com/v3", 12.5, ZoneInfo("Asia/Shanghai")
    )
    assert SECRET not in repr(settings)
    assert settings.client_options()["rate_limit"] == 12.5
    assert set(ENVIRONMENT) == {
        "ITNIO_API_KEY",
        "ITNIO_API_SECRET",
        "ITNIO_BASE_URL",
        "ITNIO_RATE_LIMIT",
        "ITNIO_SERVER_TIMEZONE",
    }


def test_unset_or_empty_variables_take_the_defaults() -> None:
    for env in ({}, dict.fromkeys(ENVIRONMENT, "")):
        assert Settings.from_env(env) == Settings(None, None, None, DEFAULT_RATE_LIMIT, None)
    assert Settings.from_env({"ITNIO_RATE_LIMIT": "none"}).rate_limit is None
    assert Settings.from_env({"ITNIO_RATE_LIMIT": "0"}).rate_limit is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ITNIO_RATE_LIMIT", "fast"),
        ("ITNIO_RATE_LIMIT", "-3"),
        ("ITNIO_RATE_LIMIT", "inf"),
        ("ITNIO_SERVER_TIMEZONE", "Mars/Olympus"),
        ("ITNIO_BASE_URL", "http://example.com"),
        ("ITNIO_BASE_URL", "https://user:pw@example.com"),
        ("ITNIO_API_KEY", "key with space"),
        ("ITNIO_API_SECRET", "secret\n"),
    ],
)
def test_a_wrong_variable_is_named_in_its_error(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable) as caught:
        Settings.from_env({"ITNIO_API_SECRET": SECRET, variable: value})
    text = "".join(traceback.format_exception(caught.value))
    assert SECRET not in text
    assert "pw" not in str(caught.value)


def test_the_client_names_itnio_base_url_when_it_came_from_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ITNIO_BASE_URL", "http://example.com")
    with pytest.raises(ValueError, match=r"^ITNIO_BASE_URL must be https://"):
        AsyncVoiceClient(KEY, SECRET)
    with pytest.raises(ValueError, match=r"^base_url must be https://"):
        AsyncVoiceClient(KEY, SECRET, base_url="http://example.org")


async def test_a_connect_error_names_the_host() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    client = AsyncVoiceClient(
        KEY,
        SECRET,
        base_url="https://wrong-host.example.net",
        transport=httpx.MockTransport(refuse),
        retry=RetryPolicy(max_retries=0),
        rate_limit=None,
    )
    async with client:
        with pytest.raises(ItnioTransportError, match=r"wrong-host\.example\.net") as caught:
            await client.query_group_calls(datetime(2024, 1, 1), datetime(2024, 1, 2))
    assert "All connection attempts failed" in str(caught.value)


# -- the command line reads the same variables ---------------------------------------------


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeVendor:
    vendor = FakeVendor(KEY, SECRET, dataset=Dataset.generate(250, seed=9))
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ITNIO_API_KEY", KEY)
    monkeypatch.setenv("ITNIO_API_SECRET", SECRET)
    monkeypatch.setenv("ITNIO_BASE_URL", "http://127.0.0.1:9")  # closed, should it leak
    monkeypatch.setattr(commands, "_transport_factory", vendor.transport)
    return vendor


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments of every client the command line makes."""
    calls: list[dict[str, Any]] = []

    def spy(*args: Any, **kwargs: Any) -> AsyncVoiceClient:
        calls.append(kwargs)
        return AsyncVoiceClient(*args, **kwargs)

    monkeypatch.setattr(commands, "AsyncVoiceClient", spy)
    return calls


def test_the_cli_takes_the_rate_limit_and_zone_from_the_environment(
    fake: FakeVendor,
    made: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ITNIO_RATE_LIMIT", "250")
    monkeypatch.setenv("ITNIO_SERVER_TIMEZONE", "Asia/Shanghai")
    assert commands.main(["count", *WINDOW]) == commands.EXIT_OK
    assert capsys.readouterr().out == "250\n"
    assert made[-1]["rate_limit"] == 250.0
    assert made[-1]["server_timezone"] == ZoneInfo("Asia/Shanghai")
    # The options win over the environment.
    argv = ["count", *WINDOW, "--rate-limit", "7", "--server-timezone", "UTC"]
    assert commands.main(argv) == commands.EXIT_OK
    assert (made[-1]["rate_limit"], made[-1]["server_timezone"]) == (7.0, ZoneInfo("UTC"))


def test_an_offset_time_is_fine_with_itnio_server_timezone(
    fake: FakeVendor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ITNIO_SERVER_TIMEZONE", "UTC")
    argv = ["count", "--start", "2024-01-01T00:00:00+00:00", "--end", "2024-06-30"]
    assert commands.main(argv) == commands.EXIT_OK
    assert capsys.readouterr().out == "250\n"


def test_a_wrong_variable_stops_the_cli_naming_it(
    fake: FakeVendor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ITNIO_RATE_LIMIT", "fast")
    assert commands.main(["count", *WINDOW]) == commands.EXIT_USAGE
    assert capsys.readouterr().err.startswith("itnio-async: error: ITNIO_RATE_LIMIT must be")
    assert fake.stats.requests == 0


def test_start_page_past_the_end_is_an_error_not_an_empty_file(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.jsonl"
    argv = ["export", *WINDOW, "--rate-limit", "none", "-o", str(path), "--start-page", "400"]
    assert commands.main(argv) == commands.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        "itnio-async: error: --start-page 400 is past the window's last page "
        "(250 tasks make 3 pages of 100): nothing written\n"
    )
    assert not path.exists()


def test_the_progress_bar_labels_its_time_column(
    fake: FakeVendor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli_progress, "stream_is_terminal", lambda stream: True)
    argv = ["export", *WINDOW, "--rate-limit", "none", "-o", str(tmp_path / "t.jsonl")]
    assert commands.main(argv) == commands.EXIT_OK
    err = capsys.readouterr().err
    assert re.search(r"\d+\.\ds elapsed", err), err
    assert not re.search(r"(?<![\w.])\d+:\d\d(?!:)", err), err  # no bare clock


# -- one record format, one date parser ------------------------------------------------------


def test_parse_time_reads_a_bare_end_date_as_the_end_of_that_day() -> None:
    assert parse_time("2024-06-30", end=True) == datetime(2024, 6, 30, 23, 59, 59)
    assert parse_time(" 2024-06-30 ") == datetime(2024, 6, 30)
    assert parse_time("2024-06-30 08:15:00", end=True) == datetime(2024, 6, 30, 8, 15)
    assert parse_time("2024-06-30T08:15:00+08:00") == datetime(
        2024, 6, 30, 8, 15, tzinfo=timezone(timedelta(hours=8))
    )
    with pytest.raises(ValueError, match="not a time: 'June'"):
        parse_time("June")
    with pytest.raises(TypeError, match="must be a str"):
        parse_time(20240630)  # type: ignore[arg-type]


def test_record_row_is_the_one_record_format() -> None:
    record = GroupCallRecord(
        job_id=7,
        task_name="=1+1",
        status=GroupCallStatus.SUBMISSION_FAILED,
        rate="100",
        num_cnt=3,
        call_num=2,
        success=1,
        fail=1,
        created_time=datetime(2024, 6, 4, 14, 49, 36),
    )
    row = record_row(record)
    assert tuple(row) == RECORD_COLUMNS
    assert row["status_name"] == "submission_failed"
    assert GroupCallStatus.parse(str(row["status_name"])) is GroupCallStatus.SUBMISSION_FAILED
    assert row["created_time"] == "2024-06-04T14:49:36"
    assert json.loads(json.dumps(row)) == row


def test_the_readme_has_one_table_of_every_variable() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = {m[1] for m in re.finditer(r"^\| `([A-Z_]+)` \|", section, re.MULTILINE)}
    assert set(ENVIRONMENT) <= rows
    assert {"REDIS_URL", "ITNIO_LIMIT_PREFIX", "ITNIO_DEMO"} <= rows
