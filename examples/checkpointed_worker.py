"""A long paging job in a worker process: it checkpoints each page and resumes after a kill.

Run it from the repository's root (credentials from the environment)::

    export ITNIO_API_KEY=... ITNIO_API_SECRET=...
    python -m examples.checkpointed_worker \\
        --start "2024-06-01 00:00:00" --end "2024-06-30 23:59:59" --out june.jsonl

or without an account, against the fake vendor of ``itnio-async --demo`` (its whole
window unless ``--start``/``--end`` say otherwise)::

    python -m examples.checkpointed_worker --demo --out demo.jsonl

The records are the command line's (``itnio_async.record_row``), and the times are read
as it reads them (``itnio_async.parse_time``: a bare ``--end`` date is all of that day).

It writes every task of the window to ``june.jsonl`` (JSON Lines, newest first) and keeps
``june.jsonl.checkpoint`` beside it. Stop it any way you like, ``kill -9`` included, and run
the same command again: it goes on from the last page it finished, and the output ends up
with every task exactly once. Once the job is done, running it again does nothing.

How a kill at any moment can neither lose nor repeat a record:

1. each page's records are appended to the output and flushed to disk (``fsync``);
2. then the checkpoint is replaced atomically (written to a temporary file, flushed, and
   renamed over the old one with ``os.replace``): the output's length, the records
   written, and the stream's cursor after that page (``stream.progress.resume_from``),
   which stands exactly after the records handed out so far;
3. on resume, the output is first cut back to the length in the checkpoint, which drops
   whatever a kill between 1 and 2 left behind: the output then holds exactly the records
   before the cursor. The stream goes on from the cursor (``resume_from=``), which hands
   out exactly the records after it: none before it again, none skipped, whatever tasks
   were created, deleted or changed status between the runs.

So every task that stays in the window and filters for the whole job is written once, in
order, however many runs it takes; there are no pages to go back over and no repeats to
drop. (If the vendor's replies ever stop following the time order the cursor relies on,
the client falls back to paging by page number and logs a warning; the cursor then
resumes exactly only while the result holds still.)

A window whose end lies in the future is frozen by the client on the first run, at the
vendor's "now" (this needs ``ITNIO_SERVER_TIMEZONE``), and the cursor carries it: tasks
created later do not join a job that spans several runs.

Settings (environment, read by ``examples/settings.py``, which says what each means):
``ITNIO_API_KEY``, ``ITNIO_API_SECRET`` (required), ``ITNIO_BASE_URL``, ``ITNIO_RATE_LIMIT``
(requests per second, default 10), ``ITNIO_SERVER_TIMEZONE`` (e.g. ``Asia/Shanghai``), and
``REDIS_URL`` (with ``ITNIO_LIMIT_PREFIX``) to share the account's limit with the other
processes using it.

One copy per output: while it runs, a worker holds an exclusive lock (``flock``) on the
output file itself, taken before it reads the checkpoint, and a second copy started on the
same output exits at once with status 3 and a message saying so, instead of racing the
first on the output and the checkpoint. The lock goes with the process, however it ends
(``kill -9`` too), and leaves no file behind. (``flock`` locks are advisory: they keep out
other workers, not an editor.)

Exit status: 0 done; 1 a vendor or network fault outlasted the retries (run it again to
resume); 2 bad arguments, or a checkpoint of another job; 3 another copy is already
writing this output (wait for it, or stop it); 128 + the signal when stopped by SIGINT or
SIGTERM (the checkpoint is consistent, run it again to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

import attrs

from examples.records import json_lines
from examples.settings import Settings, demo_window, open_client
from itnio_async import AsyncVoiceClient, ItnioError, StreamCursor, parse_time

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "EXIT_BUSY",
    "Job",
    "OutputBusyError",
    "Summary",
    "main",
    "run_job",
]

logger = logging.getLogger(__name__)

#: The checkpoint's format; a checkpoint of another format is refused.
CHECKPOINT_VERSION: Final = 2

#: The exit status when another copy is already writing the output.
EXIT_BUSY: Final = 3


class CheckpointError(Exception):
    """The checkpoint does not fit this job or its output; the message says why."""


class OutputBusyError(Exception):
    """Another worker holds the output's lock: two would race on the output and checkpoint."""


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``out`` (created if missing) or raise ``OutputBusyError``.

    Non-blocking: a second copy is refused at once rather than queued behind the first.
    The lock is on the output itself, not on a lock file beside it, so nothing is left
    over to clean up (removing a lock file would let two copies lock two files). The
    kernel drops it when the process ends, however it ends. Yields whether the file was
    created for the lock.
    """
    try:
        fd, created = os.open(out, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
    except FileExistsError:
        fd, created = os.open(out, os.O_RDWR), False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(
                f"another worker is already writing {out}; wait for it to finish or stop "
                "it, then run this again to resume"
            ) from None
        yield created
    finally:
        os.close(fd)  # releases the lock


# -- the job and its checkpoint ----------------------------------------------------------


def _time(value: str) -> datetime:
    return parse_time(value)


def _end_time(value: str) -> datetime:
    # A bare date as the end means all of that day, as for itnio-async and the apps.
    return parse_time(value, end=True)


@attrs.frozen
class Job:
    """What to fetch: a window, its filters and the page size (together, the job's identity)."""

    start: datetime
    end: datetime
    page_size: int = 100
    statuses: tuple[int, ...] | None = None
    app_id: int | None = None
    search: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "page_size": self.page_size,
            "statuses": None if self.statuses is None else list(self.statuses),
            "app_id": self.app_id,
            "search": self.search,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        statuses = data["statuses"]
        return cls(
            _time(data["start"]),
            _time(data["end"]),
            int(data["page_size"]),
            None if statuses is None else tuple(int(s) for s in statuses),
            data["app_id"],
            data["search"],
        )


@attrs.define
class Checkpoint:
    """How far a job has come; saved after every page."""

    #: The job as it was asked for.
    job: Job
    #: The output's file name: a checkpoint is refused for another output.
    output: str
    #: Bytes of the output that hold whole pages; anything after them is cut on resume.
    output_bytes: int = 0
    #: Records written.
    records: int = 0
    #: ``str(stream.progress.resume_from)`` after the last page written (``None`` before
    #: the first): where the next run goes on. It carries the window as queried.
    cursor: str | None = None
    #: Whether the whole window was written.
    done: bool = False

    @property
    def window_end(self) -> datetime | None:
        """The window's end as queried (frozen at the vendor's "now" on the first run if
        it lay in the future), once a page has been written."""
        return None if self.cursor is None else StreamCursor.from_string(self.cursor).end

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "job": self.job.to_json(),
            "output": self.output,
            "output_bytes": self.output_bytes,
            "records": self.records,
            "cursor": self.cursor,
            "done": self.done,
        }

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint at ``path``, or ``None`` if there is none yet."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path} is not a checkpoint of this program (version)")
        try:
            cursor = data["cursor"]
            return cls(
                Job.from_json(data["job"]),
                str(data["output"]),
                int(data["output_bytes"]),
                int(data["records"]),
                None if cursor is None else str(cursor),
                bool(data["done"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a valid checkpoint ({exc!r})") from None

    def save(self, path: Path) -> None:
        """Replace the checkpoint at ``path`` atomically: a reader (or a kill) sees the old
        checkpoint or the new one, never a mix."""
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump(self.to_json(), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; elsewhere a rename is all we can do)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Output:
    """The output file, cut back to the checkpoint's length and appended to page by page.

    Blocking file calls: the job runs them in a thread (``asyncio.to_thread``) so that the
    pages in flight keep moving meanwhile.
    """

    def __init__(self, path: Path, length: int) -> None:
        size = path.stat().st_size if path.exists() else 0
        if size < length:
            raise CheckpointError(
                f"{path} has {size} bytes but the checkpoint counts {length}: "
                "was it changed? delete the checkpoint to start the job afresh"
            )
        # The file handle, positioned at the end of the last whole page.
        self._file: IO[bytes] = path.open("r+b" if path.exists() else "w+b")
        self._file.truncate(length)
        self._file.seek(length)

    def append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


# -- the job -----------------------------------------------------------------------------


@attrs.frozen
class Summary:
    """What a run did."""

    #: Records in the output (all runs together).
    records: int
    #: Records the output held when this run started (0 for a fresh job).
    resumed_at: int
    #: Records this run wrote.
    written: int
    #: Whether the job is complete.
    done: bool

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def checkpoint_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint")


async def run_job(
    client: AsyncVoiceClient,
    job: Job,
    out: Path,
    checkpoint_path: Path | None = None,
    *,
    concurrency: int = 4,
) -> Summary:
    """Write every task of ``job`` to ``out``, checkpointing each page; resume if begun.

    Raises ``OutputBusyError`` at once if another worker is writing ``out``.
    """
    with output_lock(out) as created:
        try:
            return await _run_job_locked(client, job, out, checkpoint_path, concurrency)
        except CheckpointError:
            if created:  # refused before a page: leave no empty file behind
                await asyncio.to_thread(out.unlink, missing_ok=True)
            raise


async def _run_job_locked(
    client: AsyncVoiceClient,
    job: Job,
    out: Path,
    checkpoint_path: Path | None,
    concurrency: int,
) -> Summary:
    checkpoint_path = checkpoint_path or checkpoint_path_for(out)
    state = await asyncio.to_thread(Checkpoint.load, checkpoint_path)
    if state is None:
        state = Checkpoint(job, out.name)
    elif state.job != job:
        raise CheckpointError(
            f"{checkpoint_path} belongs to another job ({state.job}); "
            "delete it or pass another --checkpoint"
        )
    elif state.output != out.name:
        raise CheckpointError(
            f"{checkpoint_path} belongs to another output ({state.output}, not {out.name}); "
            "pass that --out, or delete the checkpoint to start afresh"
        )
    resumed_at = state.records
    if state.done:
        logger.info("the job is already complete: %d records in %s", state.records, out)
        return Summary(state.records, resumed_at, 0, True)

    if state.cursor is not None:
        logger.info("resuming after %d records", state.records)
    written = 0
    output = await asyncio.to_thread(_Output, out, state.output_bytes)
    try:
        stream = client.iter_group_call_pages(
            job.start,
            job.end,
            statuses=job.statuses,
            app_id=job.app_id,
            search=job.search,
            page_size=job.page_size,
            concurrency=concurrency,
            resume_from=state.cursor,
        )
        async with contextlib.aclosing(stream):
            async for page in stream:
                data = json_lines(page.records).encode()
                # First the records, on disk...
                await asyncio.to_thread(output.append, data)
                # ...then the checkpoint that counts them and says where to go on.
                state.output_bytes += len(data)
                state.records += len(page.records)
                cursor = stream.progress.resume_from
                assert cursor is not None  # a page stream sets it before each page
                state.cursor = str(cursor)
                await asyncio.to_thread(state.save, checkpoint_path)
                written += len(page.records)
                logger.debug("%d records written", state.records)
        state.done = True
        await asyncio.to_thread(state.save, checkpoint_path)
    finally:
        await asyncio.to_thread(output.close)
    logger.info("done: %d records in %s", state.records, out)
    return Summary(state.records, resumed_at, written, True)


# -- the process -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write every group-call task of a window to a JSON Lines file, "
        "checkpointing each page; run it again after a kill to resume."
    )
    parser.add_argument("--start", type=_time, help="window start, inclusive")
    parser.add_argument(
        "--end", type=_end_time, help="window end, inclusive (a bare date: all of that day)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the JSON Lines output")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against the in-process fake vendor of itnio-async --demo (no account; "
        "without --start/--end, its whole window)",
    )
    parser.add_argument("--checkpoint", type=Path, help="default: OUT.checkpoint")
    parser.add_argument("--page-size", type=int, default=100, help="1..100 (default 100)")
    parser.add_argument("--concurrency", type=int, default=4, help="pages in flight")
    parser.add_argument("--status", type=int, action="append", help="keep these states")
    parser.add_argument("--app-id", type=int)
    parser.add_argument("--search")
    return parser


async def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.demo:
        settings = attrs.evolve(settings, demo=True)
    start, end = args.start, args.end
    if settings.demo:
        start = start if start is not None else demo_window()[0]
        end = end if end is not None else demo_window()[1]
    if start is None or end is None:
        raise ValueError("--start and --end are required (or try --demo)")
    job = Job(
        start,
        end,
        args.page_size,
        None if args.status is None else tuple(args.status),
        args.app_id,
        args.search,
    )
    async with open_client(settings) as client:
        summary = await run_job(
            client, job, args.out, args.checkpoint, concurrency=args.concurrency
        )
    print(json.dumps(summary.to_json()), flush=True)
    return 0


async def _run_until_signalled(args: argparse.Namespace) -> int:
    """Run the job; SIGINT or SIGTERM cancel it, which closes the stream and the client."""
    loop = asyncio.get_running_loop()
    job = asyncio.create_task(_run(args))
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        job.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await job
    except asyncio.CancelledError:
        if not received:
            raise
        logger.warning("stopped by signal %d; run the same command again to resume", received[0])
        return 128 + received[0]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    try:
        return asyncio.run(_run_until_signalled(args))
    except OutputBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (CheckpointError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ItnioError as exc:  # the checkpoint stands after the last page written
        print(f"error: {exc}; run the same command again to resume", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
