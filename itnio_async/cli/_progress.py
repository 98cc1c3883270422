"""How the command line shows an export's progress, and routes the library's log lines.

Three reporters, chosen by ``choose_mode``:

* ``bar``: a ``rich`` progress bar on a terminal's stderr: records written of the records
  this run will write, pages written, requests per second, retries (with the last reason)
  and the time left. ``rich`` is imported only here and only then; without it, a one-line note and
  the plain lines below instead.
* ``lines``: when stderr is not a terminal (a log file, CI), one plain line when the size
  of the result is known, then one at every tenth of the records or every
  ``LOG_EVERY_SECONDS``, whichever comes first.
* ``none``: ``--quiet``.

The numbers come from two places: the stream's ``progress`` after each page written
(records, pages, the result's size, the cursor to resume from) and the client's hooks as
requests end (requests and retries), so a retry shows at once, even while the stream waits
for it. ``ExportStatus`` keeps them, with what the final messages need: the cursor after
the last page written (or, in offset mode, the page) and how to resume from it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final, Literal

import attrs

from itnio_async import AttemptEvent, ClientHooks, RetryEvent

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from itnio_async import StreamProgress

__all__ = [
    "BarReporter",
    "ExportStatus",
    "LineReporter",
    "LiveHooks",
    "Reporter",
    "Resume",
    "choose_mode",
    "library_logging",
    "make_reporter",
    "stream_is_terminal",
]

PROG: Final = "itnio-async"

#: A plain progress line at least this often (seconds) while pages arrive...
LOG_EVERY_SECONDS: Final = 10.0
#: ...and at every this fraction of the records, whichever comes first.
LOG_EVERY_FRACTION: Final = 0.1

Mode = Literal["bar", "lines", "none"]


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def stderr_line(text: str) -> None:
    """Print ``itnio-async: text`` on stderr (looked up at call time, for test capture)."""
    stream = sys.stderr
    stream.write(f"{PROG}: {text}\n")
    stream.flush()


def stream_is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # closed or detached
        return False


def choose_mode(*, quiet: bool, output_is_stdout: bool) -> Mode:
    """``none`` when quiet; a bar when stderr is a terminal, unless the records themselves
    go to that terminal (a live bar would tear them); plain lines otherwise."""
    if quiet:
        return "none"
    if stream_is_terminal(sys.stderr) and not (output_is_stdout and stream_is_terminal(sys.stdout)):
        return "bar"
    return "lines"


#: How an unfinished export is resumed: a re-run of the same command (the file's
#: manifest), ``--resume-from`` with the cursor (stdout), or ``--start-page`` (offset mode).
Resume = Literal["manifest", "cursor", "page"]


@attrs.define(slots=True)
class ExportStatus:
    """Where an export stands: what reporters show and the final messages tell."""

    #: Records per page asked for (a page holds up to that many).
    page_size: int
    #: ``--limit``, or ``None``.
    limit: int | None
    #: Where the records go, for messages.
    output: str
    #: How this export is resumed, which the messages tell.
    resume: Resume = "manifest"
    #: Offset mode's first page (``--start-page``); ``None`` in cursor mode.
    start_page: int | None = None
    #: Records the output held from earlier runs of this export (from its manifest).
    records_before: int = 0
    #: The stream's cursor after the last page written (``str(StreamCursor)``), so where
    #: the next run goes on; before any page, the cursor this run started from, if any.
    cursor: str | None = None
    #: Offset mode: the page to pass as ``--start-page`` to continue after what was written.
    resume_page: int | None = None
    #: Whether the cursor says nothing of the window is left.
    exhausted: bool = False
    #: Set when the export ended well: the targets are then what was written.
    finished: bool = False
    #: ``time.monotonic()`` at the start.
    started: float = attrs.field(factory=time.monotonic)
    #: Records and pages written (complete, flushed) by this run.
    records_written: int = 0
    pages_written: int = 0
    #: The result's size as the stream last reported it (``known`` once it did): in
    #: cursor mode what was left of the window when this run started.
    known: bool = False
    total: int = 0
    pages_known: int = 0
    #: Requests ended and retries announced (from the client's hooks, so always current).
    requests: int = 0
    retries: int = 0
    #: Why the last retry was made (``vendor:-18``, ``http:503``, ...).
    last_retry: str | None = None
    #: Times the result changed under the stream (offset mode).
    resyncs: int = 0

    #: Whether this run goes on from an earlier one (it started from a cursor or a page).
    resumed: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        if self.resume_page is None:
            self.resume_page = self.start_page
        self.resumed = self.cursor is not None or (self.start_page or 1) > 1

    def absorb(self, progress: StreamProgress) -> None:
        """Take the stream's view of the result."""
        self.known = True
        self.total = progress.total
        self.pages_known = progress.pages_known
        self.resyncs = progress.resyncs

    def page_written(self, records: int, progress: StreamProgress, cursor: str | None) -> None:
        """Count a page written and flushed; the next run would start after it."""
        self.records_written += records
        self.pages_written += 1
        if cursor is not None:
            self.cursor = cursor
        if progress.resume_from is not None:
            self.exhausted = progress.resume_from.done
        if progress.next_page is not None:
            self.resume_page = progress.next_page
        self.absorb(progress)

    @property
    def stopped_at_limit(self) -> bool:
        """Whether ``--limit`` ended the run with records of the window left."""
        return (
            self.limit is not None
            and self.records_written >= self.limit
            and self.cursor is not None
            and not self.exhausted
        )

    def resume_hint(self) -> str:
        """How to go on after what was written, in words."""
        if self.resume == "page":
            return f"resume with --start-page {self.resume_page}"
        if self.resume == "cursor" and self.cursor is not None:
            return f"resume with --resume-from {self.cursor}"
        return "run the same command again to resume"

    @property
    def target_pages(self) -> int | None:
        """Pages this run will write, when known: in offset mode only (a cursor's pages
        hold up to ``page_size`` records, so their number is not known in advance)."""
        if self.finished:
            return self.pages_written
        if not self.known or self.start_page is None:
            return None
        pages = max(0, self.pages_known - self.start_page + 1)
        if self.limit is not None:
            pages = min(pages, math.ceil(self.limit / self.page_size))
        return pages

    @property
    def target_records(self) -> int | None:
        """Records this run will write, once known."""
        if self.finished:
            return self.records_written
        if not self.known:
            return None
        records = self.total
        if self.start_page is not None:
            records = max(0, records - (self.start_page - 1) * self.page_size)
        return records if self.limit is None else min(records, self.limit)

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    def request_rate(self) -> float:
        """Requests per second so far."""
        elapsed = self.elapsed()
        return self.requests / elapsed if elapsed > 0 else 0.0

    def seconds_left(self) -> float | None:
        """A linear estimate from the records written so far."""
        target = self.target_records
        if target is None or self.records_written == 0:
            return None
        per_record = self.elapsed() / self.records_written
        return max(0, target - self.records_written) * per_record

    def pages_text(self) -> str:
        """``12 pages``, or ``12/40 pages`` when the number to write is known."""
        target = self.target_pages
        if target is None:
            return _plural(self.pages_written, "page", "pages")
        return f"{self.pages_written}/{target} pages"

    def summary(self) -> str:
        """The final line of a finished export."""
        records = _plural(self.records_written, "record", "records")
        if self.records_before:
            records += f" ({self.records_before + self.records_written} in {self.output})"
        text = (
            f"done: {records}, {_plural(self.pages_written, 'page', 'pages')}, "
            f"{self.requests} requests, {_plural(self.retries, 'retry', 'retries')}, "
            f"{self.elapsed():.1f}s"
        )
        if self.resyncs:
            text += f", {_plural(self.resyncs, 'resync', 'resyncs')} (the result changed)"
        if self.stopped_at_limit:
            if self.resume == "page":
                text += f"; stopped at --limit: continue with --start-page {self.resume_page}"
            elif self.resume == "cursor":
                text += f"; stopped at --limit: continue with --resume-from {self.cursor}"
            else:
                text += (
                    "; stopped at --limit: run the same command again for the next records, "
                    "or add --restart to start over"
                )
        return text


class Reporter:
    """Shows progress; this base shows none (``--quiet``)."""

    def start(self) -> None:
        """Before the first request."""

    def update(self, status: ExportStatus) -> None:
        """After a page is written or a request ends."""

    def note(self, line: str) -> None:
        """Show a log line without breaking the display."""
        stderr_line(line)

    def stop(self) -> None:
        """After the last page, or on the way out of an error or interrupt."""


class LineReporter(Reporter):
    """Plain progress lines on stderr, for logs."""

    def __init__(self) -> None:
        self._every_seconds = LOG_EVERY_SECONDS
        self._every_fraction = LOG_EVERY_FRACTION
        # Whether the opening line (the result's size) was printed.
        self._announced = False
        # When, and at how many records written, the last line was printed.
        self._last_time = 0.0
        self._last_records = 0

    @staticmethod
    def _opening(status: ExportStatus, target: int) -> str:
        if status.start_page is not None:
            return (
                f"exporting {target} records in {status.target_pages} pages of "
                f"{status.page_size}, from page {status.start_page}, to {status.output}"
            )
        if status.resumed:
            after = f" after {status.records_before} records" if status.records_before else ""
            return f"resuming the export to {status.output}{after}: about {target} records left"
        return f"exporting {target} records to {status.output}"

    def update(self, status: ExportStatus) -> None:
        target = status.target_records
        if target is None or status.finished:
            return
        now = time.monotonic()
        if not self._announced:
            self._announced = True
            self._last_time = now
            stderr_line(self._opening(status, target))
            return
        if status.records_written >= target:
            return  # the summary says it
        step = max(1, math.ceil(target * self._every_fraction))
        if (
            status.records_written - self._last_records < step
            and now - self._last_time < self._every_seconds
        ):
            return
        self._last_time = now
        self._last_records = status.records_written
        left = status.seconds_left()
        stderr_line(
            f"{status.records_written}/{target} records, {status.pages_text()}, "
            f"{status.request_rate():.1f} req/s, "
            f"{_plural(status.retries, 'retry', 'retries')}, {status.elapsed():.1f}s elapsed"
            + (f", about {left:.0f}s left" if left is not None else "")
        )


class BarReporter(Reporter):
    """A ``rich`` progress bar on a terminal. Importing ``rich`` may raise ``ImportError``."""

    def __init__(self, file: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
        )

        # Only made when we know the stream is a terminal: force it, whatever TERM says.
        console = Console(file=file, force_terminal=True)
        self._progress: Progress = Progress(
            SpinnerColumn(),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[records]}"),
            TextColumn("{task.fields[pages]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[retries]}"),
            # Labelled ("12s left", "3s elapsed"), not a bare clock nobody can read.
            TextColumn("{task.fields[time]}"),
            console=console,
            # The records may go to stdout: never capture it, nor stderr.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task: TaskID = self._progress.add_task("export", total=None, **self._fields(None))

    @staticmethod
    def _fields(status: ExportStatus | None) -> dict[str, Any]:
        if status is None:
            return {"records": "0 records", "pages": "", "rate": "", "retries": "", "time": ""}
        records = f"{status.records_written:,}"
        if status.target_records is not None:
            records += f"/{status.target_records:,}"
        retries = _plural(status.retries, "retry", "retries")
        if status.last_retry is not None:
            retries += f" (last {status.last_retry})"
        return {
            "records": f"{records} records",
            "pages": status.pages_text(),
            "rate": f"{status.request_rate():.0f} req/s",
            "retries": retries,
            "time": BarReporter._time_text(status),
        }

    @staticmethod
    def _time_text(status: ExportStatus) -> str:
        left = None if status.finished else status.seconds_left()
        if left is not None:
            return f"about {left:.0f}s left"
        return f"{status.elapsed():.1f}s elapsed"

    def start(self) -> None:
        self._progress.start()

    def update(self, status: ExportStatus) -> None:
        # Driven by records: a cursor's pages hold up to page_size records each, so the
        # records, not the pages, say how far the export is.
        self._progress.update(
            self._task,
            total=status.target_records,
            completed=status.records_written,
            **self._fields(status),
        )

    def note(self, line: str) -> None:
        self._progress.console.print(
            f"{PROG}: {line}", markup=False, highlight=False, soft_wrap=True
        )

    def stop(self) -> None:
        self._progress.stop()


def make_reporter(mode: Mode) -> Reporter:
    """The reporter for ``mode``; a bar falls back to lines when ``rich`` is missing."""
    if mode == "none":
        return Reporter()
    if mode == "bar":
        try:
            return BarReporter(sys.stderr)
        except ImportError:
            stderr_line(
                "note: no progress bar without rich (pip install 'itnio-async[cli]'); "
                "printing progress lines"
            )
    return LineReporter()


class LiveHooks(ClientHooks):
    """Counts requests and retries as they happen and refreshes the display."""

    def __init__(self, status: ExportStatus, reporter: Reporter) -> None:
        self._status = status
        self._reporter = reporter

    def on_attempt(self, event: AttemptEvent) -> None:
        self._status.requests += 1
        self._reporter.update(self._status)

    def on_retry(self, event: RetryEvent) -> None:
        self._status.retries += 1
        self._status.last_retry = event.reason
        self._reporter.update(self._status)


class _NoteHandler(logging.Handler):
    """Sends the library's log records to a reporter's ``note``."""

    def __init__(self, note: Callable[[str], None]) -> None:
        super().__init__()
        self._note = note

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{record.levelname.lower()}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                line += f" ({type(exc).__name__}: {exc})"
            self._note(line)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def library_logging(verbosity: int, note: Callable[[str], None]) -> Iterator[None]:
    """Route the ``itnio_async`` logger to ``note`` for the duration, then restore it.

    Quiet by default (retries are counted in the progress, not logged one by one); ``-v``
    shows warnings (each retry, a changed result), ``-vv`` every request.
    """
    logger = logging.getLogger("itnio_async")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    handler = _NoteHandler(note)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(
        logging.DEBUG if verbosity >= 2 else logging.WARNING if verbosity == 1 else logging.ERROR
    )
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]
