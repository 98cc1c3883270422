"""``itnio-async calls export`` and ``tasks show``, in process against the fake vendor."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from itnio_async.cli import _calls as cli_calls
from itnio_async.cli import _commands as commands
from itnio_async.cli import main
from itnio_async.testing import FakeVendor, Fault, FaultPlan, call_account

KEY, SECRET = "cli-key", "cli-secret"
NOW = datetime.now(UTC).replace(microsecond=0)
START = (NOW - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
END = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeVendor:
    """A fake with tasks and calls, behind the CLI's transport seam."""
    now = NOW.replace(tzinfo=None)
    tasks, calls = call_account(
        40, seed=9, start=now - timedelta(days=45), end=now - timedelta(hours=3)
    )
    vendor = FakeVendor(KEY, SECRET, dataset=tasks, calls=calls)
    monkeypatch.setenv("ITNIO_API_KEY", KEY)
    monkeypatch.setenv("ITNIO_API_SECRET", SECRET)
    monkeypatch.setenv("ITNIO_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(commands, "_transport_factory", vendor.transport)
    return vendor


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expected_ids(fake: FakeVendor) -> list[str]:
    lo, hi = datetime.fromisoformat(START), datetime.fromisoformat(END)
    return [call.voice_id for call in fake.expected_calls(lo, hi)]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def export(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[int, str]:
    code, out, err = run(
        capsys,
        "calls",
        "export",
        "--start",
        START,
        "--end",
        END,
        "--rate-limit",
        "none",
        "-o",
        str(path),
        *argv,
    )
    assert out == ""
    return code, err


def test_export_writes_every_call_of_a_long_window_once_newest_first(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "calls.jsonl"
    code, err = export(capsys, path, "--page-size", "13", "-q")
    assert code == 0, err
    rows = lines(path)
    assert [row["voice_id"] for row in rows] == expected_ids(fake)
    assert len(rows) > 100
    assert list(rows[0]) == list(cli_calls.CALL_COLUMNS)
    assert rows[0]["submit_time"].endswith("+00:00")
    assert not Path(str(path) + ".itnio-export.json").exists()


def test_export_to_csv_has_a_header_and_one_row_per_call(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "calls.csv"
    code, err = export(capsys, path, "-q")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [row["voice_id"] for row in rows] == expected_ids(fake)
    assert rows[0]["feedback_value"] in {"'-1", *map(str, range(10))}  # neutralised


def test_an_export_stopped_at_the_limit_resumes_from_its_manifest(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "calls.jsonl"
    code, err = export(capsys, path, "--page-size", "10", "--limit", "25")
    assert code == 0, err
    assert "stopped at --limit" in err
    assert len(lines(path)) == 25
    code, err = export(capsys, path, "--page-size", "10")
    assert code == 0, err
    assert [row["voice_id"] for row in lines(path)] == expected_ids(fake)


def test_a_transient_failure_exits_4_and_the_rerun_completes(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "calls.jsonl"
    fake.faults = FaultPlan(by_request={3: Fault.code(-18), 4: Fault.code(-18)})
    code, err = export(
        capsys, path, "--page-size", "10", "--concurrency", "1", "--max-retries", "1"
    )
    assert code == commands.EXIT_TRANSIENT, err
    assert "run the same command again" in err
    code, err = export(capsys, path, "--page-size", "10")
    assert code == 0, err
    assert [row["voice_id"] for row in lines(path)] == expected_ids(fake)


def test_stdout_export_and_its_cursor(fake: FakeVendor, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "calls", "export", "--start", START, "--end", END, "--limit", "3", "-q"
    )
    assert code == 0, err
    assert len(out.splitlines()) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--start", (NOW - timedelta(days=90)).isoformat(), "--end", END],
            "only the last 2 months",
        ),
        (["--start", "2026-11-01", "--end", END], "naive"),
        (["--end", END], "--start required"),
        (["--start", START, "--end", END, "--resume-from", "x", "-o", "f.jsonl"], "stdout"),
    ],
)
def test_bad_windows_and_arguments_exit_2_before_any_request(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _out, err = run(capsys, "calls", "export", *argv)
    assert code == commands.EXIT_USAGE
    assert message in err
    assert fake.stats.requests == 0


def test_clamp_start_begins_at_the_oldest_allowed_time(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = (NOW - timedelta(days=90)).isoformat()
    code, _out, err = run(
        capsys,
        "calls",
        "export",
        "--start",
        old,
        "--end",
        END,
        "--clamp-start",
        "-o",
        str(tmp_path / "c.jsonl"),
        "-q",
    )
    assert code == 0, err


def test_tasks_show_prints_the_detail_as_json(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str]
) -> None:
    task = next(iter(fake.dataset))
    code, out, err = run(capsys, "tasks", "show", str(task.job_id))
    assert code == 0, err
    detail = json.loads(out)
    assert detail["job_id"] == task.job_id
    assert detail["call_num"] == detail["call_total"] == task.call_num
    assert detail["country_code"] == "86"
    assert detail["status_name"] == "completed"


def test_tasks_show_of_an_unknown_task_is_refused_with_exit_3(
    fake: FakeVendor, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "tasks", "show", "1")
    assert code == commands.EXIT_REFUSED
    assert "-24" in err
    assert out == ""


@pytest.mark.parametrize("job_id", ["0", "x"])
def test_tasks_show_refuses_a_bad_id(capsys: pytest.CaptureFixture[str], job_id: str) -> None:
    code, _, err = run(capsys, "tasks", "show", job_id)
    assert code == commands.EXIT_USAGE
    assert "JOB_ID" in err or "job_id" in err.lower()


def test_the_demo_covers_both_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    code, out, err = run(
        capsys, "--demo", "--demo-latency", "0", "calls", "export", "-o", str(path), "-q"
    )
    assert code == 0, err
    ids = [row["voice_id"] for row in lines(path)]
    assert len(ids) == len(set(ids)) > 1000
    code, out, err = run(capsys, "--demo", "--demo-latency", "0", "tasks", "show", "6000003")
    assert code == 0, err
    assert json.loads(out)["job_id"] == 6000003


def test_the_task_commands_still_parse(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "calls" in out
    assert "tasks" in out
