"""The ``itnio-async`` command line, run for real.

End to end, ``python -m itnio_async`` runs in a subprocess against its ``--demo`` fake, and
the output is parsed back and compared with the same fake's data (``commands.demo_vendor``).
The many argument and exit-code cases call ``main(argv)`` in-process, pointed at a small
fake vendor through the module's private transport seam; nothing reaches the network.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import itnio_async
from itnio_async.cli import _commands as commands
from itnio_async.cli import _output as cli_output
from itnio_async.cli import _progress as cli_progress
from itnio_async.cli._output import Output
from itnio_async.testing import Dataset, FakeTask, FakeVendor, Fault, FaultPlan

KEY = "cli-key"
SECRET = "cli-secret-never-printed"
TASKS = 450
WINDOW = ["--start", "2024-01-01", "--end", "2024-06-30"]
STATUS_NAMES = {
    0: "waiting_for_submission",
    1: "calling",
    2: "completed",
    3: "submission_failed",
    4: "cancelled",
    5: "suspended",
    6: "submitting",
}


def expected_row(task: FakeTask) -> dict[str, Any]:
    """What the CLI must write for a task, built from the fake's data alone."""
    return {
        "job_id": task.job_id,
        "task_name": task.task_name,
        "status": task.status,
        "status_name": STATUS_NAMES[task.status],
        "rate": task.rate,
        "num_cnt": task.num_cnt,
        "call_num": task.call_num,
        "success": task.success,
        "fail": task.fail,
        "created_time": task.created_time.isoformat(),
    }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


#: A spreadsheet runs a cell starting with one of these as a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_strings(rows: list[dict[str, Any]], *, raw: bool = False) -> list[dict[str, str]]:
    """The rows as a CSV reader reads them back: text cells that would start a formula
    carry a leading ``'`` unless the export was ``raw``."""

    def cell(value: Any) -> str:
        if isinstance(value, str) and not raw and value.startswith(FORMULA_STARTS):
            return "'" + value
        return str(value)

    return [{key: cell(value) for key, value in row.items()} for row in rows]


def records_written(err: str, hint: str) -> int:
    """The records an error's last line says were written, checking how it says to resume."""
    match = re.search(rf"; (\d+) records written, {re.escape(hint)}$", err.rstrip())
    assert match is not None, err
    return int(match[1])


def manifest_of(path: Path) -> Path:
    return path.with_name(path.name + ".itnio-export.json")


def read_manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(manifest_of(path).read_text(encoding="utf-8"))
    return data


def all_rows(fake: FakeVendor, **filters: Any) -> list[dict[str, Any]]:
    """What a whole export of ``WINDOW`` must hold, from the fake's data alone."""
    expected = fake.expected("2024-01-01 00:00:00", "2024-06-30 23:59:59", **filters)
    return [expected_row(task) for task in expected]


# -- in-process runs against a small fake ------------------------------------------------


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeVendor:
    """A fake vendor with the environment's credentials, behind the CLI's transport seam."""
    vendor = FakeVendor(KEY, SECRET, dataset=Dataset.generate(TASKS, seed=5))
    monkeypatch.setenv("ITNIO_API_KEY", KEY)
    monkeypatch.setenv("ITNIO_API_SECRET", SECRET)
    # Loopback and closed: should the seam ever be bypassed, nothing leaves the machine.
    monkeypatch.setenv("ITNIO_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(commands, "_transport_factory", vendor.transport)
    return vendor


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = commands.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def export(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[int, str]:
    code, out, err = run(capsys, "export", *WINDOW, "--rate-limit", "none", "-o", str(path), *argv)
    assert out == ""
    return code, err


def test_export_writes_every_record_as_json_lines(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.jsonl"
    code, err = export(capsys, path)
    assert code == commands.EXIT_OK
    expected = fake.expected("2024-01-01 00:00:00", "2024-06-30 23:59:59")
    assert len(expected) == TASKS
    assert read_jsonl(path) == [expected_row(task) for task in expected]
    assert err.splitlines()[-1].startswith(f"itnio-async: done: {TASKS} records, 5 pages")
    assert not manifest_of(path).exists()  # complete: a later run starts afresh


def test_export_to_stdout_as_csv_with_a_header(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "export", *WINDOW, "--format", "csv", "--limit", "120")
    assert code == commands.EXIT_OK
    rows = list(csv.DictReader(io.StringIO(out)))
    expected = fake.expected("2024-01-01 00:00:00", "2024-06-30 23:59:59")[:120]
    assert rows == as_strings([expected_row(task) for task in expected])


def test_csv_cells_that_would_run_as_formulas_are_neutralised_unless_raw(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Task names are whoever created the tasks' text: some start a formula.
    names = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\t=1", "\r=1", "a=b"]
    fake.dataset.insert(
        FakeTask(9_000_000 + i, name, 2, "-5", 1, 1, 1, 0, datetime(2024, 3, 1, 12, 0, i))
        for i, name in enumerate(names)
    )
    rows = all_rows(fake)
    assert len([row for row in rows if row["task_name"].startswith(FORMULA_STARTS)]) == 6
    path = tmp_path / "tasks.csv"
    code, _ = export(capsys, path)
    assert code == commands.EXIT_OK
    with path.open(newline="", encoding="utf-8") as file:
        written = list(csv.DictReader(file))
    assert written == as_strings(rows)
    assert not any(row["task_name"].startswith(FORMULA_STARTS) for row in written)
    raw_path = tmp_path / "raw.csv"
    code, _ = export(capsys, raw_path, "--csv-raw")
    assert code == commands.EXIT_OK
    with raw_path.open(newline="", encoding="utf-8") as file:
        assert list(csv.DictReader(file)) == as_strings(rows, raw=True)
    # JSON Lines is data for programs, not a spreadsheet: written as it came.
    jsonl = tmp_path / "tasks.jsonl"
    assert export(capsys, jsonl)[0] == commands.EXIT_OK
    assert read_jsonl(jsonl) == rows


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("plain = text", "plain = text"),
        ("'quoted", "'quoted"),
        ("", ""),
        (-5, -5),
    ],
)
def test_neutralise_prefixes_only_text_that_starts_a_formula(
    value: object, written: object
) -> None:
    assert cli_output.neutralise(value) == written


@pytest.mark.parametrize(
    ("statuses", "numbers"),
    [
        (["completed,CALLING"], [2, 1]),
        (["2", "--statuses", "1"], [2, 1]),
        (["submission-failed, waiting"], [3, 0]),
        (["Cancelled,canceled,4"], [4]),
    ],
)
def test_statuses_by_name_or_number(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    statuses: list[str],
    numbers: list[int],
) -> None:
    path = tmp_path / "tasks.jsonl"
    code, _ = export(capsys, path, "--statuses", *statuses)
    assert code == commands.EXIT_OK
    expected = fake.expected("2024-01-01 00:00:00", "2024-06-30 23:59:59", statuses=numbers)
    assert 0 < len(expected) < TASKS
    assert read_jsonl(path) == [expected_row(task) for task in expected]


def test_app_id_and_search_filter_like_the_vendor(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.csv"
    word = next(iter(fake.dataset)).task_name.split()[0]
    code, _ = export(capsys, path, "--app-id", "2", "--search", word.upper())
    assert code == commands.EXIT_OK
    expected = fake.expected(
        "2024-01-01 00:00:00", "2024-06-30 23:59:59", app_id=2, search=word.upper()
    )
    assert expected
    with path.open(newline="", encoding="utf-8") as file:
        assert list(csv.DictReader(file)) == as_strings([expected_row(t) for t in expected])


def test_limit_and_page_size_then_a_re_run_goes_on(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.jsonl"
    argv = ("--page-size", "50", "--concurrency", "2")
    code, err = export(capsys, path, "--limit", "130", *argv)
    assert code == commands.EXIT_OK
    assert read_jsonl(path) == all_rows(fake)[:130]
    # A page holds up to 50 records (the boundary second's repeats are dropped), and no
    # request is made beyond the limit.
    match = re.search(r"done: 130 records, (\d+) pages, (\d+) requests", err)
    assert match is not None, err
    pages = int(match[1])
    assert 3 <= pages == int(match[2]) == fake.stats.requests
    assert "stopped at --limit: run the same command again for the next records" in err
    assert read_manifest(path)["records"] == 130
    # The window has more: the same command without --limit appends exactly the rest.
    code, err = export(capsys, path, *argv)
    assert code == commands.EXIT_OK
    assert read_jsonl(path) == all_rows(fake)
    assert f"done: {TASKS - 130} records ({TASKS} in {path})" in err
    assert not manifest_of(path).exists()


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_start_page_appends_exactly_the_rest_by_page_number(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    whole, part = tmp_path / f"whole.{suffix}", tmp_path / f"part.{suffix}"
    assert export(capsys, whole)[0] == commands.EXIT_OK
    header = 1 if suffix == "csv" else 0
    lines = whole.read_bytes().splitlines(keepends=True)
    part.write_bytes(b"".join(lines[: header + 200]))  # pages 1 and 2 of 100
    code, err = export(capsys, part, "--start-page", "3")
    assert code == commands.EXIT_OK
    assert "from page 3" in err
    assert part.read_bytes() == whole.read_bytes()  # one CSV header, no repeats, no gaps
    assert not manifest_of(part).exists()  # offset mode keeps none


def test_resume_removes_a_partial_last_line_first(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    assert export(capsys, whole)[0] == commands.EXIT_OK
    lines = whole.read_bytes().splitlines(keepends=True)
    part.write_bytes(b"".join(lines[:100]) + lines[100][:17])  # as a hard kill could leave
    code, err = export(capsys, part, "--start-page", "2")
    assert code == commands.EXIT_OK
    assert "removed a partial last line (17 bytes)" in err
    assert part.read_bytes() == whole.read_bytes()


def test_an_empty_result_still_writes_the_csv_header(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none.csv"
    code, _, err = run(
        capsys, "export", "--start", "2023-01-01", "--end", "2023-01-02", "-o", str(path)
    )
    assert code == commands.EXIT_OK
    assert path.read_text() == (
        "job_id,task_name,status,status_name,rate,num_cnt,call_num,success,fail,created_time\n"
    )
    assert "done: 0 records, 0 pages" in err
    assert not manifest_of(path).exists()


def test_server_timezone_writes_times_with_their_offset(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.jsonl"
    code, _ = export(capsys, path, "--server-timezone", "Asia/Shanghai", "--limit", "5")
    assert code == commands.EXIT_OK
    rows = read_jsonl(path)
    expected = fake.expected("2024-01-01 00:00:00", "2024-06-30 23:59:59")[:5]
    assert [row["job_id"] for row in rows] == [task.job_id for task in expected]
    assert all(row["created_time"].endswith("+08:00") for row in rows)


def test_count_makes_one_request_of_one_record(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "count", *WINDOW, "--statuses", "completed")
    assert code == commands.EXIT_OK
    expected = fake.expected("2024-01-01 00:00:00", "2024-06-30 23:59:59", statuses=[2])
    assert out == f"{len(expected)}\n"
    assert err == ""
    assert fake.stats.requests == 1


def test_a_bare_date_as_end_means_the_whole_day(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str]
) -> None:
    day = next(iter(fake.dataset)).created_time.date().isoformat()
    code, out, _ = run(capsys, "count", "--start", day, "--end", day)
    assert code == commands.EXIT_OK
    assert int(out) == len(fake.expected(f"{day} 00:00:00", f"{day} 23:59:59")) > 0


# -- progress -------------------------------------------------------------------------------


def test_quiet_prints_nothing_on_success(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = export(capsys, tmp_path / "tasks.jsonl", "--quiet")
    assert code == commands.EXIT_OK
    assert err == ""


def test_plain_progress_lines_when_stderr_is_not_a_terminal(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = export(capsys, tmp_path / "tasks.jsonl", "--page-size", "50")
    assert code == commands.EXIT_OK
    lines = err.splitlines()
    assert lines[0] == f"itnio-async: exporting {TASKS} records to {tmp_path / 'tasks.jsonl'}"
    progress = [line for line in lines if "req/s" in line]
    assert progress
    assert all("retries" in line and "elapsed" in line for line in progress)
    assert "\x1b" not in err  # no terminal codes in a log


def test_progress_bar_on_a_terminal(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_progress, "stream_is_terminal", lambda stream: True)
    code, err = export(capsys, tmp_path / "tasks.jsonl", "--page-size", "50")
    assert code == commands.EXIT_OK
    assert f"{TASKS}/{TASKS} records" in err
    assert re.search(r"\d+ pages", err)
    assert "req/s" in err
    # After the bar (and the escape that shows the cursor again), the summary.
    last = err.rstrip().splitlines()[-1]
    match = re.search(rf"itnio-async: done: {TASKS} records, (\d+) pages, (\d+) requests, 0 ", last)
    assert match is not None, last
    assert f"{match[1]}/{match[1]} pages" in err  # the bar ends with what was written


def test_without_rich_a_one_line_note_then_plain_lines(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_progress, "stream_is_terminal", lambda stream: True)
    monkeypatch.setitem(sys.modules, "rich.console", None)  # import fails
    code, err = export(capsys, tmp_path / "tasks.jsonl")
    assert code == commands.EXIT_OK
    notes = [line for line in err.splitlines() if "note:" in line]
    assert notes == [
        "itnio-async: note: no progress bar without rich (pip install 'itnio-async[cli]'); "
        "printing progress lines"
    ]
    assert "exporting 450 records" in err


def test_verbose_logs_retries(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.clock_offset = 3600.0  # -16 until the client learns the clock, then retried at once
    code, err = export(capsys, tmp_path / "tasks.jsonl", "-v")
    assert code == commands.EXIT_OK
    assert "itnio-async: warning: retrying POST" in err
    assert SECRET not in err


# -- errors and exit codes --------------------------------------------------------------


def test_missing_credentials_is_one_line_naming_both_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ITNIO_API_KEY", raising=False)
    monkeypatch.setenv("ITNIO_API_SECRET", "")
    path = tmp_path / "tasks.jsonl"
    code, out, err = run(capsys, "export", *WINDOW, "-o", str(path))
    assert code == commands.EXIT_USAGE
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("itnio-async: error: missing credentials")
    assert "ITNIO_API_KEY" in err
    assert "ITNIO_API_SECRET" in err
    assert not path.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["export"],  # no window
        ["export", "--start", "2024-01-01"],
        ["export", "--start", "2024-02-01", "--end", "2024-01-01"],
        ["export", "--start", "2024-13-01", "--end", "2024-12-31"],
        ["export", "--start", "2024-01-01T00:00:00+08:00", "--end", "2024-01-02"],
        [
            "export",
            "--start",
            "2024-01-02T00:00:00+00:00",
            "--end",
            "2024-01-01",
            "--server-timezone",
            "UTC",
        ],  # backwards once converted: the client says so before any request
        ["count", *WINDOW, "--server-timezone", "Mars/Olympus"],
        ["count", *WINDOW, "--statuses", "ringing"],
        ["count", *WINDOW, "--statuses", "9"],
        ["count", *WINDOW, "--app-id", "-1"],
        ["export", *WINDOW, "--page-size", "101"],
        ["export", *WINDOW, "--rate-limit", "fast"],
        ["export", *WINDOW, "--format", "xml"],
        ["export", *WINDOW, "--api-secret", "s3cret"],  # secrets are not options
        ["export", *WINDOW, "-o", "tasks.jsonl", "--resume-from", "itc1.e30"],  # a manifest's
        ["export", *WINDOW, "--resume-from", "itc1.e30", "--start-page", "2"],
        ["export", *WINDOW, "--resume-from", "page 3"],  # not a cursor
        ["export", *WINDOW, "--restart"],  # stdout has no manifest
        ["export", *WINDOW, "-o", "tasks.jsonl", "--restart", "--start-page", "2"],
        [],
    ],
)
def test_bad_arguments_exit_2(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == commands.EXIT_USAGE
    assert out == ""
    assert "error:" in err
    assert fake.stats.requests == 0


@pytest.mark.parametrize(
    ("output", "says"),
    [("no/such/dir/tasks.jsonl", "no such directory: no/such/dir"), (".", "it is a directory")],
)
def test_an_output_that_cannot_be_written_exits_1_as_the_readme_says(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], output: str, says: str
) -> None:
    code, out, err = run(capsys, "export", *WINDOW, "-o", output)
    assert code == commands.EXIT_FAILURE
    assert out == ""
    assert err == f"itnio-async: error: cannot write {output}: {says}\n"
    assert fake.stats.requests == 0


def test_a_bad_base_url_is_a_usage_error(
    fake: FakeVendor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ITNIO_BASE_URL", "http://example.com")
    code, _, err = run(capsys, "count", *WINDOW)
    assert code == commands.EXIT_USAGE
    # The variable the user set, not the argument it feeds.
    assert err.startswith("itnio-async: error: ITNIO_BASE_URL must be https://")


def test_rate_limit_accepts_numbers_and_none() -> None:
    parser = commands.build_parser()
    for text, value in [("2.5", 2.5), ("none", 0.0), ("0", 0.0), ("OFF", 0.0)]:
        args = parser.parse_args(["export", *WINDOW, "--rate-limit", text])
        assert args.rate_limit == value


def test_global_options_go_before_or_after_the_command() -> None:
    parser = commands.build_parser()
    before = parser.parse_args(["--demo", "-q", "export"])
    after = parser.parse_args(["export", "--demo", "-q"])
    assert (before.demo, before.quiet, after.demo, after.quiet) == (True, True, True, True)
    assert parser.parse_args(["--demo", "export"]).quiet is False


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault.code(-1), "vendor error -1"),
        (Fault.code(-2), "vendor error -2"),
        (Fault.code(-22), "vendor error -22"),
        (Fault.code(-99, "new"), "vendor error -99: new"),
        (Fault.http(404), "HTTP 404"),
    ],
)
def test_vendor_refusals_exit_3(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault: Fault,
    message: str,
) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("an earlier export\n")
    fake.faults = FaultPlan(by_request={1: fault})
    code, err = export(capsys, path)
    assert code == commands.EXIT_REFUSED
    assert err.splitlines() == [err.rstrip("\n")]  # one line
    assert err.startswith(f"itnio-async: error: {message}")
    assert "Traceback" not in err
    assert "resume" not in err  # nothing to resume: the first request was refused
    assert path.read_text() == "an earlier export\n"  # not opened, so not clobbered


def test_wrong_credentials_exit_3_and_never_print_the_secret(
    fake: FakeVendor,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ITNIO_API_SECRET", SECRET + "-wrong")
    code, out, err = run(capsys, "-v", "count", *WINDOW)
    assert code == commands.EXIT_REFUSED
    assert "Traceback" in err  # -v
    assert "AuthenticationError" in err
    assert SECRET not in err + out


@pytest.mark.parametrize(
    "fault",
    [Fault.code(-18), Fault.code(-16), Fault.http(503), Fault.http(429), Fault.drop()],
)
def test_transient_faults_that_outlast_the_retries_exit_4_and_a_re_run_resumes(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: Fault
) -> None:
    path = tmp_path / "tasks.jsonl"
    fake.faults = FaultPlan(by_request={3: fault})  # one at a time: request 3 is page 3
    code, err = export(capsys, path, "--max-retries", "0", "--concurrency", "1")
    assert code == commands.EXIT_TRANSIENT
    assert err.splitlines()[-1].startswith("itnio-async: error: ")
    written = records_written(err, "run the same command again to resume")
    assert 100 < written <= 200  # two pages of up to 100
    assert read_jsonl(path) == all_rows(fake)[:written]
    manifest = read_manifest(path)
    assert manifest["format"] == "jsonl"
    assert manifest["window"] == {
        "start": "2024-01-01T00:00:00",
        "end": "2024-06-30T23:59:59",
        "server_timezone": None,
    }
    assert manifest["filters"] == {"statuses": None, "app_id": None, "search": None}
    assert manifest["page_size"] == 100
    assert (manifest["records"], manifest["bytes"]) == (written, path.stat().st_size)
    assert not itnio_async.StreamCursor.from_string(manifest["cursor"]).done
    fake.faults = None
    code, err = export(capsys, path, "--max-retries", "0", "--concurrency", "1")
    assert code == commands.EXIT_OK
    assert "resuming the export to" in err
    assert read_jsonl(path) == all_rows(fake)
    assert not manifest_of(path).exists()


#: The options of the export that ``unfinished_export`` leaves unfinished.
UNFINISHED = {
    "--start": "2024-01-01",
    "--end": "2024-06-30",
    "--statuses": "completed,calling",
    "--page-size": "20",
    "--concurrency": "1",
}


def unfinished_export(fake: FakeVendor, capsys: pytest.CaptureFixture[str], path: Path) -> bytes:
    """An export to ``path`` stopped by a transient fault after some pages: its bytes."""
    fake.faults = FaultPlan(by_request={3: Fault.http(503)})
    argv = [part for option in UNFINISHED.items() for part in option]
    code, _ = export(capsys, path, *argv, "--max-retries", "0")
    assert code == commands.EXIT_TRANSIENT
    fake.faults = None
    assert manifest_of(path).exists()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("changed", "says"),
    [
        ({"--format": "csv"}, "of another format jsonl (this command: csv)"),
        (
            {"--end": "2024-05-31"},
            "of another window 2024-01-01T00:00:00 to 2024-06-30T23:59:59 (this command: "
            "2024-01-01T00:00:00 to 2024-05-31T23:59:59)",
        ),
        ({"--statuses": "completed"}, "of another filters statuses ['calling', 'completed']"),
        ({"--app-id": "2"}, "(this command: statuses ['calling', 'completed'], app_id 2)"),
        ({"--page-size": "50"}, "of another page size 20 (this command: 50)"),
        ({"--server-timezone": "UTC"}, "in UTC)"),
    ],
)
def test_a_re_run_with_other_arguments_is_refused(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changed: dict[str, str],
    says: str,
) -> None:
    path = tmp_path / "tasks.jsonl"
    before = unfinished_export(fake, capsys, path)
    manifest = manifest_of(path).read_bytes()
    requests = fake.stats.requests
    argv = [part for option in {**UNFINISHED, **changed}.items() for part in option]
    code, out, err = run(capsys, "export", *argv, "--rate-limit", "none", "-o", str(path))
    assert (code, out) == (commands.EXIT_USAGE, "")
    assert err.startswith(f"itnio-async: error: {path} holds an unfinished export (")
    assert says in err
    assert err.rstrip().endswith(f"or start over with --restart (or delete {manifest_of(path)})")
    assert len(err.splitlines()) == 1
    assert fake.stats.requests == requests  # refused before any request
    assert path.read_bytes() == before
    assert manifest_of(path).read_bytes() == manifest


def test_a_csv_export_resumed_with_the_other_cell_setting_is_refused(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Neutralised and raw cells must not mix in one file.
    path = tmp_path / "tasks.csv"
    before = unfinished_export(fake, capsys, path)
    argv = [part for option in UNFINISHED.items() for part in option]
    code, out, err = run(
        capsys, "export", *argv, "--csv-raw", "--rate-limit", "none", "-o", str(path)
    )
    assert (code, out) == (commands.EXIT_USAGE, "")
    assert "--csv-raw" in err
    assert path.read_bytes() == before


def test_statuses_in_another_order_or_spelling_resume_the_same_export(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.jsonl"
    unfinished_export(fake, capsys, path)
    argv = ("--statuses", "1", "--statuses", "COMPLETED", "--page-size", "20")
    assert export(capsys, path, *argv)[0] == commands.EXIT_OK
    assert read_jsonl(path) == all_rows(fake, statuses=[1, 2])


@pytest.mark.parametrize("damage", ["missing", "shorter", "garbled manifest"])
def test_a_manifest_that_does_not_match_its_file_is_refused_and_restart_starts_over(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    path = tmp_path / "tasks.jsonl"
    before = unfinished_export(fake, capsys, path)
    if damage == "missing":
        path.unlink()
    elif damage == "shorter":
        path.write_bytes(before[:-10])
    else:
        manifest_of(path).write_text("{not json")
    requests = fake.stats.requests
    argv = ("--statuses", "completed,calling", "--page-size", "20")
    code, err = export(capsys, path, *argv)
    assert code == commands.EXIT_USAGE
    assert len(err.splitlines()) == 1
    assert fake.stats.requests == requests
    says = {
        "missing": f"{path} is missing, but {manifest_of(path)} describes an unfinished export",
        "shorter": f"{path} is shorter ({len(before) - 10} bytes) than its manifest says "
        f"({len(before)} bytes)",
        "garbled manifest": f"{manifest_of(path)} is not a readable export manifest",
    }[damage]
    assert err.startswith(f"itnio-async: error: {says}")
    assert err.rstrip().endswith(f"start over with --restart (or delete {manifest_of(path)})")
    # --restart: a fresh export over the file, the old manifest gone with it.
    code, _ = export(capsys, path, *argv, "--restart")
    assert code == commands.EXIT_OK
    assert read_jsonl(path) == all_rows(fake, statuses=[1, 2])
    assert not manifest_of(path).exists()


def test_a_re_run_cuts_off_what_followed_the_last_whole_page(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.jsonl"
    before = unfinished_export(fake, capsys, path)
    with path.open("ab") as file:
        file.write(b'{"job_id":1,"task_n')  # as a hard kill in the middle of a page leaves
    argv = [part for option in UNFINISHED.items() for part in option]
    code, err = export(capsys, path, *argv)
    assert code == commands.EXIT_OK
    assert "removed what followed its last whole page (19 bytes)" in err
    assert path.read_bytes().startswith(before)
    assert read_jsonl(path) == all_rows(fake, statuses=[1, 2])


def test_start_page_is_refused_on_a_file_with_an_unfinished_export(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tasks.jsonl"
    before = unfinished_export(fake, capsys, path)
    code, err = export(capsys, path, "--statuses", "completed,calling", "--start-page", "3")
    assert code == commands.EXIT_USAGE
    assert "without --start-page to resume it exactly" in err
    assert path.read_bytes() == before


def test_stdout_resumes_with_the_cursor_it_printed(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.faults = FaultPlan(by_request={3: Fault.http(503)})
    argv = ("export", *WINDOW, "--format", "csv", "--max-retries", "0", "--concurrency", "1")
    code, first, err = run(capsys, *argv)
    assert code == commands.EXIT_TRANSIENT
    match = re.search(r"; \d+ records written, resume with --resume-from (itc1\.\S+)$", err)
    assert match is not None, err
    fake.faults = None
    code, rest, err = run(capsys, *argv, "--resume-from", match[1])
    assert code == commands.EXIT_OK, err
    rows = list(csv.DictReader(io.StringIO(first + rest)))  # the header once, at the top
    assert rows == as_strings(all_rows(fake))


def test_a_re_run_after_churn_delivers_every_task_that_stayed_exactly_once(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(4_000, seed=8))
    monkeypatch.setattr(commands, "_transport_factory", fake.transport)
    calling = int(itnio_async.GroupCallStatus.CALLING)
    completed = int(itnio_async.GroupCallStatus.COMPLETED)
    path = tmp_path / "calling.jsonl"
    argv = ("--statuses", "calling", "--page-size", "20", "--concurrency", "2")
    before = {row["job_id"] for row in all_rows(fake, statuses=[calling])}
    assert len(before) > 60
    fake.faults = FaultPlan(by_request={12: Fault.http(503)})
    code, _ = export(capsys, path, *argv, "--max-retries", "0")
    assert code == commands.EXIT_TRANSIENT
    first = read_jsonl(path)
    assert 40 < len(first) < len(before) - 40
    fake.faults = None

    # Between the runs: written tasks leave the filter, unread ones enter it or are
    # removed, and new tasks appear at the top and the bottom of the window.
    written = [row["job_id"] for row in first]
    last = first[-1]["created_time"]
    unread = [
        row for row in all_rows(fake) if row["created_time"] < last and row["job_id"] not in written
    ]
    entering = [row["job_id"] for row in unread if row["status"] != calling][-5:]
    leaving = [row["job_id"] for row in unread if row["status"] == calling][2:7]
    assert len(entering) == len(leaving) == 5
    fake.change_status(written[:5], completed)
    fake.change_status(entering, calling)
    fake.remove_tasks(leaving)
    above = fake.insert_tasks(3, created_time=datetime(2024, 6, 30, 23, 59, 59), status=calling)
    fake.insert_tasks(3, created_time=datetime(2024, 1, 1), status=calling)

    code, _ = export(capsys, path, *argv)
    assert code == commands.EXIT_OK
    rows = read_jsonl(path)
    ids = [row["job_id"] for row in rows]
    assert len(ids) == len(set(ids))  # nothing twice
    assert ids[: len(first)] == written  # the first run's lines, untouched
    stayed = before - set(written) - set(leaving)
    rest = ids[len(first) :]
    # Below the cursor: every task that stayed, those that entered, and the new ones, in
    # the vendor's order; those created above the cursor belong to a later export.
    now = [row["job_id"] for row in all_rows(fake, statuses=[calling])]
    done = set(written) | {task.job_id for task in above}
    assert rest == [job_id for job_id in now if job_id not in done]
    assert stayed <= set(rest)
    assert set(entering) <= set(rest)
    assert not set(leaving) & set(rest)


def test_count_exits_4_on_a_transient_fault(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.faults = FaultPlan(by_request={1: Fault.http(502, html=True)})
    code, out, err = run(capsys, "count", *WINDOW, "--max-retries", "0")
    assert code == commands.EXIT_TRANSIENT
    assert out == ""
    assert err.startswith("itnio-async: error: HTTP 502")


def test_the_exit_code_follows_what_an_error_says_of_its_transience() -> None:
    """The tool asks the error (``transient``), not a private copy of the retry rules."""

    class Passing(itnio_async.ItnioError):
        transient = True

    assert commands.exit_code_for(Passing("passes with time")) == commands.EXIT_TRANSIENT
    assert commands.exit_code_for(itnio_async.ItnioHTTPError(503, "")) == commands.EXIT_TRANSIENT
    assert commands.exit_code_for(itnio_async.ItnioHTTPError(403, "")) == commands.EXIT_REFUSED
    refused = itnio_async.ItnioHTTPError(503, "")
    refused.transient = False
    assert commands.exit_code_for(refused) == commands.EXIT_REFUSED
    unavailable = itnio_async.LimiterUnavailableError("redis is down")
    assert commands.exit_code_for(unavailable) == commands.EXIT_FAILURE
    # Not transient for one request, but a later, resumed run is the advice.
    unstable = itnio_async.ResultUnstableError("kept changing")
    assert not unstable.transient
    assert commands.exit_code_for(unstable) == commands.EXIT_TRANSIENT


def test_a_malformed_reply_exits_5(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ITNIO_API_KEY", KEY)
    monkeypatch.setenv("ITNIO_API_SECRET", SECRET)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>maintenance</html>")

    monkeypatch.setattr(commands, "_transport_factory", lambda: httpx.MockTransport(handler))
    code, err = export(capsys, tmp_path / "tasks.jsonl")
    assert code == commands.EXIT_MALFORMED
    assert err.startswith("itnio-async: error: malformed reply")


class FullDisk:
    """``os.write`` on a disk that fills up: ``pages`` pages of records (with their
    manifests) fit; then, with ``what="page"``, the next page is written in part, or, with
    ``what="manifest"``, the next page fits but not its manifest; from then on every write
    fails with ENOSPC until ``free()``. ``os.ftruncate`` still works, as on a real disk."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pages: int, what: str) -> None:
        self._real = os.write
        self._pages_left = pages
        self._what = what
        self._fill_at_manifest = False
        self.full = False
        monkeypatch.setattr(cli_output.os, "write", self)

    def free(self) -> None:
        self.full = self._fill_at_manifest = False
        self._pages_left = sys.maxsize

    def _fill(self) -> OSError:
        self.full = True
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __call__(self, fd: int, data: Any) -> int:
        chunk = bytes(data)
        if self.full:
            raise self._fill()
        if b'"kind"' in chunk:  # a manifest
            if self._fill_at_manifest:
                raise self._fill()
        elif b'"job_id"' in chunk:  # a page
            if self._pages_left == 0:
                if self._what == "page":
                    self._fill()
                    return self._real(fd, chunk[: len(chunk) // 2])
                self._fill_at_manifest = True
            self._pages_left -= 1
        return self._real(fd, chunk)


@pytest.mark.parametrize("what", ["page", "manifest"])
def test_a_full_disk_cuts_the_file_back_and_a_re_run_resumes_without_repeats(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> None:
    path = tmp_path / "tasks.jsonl"
    disk = FullDisk(monkeypatch, pages=2, what=what)
    code, err = export(capsys, path, "--concurrency", "1")
    assert code == commands.EXIT_FAILURE
    target = path if what == "page" else manifest_of(path)
    assert err.splitlines()[-1].startswith(
        f"itnio-async: error: cannot write {target}: No space left on device; "
    )
    written = records_written(err, "run the same command again to resume")
    # The file holds exactly the two pages the manifest names, and nothing half written.
    assert 100 < written <= 200
    assert read_jsonl(path) == all_rows(fake)[:written]
    manifest = read_manifest(path)
    assert (manifest["records"], manifest["bytes"]) == (written, path.stat().st_size)
    assert not list(tmp_path.glob("*.tmp"))
    disk.free()
    code, _ = export(capsys, path, "--concurrency", "1")
    assert code == commands.EXIT_OK
    assert read_jsonl(path) == all_rows(fake)


def test_a_write_error_exits_1_and_leaves_the_file_resumable(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = os.write
    pages: list[int] = []

    def write(fd: int, data: Any) -> int:
        if b'"job_id"' in bytes(data):
            pages.append(fd)
            if len(pages) == 3:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, data)

    monkeypatch.setattr(cli_output.os, "write", write)
    path = tmp_path / "tasks.jsonl"
    code, err = export(capsys, path, "--concurrency", "1")
    assert code == commands.EXIT_FAILURE
    assert err.splitlines()[-1].startswith(
        f"itnio-async: error: cannot write {path}: {os.strerror(errno.EIO)}; "
    )
    written = records_written(err, "run the same command again to resume")
    assert read_manifest(path)["records"] == len(read_jsonl(path)) == written > 0


def test_an_unexpected_error_is_one_line_without_verbose(
    fake: FakeVendor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(self: Output, records: Any, cursor: str | None = None) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Output, "write_page", boom)
    code, err = export(capsys, tmp_path / "tasks.jsonl", "-q")
    assert code == commands.EXIT_FAILURE
    assert err == (
        "itnio-async: error: internal error: RuntimeError: boom (run with -v for the traceback)\n"
    )


def test_a_closed_stdout_stops_quietly_with_141(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class ClosedPipe(io.BytesIO):
        def write(self, data: Any) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    class Stdout(io.StringIO):
        buffer = ClosedPipe()

    monkeypatch.setattr(sys, "stdout", Stdout())
    code = commands.main(["-q", "export", *WINDOW])
    assert code == commands.EXIT_OUTPUT_CLOSED
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="SIGINT is handled or ignored by the test runner",
)
def test_ctrl_c_in_process_leaves_whole_pages_and_a_re_run_resumes(
    fake: FakeVendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    @fake.on_request
    def interrupt(n: int, body: dict[str, Any]) -> None:
        if n == 3:
            signal.raise_signal(signal.SIGINT)  # asyncio.run cancels the main task

    path = tmp_path / "tasks.jsonl"
    argv = ("--page-size", "50", "--concurrency", "1")
    code, err = export(capsys, path, *argv)
    assert code == commands.EXIT_INTERRUPTED
    rows = read_jsonl(path)
    assert 0 < len(rows) < TASKS
    assert rows == all_rows(fake)[: len(rows)]
    assert read_manifest(path)["records"] == len(rows)
    assert err.splitlines()[-1] == (
        f"itnio-async: interrupted: {len(rows)} records written; "
        "run the same command again to resume"
    )
    assert export(capsys, path, *argv)[0] == commands.EXIT_OK
    assert read_jsonl(path) == all_rows(fake)  # every record exactly once


def test_help_documents_the_exit_codes_and_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "export", "--help")
    assert code == commands.EXIT_OK
    for text in ("exit codes:", "130", "ITNIO_API_KEY", "--start-page", "--statuses"):
        assert text in out
    assert "--demo-latency" not in out
    code, out, _ = run(capsys, "--version")
    assert (code, out.split()[0]) == (0, "itnio-async")


def test_python_dash_m_runs_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["itnio-async", "--version"])
    # What ``python -m itnio_async`` does, minus the import system (pytest's assertion
    # rewriter claims this package, as a plugin's, and cannot hand runpy the code).
    main_py = Path(itnio_async.__file__).with_name("__main__.py")
    code = compile(main_py.read_text(), str(main_py), "exec")
    with pytest.raises(SystemExit) as exit_info:
        exec(code, {"__name__": "__main__", "__package__": "itnio_async"})
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("itnio-async ")


def test_the_console_script_runs_the_cli_packages_main() -> None:
    from importlib.metadata import entry_points

    from itnio_async.cli import main

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "itnio-async"]
    assert script.value == "itnio_async.cli:main"
    assert script.load() is main


# -- the demo -------------------------------------------------------------------------------


def test_demo_count_is_the_whole_generated_window(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ITNIO_API_KEY", raising=False)  # the demo needs none
    code, out, _ = run(capsys, "--demo", "--demo-latency", "0", "count")
    assert (code, out) == (0, f"{commands.DEMO_TASKS}\n")


def demo_rows(today: date, **filters: Any) -> list[dict[str, Any]]:
    vendor = commands.demo_vendor(latency=0, today=today)
    start, end = filters.pop("window", commands.demo_window(today))
    return [expected_row(task) for task in vendor.expected(start, end, **filters)]


def cli_env() -> dict[str, str]:
    """The environment for a subprocess: no credentials, nothing that points elsewhere."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ITNIO_")}


def run_module(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "itnio_async", *argv],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
        check=False,
    )


def same_day(today: date) -> None:
    if date.today() != today:
        pytest.skip("midnight passed: the demo's window moved during the test")


def test_demo_export_to_jsonl_matches_the_fake(tmp_path: Path) -> None:
    today = date.today()
    path = tmp_path / "tasks.jsonl"
    result = run_module("--demo", "--demo-latency", "0", "export", "-o", str(path))
    same_day(today)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert read_jsonl(path) == demo_rows(today)
    assert len(read_jsonl(path)) == commands.DEMO_TASKS
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"itnio-async: done: {commands.DEMO_TASKS} records, ")
    assert "retries" in last  # the demo injects a few faults: the stream retried through
    assert not manifest_of(path).exists()


def test_demo_export_to_csv_with_filters_matches_the_fake(tmp_path: Path) -> None:
    today = date.today()
    start, _ = commands.demo_window(today)
    first = start.date().isoformat()
    path = tmp_path / "tasks.csv"
    result = run_module(
        "--demo",
        "--demo-latency",
        "0",
        "export",
        "--start",
        first,
        "--end",
        f"{first} 23:59:59",
        "--statuses",
        "completed,1",
        "-o",
        str(path),
        "--quiet",
    )
    same_day(today)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    expected = demo_rows(
        today, window=(start, datetime.fromisoformat(f"{first} 23:59:59")), statuses=[2, 1]
    )
    assert expected
    assert rows == as_strings(expected)


@contextlib.contextmanager
def sigint_delivered() -> Iterator[None]:
    """Let a child see SIGINT even when this process was started with it ignored (a
    background job of a shell): a handler, unlike SIG_IGN, is reset to default by exec."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous)


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
def test_ctrl_c_stops_at_once_leaves_whole_pages_and_a_re_run_resumes_exactly(
    tmp_path: Path,
) -> None:
    today = date.today()
    path = tmp_path / "tasks.jsonl"
    argv = [sys.executable, "-m", "itnio_async", "--demo", "export", "-o", str(path)]
    with sigint_delivered():
        child = subprocess.Popen(
            [*argv, "--demo-latency", "0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
    try:
        wait_for(lambda: path.exists() and path.stat().st_size > 0, timeout=20)
        signal_sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert time.monotonic() - signal_sent < 5  # at once, not after the export
    assert child.returncode == commands.EXIT_INTERRUPTED, err
    assert out == ""
    rows = read_jsonl(path)  # every line parses: the file ends at a whole page
    assert 0 < len(rows) < commands.DEMO_TASKS
    assert read_manifest(path)["records"] == len(rows)
    assert err.splitlines()[-1] == (
        f"itnio-async: interrupted: {len(rows)} records written; "
        "run the same command again to resume"
    )
    # The same command again (the latency is the fake's, not the command's).
    result = run_module("--demo", "--demo-latency", "0", "export", "-o", str(path))
    same_day(today)
    assert result.returncode == 0, result.stderr
    assert read_jsonl(path) == demo_rows(today)  # every record exactly once
    assert not manifest_of(path).exists()
