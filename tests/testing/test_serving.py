"""Serving the fake on loopback: serve(), aserve(), the command line, the pytest fixture."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan, aserve, pytest_plugin, serve
from itnio_async.testing.__main__ import build_fake, build_parser

from ._support import END, PATH, START, body, signed_headers

REPO = Path(__file__).resolve().parents[2]

# The plugin is not registered while the package is not installed: use its fixture here.
itnio_fake = pytest_plugin.itnio_fake


def test_serve_answers_on_loopback_and_drops_connections_for_real() -> None:
    fake = FakeVendor(
        dataset=Dataset.generate(20, seed=1),
        faults=FaultPlan(by_request={2: Fault.drop(), 3: Fault.http(502, html=True)}),
    )
    with serve(fake) as base_url, httpx.Client(base_url=base_url) as http:
        assert base_url.startswith("http://127.0.0.1:")
        ok = http.post(PATH, json=body(), headers=signed_headers(fake))
        with pytest.raises(httpx.RemoteProtocolError):
            http.post(PATH, json=body(), headers=signed_headers(fake))
        gateway = http.post(PATH, json=body(), headers=signed_headers(fake))
    assert ok.json()["data"]["total"] == 20
    assert "Date" in ok.headers
    assert "uvicorn" not in ok.headers.get("Server", "")
    assert gateway.status_code == 502
    assert fake.stats.codes == {0: 1, "drop": 1, 502: 1}


async def test_aserve_runs_the_server_inside_the_running_loop() -> None:
    fake = FakeVendor(
        dataset=Dataset.generate(20, seed=1), faults=FaultPlan(by_request={1: Fault.drop()})
    )
    async with aserve(fake) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(PATH, json=body(), headers=signed_headers(fake))
        records = (await http.post(PATH, json=body(size=100), headers=signed_headers(fake))).json()
    assert [r["jobId"] for r in records["data"]["records"]] == [
        t.job_id for t in fake.expected(START, END)
    ]


def test_the_command_line_serves_until_sigterm() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "itnio_async.testing", "--port", "0", "--tasks", "500"]
    command += ["--seed", "1", "--rate-limit", "100", "--api-key", "k", "--api-secret", "s"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO
    ) as proc:
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready, "the server printed nothing"
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert line.startswith("listening on http://127.0.0.1:")
            base_url = line.split()[-1]
            fake = FakeVendor("k", "s")  # only to sign with the same key and secret
            answer = httpx.post(
                base_url + PATH, json=body(size=1), headers=signed_headers(fake)
            ).json()
            assert answer["data"]["total"] == 500
        finally:
            proc.send_signal(signal.SIGTERM)
            began = time.monotonic()
            code = proc.wait(20)
        assert proc.stdout is not None
        assert proc.stdout.read() == b""  # exactly one line
    assert code == 0
    assert time.monotonic() - began < 5


def test_the_pytest_fixture_gives_a_fresh_fake_with_a_small_dataset(itnio_fake: FakeVendor) -> None:
    assert isinstance(itnio_fake, FakeVendor)
    assert len(itnio_fake.dataset) == 250
    assert itnio_fake.stats.requests == 0
    assert (itnio_fake.api_key, itnio_fake.api_secret) == ("test-key", "test-secret")
    itnio_fake.insert_tasks(1)


CLI_ARGS = [
    "--tasks", "40", "--seed", "3", "--latency", "0.04", "--jitter", "0.01",
    "--rate-limit", "100", "--code-as-string", "--fault-probability", "0.2",
    "--fault-seed", "9", "--clock-offset", "-30", "--app-ids", "7,8",
    "--start", "2024-05-01", "--end", "2024-05-02T12:00:00",
]  # fmt: skip


def test_the_command_line_options_shape_the_fake() -> None:
    args = build_parser().parse_args(CLI_ARGS)
    fake = build_fake(args)
    assert len(fake.dataset) == 40
    assert (fake.latency, fake.jitter, fake.rate_limit) == (0.04, 0.01, 100)
    assert fake.code_as_string
    assert fake.clock_offset == -30
    assert fake.faults == FaultPlan.random(9, probability=0.2)
    tasks = list(fake.dataset)
    assert all(datetime(2024, 5, 1) <= t.created_time < datetime(2024, 5, 2, 12) for t in tasks)
    assert {t.app_id for t in tasks} <= {7, 8}
    window = {"start": datetime(2024, 5, 1), "end": datetime(2024, 5, 2, 12)}
    assert tasks == list(Dataset.generate(40, seed=3, app_ids=(7, 8), **window))
    assert build_fake(build_parser().parse_args([])).faults is None
