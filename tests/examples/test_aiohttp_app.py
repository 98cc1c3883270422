"""``examples/aiohttp_app.py`` with aiohttp's test server on loopback, against the fake vendor."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from examples import aiohttp_app
from itnio_async import AsyncVoiceClient, RetryPolicy
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan

from ._support import assert_no_leaks, client_factory, eventually, task_json

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
WINDOW = {"start": START.isoformat(), "end": END.isoformat()}
KEY, SECRET = "app-key", "app-secret"
RATE = 50


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=aiohttp_app.logger.name)


async def test_one_shared_client_serves_100_concurrent_requests_within_the_rate_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(250, seed=21))
    expected = [task_json(task) for task in fake.expected(START, END)]
    made: list[AsyncVoiceClient] = []
    app = aiohttp_app.create_app(client_factory=client_factory(fake, made, rate_limit=RATE))
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        pages = [1 + n % 25 for n in range(100)]

        async def get(page: int) -> tuple[int, dict[str, object]]:
            params = {**WINDOW, "page": str(page), "size": "10"}
            async with http.get("/tasks", params=params) as reply:
                return reply.status, await reply.json()

        replies = await asyncio.gather(*(get(page) for page in pages))
        async with http.get("/tasks/export", params=WINDOW) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "application/x-ndjson"
            exported = [json.loads(line) for line in (await reply.text()).splitlines()]

        assert [status for status, _ in replies] == [200] * 100
        for page, (_, body) in zip(pages, replies, strict=True):
            assert (body["total"], body["pages"], body["current"]) == (250, 25, page)
            assert body["records"] == expected[(page - 1) * 10 : page * 10]
        assert exported == expected
        assert fake.stats.requests == 103
        assert fake.stats.max_in_any_second() <= RATE + 1
    assert made[0].is_closed  # cleanup_ctx closed it with the server
    assert_no_leaks(caplog)
    assert any("export complete: 250 records" in r.getMessage() for r in caplog.records)


async def test_a_client_that_disconnects_stops_the_export_and_its_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(5_000, seed=22), latency=0.02)
    made: list[AsyncVoiceClient] = []
    app = aiohttp_app.create_app(client_factory=client_factory(fake, made, rate_limit=20))
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        reply = await http.get("/tasks/export", params=WINDOW)
        first = json.loads(await reply.content.readline())
        assert first["job_id"] == fake.expected(START, END)[0].job_id
        reply.close()  # mid-body: the connection goes

        def stopped() -> bool:
            return any("export stopped" in r.getMessage() for r in caplog.records)

        await eventually(stopped, "the export to stop")
        sent = fake.stats.requests
        assert sent < 50  # 50 pages; at 20/s it was nowhere near the end
        assert fake.stats.in_flight == 0
        async with http.get("/tasks", params={**WINDOW, "size": "1"}) as again:
            assert (await again.json())["total"] == 5_000
        assert fake.stats.requests == sent + 1
    assert made[0].is_closed
    assert_no_leaks(caplog)


async def test_bad_arguments_are_400_and_vendor_faults_502(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeVendor(KEY, "another secret", dataset=Dataset.generate(50, seed=23))
    # A client with another secret than the fake's: the vendor refuses it.
    app = aiohttp_app.create_app(client_factory=client_factory(fake, api_secret=SECRET))
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        backwards = {"start": END.isoformat(), "end": START.isoformat()}
        for path, params in [
            ("/tasks", backwards),
            ("/tasks/export", backwards),
            ("/tasks", {**WINDOW, "size": "101"}),
            ("/tasks", {**WINDOW, "page": "first"}),
            ("/tasks", {"start": "yesterday", "end": WINDOW["end"]}),
            ("/tasks", {"end": WINDOW["end"]}),
        ]:
            async with http.get(path, params=params) as reply:
                assert reply.status == 400, (path, params)
        assert fake.stats.requests == 0

        for path in ("/tasks", "/tasks/export"):
            async with http.get(path, params=WINDOW) as reply:
                assert reply.status == 502
                assert (await reply.json())["error"] == "AuthenticationError"
    assert_no_leaks(caplog)


async def test_an_export_that_fails_midway_breaks_the_connection_off() -> None:
    fake = FakeVendor(
        KEY,
        SECRET,
        dataset=Dataset.generate(300, seed=24),
        faults=FaultPlan(by_request={2: Fault.code(-22)}),  # not retried
    )
    made: list[AsyncVoiceClient] = []
    factory = client_factory(fake, made, retry=RetryPolicy(max_retries=0))
    app = aiohttp_app.create_app(client_factory=factory)
    server = TestServer(app, host="127.0.0.1")
    async with TestClient(server) as http, http.get("/tasks/export", params=WINDOW) as reply:
        assert reply.status == 200  # the first page went out before the fault
        with pytest.raises(aiohttp.ClientPayloadError):
            await reply.read()
    assert made[0].is_closed


async def test_filters_reach_the_vendor() -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(250, seed=25))
    app = aiohttp_app.create_app(client_factory=client_factory(fake))
    params = [*WINDOW.items(), ("status", "2"), ("status", "4"), ("app_id", "2")]
    expected = [task_json(t) for t in fake.expected(START, END, statuses=[2, 4], app_id=2)]
    name = str(expected[0]["task_name"])
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        async with http.get("/tasks", params=params) as reply:
            page = await reply.json()
        async with http.get("/tasks/export", params=params) as reply:
            export = [json.loads(line) for line in (await reply.text()).splitlines()]
        async with http.get("/tasks", params={**WINDOW, "search": name.upper()}) as reply:
            search = await reply.json()
    assert page["records"] == expected
    assert export == expected
    assert search["records"] == [task_json(t) for t in fake.expected(START, END, search=name)]
