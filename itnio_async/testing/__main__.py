"""Serve a fake vendor in its own process, for benchmarks and manual trials.

Usage::

    python -m itnio_async.testing --port 0 --tasks 20000 --seed 1 \\
        --latency 0.04 --rate-limit 100

Prints exactly one line, ``listening on http://HOST:PORT`` (flushed), once the
server accepts connections, then serves a generated dataset until SIGTERM or SIGINT
and exits with status 0. Needs uvicorn (``pip install itnio-async[testing]``).
Run with ``--help`` for every option.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ._calls import call_account
from ._dataset import Dataset
from ._faults import FaultPlan
from ._serve import base_url, bind_socket, make_server
from ._vendor import FakeVendor


def _datetime(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _app_ids(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m itnio_async.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m itnio_async.testing",
        description="Serve a fake Itniotech vendor with a generated dataset on loopback.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    add("--api-key", default="test-key", help="the account's Api-Key (default: %(default)s)")
    add("--api-secret", default="test-secret", help="its secret (default: %(default)s)")
    add("--tasks", type=int, default=20_000, help="generated tasks (default: %(default)s)")
    add("--seed", type=int, default=0, help="seed of the dataset and jitter (default: 0)")
    add("--start", type=_datetime, default=datetime(2024, 1, 1), help="first creation time")
    add("--end", type=_datetime, default=datetime(2024, 7, 1), help="creation times end before")
    add("--app-ids", type=_app_ids, default=(1, 2, 3), help="comma-separated (default: 1,2,3)")
    add("--latency", type=float, default=0.0, help="seconds from a request to its answer")
    add("--jitter", type=float, default=0.0, help="up to this many more seconds, seeded")
    add("--rate-limit", type=float, default=None, help="requests per second per key")
    add("--timestamp-tolerance", type=float, default=300.0, help="accepted skew, seconds")
    add("--clock-offset", type=float, default=0.0, help="server clock minus real time, seconds")
    add("--code-as-string", action="store_true", help='send "code" as a string ("0")')
    add("--fault-probability", type=float, default=0.0, help="chance of a transient fault")
    add("--fault-seed", type=int, default=0, help="seed of the random faults")
    add(
        "--calls",
        type=int,
        default=0,
        help="serve this many call records instead of --tasks: tasks of --calls-per-task "
        "calls each (whole tasks), created over the 30 days before now (UTC)",
    )
    add("--calls-per-task", type=int, default=100, help="calls of each task (default: 100)")
    add("--log-level", default="warning", help="uvicorn's log level (default: warning)")
    return parser


def build_fake(args: argparse.Namespace) -> FakeVendor:
    """The fake vendor the parsed command line describes."""
    faults = None
    if args.fault_probability > 0:
        faults = FaultPlan.random(args.fault_seed, probability=args.fault_probability)
    dataset = Dataset.generate(
        args.tasks, seed=args.seed, start=args.start, end=args.end, app_ids=args.app_ids
    )
    calls = None
    if args.calls > 0:
        per_task = max(1, args.calls_per_task)
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        dataset, calls = call_account(
            -(-args.calls // per_task),
            seed=args.seed,
            start=now - timedelta(days=30),
            end=now - timedelta(hours=1),
            calls_per_task=(per_task, per_task),
        )
    return FakeVendor(
        args.api_key,
        args.api_secret,
        dataset=dataset,
        timestamp_tolerance=args.timestamp_tolerance,
        clock_offset=args.clock_offset,
        code_as_string=args.code_as_string,
        faults=faults,
        rate_limit=args.rate_limit,
        latency=args.latency,
        jitter=args.jitter,
        seed=args.seed,
        calls=calls,
    )


async def _serve_until_signalled(fake: FakeVendor, host: str, port: int, log_level: str) -> None:
    sock = bind_socket(host, port)
    server = make_server(fake, log_level=log_level)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:  # a second signal: stop waiting for open connections
            server.force_exit = True
        server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                break
            await asyncio.sleep(0.005)
        else:
            print(f"listening on {base_url(sock)}", flush=True)
        await task
    finally:
        sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    fake = build_fake(args)
    asyncio.run(_serve_until_signalled(fake, args.host, args.port, args.log_level))
    return 0


if __name__ == "__main__":
    sys.exit(main())
