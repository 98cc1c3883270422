"""``examples/fastapi_app.py`` under a real uvicorn on loopback, against the fake vendor."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime

import httpx
import pytest

from examples import fastapi_app
from itnio_async import AsyncVoiceClient, RetryPolicy
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan, serve

from ._support import (
    assert_no_leaks,
    client_factory,
    eventually,
    task_json,
    uvicorn_on_loopback,
)

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
WINDOW = {"start": START.isoformat(), "end": END.isoformat()}
KEY, SECRET = "app-key", "app-secret"
# 50 ms apart: under coverage, the one loop serving 100 requests (app, client) can delay a
# granted request's send by tens of milliseconds, and the server would count the bunch.
RATE = 20


@pytest.fixture
def fake() -> FakeVendor:
    return FakeVendor(KEY, SECRET, dataset=Dataset.generate(250, seed=11))


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=fastapi_app.logger.name)


async def test_one_shared_client_serves_100_concurrent_requests_within_the_rate_limit(
    fake: FakeVendor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    expected = [task_json(task) for task in fake.expected(START, END)]
    # The fake runs in a thread of its own, so that it stamps each arrival when it comes,
    # not when the loop busy with the app's 100 requests gets round to it.
    with serve(fake) as fake_url:
        # Configured as in production: from the environment alone.
        monkeypatch.setenv("ITNIO_API_KEY", KEY)
        monkeypatch.setenv("ITNIO_API_SECRET", SECRET)
        monkeypatch.setenv("ITNIO_BASE_URL", fake_url)
        monkeypatch.setenv("ITNIO_RATE_LIMIT", str(RATE))
        monkeypatch.delenv("REDIS_URL", raising=False)
        monkeypatch.delenv("ITNIO_SERVER_TIMEZONE", raising=False)
        app = fastapi_app.create_app()
        async with uvicorn_on_loopback(app) as url:
            client: AsyncVoiceClient = app.state.itnio
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                pages = [1 + n % 25 for n in range(100)]
                replies = await asyncio.gather(
                    *(http.get("/tasks", params={**WINDOW, "page": p, "size": 10}) for p in pages)
                )
                export = await http.get("/tasks/export", params=WINDOW)

            assert [reply.status_code for reply in replies] == [200] * 100
            for page, reply in zip(pages, replies, strict=True):
                body = reply.json()
                assert (body["total"], body["pages"], body["current"]) == (250, 25, page)
                assert body["records"] == expected[(page - 1) * 10 : page * 10]
            assert export.status_code == 200
            assert export.headers["content-type"] == "application/x-ndjson"
            assert [json.loads(line) for line in export.text.splitlines()] == expected
            # 100 pages of 10 and the export's 3 pages of 100, all at the shared limit.
            assert fake.stats.requests == 103
            assert fake.stats.max_in_any_second() <= RATE + 1
        assert client.is_closed  # the lifespan closed it at shutdown
    assert_no_leaks(caplog)
    assert any("export complete: 250 records" in r.getMessage() for r in caplog.records)


async def test_a_client_that_disconnects_stops_the_export_and_its_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(5_000, seed=12), latency=0.02)
    made: list[AsyncVoiceClient] = []
    app = fastapi_app.create_app(client_factory=client_factory(fake, made, rate_limit=20))
    async with uvicorn_on_loopback(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/tasks/export", params=WINDOW) as reply:
            assert reply.status_code == 200
            async for line in reply.aiter_lines():
                assert json.loads(line)["job_id"] == fake.expected(START, END)[0].job_id
                break
        # Leaving the block closed the connection mid-body.

        def stopped() -> bool:
            return any("export stopped" in r.getMessage() for r in caplog.records)

        await eventually(stopped, "the export to stop")
        sent = fake.stats.requests
        assert sent < 50  # the export has 50 pages; at 20/s it was nowhere near the end
        assert fake.stats.in_flight == 0
        # The app still answers, on the same client.
        reply = await http.get("/tasks", params={**WINDOW, "size": 1})
        assert reply.json()["total"] == 5_000
        assert fake.stats.requests == sent + 1
    assert made[0].is_closed
    assert_no_leaks(caplog)


async def test_bad_arguments_are_422_and_vendor_faults_502(
    fake: FakeVendor, caplog: pytest.LogCaptureFixture
) -> None:
    app = fastapi_app.create_app(client_factory=client_factory(fake, api_secret="wrong"))
    async with uvicorn_on_loopback(app) as url, httpx.AsyncClient(base_url=url) as http:
        backwards = {"start": END.isoformat(), "end": START.isoformat()}
        assert (await http.get("/tasks", params=backwards)).status_code == 422
        assert (await http.get("/tasks/export", params=backwards)).status_code == 422
        assert (await http.get("/tasks", params={**WINDOW, "size": 101})).status_code == 422
        assert fake.stats.requests == 0

        for path in ("/tasks", "/tasks/export"):
            reply = await http.get(path, params=WINDOW)
            assert reply.status_code == 502
            assert reply.json()["error"] == "AuthenticationError"
    assert_no_leaks(caplog)


async def test_an_export_that_fails_midway_breaks_the_connection_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeVendor(
        KEY,
        SECRET,
        dataset=Dataset.generate(300, seed=13),
        faults=FaultPlan(by_request={2: Fault.code(-22)}),  # not retried
    )
    made: list[AsyncVoiceClient] = []
    factory = client_factory(fake, made, retry=RetryPolicy(max_retries=0))
    app = fastapi_app.create_app(client_factory=factory)
    async with (
        uvicorn_on_loopback(app) as url,
        httpx.AsyncClient(base_url=url) as http,
        http.stream("GET", "/tasks/export", params=WINDOW) as reply,
    ):
        assert reply.status_code == 200  # the first page went out before the fault
        with pytest.raises(httpx.RemoteProtocolError):
            await reply.aread()
    assert made[0].is_closed
    assert any("export failed (InvalidParameterError" in r.getMessage() for r in caplog.records)


async def test_filters_reach_the_vendor(fake: FakeVendor) -> None:
    app = fastapi_app.create_app(client_factory=client_factory(fake))
    params = httpx.QueryParams([*WINDOW.items(), ("status", 2), ("status", 4), ("app_id", 2)])
    expected = [task_json(t) for t in fake.expected(START, END, statuses=[2, 4], app_id=2)]
    async with uvicorn_on_loopback(app) as url, httpx.AsyncClient(base_url=url) as http:
        page = (await http.get("/tasks", params=params)).json()
        export = await http.get("/tasks/export", params=params)
        name = expected[0]["task_name"]
        search = await http.get("/tasks", params={**WINDOW, "search": name.upper()})
    assert page["records"] == expected
    assert [json.loads(line) for line in export.text.splitlines()] == expected
    found = [task_json(t) for t in fake.expected(START, END, search=name)]
    assert search.json()["records"] == found
