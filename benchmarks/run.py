"""Benchmark itnio_async against the issue's targets; see benchmarks/README.md.

    python benchmarks/run.py                 # every case, 5 repeats each
    python benchmarks/run.py --quick         # CI smoke: fewer repeats, smaller memory case
    python benchmarks/run.py --case latency  # one case (repeat --case for more)

Prints a table (case, figure, median, spread, target, met?) and writes every raw sample
with the machine's description to benchmarks/results/latest.json. Timings are reported,
never asserted: the exit status is 0 whether or not a target is met, non-zero only when
the benchmark itself fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, Final

# Run as a script: the helper modules sit beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _calls_cases import CALL_CASES
from _cases import CASES, Settings, cpu_reading, paging
from _report import Figure, format_table

_RESULTS: Final = Path(__file__).resolve().parent / "results" / "latest.json"
# The call-record cases, after the task stream's.
CASES.update(CALL_CASES)
#: Distributions whose versions (or absence) the results record: the library, its
#: dependencies, the fake's server, and optional packages httpx/httpcore react to.
_DISTRIBUTIONS: Final = (
    "itnio-async",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "sniffio",
    "h2",
    "httpx-aiohttp",
    "aiohttp",
    "orjson",
    "brotli",
    "zstandard",
    "attrs",
    "cattrs",
    "tenacity",
    "aiolimiter",
    "uvicorn",
)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        usable_cpus: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        usable_cpus = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "python": sys.version,
        "python_implementation": platform.python_implementation(),
        "versions": {name: _version(name) for name in _DISTRIBUTIONS},
        "git_commit": _git_commit(),
    }


class _CpuMeter:
    """CPU used on the whole machine vs by this benchmark (itself and its reaped children).

    The difference is what *other* processes took while a case ran: a busy machine makes
    every timing pessimistic, so the results say how busy it was (Linux ``/proc/stat``).
    """

    def __init__(self) -> None:
        self._start = cpu_reading(children=True)

    def others_share(self) -> float | None:
        """Share of the machine's CPU (0..1) that other processes used since the start."""
        end = cpu_reading(children=True)
        if self._start is None or end is None:
            return None
        busy = end[0] - self._start[0]
        ours = end[1] - self._start[1]
        capacity = (end[2] - self._start[2]) * (os.cpu_count() or 1)
        return max(0.0, busy - ours) / capacity if capacity > 0 else None


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmark itnio_async against the fake vendor (see benchmarks/README.md).",
    )
    parser.add_argument("--repeats", type=int, default=None, help="samples per figure (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke: 2 repeats, a 10k/100k memory case"
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=sorted(CASES),
        help="run only this case (may be repeated; default: all)",
    )
    parser.add_argument(
        "--output", type=Path, default=_RESULTS, help="the JSON results file (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind normally so every server process started so far is stopped.
    raise SystemExit(128 + signum)


def _run_cases(names: list[str], settings: Settings, results: dict[str, Any]) -> list[Figure]:
    figures: list[Figure] = []
    # Both paging cases share one server and the library's concurrent runs.
    shared = "latency" in names and "users" in names
    for name in names:
        if shared and name == "users":
            continue  # measured with "latency"
        started = time.perf_counter()
        meter = _CpuMeter()
        print(f"[{name}]", file=sys.stderr, flush=True)
        if shared and name == "latency":
            result = paging(settings, latency=True, users=True)
        else:
            result = CASES[name](settings)
        elapsed = time.perf_counter() - started
        figures += result.figures
        results["cases"][name] = {
            "seconds": elapsed,
            "others_cpu_share": meter.others_share(),
            "figures": [figure.as_json() for figure in result.figures],
            "raw": result.raw,
        }
        if shared and name == "latency":
            results["cases"]["users"] = {"measured_with": "latency"}
        print(f"[{name}] {elapsed:.1f} s", file=sys.stderr, flush=True)
    return figures


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    names = list(dict.fromkeys(args.case or CASES))  # in order, once each
    settings = Settings(repeats=args.repeats, quick=args.quick)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"repeats": args.repeats, "quick": args.quick, "cases": names},
        "machine": machine(),
        "cases": {},
    }
    started = time.perf_counter()
    meter = _CpuMeter()
    status = 0
    figures: list[Figure] = []
    try:
        figures = _run_cases(names, settings, results)
    except Exception:
        results["error"] = traceback.format_exc()
        traceback.print_exc()
        status = 1
    results["seconds"] = time.perf_counter() - started
    results["others_cpu_share"] = others = meter.others_share()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")

    if figures:
        print(format_table(figures))
    missed = [f for f in figures if f.met is False]
    print()
    if missed:
        print(f"{len(missed)} target(s) MISSED:")
        for figure in missed:
            print(f"  - {figure.case}: {figure.name}")
    elif figures:
        print("every target met")
    if others is not None:
        busy = " - timings are pessimistic" if others > 0.10 else ""
        print(f"other processes used {others:.0%} of the machine's CPU during the run{busy}")
    print(f"total {results['seconds']:.0f} s; results in {_shown(args.output)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
