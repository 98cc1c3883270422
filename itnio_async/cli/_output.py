"""The export's output: records as JSON Lines or CSV, written one whole page at a time.

Why whole pages: a resumed export starts at a page boundary (``--start-page``), so the
file must end at one too. Each page is encoded to a single ``bytes`` block, written with
one ``write`` and flushed; the size of the file after the last complete page is kept, and
an export that stops early (Ctrl-C, an error) cuts the file back to it. So an interrupted
file always holds whole pages, and resuming from the page it names appends exactly the
rest.

The file is opened when the first page arrives, not before: a request the vendor refuses
(bad credentials, a bad filter) leaves an existing file untouched. With ``--start-page``
greater than 1 the file is appended to (a trailing partial line, which only a hard kill can
leave, is removed first); the CSV header is written only to an empty file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import BinaryIO, Final, Literal

from itnio_async import GroupCallRecord

__all__ = ["COLUMNS", "FORMATS", "Format", "Output", "encode_records", "format_for", "record_row"]

#: Output formats.
Format = Literal["jsonl", "csv"]
FORMATS: Final[tuple[Format, ...]] = ("jsonl", "csv")

#: The columns (JSON keys) of an exported record, in order: ``GroupCallRecord``'s fields
#: with the status's lower-case name after its number.
COLUMNS: Final = (
    "job_id",
    "task_name",
    "status",
    "status_name",
    "rate",
    "num_cnt",
    "call_num",
    "success",
    "fail",
    "created_time",
)

#: How far back a partial last line is searched for, at most, before appending.
_TAIL_CHUNK: Final = 64 * 1024


def format_for(path: str | None) -> Format:
    """The format an output file's extension implies: ``.csv`` is CSV, anything else JSONL."""
    if path is not None and path != "-" and path.lower().endswith(".csv"):
        return "csv"
    return "jsonl"


def record_row(record: GroupCallRecord) -> dict[str, object]:
    """One record as a flat row, keyed by ``COLUMNS``.

    ``status`` is the vendor's number and ``status_name`` its ``GroupCallStatus`` name in
    lower case (``unknown_9`` for a value the vendor added later); ``created_time`` is ISO
    8601 (naive, or with the offset of ``--server-timezone``).
    """
    status = record.status
    return {
        "job_id": record.job_id,
        "task_name": record.task_name,
        "status": int(status),
        "status_name": status.name.lower(),
        "rate": record.rate,
        "num_cnt": record.num_cnt,
        "call_num": record.call_num,
        "success": record.success,
        "fail": record.fail,
        "created_time": record.created_time.isoformat(),
    }


# Made once: ``json.dumps`` with arguments builds a new encoder for every call.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_json_ascii = json.JSONEncoder(separators=(",", ":")).encode


def _json_line(row: dict[str, object]) -> bytes:
    try:
        return (_encode_json(row) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate in a task name cannot be UTF-8: JSON's \u escapes can carry it.
        return (_encode_json_ascii(row) + "\n").encode("ascii")


def _csv_text(rows: Iterable[Iterable[object]]) -> bytes:
    buffer = io.StringIO()
    # "\n", not the csv module's default "\r\n": the files are for Unix tools first, and
    # every CSV reader accepts either.
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8", errors="replace")


def encode_records(records: Sequence[GroupCallRecord], fmt: Format) -> bytes:
    """The records as one block of complete lines (CSV: rows, no header)."""
    if fmt == "jsonl":
        return b"".join(_json_line(record_row(record)) for record in records)
    return _csv_text([record_row(record)[column] for column in COLUMNS] for record in records)


def csv_header() -> bytes:
    """The CSV header row."""
    return _csv_text([COLUMNS])


def _trim_partial_line(file: BinaryIO) -> int:
    """Cut a last line that has no newline; leave the position at the end. Bytes removed."""
    end = file.seek(0, os.SEEK_END)
    cut = end
    position = end
    while position > 0:
        step = min(_TAIL_CHUNK, position)
        position -= step
        file.seek(position)
        chunk = file.read(step)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            cut = position + newline + 1
            break
    else:
        cut = 0
    if cut < end:
        file.truncate(cut)
    file.seek(cut)
    return end - cut


class OutputClosedError(Exception):
    """Standard output was closed by its reader (``| head``)."""


class Output:
    """Where an export's records go: a file (``path``) or standard output (``None``)."""

    def __init__(self, path: str | None, fmt: Format, *, append: bool) -> None:
        #: The file's path; ``None`` for standard output.
        self.path = None if path == "-" else path
        #: ``jsonl`` or ``csv``.
        self.format: Format = fmt
        # Append (a resumed export) rather than replace.
        self._append = append
        # The open file, once the first page arrived (never standard output).
        self._file: BinaryIO | None = None
        # Whether anything was opened yet (a file, or standard output used).
        self._opened = False
        # The file's size after the last complete page; an early stop cuts back to it.
        self._committed = 0
        #: Bytes of a partial last line removed before appending (for a warning).
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
        header = self.format == "csv"
        if self.path is None:
            header = header and not self._append
            if header:
                self._write(csv_header())
            return
        if self._append and os.path.exists(self.path):
            file: BinaryIO = open(self.path, "r+b")  # noqa: SIM115 - closed by close()
            try:
                self.trimmed = _trim_partial_line(file)
            except BaseException:
                file.close()
                raise
            header = header and file.tell() == 0
        else:
            file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file = file
        self._committed = file.tell()
        if header:
            self._write(csv_header())

    def _write(self, block: bytes) -> None:
        file = self._file
        if file is not None:
            file.write(block)
            file.flush()
            self._committed = file.tell()
            return
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

    def write_page(self, records: Sequence[GroupCallRecord]) -> None:
        """Write one page's records with one write, and flush."""
        if not self._opened:
            self._open()
        if records:
            self._write(encode_records(records, self.format))

    def close(self, *, complete: bool) -> None:
        """Close the file. ``complete=False`` (an early stop) first cuts it back to the end
        of the last whole page. An export that wrote nothing still creates its file when
        ``complete``."""
        if complete and not self._opened:
            self._open()
        file, self._file = self._file, None
        if file is None:
            return
        try:
            if not complete and file.tell() != self._committed:
                file.truncate(self._committed)
        finally:
            file.close()
