"""Serve the fake vendor on loopback and report, on request, what the server saw.

Run by the benchmark for the rate-bound case, where the requests per second must be
counted at the server, not at the client. The fake is the unmodified ``FakeVendor``,
served by ``itnio_async.testing.serve`` (uvicorn in a background thread); this script
only reads its ``stats``. Protocol, one line each:

* stdout: ``listening on http://HOST:PORT`` once the server accepts connections;
* stdin ``stats``: stdout gets one JSON line (requests, codes, the most arrivals in any
  1-second window, each arrival time relative to the first) and the counters reset;
* stdin closed, SIGTERM or SIGINT: the server stops and the script exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType

from itnio_async.testing import Dataset, FakeVendor, serve


class _Stop(Exception):
    """Raised by the signal handler to leave the command loop."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _stats(fake: FakeVendor) -> dict[str, object]:
    stats = fake.stats
    arrivals = sorted(stats.arrival_times)
    first = arrivals[0] if arrivals else 0.0
    report = {
        "requests": stats.requests,
        "codes": {str(code): count for code, count in stats.codes.items()},
        "max_in_flight": stats.max_in_flight,
        "max_in_any_second": stats.max_in_any_second(),
        "arrivals": [round(t - first, 6) for t in arrivals],
    }
    stats.reset()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--api-secret", default="test-secret")
    args = parser.parse_args()

    fake = FakeVendor(
        args.api_key,
        args.api_secret,
        dataset=Dataset.generate(args.tasks, seed=args.seed),
        latency=args.latency,
        seed=args.seed,
    )
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with serve(fake, port=args.port) as base_url:
        try:
            print(f"listening on {base_url}", flush=True)
            for line in sys.stdin:
                if line.strip() == "stats":
                    print(json.dumps(_stats(fake)), flush=True)
        except _Stop:
            pass
        finally:
            # Let the server stop cleanly whatever signal comes next.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
