"""Each example's demo runs against the in-process fake vendor of ``itnio-async --demo``,
with no account, and writes the command line's one record format; and what a newcomer
meets without credentials or without the examples' extra is one clear line, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from examples import aiohttp_app, fastapi_app
from examples.settings import Settings
from itnio_async import RECORD_COLUMNS, GroupCallStatus
from itnio_async.cli import demo_vendor, demo_window

from ._support import EXAMPLES_ROOT, uvicorn_on_loopback

#: The environment of an example's process: none of the account's variables.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ITNIO_", "REDIS_URL"))}


def run_example(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=EXAMPLES_ROOT,
        env=CLEAN_ENV if env is None else env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def a_day() -> tuple[date, int]:
    """A day of the demo's window, and how many of its tasks the fake holds that day."""
    start, _ = demo_window()
    day = start.date()  # the window starts at midnight: its first whole day
    fake = demo_vendor(latency=0)
    tasks = fake.expected(datetime.combine(day, time()), datetime.combine(day, time(23, 59, 59)))
    assert tasks, "the demo has no task on its first day"
    return day, len(tasks)


def check_rows(rows: list[dict[str, Any]]) -> None:
    """The command line's record format: its columns, lower-case names, ISO 8601 times."""
    for row in rows:
        assert tuple(row) == RECORD_COLUMNS
        assert row["status_name"] == GroupCallStatus(row["status"]).name.lower()
        assert "T" in row["created_time"]
        datetime.fromisoformat(row["created_time"])


def test_the_checkpointed_worker_demo_writes_the_whole_demo_window(tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    result = run_example("-m", "examples.checkpointed_worker", "--demo", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = demo_vendor(latency=0).expected(*demo_window())
    assert [row["job_id"] for row in rows] == [task.job_id for task in expected]
    check_rows(rows)
    assert "Traceback" not in result.stderr


def test_the_metrics_demo_runs() -> None:
    result = run_example(str(Path("examples") / "metrics.py"), "--demo")
    assert result.returncode == 0, result.stderr
    assert "2000 records" in result.stdout


def test_the_quickstart_without_credentials_says_what_to_do() -> None:
    result = run_example(str(Path("examples") / "quickstart.py"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "ITNIO_API_KEY" in result.stderr
    assert "--demo" in result.stderr


def test_metrics_without_its_extra_says_what_to_install() -> None:
    # prometheus_client made unimportable, as in an install without the examples extra.
    code = (
        "import runpy, sys; sys.modules['prometheus_client'] = None; "
        "runpy.run_path('examples/metrics.py', run_name='__main__')"
    )
    result = run_example("-c", code)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "ModuleNotFoundError" not in result.stderr
    assert 'pip install "itnio-async[examples]"' in result.stderr


def test_itnio_demo_ignores_the_account_variables() -> None:
    settings = Settings.from_env({"ITNIO_DEMO": "1", "ITNIO_RATE_LIMIT": "not a number"})
    assert settings.demo
    assert settings.api_key is None


async def test_the_aiohttp_demo_serves_the_demo_tasks_with_a_bare_end_date() -> None:
    day, count = a_day()
    app = aiohttp_app.create_app(aiohttp_app.demo_factory())
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        params = {"start": day.isoformat(), "end": day.isoformat(), "size": "5"}
        async with http.get("/tasks", params=params) as reply:
            assert reply.status == 200, await reply.text()
            body = await reply.json()
    assert body["total"] == count  # the bare end date is all of that day
    check_rows(body["records"])


async def test_the_fastapi_demo_serves_the_demo_tasks_with_itnio_demo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    day, count = a_day()
    monkeypatch.setenv("ITNIO_DEMO", "1")
    app = fastapi_app.create_app()
    async with uvicorn_on_loopback(app) as url, httpx.AsyncClient(base_url=url) as http:
        params = {"start": day.isoformat(), "end": day.isoformat(), "size": "5"}
        reply = await http.get("/tasks", params=params)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["total"] == count
    check_rows(body["records"])


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "examples.aiohttp_app"],
        ["-m", "examples.fastapi_app"],
        [str(Path("examples") / "metrics.py")],
        ["-m", "examples.checkpointed_worker", "--out", "{tmp}/x.jsonl", "--start", "2024-01-01"],
    ],
    ids=["aiohttp", "fastapi", "metrics", "worker"],
)
def test_an_example_without_credentials_says_what_to_do(argv: list[str], tmp_path: Path) -> None:
    result = run_example(*(arg.replace("{tmp}", str(tmp_path)) for arg in argv))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "ITNIO_API_KEY" in result.stderr or "--demo" in result.stderr, result.stderr


def test_a_wrong_variable_stops_a_server_example_naming_it() -> None:
    result = run_example("-m", "examples.aiohttp_app", env=CLEAN_ENV | {"ITNIO_RATE_LIMIT": "x"})
    assert result.returncode == 2
    assert "ITNIO_RATE_LIMIT must be" in result.stderr
    assert "Traceback" not in result.stderr
