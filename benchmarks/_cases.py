"""The benchmark cases. Each returns its figures (for the table) and its raw samples.

Every comparison is measured in the same run, the two sides interleaved round by round,
and reported as the median of the per-round ratios with their min-max.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import timeit
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import _bare
import httpx
from _report import Figure
from _servers import (
    API_KEY,
    API_SECRET,
    Server,
    counter,
    fake_cli,
    fast_server,
    redis_server,
    stats_server,
)

from itnio_async import AsyncVoiceClient, GroupCallRecord, Page
from itnio_async._converter import decode_envelope, make_converter
from itnio_async.testing import Dataset, FakeVendor

__all__ = ["CASES", "CaseResult", "Settings"]

#: The window every case reads: the fake's generated tasks are spread over it.
START: Final = datetime(2024, 1, 1)
END: Final = datetime(2024, 7, 1)
#: A window the fake has no task in (its tasks are all created in the first half of 2024).
EMPTY_START: Final = datetime(2030, 1, 1)
EMPTY_END: Final = datetime(2030, 1, 2)
PAGE_SIZE: Final = 100
#: The in-process cases' base URL (never contacted: the transport answers).
IN_PROCESS_URL: Final = "https://fake.itnio.test"

#: Latency-bound paging: 200 pages of 100, 40 ms each, 16 in flight, no rate limit.
LATENCY: Final = 0.040
LATENCY_PAGES: Final = 200
CONCURRENCY: Final = 16
LATENCY_BOUND: Final = LATENCY * (1 + math.ceil((LATENCY_PAGES - 1) / CONCURRENCY))

#: Rate-bound paging: 300 pages at 100 requests/s, 16 in flight. The fake answers at
#: once: the bound, (requests - 1) / 100 s over every request the stream sent (its
#: planning pages included), counts only the spacing the rate imposes.
RATE_PAGES: Final = 300
RATE: Final = 100.0
RATE_LATENCY: Final = 0.0
#: The same bound for the pages alone, (300 - 1) / 100 s: what a stream sending no
#: request beyond its pages could reach.
RATE_PAGES_BOUND: Final = (RATE_PAGES - 1) / RATE

#: Requests per stream when nothing changes: at most pages + 2 x concurrency + 2.
REQUESTS_PAGES: Final = 200
REQUESTS_CONCURRENCIES: Final = (1, 8, 16)


def request_budget(pages: int, concurrency: int) -> int:
    """The most requests a stream of ``pages`` pages may send when nothing changes."""
    return pages + 2 * concurrency + 2


#: The memory case streams with the library's default concurrency.
MEMORY_CONCURRENCY: Final = 8

_HERE: Final = Path(__file__).resolve().parent


@dataclass
class Settings:
    """How hard to measure."""

    repeats: int
    quick: bool

    @property
    def slow_repeats(self) -> int:
        """Repeats of the sequential loops (some 10 s each): at most 3, 1 when quick."""
        return 1 if self.quick else min(self.repeats, 3)

    @property
    def memory_repeats(self) -> int:
        """Repeats of each memory measurement (peak RSS barely varies): at most 2."""
        return 1 if self.quick else min(self.repeats, 2)


@dataclass
class CaseResult:
    """What one case measured."""

    figures: list[Figure]
    raw: dict[str, Any] = field(default_factory=dict)


def _ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerators, denominators, strict=False)]


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def density(tasks: int) -> dict[str, Any]:
    """How crowded the seconds of the fake's generated window are (seed 1, as served).

    A cursor page asks again for the second its position stands on, so every page
    re-reads the records it last saw there: with one record a second, one of each page's
    records is a repeat; in a burst that shares a second, up to the whole burst.
    """
    per_second = Counter(task.created_time for task in Dataset.generate(tasks, seed=1))
    crowded = sum(count for count in per_second.values() if count > 1)
    return {
        "tasks": tasks,
        "window_seconds": (END - START).total_seconds(),
        "tasks_per_second": tasks / (END - START).total_seconds(),
        "seconds_with_tasks": len(per_second),
        "most_in_one_second": max(per_second.values(), default=0),
        "share_sharing_a_second": crowded / tasks if tasks else 0.0,
        "tasks_per_occupied_second": tasks / len(per_second) if per_second else 0.0,
    }


# -- latency-bound paging and what users write today ------------------------------------


@dataclass
class _Run:
    """One timed run of a paging loop."""

    seconds: float
    records: int
    #: CPU seconds the client (this process) used during the run.
    client_cpu: float
    #: Requests the run sent (the library's own count, retries included).
    requests: int


async def _library_stream(url: str, *, concurrency: int, rate_limit: float | None) -> _Run:
    """Stream the whole window with the library (the client is made before the clock starts)."""
    async with AsyncVoiceClient(API_KEY, API_SECRET, base_url=url, rate_limit=rate_limit) as client:
        records = 0
        cpu, started = time.process_time(), time.perf_counter()
        stream = client.iter_group_calls(START, END, concurrency=concurrency)
        async for _record in stream:
            records += 1
        seconds, used = time.perf_counter() - started, time.process_time() - cpu
        return _Run(seconds, records, used, stream.progress.requests)


def _bare_limits(concurrency: int) -> httpx.Limits:
    # The same pool bounds as the library's client has at this concurrency: at most
    # ``concurrency`` requests are in flight on either side, each on its own connection.
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


async def _bare_concurrent(url: str) -> _Run:
    async with httpx.AsyncClient(base_url=url, limits=_bare_limits(CONCURRENCY)) as http:
        cpu, started = time.process_time(), time.perf_counter()
        records, requests = await _bare.concurrent_loop(
            http, API_KEY, API_SECRET, START, END, concurrency=CONCURRENCY
        )
        seconds, used = time.perf_counter() - started, time.process_time() - cpu
        return _Run(seconds, records, used, requests)


async def _bare_sequential(url: str) -> _Run:
    async with httpx.AsyncClient(base_url=url, limits=_bare_limits(1)) as http:
        cpu, started = time.process_time(), time.perf_counter()
        records, requests = await _bare.sequential_loop(http, API_KEY, API_SECRET, START, END)
        seconds, used = time.perf_counter() - started, time.process_time() - cpu
        return _Run(seconds, records, used, requests)


def _timed(
    server: Server, run: Callable[[], Coroutine[Any, Any, _Run]], expected: int, label: str
) -> tuple[_Run, float | None]:
    """Run one sample in a fresh event loop; also return the server's CPU seconds for it."""
    server_cpu = server.cpu_seconds()
    result = asyncio.run(run())
    server_after = server.cpu_seconds()
    if result.records != expected:
        raise RuntimeError(f"{label}: expected {expected} records, got {result.records}")
    if server_cpu is None or server_after is None:
        return result, None
    return result, server_after - server_cpu


def paging(settings: Settings, *, latency: bool, users: bool) -> CaseResult:
    """Latency-bound paging (library vs the bound and a bare loop) and the speed-ups over
    what users write today (a sequential loop, the library with ``concurrency=1``)."""
    expected = LATENCY_PAGES * PAGE_SIZE
    variants = ("library_c16", "bare_c16", "sequential", "library_c1")
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    client_cpu: dict[str, list[float]] = {name: [] for name in variants}
    server_cpu: dict[str, list[float]] = {name: [] for name in variants}
    requests: dict[str, list[float]] = {name: [] for name in variants}
    with fake_cli(tasks=expected, latency=LATENCY) as server:
        url = server.url
        runs: dict[str, Callable[[], Coroutine[Any, Any, _Run]]] = {
            "library_c16": lambda: _library_stream(url, concurrency=CONCURRENCY, rate_limit=None),
            "bare_c16": lambda: _bare_concurrent(url),
            "sequential": lambda: _bare_sequential(url),
            "library_c1": lambda: _library_stream(url, concurrency=1, rate_limit=None),
        }

        def sample(name: str) -> None:
            result, used = _timed(server, runs[name], expected, name)
            seconds[name].append(result.seconds)
            client_cpu[name].append(result.client_cpu)
            requests[name].append(result.requests)
            if used is not None:
                server_cpu[name].append(used)

        _progress("warm-up")
        _timed(server, runs["library_c16"], expected, "warm-up")
        _timed(server, runs["bare_c16"], expected, "warm-up")
        # Round after round, so that each ratio's sides are measured next to each other;
        # which side goes first alternates, so neither always runs on a warmer server.
        for round_ in range(settings.repeats):
            pair = ("library_c16", "bare_c16") if latency else ("library_c16",)
            for name in pair if round_ % 2 == 0 else pair[::-1]:
                sample(name)
            if users and round_ < settings.slow_repeats:
                sample("sequential")
                sample("library_c1")
            _progress(f"round {round_ + 1}/{settings.repeats}")

    lib = seconds["library_c16"]
    budget = request_budget(LATENCY_PAGES, CONCURRENCY)
    figures: list[Figure] = []
    if latency:
        case = "latency-bound paging"
        figures += [
            Figure(case, "library, concurrency 16", "s", lib),
            Figure(case, "bare httpx + semaphore + gather", "s", seconds["bare_c16"]),
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
                _ratios(seconds["bare_c16"], lib),
                (">=", 0.90),
            ),
            Figure(
                case,
                "  bound / bare loop",
                "ratio",
                [LATENCY_BOUND / value for value in seconds["bare_c16"]],
            ),
            Figure(
                case,
                f"requests per stream, library ({LATENCY_PAGES} pages)",
                "count",
                requests["library_c16"],
                ("<=", budget),
                every=True,
            ),
            Figure(case, "  requests, bare loop", "count", requests["bare_c16"]),
            Figure(case, "client CPU, library run", "s", client_cpu["library_c16"]),
            Figure(case, "client CPU, bare loop run", "s", client_cpu["bare_c16"]),
        ]
        if server_cpu["library_c16"] and server_cpu["bare_c16"]:
            figures += [
                Figure(case, "fake server CPU, library run", "s", server_cpu["library_c16"]),
                Figure(case, "fake server CPU, bare loop run", "s", server_cpu["bare_c16"]),
            ]
    if users:
        case = "against what users write"
        figures += [
            Figure(case, "sequential httpx loop", "s", seconds["sequential"]),
            Figure(
                case,
                f"  per request (fake waits {LATENCY * 1e3:.0f} ms)",
                "ms",
                [value / LATENCY_PAGES * 1e3 for value in seconds["sequential"]],
            ),
            Figure(case, "library, concurrency 1", "s", seconds["library_c1"]),
            Figure(
                case,
                "speed-up over sequential httpx",
                "x",
                _ratios(seconds["sequential"], lib),
                (">=", 12),
            ),
            Figure(
                case,
                "speed-up over library c=1",
                "x",
                _ratios(seconds["library_c1"], lib),
                (">=", 12),
            ),
        ]
    setup = {
        "pages": LATENCY_PAGES,
        "page_size": PAGE_SIZE,
        "latency_s": LATENCY,
        "concurrency": CONCURRENCY,
        "bound_s": LATENCY_BOUND,
        "request_budget": budget,
        "dataset": density(expected),
    }
    raw = {
        "setup": setup,
        "seconds": seconds,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "requests": requests,
    }
    return CaseResult(figures, raw)


# -- rate-bound paging --------------------------------------------------------------------


def rate(settings: Settings) -> CaseResult:
    """300 pages at 100 requests/s: time against the bound over every request the stream
    sent, requests per second and per stream at the server."""
    expected = RATE_PAGES * PAGE_SIZE
    budget = request_budget(RATE_PAGES, CONCURRENCY)
    seconds: list[float] = []
    bounds: list[float] = []
    per_second: list[float] = []
    spans: list[float] = []
    requests: list[float] = []
    stream_requests: list[float] = []
    server_reports: list[dict[str, Any]] = []
    with stats_server(tasks=expected, latency=RATE_LATENCY) as server:
        server.stats()  # start from zero
        for round_ in range(settings.repeats):
            result, _ = _timed(
                server,
                lambda: _library_stream(server.url, concurrency=CONCURRENCY, rate_limit=RATE),
                expected,
                "rate-bound library",
            )
            seconds.append(result.seconds)
            report = server.stats()
            arrivals = report["arrivals"]
            per_second.append(report["max_in_any_second"])
            spans.append(arrivals[-1] - arrivals[0])
            requests.append(report["requests"])
            stream_requests.append(result.requests)
            # The rate spaces every request the stream sends, its planning pages too.
            bounds.append((report["requests"] - 1) / RATE)
            server_reports.append(report)
            _progress(f"round {round_ + 1}/{settings.repeats}")
    case = "rate-bound paging"
    figures = [
        Figure(case, "library, 100 req/s, concurrency 16", "s", seconds),
        Figure(
            case,
            "bound / library (bound (requests - 1) / 100 s)",
            "ratio",
            _ratios(bounds, seconds),
            (">=", 0.95),
        ),
        Figure(case, "  bound, over the requests sent", "s", bounds),
        Figure(
            case,
            f"  pages-only bound / library (bound {RATE_PAGES_BOUND:.2f} s)",
            "ratio",
            [RATE_PAGES_BOUND / value for value in seconds],
        ),
        Figure(
            case, "max requests in any 1 s (server)", "count", per_second, ("<=", 101), every=True
        ),
        Figure(case, "first to last arrival (server)", "s", spans),
        Figure(
            case,
            f"requests per stream (server, {RATE_PAGES} pages)",
            "count",
            requests,
            ("<=", budget),
            every=True,
        ),
    ]
    setup = {
        "pages": RATE_PAGES,
        "rate": RATE,
        "latency_s": RATE_LATENCY,
        "concurrency": CONCURRENCY,
        "bound": "(requests seen by the server - 1) / rate, per run",
        "pages_bound_s": RATE_PAGES_BOUND,
        "request_budget": budget,
        "dataset": density(expected),
    }
    raw = {
        "setup": setup,
        "seconds": seconds,
        "bounds_s": bounds,
        "stream_requests": stream_requests,
        "server": server_reports,
    }
    return CaseResult(figures, raw)


# -- requests per stream ------------------------------------------------------------------


def requests_per_stream(settings: Settings) -> CaseResult:
    """Requests one stream sends for 200 pages at several concurrencies, counted at the
    server: at most pages + 2 x concurrency + 2 when nothing changes."""
    expected = REQUESTS_PAGES * PAGE_SIZE
    repeats = 1 if settings.quick else min(settings.repeats, 3)
    counts: dict[str, list[float]] = {str(c): [] for c in REQUESTS_CONCURRENCIES}
    stream_counts: dict[str, list[float]] = {str(c): [] for c in REQUESTS_CONCURRENCIES}
    with stats_server(tasks=expected) as server:
        server.stats()  # start from zero
        for round_ in range(repeats):
            for concurrency in REQUESTS_CONCURRENCIES:
                result, _ = _timed(
                    server,
                    partial(_library_stream, server.url, concurrency=concurrency, rate_limit=None),
                    expected,
                    f"requests per stream, concurrency {concurrency}",
                )
                counts[str(concurrency)].append(server.stats()["requests"])
                stream_counts[str(concurrency)].append(result.requests)
            _progress(f"round {round_ + 1}/{repeats}")
    case = "requests per stream"
    figures = [
        Figure(
            case,
            f"{REQUESTS_PAGES} pages, concurrency {concurrency} (server)",
            "count",
            counts[str(concurrency)],
            ("<=", request_budget(REQUESTS_PAGES, concurrency)),
            every=True,
        )
        for concurrency in REQUESTS_CONCURRENCIES
    ]
    # What each cursor page reads again: the records at its boundary second.
    crowd = density(expected)
    figures += [
        Figure(
            case,
            "  dataset: tasks per occupied second",
            "ratio",
            [crowd["tasks_per_occupied_second"]],
        ),
        Figure(case, "  dataset: most tasks in one second", "count", [crowd["most_in_one_second"]]),
    ]
    setup = {
        "pages": REQUESTS_PAGES,
        "page_size": PAGE_SIZE,
        "concurrencies": list(REQUESTS_CONCURRENCIES),
        "budgets": {str(c): request_budget(REQUESTS_PAGES, c) for c in REQUESTS_CONCURRENCIES},
        "dataset": crowd,
    }
    raw = {"setup": setup, "server_requests": counts, "stream_requests": stream_counts}
    return CaseResult(figures, raw)


# -- client overhead ----------------------------------------------------------------------

_EMPTY_PAGE: Final = json.dumps(
    {
        "code": 0,
        "msg": "success",
        "data": {
            "records": [],
            "total": 0,
            "size": PAGE_SIZE,
            "current": 1,
            "searchCount": True,
            "pages": 0,
        },
    }
).encode()


def _answer_empty_page(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, content=_EMPTY_PAGE, headers={"Content-Type": "application/json;charset=UTF-8"}
    )


async def _overhead_rounds(
    transport: httpx.AsyncBaseTransport, calls: int, repeats: int
) -> dict[str, list[float]]:
    """Microseconds per call, library and bare loop interleaved, through one transport."""
    raw: dict[str, list[float]] = {"library_us": [], "bare_us": []}
    async with (
        AsyncVoiceClient(
            API_KEY, API_SECRET, base_url=IN_PROCESS_URL, rate_limit=None, transport=transport
        ) as client,
        httpx.AsyncClient(base_url=IN_PROCESS_URL, transport=transport) as http,
    ):

        async def library() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                await client.query_group_calls(EMPTY_START, EMPTY_END)
            return (time.perf_counter() - started) / calls * 1e6

        async def bare() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                data = await _bare.post_page(http, API_KEY, API_SECRET, EMPTY_START, EMPTY_END, 1)
            if data["records"]:
                raise RuntimeError("client overhead: the page was meant to be empty")
            return (time.perf_counter() - started) / calls * 1e6

        await library()  # warm-up
        await bare()
        for _ in range(repeats):
            raw["library_us"].append(await library())
            raw["bare_us"].append(await bare())
    return raw


def overhead(settings: Settings) -> CaseResult:
    """Time per call with zero latency, in-process, a page with no records.

    The target is taken through ``httpx.MockTransport`` answering a canned empty page, so
    the figure is the client's own cost; the same comparison through the fake's in-process
    transport (which also runs the fake: ASGI, signature check, query) is shown for
    information.
    """
    calls = 500 if settings.quick else 3000
    mock = asyncio.run(
        _overhead_rounds(httpx.MockTransport(_answer_empty_page), calls, settings.repeats)
    )
    fake = FakeVendor(API_KEY, API_SECRET, dataset=Dataset.generate(20_000, seed=1))
    via_fake = asyncio.run(_overhead_rounds(fake.transport(), calls // 3, settings.repeats))
    case = "client overhead"
    figures = [
        Figure(case, "library query_group_calls", "us", mock["library_us"]),
        Figure(case, "bare httpx post + json.loads", "us", mock["bare_us"]),
        Figure(
            case,
            "library time / bare time",
            "ratio",
            _ratios(mock["library_us"], mock["bare_us"]),
            ("<=", 1.3),
        ),
        Figure(
            case,
            "same ratio via the fake's transport()",
            "ratio",
            _ratios(via_fake["library_us"], via_fake["bare_us"]),
        ),
    ]
    setup = {
        "calls_per_sample": calls,
        "transport": "one httpx.MockTransport instance answering a canned empty page",
        "fake_transport_calls_per_sample": calls // 3,
    }
    return CaseResult(figures, {"setup": setup, "mock_transport": mock, "fake_transport": via_fake})


# -- decoding -----------------------------------------------------------------------------


async def _fake_page_bytes() -> bytes:
    fake = FakeVendor(API_KEY, API_SECRET, dataset=Dataset.generate(20_000, seed=1))
    async with httpx.AsyncClient(base_url=IN_PROCESS_URL, transport=fake.transport()) as http:
        response = await http.post(
            _bare.QUERY_PATH,
            content=_bare.body(START, END, 1),
            headers=_bare.sign(API_KEY, API_SECRET),
        )
    return response.content


def decoding(settings: Settings) -> CaseResult:
    """Records per second from response bytes to ``GroupCallRecord``s vs ``json.loads``."""
    return decoding_case(settings, "decoding", asyncio.run(_fake_page_bytes()), GroupCallRecord)


def decoding_case(settings: Settings, case: str, body: bytes, model: type[Any]) -> CaseResult:
    """Records per second from ``body`` (a reply of ``PAGE_SIZE`` records) to a
    ``Page[model]``, against ``json.loads`` of the same bytes, interleaved."""
    structure = make_converter().get_structure_hook(Page[model])
    page = structure(decode_envelope(body, 200).data, Page[model])
    records = len(page.records)
    if records != PAGE_SIZE or not isinstance(page.records[0], model):
        raise RuntimeError(f"{case}: expected a page of {PAGE_SIZE} records, got {records}")

    def library() -> object:
        return structure(decode_envelope(body, 200).data, Page[model])

    def json_only() -> object:
        return json.loads(body)

    lib_timer = timeit.Timer(library)
    json_timer = timeit.Timer(json_only)
    number, _ = lib_timer.autorange()  # enough calls for 0.2 s of the slower path
    number = max(1, number // 2) if settings.quick else number * 2
    lib_rates: list[float] = []
    json_rates: list[float] = []
    for _ in range(settings.repeats):
        lib_rates.append(records * number / lib_timer.timeit(number))
        json_rates.append(records * number / json_timer.timeit(number))
    figures = [
        Figure(case, f"library: bytes -> Page[{model.__name__}]", "rec/s", lib_rates),
        Figure(case, "json.loads alone", "rec/s", json_rates),
        Figure(
            case,
            "library rate / json.loads rate",
            "ratio",
            _ratios(lib_rates, json_rates),
            (">=", 0.45),
        ),
    ]
    setup = {"records_per_page": records, "page_bytes": len(body), "calls_per_sample": number}
    return CaseResult(
        figures, {"setup": setup, "library_rec_s": lib_rates, "json_rec_s": json_rates}
    )


# -- memory -------------------------------------------------------------------------------


def _memory_worker(url: str, records: int) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            str(_HERE / "_memory_worker.py"),
            "--records",
            str(records),
            "--concurrency",
            str(MEMORY_CONCURRENCY),
            "--url",
            url,
            "--api-key",
            API_KEY,
            "--api-secret",
            API_SECRET,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"memory worker ({records} records) failed with {completed.returncode}:\n"
            f"{completed.stdout}{completed.stderr}"
        )
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


def memory(settings: Settings) -> CaseResult:
    """Peak RSS of a fresh client process streaming N records vs N/10.

    The targets are taken on the peak while streaming (the process's RSS high-water mark,
    reset once the imports are done, where Linux allows it); the peak of the whole
    process lifetime (``ru_maxrss``), imports included, is shown beside it.
    """
    small, large = (10_000, 100_000) if settings.quick else (100_000, 1_000_000)
    reports: dict[str, list[dict[str, Any]]] = {str(small): [], str(large): []}
    with fake_cli(tasks=small) as small_server, fake_cli(tasks=large) as large_server:
        for round_ in range(settings.memory_repeats):
            reports[str(small)].append(_memory_worker(small_server.url, small))
            reports[str(large)].append(_memory_worker(large_server.url, large))
            _progress(f"round {round_ + 1}/{settings.memory_repeats}")
    small_runs, large_runs = reports[str(small)], reports[str(large)]
    streaming = all(r["stream_peak_kib"] is not None for r in small_runs + large_runs)
    key, label = (
        ("stream_peak_kib", "peak RSS streaming") if streaming else ("peak_kib", "peak RSS")
    )
    small_mb = [_mb(r[key]) for r in small_runs]
    large_mb = [_mb(r[key]) for r in large_runs]
    case = "memory"
    figures = [
        Figure(case, f"{label}, {small:,} records", "MB", small_mb),
        Figure(case, f"{label}, {large:,} records", "MB", large_mb, ("<", 150)),
        Figure(
            case,
            f"{label} {large:,} / {small:,}",
            "ratio",
            _ratios(large_mb, small_mb),
            ("<=", 1.15),
        ),
    ]
    if streaming:
        figures += [
            Figure(
                case,
                f"RSS before streaming, {large:,}",
                "MB",
                [_mb(r["before_kib"]) for r in large_runs],
            ),
            Figure(
                case,
                f"peak RSS incl. imports, {large:,}",
                "MB",
                [_mb(r["peak_kib"]) for r in large_runs],
            ),
        ]
    figures.append(
        Figure(case, f"stream time, {large:,} records", "s", [r["seconds"] for r in large_runs])
    )
    pages = math.ceil(large / PAGE_SIZE)
    figures.append(
        Figure(
            case,
            f"requests per stream, {large:,} records ({pages:,} pages)",
            "count",
            [r["requests"] for r in large_runs],
            ("<=", request_budget(pages, MEMORY_CONCURRENCY)),
            every=True,
        )
    )
    setup = {
        "records": [small, large],
        "concurrency": MEMORY_CONCURRENCY,
        "page_size": PAGE_SIZE,
        "figure": key,
        "dataset_tasks_per_second": {
            str(n): n / (END - START).total_seconds() for n in (small, large)
        },
    }
    return CaseResult(figures, {"setup": setup, "workers": reports})


# -- one process at high rates -----------------------------------------------------------

#: The rates of the one-process case, requests per second, and the requests per run at
#: each (the issue's R x 5: some 5 seconds at the rate).
HIGH_RATES: Final = (100, 500, 1000)
HIGH_RATE_SECONDS: Final = 5
HIGH_RATE_CONCURRENCY: Final = 32
#: The transports compared: httpx's own, and aiohttp's (the speedups extra).
BACKENDS: Final = ("httpx", "aiohttp")
#: Client CPU per 1,000 records at 1,000 requests/s, in ms (the issue's target).
CPU_PER_1000_TARGET: Final = 8.0


def _high_rate_tasks(quick: bool) -> int:
    """Tasks on the server: enough 100-record pages for the top rate's run (at about
    98.6 new records a cursor page, see the density above)."""
    seconds = 2 if quick else HIGH_RATE_SECONDS
    return int(max(HIGH_RATES) * seconds * 98.6 * 1.03)


def _high_rate_end(rate: int) -> datetime:
    """The end of the window whose records take the run at ``rate`` its requests."""
    return START + (END - START) * (rate / max(HIGH_RATES))


async def _backend_stream(url: str, backend: str, end: datetime, rate_limit: float | None) -> _Run:
    async with AsyncVoiceClient(
        API_KEY, API_SECRET, base_url=url, rate_limit=rate_limit, http_backend=backend
    ) as client:
        if client.http_backend != backend:
            raise RuntimeError(f"asked for the {backend} transport, got {client.http_backend}")
        records = 0
        cpu, started = time.process_time(), time.perf_counter()
        stream = client.iter_group_calls(START, end, concurrency=HIGH_RATE_CONCURRENCY)
        async for _record in stream:
            records += 1
        seconds, used = time.perf_counter() - started, time.process_time() - cpu
        return _Run(seconds, records, used, stream.progress.requests)


def cpu_reading(*, children: bool = False) -> tuple[float, float, float] | None:
    """Busy CPU seconds of the whole machine, of this process (and, with ``children``, of
    its reaped children), and the time (Linux ``/proc/stat``; ``None`` elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    times = os.times()
    ours = times.user + times.system
    if children:
        ours += times.children_user + times.children_system
    return busy, ours, time.monotonic()


def _others_share(
    start: tuple[float, float, float] | None, end: tuple[float, float, float] | None, server: float
) -> float | None:
    """The share of the machine's CPU that processes other than this one and the server
    (``server`` CPU seconds) used between two readings."""
    if start is None or end is None:
        return None
    capacity = (end[2] - start[2]) * (os.cpu_count() or 1)
    others = (end[0] - start[0]) - (end[1] - start[1]) - server
    return max(0.0, others) / capacity if capacity > 0 else None


def one_process(settings: Settings) -> CaseResult:
    """One process at 100, 500 and 1,000 requests/s, httpx's transport against aiohttp's
    in the same rounds: delivered rate, worst second at the server, client CPU."""
    from itnio_async._transport import aiohttp_available
    from itnio_async.testing import Query

    if not aiohttp_available():
        raise RuntimeError("the one-process case compares transports: install .[speedups]")
    tasks = _high_rate_tasks(settings.quick)
    dataset = Dataset.generate(tasks, seed=1)
    expected = {
        rate: dataset.page(Query.build(START, _high_rate_end(rate)), 1, 1)[0] for rate in HIGH_RATES
    }
    runs = ("unlimited", *(str(rate) for rate in HIGH_RATES))
    keys = [f"{backend}/{run}" for backend in BACKENDS for run in runs]
    raw: dict[str, dict[str, list[float]]] = {
        key: {
            "delivered": [],
            "worst_second": [],
            "cpu_ms_per_1000": [],
            "records_per_s": [],
            "requests": [],
            "server_cpu_ms_per_request": [],
            "fake_answered": [],
            "others_cpu_share": [],
        }
        for key in keys
    }
    repeats = 1 if settings.quick else min(settings.repeats, 3)
    with fast_server(tasks) as server:

        def sample(backend: str, rate: int | None) -> None:
            end = _high_rate_end(rate or max(HIGH_RATES))
            want = expected[rate or max(HIGH_RATES)]
            server.stats()  # from zero
            before, machine = server.cpu_seconds(), cpu_reading()
            result = asyncio.run(_backend_stream(server.url, backend, end, rate))
            after, machine_after = server.cpu_seconds(), cpu_reading()
            report = server.stats()
            if result.records != want:
                raise RuntimeError(f"{backend} at {rate}: expected {want}, got {result.records}")
            arrivals = report["arrivals"]
            row = raw[f"{backend}/{rate or 'unlimited'}"]
            span = arrivals[-1] - arrivals[0]
            if rate is not None:
                row["delivered"].append((len(arrivals) - 1) / span / rate)
            row["worst_second"].append(report["max_in_any_second"])
            row["cpu_ms_per_1000"].append(result.client_cpu / result.records * 1e6)
            row["records_per_s"].append(result.records / result.seconds)
            row["requests"].append(report["requests"])
            row["fake_answered"].append(report["misses"])
            if before is not None and after is not None:
                row["server_cpu_ms_per_request"].append((after - before) / len(arrivals) * 1e3)
                share = _others_share(machine, machine_after, after - before)
                if share is not None:
                    row["others_cpu_share"].append(share)

        _progress(f"warm-up ({tasks:,} tasks: each is built and encoded once)")
        for backend in BACKENDS:
            asyncio.run(_backend_stream(server.url, backend, END, None))
        for round_ in range(repeats):
            # Each backend right after the other at each rate; which goes first alternates.
            order = BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]
            for rate in (None, *HIGH_RATES):
                for backend in order:
                    sample(backend, rate)
            _progress(f"round {round_ + 1}/{repeats}")
    case = "one process"
    figures: list[Figure] = []
    for backend in BACKENDS:
        row = raw[f"{backend}/unlimited"]
        figures += [
            Figure(case, f"{backend}: no limit, records/s", "rec/s", row["records_per_s"]),
            Figure(case, f"  {backend}: no limit, CPU / 1,000 records", "ms",
                   row["cpu_ms_per_1000"]),
            Figure(case, f"  {backend}: no limit, server CPU / request", "ms",
                   row["server_cpu_ms_per_request"]),
            Figure(case, f"  {backend}: no limit, server's ceiling (1 / its CPU a request)",
                   "count", [1e3 / ms for ms in row["server_cpu_ms_per_request"]]),
        ]  # fmt: skip
    for rate in HIGH_RATES:
        for backend in BACKENDS:
            row = raw[f"{backend}/{rate}"]
            fast = backend == "aiohttp"
            delivered_target: tuple[Any, float] | None = (
                (">=", 0.95) if fast and rate >= 500 else None
            )
            cpu_target: tuple[Any, float] | None = (
                ("<=", CPU_PER_1000_TARGET) if fast and rate == max(HIGH_RATES) else None
            )
            figures += [
                Figure(case, f"{backend} at {rate}/s: delivered / R", "ratio", row["delivered"],
                       delivered_target),
                Figure(case, f"  {backend} at {rate}/s: machine's CPU others used", "ratio",
                       row["others_cpu_share"] or [math.nan]),
                Figure(case, f"  {backend} at {rate}/s: worst 1 s (server)", "count",
                       row["worst_second"], ("<=", rate + 1), every=True),
                Figure(case, f"  {backend} at {rate}/s: CPU / 1,000 records", "ms",
                       row["cpu_ms_per_1000"], cpu_target),
            ]  # fmt: skip
    setup = {
        "rates": list(HIGH_RATES),
        "requests_per_run": f"about rate x {2 if settings.quick else HIGH_RATE_SECONDS}",
        "concurrency": HIGH_RATE_CONCURRENCY,
        "page_size": PAGE_SIZE,
        "tasks": tasks,
        "records_per_window": {str(rate): count for rate, count in expected.items()},
        "backends": list(BACKENDS),
        "server": "benchmarks/_fast_server.py: the fake's dataset, each record encoded once",
    }
    return CaseResult(figures, {"setup": setup, "runs": raw})


# -- one rate shared by several processes ------------------------------------------------

#: The shared-rate case: every rate with every number of processes.
SHARED_RATES: Final = (50, 200, 1000)
SHARED_WORKERS: Final = (1, 4, 8)
#: Tasks per worker process, each looping on acquire-and-send.
SHARED_CONCURRENCY: Final = 8
#: The first second of a run (processes starting, the limiter's slow start) is left out of
#: the delivered rate; the densest second is taken over the whole run.
SHARED_SETTLE: Final = 1.0
_WORKER_TIMEOUT: Final = 60.0


def _most_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    best = first = 0
    for last, now in enumerate(times):
        while now - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def _shared_run(
    server: Server, redis_url: str, limiter: str, rate: int, workers: int, seconds: float
) -> dict[str, Any]:
    """W worker processes on one limiter for ``seconds``; what the counter saw."""
    port = server.url.rsplit(":", 1)[1]
    command = [
        sys.executable, str(_HERE / "_shared_worker.py"),
        "--limiter", limiter,
        "--rate", str(rate),
        "--workers", str(workers),
        "--redis-url", redis_url,
        "--prefix", f"bench:{uuid.uuid4().hex[:12]}",
        "--counter-port", port,
        "--seconds", repr(seconds),
        "--concurrency", str(SHARED_CONCURRENCY),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(workers)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"shared worker ({limiter}) did not start: {line!r}")
        server.stats()  # forget the warm-up
        started = time.time()  # the counter stamps with the kernel's wall clock
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        reports = []
        for process in processes:
            out, _ = process.communicate(timeout=seconds + _WORKER_TIMEOUT)
            if process.returncode != 0:
                raise RuntimeError(f"shared worker ({limiter}) failed with {process.returncode}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    arrivals = sorted(server.stats()["arrivals"])
    grants = sum(report["grants"] for report in reports)
    if len(arrivals) != grants:
        raise RuntimeError(f"shared ({limiter}): {grants} grants sent, {len(arrivals)} arrived")
    steady = [t for t in arrivals if started + SHARED_SETTLE <= t < started + seconds]
    return {
        "delivered": len(steady) / ((seconds - SHARED_SETTLE) * rate),
        "most_in_any_second": _most_in_any_second(arrivals),
        "requests": len(arrivals),
        "failures": sum(report["failures"] for report in reports),
        "client_cpu_s": sum(report["cpu_s"] for report in reports),
    }


def shared(settings: Settings) -> CaseResult:
    """One account's rate shared by W processes: delivered / R and the densest second.

    Side by side in each round: our Redis limiter, W local buckets at R / W, and
    ``throttled-py``'s GCRA on the same Redis when it is installed (the ``bench`` extra).
    """
    limiters = ["redis", "local"]
    if importlib.util.find_spec("throttled") is not None:
        limiters.append("throttled")
    else:
        _progress("throttled-py is not installed (pip install -e '.[bench]'): left out")
    seconds = 3.0 if settings.quick else 4.0
    repeats = 1 if settings.quick else min(settings.repeats, 3)
    runs: dict[str, list[dict[str, Any]]] = {}
    with redis_server() as redis_url, counter() as server:
        server.stats()
        for round_ in range(repeats):
            for rate in SHARED_RATES:
                for workers in SHARED_WORKERS:
                    for limiter in limiters:
                        result = _shared_run(server, redis_url, limiter, rate, workers, seconds)
                        runs.setdefault(f"{limiter} R={rate} W={workers}", []).append(result)
                _progress(f"round {round_ + 1}/{repeats}: R={rate} done")
    names = {
        "redis": "RedisRateLimiter",
        "local": "W local buckets at R/W",
        "throttled": "throttled-py GCRA",
    }
    figures: list[Figure] = []
    case = "shared rate"
    for rate in SHARED_RATES:
        for workers in SHARED_WORKERS:
            for limiter in limiters:
                samples = runs[f"{limiter} R={rate} W={workers}"]
                ours = limiter == "redis"
                goal = 0.95 if rate < 1000 else 0.90
                figures += [
                    Figure(
                        case,
                        f"R={rate} W={workers} {names[limiter]}: delivered / R",
                        "ratio",
                        [sample["delivered"] for sample in samples],
                        (">=", goal) if ours else None,
                    ),
                    Figure(
                        case,
                        f"R={rate} W={workers} {names[limiter]}: max in any 1 s",
                        "count",
                        [sample["most_in_any_second"] for sample in samples],
                        ("<=", rate + 1) if ours else None,
                        every=ours,
                    ),
                ]
    setup = {
        "rates": SHARED_RATES,
        "workers": SHARED_WORKERS,
        "concurrency_per_worker": SHARED_CONCURRENCY,
        "seconds": seconds,
        "settle_s": SHARED_SETTLE,
        "limiters": limiters,
    }
    return CaseResult(figures, {"setup": setup, "runs": runs})


CASES: Final[dict[str, Callable[[Settings], CaseResult]]] = {
    "latency": lambda settings: paging(settings, latency=True, users=False),
    "users": lambda settings: paging(settings, latency=False, users=True),
    "rate": rate,
    "requests": requests_per_stream,
    "overhead": overhead,
    "decoding": decoding,
    "memory": memory,
    "one-process": one_process,
    "shared": shared,
}
