"""The call-record cases: decoding a page of ``CallRecord``s, and the latency-bound
stream of call records, each against the task stream's targets (see ``_cases``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from _cases import (
    CONCURRENCY,
    IN_PROCESS_URL,
    LATENCY,
    LATENCY_BOUND,
    LATENCY_PAGES,
    PAGE_SIZE,
    CaseResult,
    Settings,
    _progress,
    _ratios,
    _Run,
    decoding_case,
    request_budget,
)
from _report import Figure
from _servers import API_KEY, API_SECRET, Server, _process

from itnio_async import AsyncVoiceClient, CallRecord
from itnio_async.testing import FakeVendor, call_account

__all__ = ["CALL_CASES"]

CALLS_PATH: Final = "/voice/recordGroupQuery"
#: The calls of each task in the served account (several share a second, 3 at most).
CALLS_PER_TASK: Final = 100
#: The window every call case reads: the 30 days before the clock, one 31-day slice.
WINDOW_DAYS: Final = 30


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(days=WINDOW_DAYS, hours=1), now


def _sign() -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": API_KEY,
        "Timestamp": timestamp,
        "Sign": hashlib.md5(f"{API_KEY}{API_SECRET}{timestamp}".encode()).hexdigest(),
    }


def _body(start: datetime, end: datetime, page: int) -> bytes:
    params = {"strTime": start.isoformat(), "endTime": end.isoformat()}
    return json.dumps({"current": page, "size": PAGE_SIZE, "params": params}).encode()


async def _bare_page(http: httpx.AsyncClient, start: datetime, end: datetime, page: int) -> Any:
    response = await http.post(CALLS_PATH, content=_body(start, end, page), headers=_sign())
    parsed = json.loads(response.content)
    if str(parsed["status"]) != "0":
        raise RuntimeError(f"the fake refused a bare request: {parsed}")
    return parsed["data"]


def _consume(records: list[Any]) -> int:
    count = 0
    for _record in records:
        count += 1
    return count


async def _bare_concurrent(url: str, start: datetime, end: datetime) -> _Run:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits) as http:
        cpu, started = time.process_time(), time.perf_counter()
        first = await _bare_page(http, start, end, 1)
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(page: int) -> int:
            async with semaphore:
                data = await _bare_page(http, start, end, page)
            return _consume(data["records"])

        rest = await asyncio.gather(*(one(page) for page in range(2, first["pages"] + 1)))
        records = _consume(first["records"]) + sum(rest)
        seconds, used = time.perf_counter() - started, time.process_time() - cpu
        return _Run(seconds, records, used, 1 + len(rest))


async def _library(url: str, start: datetime, end: datetime) -> _Run:
    async with AsyncVoiceClient(API_KEY, API_SECRET, base_url=url, rate_limit=None) as client:
        records = 0
        cpu, started = time.process_time(), time.perf_counter()
        stream = client.iter_call_records(start, end, concurrency=CONCURRENCY)
        async for _record in stream:
            records += 1
        seconds, used = time.perf_counter() - started, time.process_time() - cpu
        return _Run(seconds, records, used, stream.progress.requests)


def _calls_server(calls: int, latency: float) -> Any:
    return _process(
        [
            "-m",
            "itnio_async.testing",
            "--port",
            "0",
            "--calls",
            str(calls),
            "--calls-per-task",
            str(CALLS_PER_TASK),
            "--seed",
            "1",
            "--latency",
            repr(latency),
            "--api-key",
            API_KEY,
            "--api-secret",
            API_SECRET,
        ],
        commands=False,
    )


def calls_latency(settings: Settings) -> CaseResult:
    """The call-record stream, latency-bound: 200 pages of 100, 40 ms a request,
    concurrency 16, against the bound and a bare ``httpx`` loop (the task stream's case)."""
    expected = LATENCY_PAGES * PAGE_SIZE
    seconds: dict[str, list[float]] = {"library": [], "bare": []}
    requests: list[float] = []
    with _calls_server(expected, LATENCY) as server:
        server_: Server = server
        url = server_.url
        start, end = _window()
        runs: dict[str, Callable[[], Coroutine[Any, Any, _Run]]] = {
            "library": lambda: _library(url, start, end),
            "bare": lambda: _bare_concurrent(url, start, end),
        }

        def sample(name: str) -> None:
            result = asyncio.run(runs[name]())
            if result.records != expected:
                raise RuntimeError(f"{name}: expected {expected} calls, got {result.records}")
            seconds[name].append(result.seconds)
            if name == "library":
                requests.append(result.requests)

        _progress("warm-up")
        asyncio.run(runs["library"]())
        asyncio.run(runs["bare"]())
        for round_ in range(settings.repeats):
            pair = ("library", "bare") if round_ % 2 == 0 else ("bare", "library")
            for name in pair:
                sample(name)
            _progress(f"round {round_ + 1}/{settings.repeats}")
    lib = seconds["library"]
    case = "call records, latency-bound"
    budget = request_budget(LATENCY_PAGES, CONCURRENCY)
    figures = [
        Figure(case, "library, concurrency 16", "s", lib),
        Figure(case, "bare httpx + semaphore + gather", "s", seconds["bare"]),
        Figure(
            case,
            f"bound / library (bound {LATENCY_BOUND:.3f} s)",
            "ratio",
            [LATENCY_BOUND / value for value in lib],
            (">=", 0.80),
        ),
        Figure(
            case,
            "library speed / bare loop speed",
            "ratio",
            _ratios(seconds["bare"], lib),
            (">=", 0.90),
        ),
        Figure(
            case,
            f"requests per stream ({LATENCY_PAGES} pages)",
            "count",
            requests,
            ("<=", budget),
            every=True,
        ),
    ]
    setup = {
        "pages": LATENCY_PAGES,
        "page_size": PAGE_SIZE,
        "latency_s": LATENCY,
        "concurrency": CONCURRENCY,
        "bound_s": LATENCY_BOUND,
        "calls_per_task": CALLS_PER_TASK,
        "window_days": WINDOW_DAYS,
    }
    return CaseResult(figures, {"setup": setup, "seconds": seconds, "requests": requests})


async def _calls_page_bytes() -> bytes:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    tasks, calls = call_account(
        20, seed=1, start=now - timedelta(days=10), end=now, calls_per_task=(CALLS_PER_TASK,) * 2
    )
    fake = FakeVendor(API_KEY, API_SECRET, dataset=tasks, calls=calls)
    start, end = _window()
    async with httpx.AsyncClient(base_url=IN_PROCESS_URL, transport=fake.transport()) as http:
        response = await http.post(CALLS_PATH, content=_body(start, end, 1), headers=_sign())
    return response.content


def calls_decoding(settings: Settings) -> CaseResult:
    """Records per second from response bytes to ``CallRecord``s vs ``json.loads``."""
    body = asyncio.run(_calls_page_bytes())
    return decoding_case(settings, "call-record decoding", body, CallRecord)


CALL_CASES: Final[dict[str, Callable[[Settings], CaseResult]]] = {
    "calls_decoding": calls_decoding,
    "calls_latency": calls_latency,
}
