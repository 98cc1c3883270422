"""The export's output: records as JSON Lines or CSV, written one whole page at a time.

Why whole pages: a resumed export goes on from the stream's position after a page, so the
file must end at one too. Each page is encoded to a single ``bytes`` block and written
with ``os.write`` on a raw descriptor (no buffer that could hold half a page and write it
again later); the file's length after the last whole page is kept, and a write that fails
(a full disk) or an export that stops early (Ctrl-C, an error) cuts the file back to it
with ``os.ftruncate``, which needs no free space. So an interrupted file always holds
whole pages.

A file export keeps a manifest beside the file (``_manifest``): after each page is written
and synced, it records the file's length, the records and the stream's cursor. Resuming
cuts the file back to the manifest's length and appends; the CSV header is written only
to an empty file.

The file is opened when the first page arrives, not before: a request the vendor refuses
(bad credentials, a bad filter) leaves an existing file untouched. With ``--start-page``
(offset mode, no manifest) the file is appended to after removing a trailing partial line,
which only a hard kill can leave.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import BinaryIO, Final, Literal

from itnio_async import RECORD_COLUMNS, GroupCallRecord, record_row

from ._manifest import Manifest, ManifestError, write_all

__all__ = [
    "COLUMNS",
    "FORMATS",
    "FORMULA_STARTS",
    "Format",
    "Output",
    "encode_records",
    "format_for",
    "neutralise",
    "record_row",
]

#: Output formats.
Format = Literal["jsonl", "csv"]
FORMATS: Final[tuple[Format, ...]] = ("jsonl", "csv")

#: The columns (JSON keys) of an exported record, in order: the library's one record
#: format (``itnio_async.record_row``), which the examples write too.
COLUMNS: Final = RECORD_COLUMNS

#: How far back a partial last line is searched for, at most, before appending.
_TAIL_CHUNK: Final = 64 * 1024


def format_for(path: str | None) -> Format:
    """The format an output file's extension implies: ``.csv`` is CSV, anything else JSONL."""
    if path is not None and path != "-" and path.lower().endswith(".csv"):
        return "csv"
    return "jsonl"


# Made once: ``json.dumps`` with arguments builds a new encoder for every call.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_json_ascii = json.JSONEncoder(separators=(",", ":")).encode


def _json_line(row: dict[str, object]) -> bytes:
    try:
        return (_encode_json(row) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate in a task name cannot be UTF-8: JSON's \u escapes can carry it.
        return (_encode_json_ascii(row) + "\n").encode("ascii")


#: What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection).
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula, prefixed with ``'``.

    Task names come from whoever creates the tasks, and Excel, LibreOffice and Google
    Sheets evaluate a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return (``=HYPERLINK(...)``, ``=cmd|...``). The quote makes them show it as text; the
    csv module's quoting takes care of the rest. Numbers are ours, not the vendor's text,
    and are left alone.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv_text(rows: Iterable[Iterable[object]]) -> bytes:
    buffer = io.StringIO()
    # "\n", not the csv module's default "\r\n": the files are for Unix tools first, and
    # every CSV reader accepts either.
    plain = csv.writer(buffer, lineterminator="\n")
    # The csv module (3.11 at least) quotes a cell holding "\r" only when "\r" is in the line
    # terminator, so a task name with a carriage return would split its row: such a row
    # is written with every text cell quoted.
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    for row in rows:
        cells = list(row)
        has_cr = any(isinstance(cell, str) and "\r" in cell for cell in cells)
        (quoted if has_cr else plain).writerow(cells)
    return buffer.getvalue().encode("utf-8", errors="replace")


def encode_records(
    records: Sequence[GroupCallRecord], fmt: Format, *, csv_raw: bool = False
) -> bytes:
    """The records as one block of complete lines (CSV: rows, no header).

    CSV cells that would start a spreadsheet formula are neutralised (see ``neutralise``)
    unless ``csv_raw``; JSON Lines is always written as it came.
    """
    if fmt == "jsonl":
        return b"".join(_json_line(record_row(record)) for record in records)
    if csv_raw:
        return _csv_text([record_row(r)[column] for column in COLUMNS] for r in records)
    return _csv_text([neutralise(record_row(r)[column]) for column in COLUMNS] for r in records)


def csv_header() -> bytes:
    """The CSV header row."""
    return _csv_text([COLUMNS])


def _trim_partial_line(fd: int) -> int:
    """Cut a last line that has no newline; leave the position at the end. Bytes removed."""
    end = os.lseek(fd, 0, os.SEEK_END)
    cut = 0
    position = end
    while position > 0:
        step = min(_TAIL_CHUNK, position)
        position -= step
        os.lseek(fd, position, os.SEEK_SET)
        chunk = _read_exactly(fd, step)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            cut = position + newline + 1
            break
    if cut < end:
        os.ftruncate(fd, cut)
    os.lseek(fd, cut, os.SEEK_SET)
    return end - cut


def _read_exactly(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


class OutputClosedError(Exception):
    """Standard output was closed by its reader (``| head``)."""


class Output:
    """Where an export's records go: a file (``path``) or standard output (``None``).

    A file is written through a raw descriptor with ``os.write``, one block per page, so
    nothing waits in a buffer: when a write fails (a full disk), the file is cut back to
    its last whole page with ``os.ftruncate``, which needs no space, and nothing is left
    to be written again on close. With a ``manifest``, each page is synced and then
    recorded in it (records, length, the stream's cursor) before the next one is written.
    """

    def __init__(
        self,
        path: str | None,
        fmt: Format,
        *,
        header: bool = True,
        append: bool = False,
        resume_at: int | None = None,
        manifest: Manifest | None = None,
        csv_raw: bool = False,
    ) -> None:
        #: The file's path; ``None`` for standard output.
        self.path = None if path == "-" else path
        #: ``jsonl`` or ``csv``.
        self.format: Format = fmt
        # Whether a CSV header goes before the first page (only ever to an empty file).
        self._header = header and fmt == "csv"
        # --start-page: append to the file after removing a partial last line.
        self._append = append
        # Resuming from a manifest: cut the file back to this length and append.
        self._resume_at = resume_at
        self._manifest = manifest
        # CSV: write cells as they came, formulas and all (--csv-raw).
        self._csv_raw = csv_raw
        # The open file's descriptor, once the first page arrived (never stdout's).
        self._fd: int | None = None
        # Whether anything was opened yet (a file, or standard output used).
        self._opened = False
        #: The file's length after the last whole page; an early stop cuts back to it.
        self.committed = 0
        #: Bytes removed from the end of the file before appending (for a warning).
        self.trimmed = 0

    @property
    def name(self) -> str:
        """How messages name the output."""
        return self.path if self.path is not None else "stdout"

    def _stdout(self) -> BinaryIO | None:
        buffer = getattr(sys.stdout, "buffer", None)
        return buffer if buffer is not None else None

    def _open(self) -> None:
        self._opened = True
        path = self.path
        if path is None:
            return
        if self._resume_at is not None:
            fd = os.open(path, os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                if size < self._resume_at:
                    raise ManifestError(
                        f"{path} is shorter ({size} bytes) than its manifest says "
                        f"({self._resume_at} bytes): it changed since that export; start "
                        "over with --restart (or delete the manifest)"
                    )
                if size > self._resume_at:
                    os.ftruncate(fd, self._resume_at)
                    self.trimmed = size - self._resume_at
                self.committed = os.lseek(fd, self._resume_at, os.SEEK_SET)
            except BaseException:
                os.close(fd)
                raise
            self._header = self._header and self.committed == 0
        elif self._append:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                self.trimmed = _trim_partial_line(fd)
                self.committed = os.lseek(fd, 0, os.SEEK_CUR)
            except BaseException:
                os.close(fd)
                raise
            self._header = self._header and self.committed == 0
        else:
            if self._manifest is not None:
                self._manifest.remove()  # a stale one (--restart) must not outlive the file
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self._fd = fd

    def _write_stdout(self, block: bytes) -> None:
        try:
            stdout = self._stdout()
            if stdout is not None:
                stdout.write(block)
                stdout.flush()
            else:  # a text-only sys.stdout (an embedding application, say)
                sys.stdout.write(block.decode("utf-8"))
                sys.stdout.flush()
        except BrokenPipeError as exc:
            raise OutputClosedError from exc

    def _commit(self, block: bytes, records: int, cursor: str | None) -> None:
        """Write ``block`` whole and record it in the manifest, or leave the file as it was."""
        fd = self._fd
        if fd is None:
            self._write_stdout(block)
            return
        end = self.committed + len(block)
        try:
            write_all(fd, block)
            manifest = self._manifest
            if manifest is not None and cursor is not None:
                os.fsync(fd)  # the manifest never names bytes that are not on the disk
                manifest.save(records=manifest.records + records, size=end, cursor=cursor)
        except BaseException:
            self._cut_back(fd)
            raise
        self.committed = end

    def _cut_back(self, fd: int) -> None:
        """Cut the file back to its last whole page; a full disk does not stop this."""
        with contextlib.suppress(OSError):  # the write's own error is the one to report
            os.ftruncate(fd, self.committed)
            os.lseek(fd, self.committed, os.SEEK_SET)

    def _header_block(self) -> bytes:
        if not self._header:
            return b""
        self._header = False
        return csv_header()

    def write_page(self, records: Sequence[GroupCallRecord], cursor: str | None = None) -> None:
        """Write one page's records with one write (synced and recorded in the manifest
        with ``cursor``, the stream's position after the page, when there is one)."""
        if not self._opened:
            self._open()
        header = self._header_block()
        block = (
            header + encode_records(records, self.format, csv_raw=self._csv_raw)
            if records
            else header
        )
        if block:
            try:
                self._commit(block, len(records), cursor)
            except BaseException:
                self._header = bool(header)
                raise

    def close(self, *, complete: bool) -> None:
        """Close the file. ``complete=False`` (an early stop) first cuts it back to the end
        of the last whole page. An export that wrote nothing still creates its file (a CSV
        one with its header) when ``complete``."""
        try:
            if complete and not self._opened:
                self._open()
            if complete and self._header:
                self._commit(self._header_block(), 0, None)
        finally:
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    if not complete and os.fstat(fd).st_size != self.committed:
                        os.ftruncate(fd, self.committed)
                finally:
                    os.close(fd)
