"""The call-record commands: ``calls export`` and ``tasks show``.

Kept apart from the task commands (``_commands``) and added to the same parser by
``register``: they reuse its options, connection, exit codes, progress, manifest and
output file handling, and write their own records.

* ``calls export --start ... --end ...``: every call submitted in the window, newest
  first, to JSON Lines or CSV; a window over 31 days is read in 31-day slices as one
  stream, and an unfinished file export resumes from its manifest.
* ``tasks show JOB_ID``: one task's details as a JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import attrs

from itnio_async import DEFAULT_RATE_LIMIT, MAX_PAGE_SIZE, CallRecord, GroupCallDetail

from ._commands import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    DEMO_BASE_URL,
    DEMO_LATENCY,
    DEMO_RATE_LIMIT,
    DEMO_SEED,
    EXIT_OK,
    EXIT_OUTPUT_CLOSED,
    _add_global_options,
    _connect,
    _Connection,
    _int_arg,
    _make_client,
    _rate_arg,
    _report_failure,
    _silence_stdout,
    _time_arg,
    _UsageError,
    _write_pages,
    _zone_arg,
)
from ._manifest import Manifest, ManifestError
from ._output import FORMATS, Format, Output, _csv_text, format_for, neutralise
from ._progress import (
    ExportStatus,
    LiveHooks,
    Reporter,
    choose_mode,
    library_logging,
    make_reporter,
    stderr_line,
)

__all__ = ["CALL_COLUMNS", "DEMO_CALL_TASKS", "call_row", "demo_call_vendor", "register"]

#: The columns (JSON keys) of an exported call record, in order: ``CallRecord``'s fields.
CALL_COLUMNS: Final = tuple(
    field.name for field in attrs.fields(CallRecord) if field.name != "extra"
)
#: Tasks in the demo's call account (job ids from ``DEMO_FIRST_JOB_ID``), each with up to
#: ``DEMO_CALLS_PER_TASK`` calls, made over the ``DEMO_CALL_DAYS`` days before now.
DEMO_CALL_TASKS: Final = 400
DEMO_CALLS_PER_TASK: Final = 60
DEMO_CALL_DAYS: Final = 45
DEMO_FIRST_JOB_ID: Final = 6_000_000

_CALLS_DESCRIPTION = """\
Stream every call submitted between --start and --end, newest first, to JSON Lines or CSV.

One line per call (CSV: one row, after a header row) with the fields of CallRecord
(voice_id, callee, ..., currency); times are ISO 8601 with their offset. The vendor answers
31 days a query and keeps two months: a longer window is read in 31-day slices as one
stream; one reaching further back is refused (--clamp-start begins at the oldest allowed
time instead). Pages are written whole, and FILE.itnio-export.json beside the file records
how far it got: running the same command again appends exactly the rest. --restart starts
over. On stdout, an interrupted or failed export prints a cursor for --resume-from.
"""

_CALL_TIMES_HELP = (
    "YYYY-MM-DD, 'YYYY-MM-DD HH:MM:SS' or ISO 8601 with an offset, inclusive; a time "
    "without an offset is read in --server-timezone (required for it); a bare date as "
    "--end means the end of that day"
)


def call_row(record: CallRecord) -> dict[str, object]:
    """One call record as a flat row, keyed by ``CALL_COLUMNS``; times ISO 8601 with
    their offset, missing values ``None`` (an empty CSV cell)."""
    row: dict[str, object] = {}
    for name in CALL_COLUMNS:
        value = getattr(record, name)
        row[name] = value.isoformat() if isinstance(value, datetime) else value
    return row


def _encode(records: Sequence[CallRecord], fmt: Format, *, csv_raw: bool) -> bytes:
    if fmt == "jsonl":
        return b"".join(
            (json.dumps(call_row(r), ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            for r in records
        )
    rows = ([call_row(r)[c] for c in CALL_COLUMNS] for r in records)
    if not csv_raw:
        rows = ([neutralise(cell) for cell in row] for row in rows)
    return _csv_text(rows)


class CallOutput(Output):
    """``Output`` (whole pages, manifest, cut back on a stop) writing call records."""

    def _header_block(self) -> bytes:
        if not self._header:
            return b""
        self._header = False
        return _csv_text([CALL_COLUMNS])

    def write_page(self, records: Sequence[Any], cursor: str | None = None) -> None:
        """Write one page of call records whole (see ``Output.write_page``)."""
        if not self._opened:
            self._open()
        header = self._header_block()
        block = header + (_encode(records, self.format, csv_raw=self._csv_raw) if records else b"")
        if block:
            try:
                self._commit(block, len(records), cursor)
            except BaseException:
                self._header = bool(header)
                raise


def demo_call_vendor(*, latency: float = DEMO_LATENCY, seed: int = DEMO_SEED) -> Any:
    """The fake vendor ``--demo`` answers the call commands from: tasks and their calls
    over the ``DEMO_CALL_DAYS`` days before now (UTC), a little latency, a few faults."""
    from itnio_async.testing import FakeVendor, Fault, FaultPlan, call_account

    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    tasks, calls = call_account(
        DEMO_CALL_TASKS,
        seed=seed,
        start=now - timedelta(days=DEMO_CALL_DAYS),
        end=now - timedelta(hours=1),
        calls_per_task=(0, DEMO_CALLS_PER_TASK),
        first_job_id=DEMO_FIRST_JOB_ID,
    )
    faults = FaultPlan.random(seed, probability=0.03, kinds=(Fault.code(-18), Fault.http(503)))
    return FakeVendor(
        DEMO_API_KEY,
        DEMO_API_SECRET,
        dataset=tasks,
        calls=calls,
        faults=faults,
        latency=latency,
        jitter=latency,
        seed=seed,
    )


def _connection(args: argparse.Namespace) -> _Connection:
    if not args.demo:
        return _connect(args)
    fake = demo_call_vendor(latency=args.demo_latency)
    if args.server_timezone is None:
        args.server_timezone = ZoneInfo("UTC")  # the demo's zone
    now = datetime.now(UTC).replace(microsecond=0)
    return _Connection(
        DEMO_API_KEY,
        DEMO_API_SECRET,
        DEMO_BASE_URL,
        fake.transport,
        DEMO_RATE_LIMIT,
        (now - timedelta(days=DEMO_CALL_DAYS), now),
    )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--server-timezone",
        type=_zone_arg,
        metavar="ZONE",
        help="the vendor's time zone (IANA name): times without an offset are read in it, "
        "and the vendor's times are written in it",
    )
    add(
        "--rate-limit",
        type=_rate_arg,
        metavar="RPS",
        help=f"requests per second at most; 0 or 'none' for no limit (default: "
        f"{DEFAULT_RATE_LIMIT:g}; {DEMO_RATE_LIMIT:g} with --demo)",
    )
    add(
        "--max-retries",
        type=_int_arg(0),
        default=5,
        metavar="N",
        help="retries of a transient fault, with backoff (default: %(default)s)",
    )


def register(commands: Any, epilog: str) -> None:
    """Add ``calls export`` and ``tasks show`` to the parser's subcommands."""
    formatter = argparse.RawDescriptionHelpFormatter
    calls = commands.add_parser(
        "calls", help="the calls the tasks made (call records)", epilog=epilog
    )
    calls_commands = calls.add_subparsers(dest="calls_command", metavar="COMMAND", required=True)
    export = calls_commands.add_parser(
        "export",
        help="stream every call of a window to JSON Lines or CSV",
        description=_CALLS_DESCRIPTION,
        epilog=epilog,
        formatter_class=formatter,
    )
    _add_global_options(export, top=False)
    add = export.add_argument
    add("--start", type=_time_arg(end=False), help=f"window start: {_CALL_TIMES_HELP}")
    add("--end", type=_time_arg(end=True), help="window end, as --start")
    add(
        "--clamp-start",
        action="store_true",
        help="a --start older than the vendor's two months begins at the oldest allowed "
        "time instead of being refused",
    )
    _add_connection_options(export)
    add("-o", "--output", metavar="FILE", help="write here instead of stdout ('-')")
    add("--format", choices=FORMATS, help="jsonl or csv; default: from the extension")
    add("--csv-raw", action="store_true", help="CSV: cells as the vendor sent them")
    add(
        "--page-size",
        type=_int_arg(1, MAX_PAGE_SIZE),
        default=MAX_PAGE_SIZE,
        metavar="N",
        help="records per request, 1-100 (default: %(default)s)",
    )
    add(
        "--concurrency",
        type=_int_arg(1),
        default=8,
        metavar="N",
        help="pages fetched at once (default: %(default)s)",
    )
    add("--limit", type=_int_arg(0), metavar="N", help="stop after this many records")
    add("--restart", action="store_true", help="start the output file over")
    add("--resume-from", metavar="CURSOR", help="stdout only: go on from this cursor")
    export.set_defaults(subparser=export, run=_run_calls_export)

    tasks = commands.add_parser("tasks", help="one task's details", epilog=epilog)
    tasks_commands = tasks.add_subparsers(dest="tasks_command", metavar="COMMAND", required=True)
    show = tasks_commands.add_parser(
        "show",
        help="print one task's details as JSON",
        description="Print one group-call task's details (GET /voice/group/call/detail) as "
        "one JSON object: GroupCallDetail's fields (country_code is the vendor's code), "
        "status with its status_name, times in ISO 8601, and undocumented fields in extra.",
        epilog=epilog,
        formatter_class=formatter,
    )
    _add_global_options(show, top=False)
    show.add_argument("job_id", type=_int_arg(1), metavar="JOB_ID", help="the task's id")
    _add_connection_options(show)
    show.set_defaults(subparser=show, run=_run_tasks_show)


# -- tasks show ----------------------------------------------------------------------------


def detail_json(detail: GroupCallDetail) -> dict[str, object]:
    """A task's details as JSON: our field names, times ISO 8601, then ``extra``'s."""
    row: dict[str, object] = {}
    for field in attrs.fields(GroupCallDetail):
        if field.name == "extra":
            continue
        value = getattr(detail, field.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif field.name == "status" and value is not None:
            row["status_name"] = value.name.lower()
            value = int(value)
        row[field.name] = value
    row["extra"] = dict(detail.extra)
    return row


async def _show(args: argparse.Namespace, connection: _Connection) -> GroupCallDetail:
    async with _make_client(args, connection) as client:
        return await client.get_group_call(args.job_id)


def _run_tasks_show(args: argparse.Namespace) -> int:
    connection = _connection(args)
    with library_logging(args.verbose, stderr_line):
        try:
            detail = asyncio.run(_show(args, connection))
        except (Exception, KeyboardInterrupt) as exc:
            return _report_failure(exc, verbose=args.verbose, status=None)
    try:
        print(json.dumps(detail_json(detail), ensure_ascii=False, indent=2), flush=True)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OUTPUT_CLOSED
    return EXIT_OK


# -- calls export --------------------------------------------------------------------------


def _window(args: argparse.Namespace, connection: _Connection) -> tuple[datetime, datetime]:
    start: datetime | None = args.start
    end: datetime | None = args.end
    if connection.window is not None:
        start = start if start is not None else connection.window[0]
        end = end if end is not None else connection.window[1]
    if start is None or end is None:
        missing = " and ".join(f"--{n}" for n, v in (("start", start), ("end", end)) if v is None)
        raise _UsageError(f"{missing} required (or try --demo)")
    return start, end


def _identity(
    args: argparse.Namespace, start: datetime, end: datetime, fmt: Format
) -> dict[str, Any]:
    zone: ZoneInfo | None = args.server_timezone
    return {
        "format": fmt,
        "window": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "server_timezone": None if zone is None else zone.key,
            "clamp_start": bool(args.clamp_start),
        },
        # The manifest's filters: none but the records' kind, so that a task export's
        # manifest is never taken for this one's.
        "filters": {"statuses": None, "app_id": None, "search": None, "records": "calls"},
        "page_size": args.page_size,
        "csv_raw": fmt == "csv" and bool(args.csv_raw),
    }


def _manifest(
    args: argparse.Namespace, path: str, identity: dict[str, Any]
) -> tuple[Manifest, bool]:
    manifest_path = Manifest.path_for(path)
    fresh = Manifest(manifest_path, identity)
    start_over = f"start over with --restart (or delete {manifest_path})"
    if args.restart:
        return fresh, False
    try:
        found = Manifest.load(manifest_path)
    except ManifestError as exc:
        raise _UsageError(f"{exc}: {start_over}") from exc
    if found is None:
        return fresh, False
    differences = found.differences(identity)
    if differences:
        raise _UsageError(
            f"{path} holds an unfinished export ({found.records} records) of another "
            f"{'; '.join(differences)}: resume it with its own arguments, or {start_over}"
        )
    if not os.path.exists(path) or os.stat(path).st_size < found.bytes:
        raise _UsageError(f"{path} is missing or shorter than {manifest_path} says: {start_over}")
    return found, True


async def _export_pages(
    args: argparse.Namespace,
    connection: _Connection,
    window: tuple[datetime, datetime],
    output: CallOutput,
    status: ExportStatus,
    reporter: Reporter,
) -> None:
    async with _make_client(args, connection, LiveHooks(status, reporter)) as client:
        try:
            stream = client.iter_call_record_pages(
                *window,
                page_size=args.page_size,
                concurrency=args.concurrency,
                limit=args.limit,
                resume_from=status.cursor,
                clamp_start=args.clamp_start,
            )
        except (TypeError, ValueError) as exc:
            raise _UsageError(str(exc)) from exc
        await _write_pages(stream, output, status, reporter)


def _run_calls_export(args: argparse.Namespace) -> int:
    output_arg: str | None = args.output
    path = None if output_arg in (None, "-") else output_arg
    if args.resume_from is not None and path is not None:
        raise _UsageError(
            "--resume-from is for stdout: an export to a file resumes from its manifest, "
            "so run the same command again"
        )
    if args.restart and path is None:
        raise _UsageError("--restart starts an --output file over (stdout keeps no manifest)")
    if path is not None and not os.path.isdir(os.path.dirname(path) or "."):
        raise _UsageError(f"cannot write {path}: no such directory")
    connection = _connection(args)
    window = _window(args, connection)
    fmt: Format = args.format or format_for(output_arg)
    manifest: Manifest | None = None
    resuming = False
    if path is not None:
        manifest, resuming = _manifest(args, path, _identity(args, *window, fmt))
    output = CallOutput(
        path,
        fmt,
        header=path is not None or args.resume_from is None,
        resume_at=manifest.bytes if manifest is not None and resuming else None,
        manifest=manifest,
        csv_raw=args.csv_raw,
    )
    status = ExportStatus(
        page_size=args.page_size,
        limit=args.limit,
        output=output.name,
        resume="cursor" if path is None else "manifest",
        records_before=manifest.records if manifest is not None and resuming else 0,
        cursor=manifest.cursor if manifest is not None and resuming else args.resume_from,
    )
    reporter = make_reporter(choose_mode(quiet=args.quiet, output_is_stdout=path is None))
    failure: BaseException | None = None
    with library_logging(args.verbose, reporter.note):
        reporter.start()
        try:
            asyncio.run(_export_pages(args, connection, window, output, status, reporter))
        except (Exception, KeyboardInterrupt) as exc:
            failure = exc
        else:
            status.finished = True
            reporter.update(status)
        finally:
            reporter.stop()
        try:
            output.close(complete=failure is None)
            if failure is None and manifest is not None and not status.stopped_at_limit:
                manifest.remove()
        except OSError as exc:
            failure = failure or exc
    if failure is not None:
        code = _report_failure(failure, verbose=args.verbose, status=status)
        if code == EXIT_OUTPUT_CLOSED:
            _silence_stdout()
        return code
    if not args.quiet:
        stderr_line(status.summary())
    return EXIT_OK
