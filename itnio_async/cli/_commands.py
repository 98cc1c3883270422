"""``itnio-async``: export or count group-call tasks from the command line.

Installed as the console script ``itnio-async`` (and ``python -m itnio_async``); the
progress bar needs the ``cli`` extra (``pip install 'itnio-async[cli]'``, for ``rich``),
everything else only the core install. Try it without an account::

    itnio-async --demo export -o tasks.jsonl

Commands:

* ``export``: stream every task created in a window to JSON Lines or CSV, to a file
  (``-o``) or stdout, with the stream's filters and settings.
* ``count``: how many tasks match, with one request of one record; prints the number.

Choices, and why (``--help`` says the same):

* **Credentials only from the environment**, ``ITNIO_API_KEY`` and ``ITNIO_API_SECRET``:
  an option's value is visible to every local user in the process list. Missing, they
  stop the tool with one line naming both. ``ITNIO_BASE_URL`` overrides the endpoint.
* **Times** are ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS`` or ISO 8601 with ``T``, in the
  vendor's zone; both ends are inclusive, and a bare date as ``--end`` means the end of
  that day (so ``--start 2024-06-01 --end 2024-06-30`` is all of June). A time with a UTC
  offset needs ``--server-timezone`` (IANA name), which the client then converts to.
* **Statuses** by number (0-6) or ``GroupCallStatus`` name, case-insensitive, ``-`` or
  ``_`` alike, comma-separated or repeated; ``waiting``, ``failed`` and ``canceled`` are
  accepted as short forms.
* **Output**: one row per record with ``GroupCallRecord``'s snake_case fields, the status
  as its number plus ``status_name``, ``created_time`` in ISO 8601. The format follows
  ``--format``, else the file's extension (``.csv``), else JSON Lines. In CSV, a text
  cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
  ``'`` (OWASP's advice against formula injection: task names are anyone's text, and the
  files are opened in spreadsheets); ``--csv-raw`` writes cells as they came. Pages are
  written whole, in order, one ``os.write`` each: the file always ends at a page boundary
  (a failed write, a full disk say, is cut back with ``os.ftruncate``). The file is opened
  only when the first page arrives, so a refused request leaves an existing file untouched.
* **Resuming** goes by the stream's cursor, which is exact even when tasks were created,
  removed or changed status between the runs. A file export keeps a manifest beside the
  file, ``FILE.itnio-export.json`` (format, window, filters, page size, records, the
  file's length after its last whole page, the cursor), rewritten atomically after each
  page; running the same command again cuts the file back to that length and appends the
  rest. Another format, window, filter or page size, or a file missing or shorter than the
  manifest says, is refused (exit 2) with what differs; ``--restart`` starts over. A
  completed export removes its manifest, so the next run starts afresh; one stopped by
  ``--limit`` keeps it, so the next run goes on. On stdout there is no manifest: the
  message prints the cursor, for ``--resume-from``. ``--start-page`` is offset mode
  (pages by number, appended to the file, no manifest): exact only while the window's
  tasks do not change.
* **Stream settings**: ``--page-size`` (100, the vendor's largest; a page holds up to that
  many), ``--concurrency`` (8), ``--rate-limit`` (the client's 10 requests/s, as the vendor
  publishes no limit; 200 with ``--demo``; ``0``/``none`` for none) and ``--max-retries``
  (5). Records always come in order, newest first, because a resume needs it. ``--limit``
  counts this run's records. Statuses go to the stream sorted, so their order on the
  command line does not make another filter.
* **Progress** goes to stderr: a ``rich`` bar on a terminal (records, pages, requests per
  second, retries, time left); plain lines when stderr is not a terminal or ``rich`` is
  missing; nothing with ``--quiet`` but errors. A summary line ends a successful export.
  ``-v`` logs each retry, ``-vv`` each request; ``-v`` also prints tracebacks.
* **Errors** print one line, ``itnio-async: error: ...``, and exit with a code that tells
  what to do next (see ``EXIT_*``): 2 fix the command or the environment, 3 fix the
  account or the query, 4 try again later (resume where it stopped), 5 report it.
* **Ctrl-C** stops at once: requests in flight are cancelled, the file is cut back to its
  last complete page (the manifest names it), and the tool says how to resume (the same
  command again; on stdout the cursor) and exits with 130.
* ``--demo`` runs against the in-process fake vendor (``itnio_async.testing``) with 30,000
  generated tasks over the last 30 days, ~20-40 ms of latency and ~3% transient faults
  (-18, HTTP 503, dropped connections), so the stream, its speed and its retries show in
  seconds. It ignores the credentials in the environment, and without times it uses the
  whole generated window. A hidden ``--demo-latency SECONDS`` slows the fake down (the
  tests use it to interrupt an export midway).
* A broken pipe on stdout (``| head``) ends the export quietly with 141.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import httpx

from itnio_async import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RATE_LIMIT,
    MAX_PAGE_SIZE,
    AsyncVoiceClient,
    CallRecordPageStream,
    GroupCallPageStream,
    GroupCallStatus,
    ItnioAPIError,
    ItnioError,
    ItnioHTTPError,
    MalformedResponseError,
    ResultUnstableError,
    RetryPolicy,
    Settings,
    parse_time,
)

from ._manifest import Manifest, ManifestError
from ._output import FORMATS, Format, Output, OutputClosedError, format_for
from ._progress import (
    PROG,
    ExportStatus,
    LiveHooks,
    Reporter,
    Resume,
    choose_mode,
    library_logging,
    make_reporter,
    stderr_line,
)

if TYPE_CHECKING:
    from itnio_async.testing import FakeVendor

__all__ = [
    "DEMO_RATE_LIMIT",
    "DEMO_SEED",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_MALFORMED",
    "EXIT_OK",
    "EXIT_OUTPUT_CLOSED",
    "EXIT_REFUSED",
    "EXIT_TRANSIENT",
    "EXIT_USAGE",
    "build_parser",
    "demo_vendor",
    "demo_window",
    "exit_code_for",
    "main",
]

# -- exit codes ---------------------------------------------------------------------------

#: Success.
EXIT_OK: Final = 0
#: Anything else: the output could not be written, or a bug (the line says which).
EXIT_FAILURE: Final = 1
#: Bad arguments or missing credentials (argparse's own code for usage errors).
EXIT_USAGE: Final = 2
#: The vendor refused: authentication (-1), IP restriction (-2), parameters (-22), another
#: vendor code, or an HTTP error that retrying cannot fix (403, 404...).
EXIT_REFUSED: Final = 3
#: A transient fault outlasted the retries: connection errors and timeouts, HTTP 429 and
#: 5xx, -16, -18. Try again later: the same command resumes (stdout: ``--resume-from``).
EXIT_TRANSIENT: Final = 4
#: A reply the client cannot read (not JSON, fields missing or of the wrong type).
EXIT_MALFORMED: Final = 5
#: Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED: Final = 130
#: Standard output was closed by its reader, as in ``| head`` (128 + SIGPIPE).
EXIT_OUTPUT_CLOSED: Final = 141

ENV_KEY: Final = "ITNIO_API_KEY"
ENV_SECRET: Final = "ITNIO_API_SECRET"  # noqa: S105 - a variable's name, not a secret

# -- the demo ------------------------------------------------------------------------------

#: Tasks in the demo's generated dataset, and its seed.
DEMO_TASKS: Final = 30_000
DEMO_SEED: Final = 2026
#: The demo's tasks were created over the whole days before today, this many.
DEMO_DAYS: Final = 30
#: Seconds before each demo answer; up to as much again of seeded jitter.
DEMO_LATENCY: Final = 0.02
#: Chance of a transient fault per demo request.
DEMO_FAULT_PROBABILITY: Final = 0.03
#: The demo's default rate limit, requests per second: a few seconds for the whole window.
DEMO_RATE_LIMIT: Final = 200.0
DEMO_API_KEY: Final = "demo-key"
DEMO_API_SECRET: Final = "demo-secret"  # noqa: S105 - the fake's published demo secret
DEMO_BASE_URL: Final = "https://demo.itnio.test"

# Test seam, private: when set, a real (non-demo) run sends through this transport.
_transport_factory: Callable[[], httpx.AsyncBaseTransport] | None = None


def demo_window(today: date | None = None) -> tuple[datetime, datetime]:
    """The demo dataset's window: the ``DEMO_DAYS`` whole days before ``today`` (a
    ``date``, default the machine's today), as ``(start, end)`` naive ``datetime``s."""
    end = datetime.combine(today or date.today(), time())
    return end - timedelta(days=DEMO_DAYS), end


def demo_vendor(
    seed: int = DEMO_SEED,
    *,
    latency: float = DEMO_LATENCY,
    fault_probability: float = DEMO_FAULT_PROBABILITY,
    today: date | None = None,
) -> FakeVendor:
    """The fake vendor ``--demo`` talks to. Tests build the same one to know the data.

    Args:
        seed: fixes its dataset and its faults (default ``DEMO_SEED``).
        latency: seconds before each answer, plus up to as much of seeded jitter
            (default ``DEMO_LATENCY``, 0.02).
        fault_probability: the chance of a transient fault (-18, HTTP 503, a dropped
            connection) per request (default 0.03).
        today: the day the window ends on (default the machine's today): ``DEMO_TASKS``
            tasks over the ``DEMO_DAYS`` days before it.

    Returns:
        A ``FakeVendor`` with the key ``DEMO_API_KEY`` and secret ``DEMO_API_SECRET``.
    """
    from itnio_async.testing import Dataset, FakeVendor, Fault, FaultPlan

    start, end = demo_window(today)
    faults = FaultPlan.random(
        seed,
        probability=fault_probability,
        kinds=(Fault.code(-18), Fault.http(503), Fault.drop()),
    )
    return FakeVendor(
        DEMO_API_KEY,
        DEMO_API_SECRET,
        dataset=Dataset.generate(DEMO_TASKS, seed=seed, start=start, end=end),
        faults=faults,
        latency=latency,
        jitter=latency,
        seed=seed,
    )


# -- arguments -----------------------------------------------------------------------------

_DESCRIPTION = """\
Export or count Itniotech group-call tasks.

Credentials come only from the environment, never from the command line (where any local
user can read them): ITNIO_API_KEY and ITNIO_API_SECRET; ITNIO_BASE_URL overrides the
endpoint. Try it without an account: itnio-async --demo export -o tasks.jsonl
"""

_EPILOG = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_FAILURE}    the output could not be written, or an internal error
  {EXIT_USAGE}    bad arguments, or missing credentials
  {EXIT_REFUSED}    the vendor refused: authentication (-1), IP (-2), parameters (-22),
       another vendor code, or an HTTP error that retrying cannot fix
  {EXIT_TRANSIENT}    a transient fault outlasted the retries (connection, timeout, HTTP 429
       or 5xx, -16, -18), or the result kept changing: run the same command
       again later to resume (stdout: with the --resume-from it prints)
  {EXIT_MALFORMED}    a reply the client cannot read
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): the file ends at a whole page; run the same
       command again to resume (stdout: with the --resume-from it prints)
  {EXIT_OUTPUT_CLOSED}  stdout was closed by its reader (| head)
Errors print one line; -v adds the traceback. Progress goes to stderr.

environment (the library's and the examples' too; --demo ignores them):
  ITNIO_API_KEY, ITNIO_API_SECRET  the credentials (never options: any local user can
                                   read a command line); not needed with --demo
  ITNIO_BASE_URL                   the vendor's endpoint (default: the production API)
  ITNIO_RATE_LIMIT                 requests per second (default 10; 0 or none: no limit);
                                   --rate-limit overrides it
  ITNIO_SERVER_TIMEZONE            the vendor's zone; --server-timezone overrides it

examples:
  itnio-async --demo export -o tasks.jsonl
  itnio-async export --start 2024-06-01 --end 2024-06-30 --statuses completed,calling -o june.csv
  itnio-async export --start 2024-06-01 --end 2024-06-30 -o all.csv   # stopped? run it again
  itnio-async export --start 2024-06-01 --end 2024-06-30 -o all.csv --restart   # or start over
  itnio-async count --start "2024-06-01 08:00:00" --end "2024-06-01 18:00:00"
"""

_EXPORT_DESCRIPTION = """\
Stream every task created between --start and --end, newest first, to JSON Lines or CSV.

One line per record (CSV: one row, after a header row) with the fields job_id, task_name,
status (the number), status_name, rate, num_cnt, call_num, success, fail and created_time
(ISO 8601). Pages are written whole: a file cut short by Ctrl-C, an error or a full disk
ends at a page boundary. Beside the file, FILE.itnio-export.json records how far it got;
running the same command again appends exactly the rest, even when tasks were created,
removed or changed status in between (every task that stayed arrives once). A run with
another format, window, filter or page size is refused; --restart starts over. When the
export completes the manifest is removed. On stdout, an interrupted or failed export
prints a cursor to pass as --resume-from. --start-page is offset mode: exact only while
the window's tasks do not change.

Progress goes to stderr: a bar on a terminal (needs rich: pip install 'itnio-async[cli]'),
plain lines otherwise, nothing with --quiet; then a summary line.
"""

_TIMES_HELP = (
    "YYYY-MM-DD, 'YYYY-MM-DD HH:MM:SS' or ISO 8601 with T, in the vendor's zone, inclusive; "
    "a bare date as --end means the end of that day; with a UTC offset it needs "
    "--server-timezone"
)


class _UsageError(Exception):
    """A problem with the command or the environment, found before or as the run starts."""


class _OutputError(Exception):
    """The output cannot be written (its folder is missing, say): exit 1, as any write error."""


def _time_arg(*, end: bool) -> Callable[[str], datetime]:
    """``--start``/``--end``: the library's ``parse_time``, which the examples use too."""

    def parse(text: str) -> datetime:
        try:
            return parse_time(text, end=end)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _statuses_arg(text: str) -> list[GroupCallStatus]:
    """Comma-separated statuses, each as ``GroupCallStatus.parse`` reads it (as the library)."""
    statuses: list[GroupCallStatus] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            statuses.append(GroupCallStatus.parse(part))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not statuses:
        raise argparse.ArgumentTypeError("no status given")
    return statuses


def _int_arg(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def _rate_arg(text: str) -> float:
    """Requests per second; ``0``/``none``/``off`` means no limit (returned as 0)."""
    word = text.strip().lower()
    if word in ("none", "off", "unlimited"):
        return 0.0
    try:
        value = float(word)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a rate: {text!r} (requests per second, or 'none')"
        ) from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _zone_arg(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown time zone {text!r} (an IANA name, such as Asia/Shanghai)"
        ) from None


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after the command's name."""
    # After the command, SUPPRESS keeps an absent option from resetting one given before.
    default: object = argparse.SUPPRESS
    parser.add_argument(
        "--demo",
        action="store_true",
        default=False if top else default,
        help="run against a built-in fake vendor with 30,000 generated tasks, a little "
        "latency and a few faults (no account needed; ignores the credentials)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else default,
        help="tracebacks with errors, and log each retry (-vv: each request)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else default,
        help="print nothing but errors (and, for count, the number)",
    )
    # Hidden: the demo's latency, for trying a slow vendor (and for the tests).
    parser.add_argument(
        "--demo-latency",
        type=_seconds_arg,
        default=DEMO_LATENCY if top else default,
        help=argparse.SUPPRESS,
    )


def _add_query_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--start", type=_time_arg(end=False), help=f"window start: {_TIMES_HELP}")
    add("--end", type=_time_arg(end=True), help="window end, as --start")
    add(
        "--server-timezone",
        type=_zone_arg,
        metavar="ZONE",
        help="the vendor's time zone (IANA name; default: ITNIO_SERVER_TIMEZONE): times "
        "with an offset are converted to it, and created_time is written with its offset",
    )
    add(
        "--statuses",
        type=_statuses_arg,
        action="extend",
        metavar="LIST",
        help="keep only these states: numbers 0-6 or names (waiting_for_submission, "
        "calling, completed, submission_failed, cancelled, suspended, submitting), "
        "comma-separated (default: all)",
    )
    add("--app-id", type=_int_arg(0), metavar="ID", help="keep only this application's tasks")
    add("--search", metavar="TEXT", help="the vendor's fuzzy match on task name or content")
    add(
        "--rate-limit",
        type=_rate_arg,
        metavar="RPS",
        help=f"requests per second at most; 0 or 'none' for no limit (default: "
        f"ITNIO_RATE_LIMIT, else {DEFAULT_RATE_LIMIT:g}; {DEMO_RATE_LIMIT:g} with --demo). "
        "The vendor publishes no limit: use your account's",
    )
    add(
        "--max-retries",
        type=_int_arg(0),
        default=RetryPolicy().max_retries,
        metavar="N",
        help="retries of a transient fault, with backoff (default: %(default)s)",
    )


def build_parser(
    register: Callable[[Any, str], None] | None = None,
) -> argparse.ArgumentParser:
    """The command line; ``register(subcommands, epilog)`` adds more commands (each sets
    ``run``, the function that runs it: see ``cli._calls``)."""
    from itnio_async import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    export = commands.add_parser(
        "export",
        help="stream every task of a window to JSON Lines or CSV",
        description=_EXPORT_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(export, top=False)
    _add_query_options(export)
    add = export.add_argument
    add(
        "-o",
        "--output",
        metavar="FILE",
        help="write here instead of stdout ('-'); opened when the first page arrives. An "
        "unfinished export of the same command resumes from FILE.itnio-export.json",
    )
    add(
        "--format",
        choices=FORMATS,
        help="jsonl (one JSON object per line) or csv (with a header row); default: from "
        "the output file's extension, else jsonl",
    )
    add(
        "--csv-raw",
        action="store_true",
        help="CSV: write every cell as the vendor sent it. By default a text cell starting "
        "with =, +, -, @, a tab or a carriage return gets a leading ' so that a spreadsheet "
        "shows it instead of running it as a formula (task names come from whoever creates "
        "the tasks); JSON Lines is never changed",
    )
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
    add(
        "--limit",
        type=_int_arg(0),
        metavar="N",
        help="stop after this many records (of this run)",
    )
    add(
        "--restart",
        action="store_true",
        help="start the output file over, ignoring (and removing) the manifest of an "
        "unfinished export in it",
    )
    add(
        "--resume-from",
        metavar="CURSOR",
        help="stdout only: go on from the cursor an interrupted or failed export printed "
        "(a file export resumes from its manifest: run the same command again)",
    )
    add(
        "--start-page",
        type=_int_arg(1),
        default=1,
        metavar="P",
        help="offset mode: begin at page P of the window, appending to the output file; "
        "exact only while the window's tasks do not change (default: 1, cursor mode)",
    )
    export.set_defaults(subparser=export)

    count = commands.add_parser(
        "count",
        help="print how many tasks match (one request)",
        description="Print how many tasks match the window and filters, with one request "
        "for one record.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(count, top=False)
    _add_query_options(count)
    count.set_defaults(subparser=count)
    if register is not None:
        register(commands, _EPILOG)
    return parser


def _env_zone() -> tzinfo | None:
    """``ITNIO_SERVER_TIMEZONE``, or ``None`` (also when the environment is wrong: running
    says so, naming the variable)."""
    try:
        return Settings.from_env().server_timezone
    except ValueError:
        return None


def _check_args(args: argparse.Namespace) -> None:
    """What argparse cannot check alone; exits through ``parser.error`` (code 2)."""
    parser: argparse.ArgumentParser = args.subparser

    def fail(message: str) -> NoReturn:
        parser.error(message)

    if not args.demo:
        missing = [f"--{name}" for name in ("start", "end") if getattr(args, name) is None]
        if missing:
            fail(f"{' and '.join(missing)} required (or try --demo)")
    zone_known = args.server_timezone is not None or (not args.demo and _env_zone() is not None)
    for name in ("start", "end"):
        value: datetime | None = getattr(args, name)
        if value is not None and value.tzinfo is not None and not zone_known:
            fail(
                f"--{name} has a UTC offset: also give --server-timezone (or set "
                "ITNIO_SERVER_TIMEZONE) to the vendor's zone, or write the time in the "
                "vendor's zone without one"
            )
    start, end = args.start, args.end
    # One with an offset and one without compare only once converted: the client does that.
    if (
        start is not None
        and end is not None
        and (start.tzinfo is None) == (end.tzinfo is None)
        and end < start
    ):
        fail(f"--end ({end}) is before --start ({start})")
    output: str | None = getattr(args, "output", None)
    if output is not None and output != "-":
        folder = os.path.dirname(output) or "."
        if not os.path.isdir(folder):
            raise _OutputError(f"cannot write {output}: no such directory: {folder}")
        if os.path.isdir(output):
            raise _OutputError(f"cannot write {output}: it is a directory")
    if args.command != "export":
        return
    to_file = output not in (None, "-")
    if args.resume_from is not None:
        if to_file:
            fail(
                "--resume-from is for stdout: an export to a file resumes from its manifest, "
                "so run the same command again"
            )
        if args.start_page > 1:
            fail("--resume-from and --start-page: give one (--start-page is offset mode)")
    if args.restart:
        if not to_file:
            fail("--restart starts an --output file over (stdout keeps no manifest)")
        if args.start_page > 1:
            fail("--restart starts the file over, --start-page appends to it: give one")


# -- running ---------------------------------------------------------------------------------


@attrs.frozen
class _Connection:
    """Whom to talk to: the vendor with the environment's credentials, or the demo fake."""

    api_key: str
    api_secret: str
    base_url: str | None
    transport: Callable[[], httpx.AsyncBaseTransport] | None
    rate_limit: float | None
    window: tuple[datetime, datetime] | None
    #: ``ITNIO_SERVER_TIMEZONE``, when ``--server-timezone`` is not given.
    server_timezone: tzinfo | None = None


def _connect(args: argparse.Namespace) -> _Connection:
    if args.demo:
        fake = demo_vendor(latency=args.demo_latency)
        return _Connection(
            DEMO_API_KEY,
            DEMO_API_SECRET,
            DEMO_BASE_URL,
            fake.transport,
            DEMO_RATE_LIMIT,
            demo_window(),
        )
    # The library's one reading of the environment (ITNIO_*), as the examples read it.
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    api_key, api_secret = settings.api_key, settings.api_secret
    if not (api_key and api_secret):
        unset = " and ".join(
            name for name, value in ((ENV_KEY, api_key), (ENV_SECRET, api_secret)) if value is None
        )
        raise _UsageError(
            f"missing credentials: set {ENV_KEY} and {ENV_SECRET} in the environment "
            f"({unset} not set; never pass a secret on the command line), or try --demo"
        )
    return _Connection(
        api_key,
        api_secret,
        settings.base_url,
        _transport_factory,
        settings.rate_limit,
        None,
        settings.server_timezone,
    )


def _window(args: argparse.Namespace, connection: _Connection) -> tuple[datetime, datetime]:
    start: datetime | None = args.start
    end: datetime | None = args.end
    if connection.window is not None:
        start = start if start is not None else connection.window[0]
        end = end if end is not None else connection.window[1]
    # Both present: _check_args requires them without --demo, and the demo has a window.
    assert start is not None
    assert end is not None
    return start, end


def _make_client(
    args: argparse.Namespace, connection: _Connection, hooks: LiveHooks | None = None
) -> AsyncVoiceClient:
    rate = connection.rate_limit if args.rate_limit is None else (args.rate_limit or None)
    concurrency: int = getattr(args, "concurrency", 1)
    try:
        return AsyncVoiceClient(
            connection.api_key,
            connection.api_secret,
            base_url=connection.base_url,
            rate_limit=rate,
            retry=RetryPolicy(max_retries=args.max_retries),
            server_timezone=_zone(args, connection),
            max_connections=max(DEFAULT_MAX_CONNECTIONS, concurrency),
            transport=connection.transport() if connection.transport is not None else None,
            hooks=hooks,
        )
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from exc


def _zone(args: argparse.Namespace, connection: _Connection) -> tzinfo | None:
    """``--server-timezone``, else ``ITNIO_SERVER_TIMEZONE``."""
    zone: tzinfo | None = args.server_timezone
    return zone if zone is not None else connection.server_timezone


def _statuses(args: argparse.Namespace) -> list[GroupCallStatus] | None:
    """The ``--statuses`` in one order (by number), whatever order they were given in: a
    cursor or a manifest then matches the same filter however it is spelled."""
    statuses: list[GroupCallStatus] | None = args.statuses
    return None if statuses is None else sorted(set(statuses))


def _export_identity(
    args: argparse.Namespace, connection: _Connection, fmt: Format
) -> dict[str, Any]:
    """What a file export's manifest must match for a re-run to resume it."""
    start, end = _window(args, connection)
    zone = _zone(args, connection)
    statuses = _statuses(args)
    return {
        "format": fmt,
        "window": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "server_timezone": None if zone is None else str(zone),
        },
        "filters": {
            "statuses": None if statuses is None else [s.name.lower() for s in statuses],
            "app_id": args.app_id,
            "search": args.search,
        },
        "page_size": args.page_size,
        # Raw and neutralised CSV cells must not mix in one file.
        "csv_raw": fmt == "csv" and bool(args.csv_raw),
    }


def _open_manifest(
    args: argparse.Namespace, connection: _Connection, path: str, fmt: Format
) -> tuple[Manifest, bool]:
    """The manifest of an export to ``path``, and whether it resumes an unfinished one.

    Refuses (``_UsageError``) a manifest that cannot be read, or that another command
    wrote, or whose file is missing or shorter than it says: appending would mix two
    exports in one file, or leave a gap."""
    identity = _export_identity(args, connection, fmt)
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
    unfinished = f"{path} holds an unfinished export ({found.records} records)"
    differences = found.differences(identity)
    if differences:
        raise _UsageError(
            f"{unfinished} of another {'; '.join(differences)}: resume it with its own "
            f"arguments, or {start_over}"
        )
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise _UsageError(
            f"{path} is missing, but {manifest_path} describes an unfinished export to it "
            f"({found.records} records): {start_over}"
        ) from None
    if size < found.bytes:
        raise _UsageError(
            f"{path} is shorter ({size} bytes) than its manifest says ({found.bytes} bytes): "
            f"it changed since that export; {start_over}"
        )
    return found, True


async def _export_pages(
    args: argparse.Namespace,
    connection: _Connection,
    output: Output,
    status: ExportStatus,
    reporter: Reporter,
) -> None:
    start, end = _window(args, connection)
    async with _make_client(args, connection, LiveHooks(status, reporter)) as client:
        try:
            stream = client.iter_group_call_pages(
                start,
                end,
                statuses=_statuses(args),
                app_id=args.app_id,
                search=args.search,
                page_size=args.page_size,
                concurrency=args.concurrency,
                limit=args.limit,
                resume_from=status.cursor,
                start_page=args.start_page,
            )
        except (TypeError, ValueError) as exc:
            raise _UsageError(str(exc)) from exc
        await _write_pages(stream, output, status, reporter)
        if args.start_page > 1 and stream.progress.records_yielded == 0:
            # Offset mode past the last page: say so rather than end in an empty file.
            first = await client.query_group_calls(
                start,
                end,
                statuses=_statuses(args),
                app_id=args.app_id,
                search=args.search,
                size=args.page_size,
            )
            raise _UsageError(
                f"--start-page {args.start_page} is past the window's last page "
                f"({first.total} tasks make {first.pages} pages of {args.page_size}): "
                "nothing written"
            )


async def _count_total(args: argparse.Namespace, connection: _Connection) -> int:
    start, end = _window(args, connection)
    async with _make_client(args, connection) as client:
        try:
            request = client.query_group_calls(
                start,
                end,
                statuses=args.statuses,
                app_id=args.app_id,
                search=args.search,
                page=1,
                size=1,
            )
        except (TypeError, ValueError) as exc:
            raise _UsageError(str(exc)) from exc
        page = await request
    return page.total


class _PageOutput(Protocol):
    def write_page(self, records: Sequence[Any], cursor: str | None = None) -> None: ...


async def _write_pages(
    stream: GroupCallPageStream | CallRecordPageStream,
    output: _PageOutput,
    status: ExportStatus,
    reporter: Reporter,
) -> None:
    """Write every page of ``stream`` whole, each with the cursor after it, and report."""
    # Closing the stream (also on Ctrl-C, which asyncio.run turns into a cancellation
    # here) cancels the requests in flight and waits for them.
    async with stream:
        async for page in stream:
            # Synchronous from here to the next await: a cancellation cannot split it.
            progress = stream.progress
            cursor = None if progress.resume_from is None else str(progress.resume_from)
            output.write_page(page.records, cursor)
            status.page_written(len(page.records), progress, cursor)
            reporter.update(status)


def exit_code_for(exc: ItnioError) -> int:
    """The exit code for an error of the client (see the ``EXIT_*`` constants)."""
    if isinstance(exc, MalformedResponseError):
        return EXIT_MALFORMED
    # A result that kept changing is not transient for one request, but a later run,
    # resumed from where this one stopped, is what helps: the same advice as a fault.
    if exc.transient or isinstance(exc, ResultUnstableError):
        return EXIT_TRANSIENT
    if isinstance(exc, ItnioAPIError | ItnioHTTPError):
        return EXIT_REFUSED
    return EXIT_FAILURE


def _report_failure(exc: BaseException, *, verbose: int, status: ExportStatus | None) -> int:
    """Print one line for ``exc`` (and its traceback if verbose); return the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        if status is None:
            stderr_line("interrupted")
        else:
            stderr_line(
                f"interrupted: {status.records_written} records written; {status.resume_hint()}"
            )
        return EXIT_INTERRUPTED
    if isinstance(exc, OutputClosedError):
        return EXIT_OUTPUT_CLOSED
    # Whether there is something to resume: pages written, by this run or an earlier one.
    resumable = status is not None and bool(status.pages_written or status.resumed)
    if verbose and not isinstance(exc, _UsageError | ManifestError):
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, _UsageError | ManifestError):
        code, message = EXIT_USAGE, str(exc)
    elif isinstance(exc, ItnioError):
        code, message = exit_code_for(exc), str(exc)
        if status is not None:
            if status.resume == "page" and exc.page is not None:
                status.resume_page = exc.page
            if status.cursor is None and exc.resume_from is not None:
                status.cursor = str(exc.resume_from)  # nothing written: where it began
    elif isinstance(exc, OSError):
        code = EXIT_FAILURE
        target = exc.filename or (status.output if status is not None else "output")
        message = f"cannot write {target}: {exc.strerror or exc}"
    else:
        code = EXIT_FAILURE
        message = f"internal error: {type(exc).__name__}: {exc}"
        if not verbose:
            message += " (run with -v for the traceback)"
    if status is not None and code != EXIT_USAGE and (resumable or code == EXIT_TRANSIENT):
        message += f"; {status.records_written} records written, {status.resume_hint()}"
    stderr_line(f"error: {message}")
    return code


def _silence_stdout() -> None:
    """After a reader closed stdout: point it at devnull so exit's flush does not complain."""
    original = sys.__stdout__
    if original is None or sys.stdout is not original:
        return  # replaced (captured by a test, say): nothing to silence
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, original.fileno())
    except (OSError, ValueError):
        pass


def _export(args: argparse.Namespace, connection: _Connection) -> int:
    fmt: Format = args.format or format_for(args.output)
    path: str | None = None if args.output in (None, "-") else args.output
    offset = args.start_page > 1
    manifest: Manifest | None = None
    resuming = False
    if path is None:
        resume: Resume = "page" if offset else "cursor"
    elif offset:
        resume = "page"
        if os.path.exists(Manifest.path_for(path)):
            raise _UsageError(
                f"{path} holds an unfinished export (see {Manifest.path_for(path)}): run the "
                "same command without --start-page to resume it exactly, or delete the "
                "manifest to append by page number"
            )
    else:
        resume = "manifest"
        manifest, resuming = _open_manifest(args, connection, path, fmt)
    output = Output(
        path,
        fmt,
        header=path is not None or not (offset or args.resume_from is not None),
        append=offset,
        resume_at=manifest.bytes if manifest is not None and resuming else None,
        manifest=manifest,
        csv_raw=args.csv_raw,
    )
    status = ExportStatus(
        page_size=args.page_size,
        limit=args.limit,
        output=output.name,
        resume=resume,
        start_page=args.start_page if offset else None,
        records_before=manifest.records if manifest is not None and resuming else 0,
        cursor=manifest.cursor if manifest is not None and resuming else args.resume_from,
    )
    reporter = make_reporter(choose_mode(quiet=args.quiet, output_is_stdout=path is None))
    failure: BaseException | None = None
    with library_logging(args.verbose, reporter.note):
        reporter.start()
        try:
            asyncio.run(_export_pages(args, connection, output, status, reporter))
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
                manifest.remove()  # complete: a later run is a fresh export
        except OSError as exc:
            failure = failure or exc
    if failure is not None:
        code = _report_failure(failure, verbose=args.verbose, status=status)
        if code == EXIT_OUTPUT_CLOSED:
            _silence_stdout()
        return code
    if output.trimmed and not args.quiet:
        what = "a partial last line" if offset else "what followed its last whole page"
        stderr_line(
            f"warning: removed {what} ({output.trimmed} bytes) from {output.name} before appending"
        )
    if not args.quiet:
        stderr_line(status.summary())
    return EXIT_OK


def _count(args: argparse.Namespace, connection: _Connection) -> int:
    with library_logging(args.verbose, stderr_line):
        try:
            total = asyncio.run(_count_total(args, connection))
        except (Exception, KeyboardInterrupt) as exc:
            return _report_failure(exc, verbose=args.verbose, status=None)
    print(total)
    return EXIT_OK


def _run_registered(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a registered command, with the exit codes of usage errors and interruptions."""
    try:
        return run(args)
    except _UsageError as exc:
        stderr_line(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stderr_line("interrupted")
        return EXIT_INTERRUPTED


def main(
    argv: Sequence[str] | None = None, *, register: Callable[[Any, str], None] | None = None
) -> int:
    """Run the command line with the arguments ``argv`` (default ``None``: ``sys.argv[1:]``).

    ``register`` (default ``None``) adds commands of other modules to the parser; their
    ``run`` function is called with the parsed arguments. Returns the exit code (the
    console script exits with it; see the ``EXIT_*`` constants); every error is reported
    on stderr as one line, never raised.
    """
    parser = build_parser(register)
    try:
        args = parser.parse_args(argv)
        run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
        if run is not None:
            return _run_registered(run, args)
        _check_args(args)
    except SystemExit as exc:  # argparse: --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except _OutputError as exc:
        stderr_line(f"error: {exc}")
        return EXIT_FAILURE
    try:
        connection = _connect(args)
        if args.command == "count":
            return _count(args, connection)
        return _export(args, connection)
    except _UsageError as exc:
        stderr_line(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:  # before or after the run proper (which handles its own)
        stderr_line("interrupted")
        return EXIT_INTERRUPTED
