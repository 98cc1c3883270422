"""Stream N records from a fake vendor and print the process's peak resident memory.

Run once per measurement, in a fresh process, by the benchmark's memory case::

    python benchmarks/_memory_worker.py --records 1000000 --url http://127.0.0.1:PORT

The server must hold exactly N tasks in the window: the whole result is streamed with
``iter_group_calls(..., concurrency=8)``, and records are counted and dropped, never kept.

Prints one JSON line, sizes in KiB:

* ``peak_kib``: ``ru_maxrss``, the peak RSS of the whole process, imports included;
* ``stream_peak_kib``: the peak RSS while streaming (Linux: the high-water mark is reset
  with ``/proc/self/clear_refs`` once the imports are done, then read from
  ``/proc/self/status``), which leaves out transient memory of the imports (compiling
  modules when no bytecode cache is written, for one); ``null`` where not available;
* ``before_kib``: RSS just before streaming; ``records``; ``requests`` (the stream's
  own count); ``seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
from datetime import datetime
from pathlib import Path

from itnio_async import AsyncVoiceClient

_START = datetime(2024, 1, 1)
_END = datetime(2024, 7, 1)
_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux 4.0+); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _stream(url: str, api_key: str, api_secret: str, concurrency: int) -> tuple[int, int]:
    count = 0
    async with AsyncVoiceClient(api_key, api_secret, base_url=url, rate_limit=None) as client:
        stream = client.iter_group_calls(_START, _END, concurrency=concurrency)
        async with stream:
            async for _record in stream:
                count += 1
    return count, stream.progress.requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--api-secret", default="test-secret")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    gc.collect()
    reset = _reset_peak()
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    count, requests = asyncio.run(
        _stream(args.url, args.api_key, args.api_secret, args.concurrency)
    )
    seconds = time.perf_counter() - started
    report = {
        "records": count,
        "requests": requests,
        "seconds": seconds,
        "before_kib": before,
        "stream_peak_kib": _status_kib("VmHWM") if reset else None,
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
    }
    print(json.dumps(report), flush=True)
    if count != args.records:
        print(f"expected {args.records} records, streamed {count}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
