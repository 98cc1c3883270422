"""Prometheus metrics and OpenTelemetry spans fed by the client's hooks.

The library depends on neither: the client calls the methods of a ``ClientHooks`` after
each attempt, retry, page and clock correction, and the two classes here turn those
calls into metrics and spans. Copy the one you need into your app, make one instance per
process, and pass it as ``AsyncVoiceClient(hooks=...)`` (``FanOutHooks`` feeds both).

Run it (``pip install "itnio-async[examples]"``)::

    python examples/metrics.py --demo           # the in-process fake vendor, with faults

    export ITNIO_API_KEY=... ITNIO_API_SECRET=...
    python examples/metrics.py --start "2024-06-01 00:00:00" --end "2024-06-30 23:59:59"

It streams the window and prints the metrics (their totals), then one line per span.
``--metrics-port 9100`` also serves the metrics at ``http://127.0.0.1:9100/metrics`` while
it runs. Settings (environment): ``ITNIO_API_KEY``, ``ITNIO_API_SECRET``,
``ITNIO_BASE_URL``, ``ITNIO_RATE_LIMIT`` (requests per second, default 10).

What is measured (the ``itnio_`` prefix is the ``namespace`` argument):

* ``itnio_attempts_total{path,outcome}``: requests sent, by outcome (``ok``,
  ``vendor:-18``, ``http:503``, ``transport:ReadTimeout``...: a short, fixed set);
* ``itnio_attempt_duration_seconds{path,outcome}``: from sending to the end of the reply;
* ``itnio_retries_total{path,reason}``: retries, by the failure that caused them;
* ``itnio_limiter_wait_seconds``: how long each attempt waited for the rate limiter
  (when it grows, the limit, not the vendor, sets the pace);
* ``itnio_clock_offset_seconds``: how far the vendor's clock is ahead of ours;
* ``itnio_pages_total``, ``itnio_records_total``: what streams handed out.

Spans: one ``POST /voice/group/call/query`` client span per attempt, placed in time from
the event's duration (the hook runs when the attempt has ended) and parented to the span
current where the call was made; retries, pages and clock corrections become events of
that current span.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Final

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ModuleNotFoundError as exc:
    if __name__ != "__main__":
        raise
    # Run as a script without its extra: say what to install rather than a traceback.
    sys.exit(
        f"metrics.py needs {exc.name}, which the examples extra installs: "
        'python -m pip install "itnio-async[examples]"'
    )

from itnio_async import (
    AsyncVoiceClient,
    AttemptEvent,
    ClientHooks,
    PageEvent,
    RetryEvent,
    RetryPolicy,
    Settings,
    parse_time,
)

__all__ = ["FanOutHooks", "OpenTelemetryHooks", "PrometheusHooks", "main", "stream_window"]

logger = logging.getLogger(__name__)

#: Limiter waits range from nothing to the length of a ``Retry-After``.
LIMITER_WAIT_BUCKETS: Final = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: The vendor usually answers within a second; a slow reply or a timeout takes longer.
DURATION_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PrometheusHooks(ClientHooks):
    """Counters, histograms and a gauge in a Prometheus registry (default: the global one).

    Make one per process (a metric can be registered once per registry).
    """

    def __init__(
        self, registry: CollectorRegistry | None = REGISTRY, namespace: str = "itnio"
    ) -> None:
        self.attempts = Counter(
            "attempts",
            "Requests sent to the vendor, by outcome.",
            ["path", "outcome"],
            namespace=namespace,
            registry=registry,
        )
        self.attempt_duration = Histogram(
            "attempt_duration_seconds",
            "Seconds from sending a request to the end of its reply.",
            ["path", "outcome"],
            namespace=namespace,
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.retries = Counter(
            "retries",
            "Requests retried, by the failure that caused the retry.",
            ["path", "reason"],
            namespace=namespace,
            registry=registry,
        )
        self.limiter_wait = Histogram(
            "limiter_wait_seconds",
            "Seconds each request waited for the rate limiter.",
            namespace=namespace,
            registry=registry,
            buckets=LIMITER_WAIT_BUCKETS,
        )
        self.clock_offset = Gauge(
            "clock_offset_seconds",
            "Seconds the vendor's clock is ahead of ours, as learned from a -16 reply.",
            namespace=namespace,
            registry=registry,
        )
        self.pages = Counter(
            "pages", "Pages handed out by streams.", namespace=namespace, registry=registry
        )
        self.records = Counter(
            "records", "Records handed out by streams.", namespace=namespace, registry=registry
        )

    def on_attempt(self, event: AttemptEvent) -> None:
        self.attempts.labels(event.path, event.outcome).inc()
        self.attempt_duration.labels(event.path, event.outcome).observe(event.duration)
        self.limiter_wait.observe(event.limiter_wait)

    def on_retry(self, event: RetryEvent) -> None:
        self.retries.labels(event.path, event.reason).inc()

    def on_clock_offset(self, offset: float) -> None:
        self.clock_offset.set(offset)

    def on_page(self, event: PageEvent) -> None:
        self.pages.inc()
        self.records.inc(event.records)


class OpenTelemetryHooks(ClientHooks):
    """A client span per attempt, and events on the current span; the OpenTelemetry API only.

    ``tracer_provider``: where the spans go (default: the global provider, which the app
    sets up with the SDK and an exporter; without one, the API records nothing).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("itnio_async", tracer_provider=tracer_provider)

    def on_attempt(self, event: AttemptEvent) -> None:
        # The hook runs once the attempt has ended: place the span back in time.
        end = time.time_ns()
        span = self._tracer.start_span(
            f"POST {event.path}",
            kind=SpanKind.CLIENT,
            start_time=end - int(event.duration * 1e9),
            attributes={
                "http.request.method": "POST",
                "url.path": event.path,
                "itnio.attempt": event.attempt,
                "itnio.outcome": event.outcome,
                "itnio.limiter_wait_seconds": event.limiter_wait,
            },
        )
        if event.status_code is not None:
            span.set_attribute("http.response.status_code", event.status_code)
        if event.outcome != "ok":
            span.set_attribute("error.type", event.outcome)
            span.set_status(Status(StatusCode.ERROR, event.outcome))
        span.end(end_time=end)

    def on_retry(self, event: RetryEvent) -> None:
        trace.get_current_span().add_event(
            "itnio.retry",
            {
                "itnio.attempt": event.attempt,
                "itnio.reason": event.reason,
                "itnio.wait": event.wait,
            },
        )

    def on_clock_offset(self, offset: float) -> None:
        trace.get_current_span().add_event("itnio.clock_offset", {"itnio.offset": offset})

    def on_page(self, event: PageEvent) -> None:
        trace.get_current_span().add_event(
            "itnio.page",
            {"itnio.page": event.page, "itnio.records": event.records, "itnio.pages": event.pages},
        )


class FanOutHooks(ClientHooks):
    """Several hooks as one (the client takes one); a hook that raises does not stop the rest."""

    def __init__(self, *hooks: ClientHooks) -> None:
        self.hooks = hooks

    def _each(self, name: str, arg: object) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, name)(arg)
            except Exception:
                logger.warning("the %s hook of %r raised; ignored", name, hook, exc_info=True)

    def on_attempt(self, event: AttemptEvent) -> None:
        self._each("on_attempt", event)

    def on_retry(self, event: RetryEvent) -> None:
        self._each("on_retry", event)

    def on_clock_offset(self, offset: float) -> None:
        self._each("on_clock_offset", offset)

    def on_page(self, event: PageEvent) -> None:
        self._each("on_page", event)


# -- a small program that uses them ------------------------------------------------------


async def stream_window(
    client: AsyncVoiceClient,
    start: datetime,
    end: datetime,
    tracer_provider: trace.TracerProvider | None = None,
) -> int:
    """Stream the window inside one span of its own; return how many records came."""
    tracer = trace.get_tracer("itnio_async.examples", tracer_provider=tracer_provider)
    with tracer.start_as_current_span("export window"):
        count = 0
        stream = client.iter_group_calls(start, end)
        async with contextlib.aclosing(stream):
            async for _record in stream:
                count += 1
        return count


def _demo_client(hooks: ClientHooks) -> AsyncVoiceClient:
    """A client on the in-process fake vendor, which fails one request in five."""
    from itnio_async.testing import Dataset, FakeVendor, FaultPlan

    fake = FakeVendor(
        "demo-key",
        "demo-secret",
        dataset=Dataset.generate(2_000, seed=5),
        faults=FaultPlan.random(seed=5, probability=0.2),
        clock_offset=900.0,  # the vendor's clock 15 minutes ahead: one -16, then corrected
    )
    return AsyncVoiceClient(
        "demo-key",
        "demo-secret",
        base_url="https://demo.itnio.test",
        transport=fake.transport(),
        rate_limit=None,
        retry=RetryPolicy(initial_backoff=0.01, max_retries=8),
        hooks=hooks,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import generate_latest, start_http_server

    parser = argparse.ArgumentParser(description="Stream a window; print metrics and spans.")
    parser.add_argument("--demo", action="store_true", help="use the in-process fake vendor")
    parser.add_argument("--start", type=parse_time, default=datetime(2024, 1, 1))
    parser.add_argument(
        "--end", type=lambda text: parse_time(text, end=True), default=datetime(2024, 7, 1)
    )
    parser.add_argument("--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT")
    args = parser.parse_args(argv)

    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()  # an app would use an OTLP exporter instead
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # An app would rather call trace.set_tracer_provider(provider) once, at startup.
    hooks = FanOutHooks(PrometheusHooks(registry), OpenTelemetryHooks(provider))
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=registry)

    if args.demo:
        client = _demo_client(hooks)
    else:
        # ITNIO_* from the environment, read as the library, the CLI and the examples read it.
        try:
            client = AsyncVoiceClient(**Settings.from_env().client_options(), hooks=hooks)
        except ValueError as exc:  # no credentials, or a wrong variable: one line, no traceback
            parser.error(f"{exc} (or try it without an account: --demo)")

    async def run() -> int:
        async with client:
            return await stream_window(client, args.start, args.end, provider)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    count = asyncio.run(run())
    provider.shutdown()
    print(f"{count} records\n")
    # The totals of the exposition text (all of it is at /metrics with --metrics-port).
    for line in generate_latest(registry).decode().splitlines():
        if not line.startswith("#") and "_bucket" not in line and "_created" not in line:
            print(line)
    print()
    for span in exporter.get_finished_spans():
        assert span.attributes is not None
        outcome = span.attributes.get("itnio.outcome", "")
        duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
        print(f"{span.name:40} {outcome!s:32} {duration:8.4f}s events={len(span.events)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
