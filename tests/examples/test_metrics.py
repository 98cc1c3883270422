"""``examples/metrics.py``: hooks feed Prometheus and OpenTelemetry with what the client did."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from examples import metrics
from itnio_async import AsyncVoiceClient, ClientHooks, PageEvent, RetryPolicy
from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan

from ._support import fake_client

START = datetime(2024, 1, 1)
END = datetime(2024, 7, 1)
PATH = "/voice/group/call/query"
KEY, SECRET = "metrics-key", "metrics-secret"


def faulty_vendor() -> FakeVendor:
    """500 tasks; the vendor's clock an hour ahead; two later pages fail first."""
    return FakeVendor(
        KEY,
        SECRET,
        dataset=Dataset.generate(500, seed=41),
        clock_offset=3600.0,
        # Request 1 is refused for the clock and 2 is its retry; 3 is the next page's first
        # try, 4 its retry; 5 and its retry 6 fail, 7 answers.
        faults=FaultPlan(by_request={3: Fault.code(-18), 5: Fault.http(503), 6: Fault.drop()}),
    )


def client_for(fake: FakeVendor, hooks: ClientHooks) -> AsyncVoiceClient:
    return fake_client(fake, rate_limit=None, retry=RetryPolicy(initial_backoff=0.01), hooks=hooks)


#: What the client meets: the first request refused once for the clock (-16), a page
#: refused once (-18), another twice (HTTP 503, then a dropped connection); everything else
#: answers at once.
FAILURES = {"vendor:-16": 1, "vendor:-18": 1, "http:503": 1, "transport:RemoteProtocolError": 1}


class PageCount(ClientHooks):
    """Counts the pages the client reports, to compare the metrics with."""

    def __init__(self) -> None:
        self.pages = 0
        self.records = 0

    def on_page(self, event: PageEvent) -> None:
        self.pages += 1
        self.records += event.records


async def test_prometheus_counts_attempts_retries_pages_and_the_clock_offset() -> None:
    registry = CollectorRegistry()
    fake, pages = faulty_vendor(), PageCount()
    hooks = metrics.FanOutHooks(metrics.PrometheusHooks(registry), pages)
    async with client_for(fake, hooks) as client:
        assert await metrics.stream_window(client, START, END) == 500

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    ok = fake.stats.requests - sum(FAILURES.values())  # every other request answered
    assert ok >= 5  # a page of 100 records at most per answer
    assert value("itnio_attempts_total", path=PATH, outcome="ok") == ok
    for outcome, count in FAILURES.items():
        assert value("itnio_attempts_total", path=PATH, outcome=outcome) == count
        assert value("itnio_retries_total", path=PATH, reason=outcome) == count
    assert value("itnio_attempt_duration_seconds_count", path=PATH, outcome="ok") == ok
    assert value("itnio_limiter_wait_seconds_count") == fake.stats.requests
    offset = value("itnio_clock_offset_seconds")
    assert offset is not None
    assert abs(offset - 3600) < 2
    assert value("itnio_pages_total") == pages.pages >= 5
    assert value("itnio_records_total") == pages.records == 500


async def test_opentelemetry_gets_a_client_span_per_attempt_under_the_callers_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake, pages = faulty_vendor(), PageCount()
    hooks = metrics.FanOutHooks(metrics.OpenTelemetryHooks(provider), pages)
    async with client_for(fake, hooks) as client:
        assert await metrics.stream_window(client, START, END, provider) == 500

    spans = exporter.get_finished_spans()
    (outer,) = [span for span in spans if span.name == "export window"]
    attempts = [span for span in spans if span.name == f"POST {PATH}"]
    assert len(spans) == 1 + len(attempts)
    assert len(attempts) == fake.stats.requests
    for span in attempts:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == outer.context.span_id
        assert span.start_time is not None
        assert span.end_time is not None
        assert outer.start_time is not None
        assert outer.end_time is not None
        assert outer.start_time <= span.start_time <= span.end_time <= outer.end_time
    failed = [span for span in attempts if span.status.status_code is StatusCode.ERROR]
    failed_types = sorted(str((span.attributes or {}).get("error.type")) for span in failed)
    assert failed_types == sorted(FAILURES)
    events = [event.name for event in outer.events]
    assert events.count("itnio.retry") == sum(FAILURES.values())
    assert events.count("itnio.page") == pages.pages >= 5
    assert events.count("itnio.clock_offset") == 1


async def test_fan_out_feeds_every_hook_even_when_one_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(ClientHooks):
        def on_page(self, event: object) -> None:
            raise RuntimeError("metrics backend down")

    registry = CollectorRegistry()
    pages = PageCount()
    hooks = metrics.FanOutHooks(Broken(), metrics.PrometheusHooks(registry), pages)
    async with client_for(FakeVendor(KEY, SECRET), hooks) as client:
        assert await metrics.stream_window(client, START, END) == 200
    assert registry.get_sample_value("itnio_pages_total") == pages.pages >= 2
    assert any("on_page hook" in record.getMessage() for record in caplog.records)


def test_the_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert metrics.main(["--demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2000 records")
    ok = re.search(r'^itnio_attempts_total\{outcome="ok",path="[^"]+"\} (\S+)$', out, re.M)
    assert ok is not None
    assert float(ok.group(1)) >= 20  # 100 records an answer at most
    assert "itnio_records_total 2000.0" in out
