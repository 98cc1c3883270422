"""The manifest an export keeps beside its output file, so that a re-run resumes it.

``OUTPUT.itnio-export.json`` says what the file holds: the command's format, window,
filters and page size, the records written, the file's length after the last whole page,
and the stream's cursor there. It is rewritten after each page is written and synced, to
a temporary file that is synced and then renamed over the old one, so a reader (the next
run) sees either the old state or the new one, never half of one. An export that
completes removes it; an error or Ctrl-C leaves it, and running the same command again
cuts the file back to the manifest's length and goes on from its cursor.

A re-run with other arguments would mix two exports in one file (CSV rows in a JSON Lines
file, another window's records after this one's): ``Manifest.differences`` names what
differs, and the command refuses to go on.

The manifest is written with ``os.write`` on a raw descriptor, as the output is: nothing
is left in a buffer to be written again after a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Final

import attrs

from itnio_async import StreamCursor

__all__ = ["MANIFEST_SUFFIX", "Manifest", "ManifestError", "write_all"]

#: The manifest's name is the output's with this added.
MANIFEST_SUFFIX: Final = ".itnio-export.json"
#: What the manifest's ``kind`` says, with its layout's version.
_KIND: Final = "itnio-async export"
_VERSION: Final = 1

#: The fields that must match for a re-run to resume, and how a message names them.
_IDENTITY: Final = {
    "format": "format",
    "window": "window",
    "filters": "filters",
    "page_size": "page size",
    "csv_raw": "--csv-raw",
}


class ManifestError(Exception):
    """A manifest that cannot be read, or that does not describe its output."""


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write only part)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _describe(field: str, value: Any) -> str:
    if field == "window":
        text = f"{value['start']} to {value['end']}"
        if value.get("server_timezone"):
            text += f" in {value['server_timezone']}"
        return text
    if field == "filters":
        parts = [f"{key} {value[key]}" for key in ("statuses", "app_id", "search") if value[key]]
        return ", ".join(parts) if parts else "none"
    return str(value)


@attrs.define
class Manifest:
    """An export's manifest: what the command asked for, and how far the file has come."""

    #: Where it is kept: the output's path plus ``MANIFEST_SUFFIX``.
    path: str
    #: What the command asked for: ``format``, ``window``, ``filters``, ``page_size``,
    #: ``csv_raw``.
    identity: dict[str, Any]
    #: Records in the output after its last whole page, over every run so far.
    records: int = 0
    #: The output's length in bytes after its last whole page.
    bytes: int = 0
    #: The stream's cursor after that page (``str(StreamCursor)``).
    cursor: str | None = None

    @staticmethod
    def path_for(output: str) -> str:
        """The manifest's path for an output file."""
        return output + MANIFEST_SUFFIX

    @classmethod
    def load(cls, path: str) -> Manifest | None:
        """The manifest at ``path``; ``None`` if there is none; ``ManifestError`` if it
        cannot be read or is not one."""
        try:
            with open(path, "rb") as file:
                raw = file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(raw)
            if data["kind"] != _KIND or data["version"] != _VERSION:
                raise ValueError(f"not a version {_VERSION} {_KIND} manifest")
            identity = {field: data[field] for field in _IDENTITY}
            records, size, cursor = data["records"], data["bytes"], data["cursor"]
            for name, number in (("records", records), ("bytes", size)):
                if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                    raise ValueError(f"{name} is not a count")
            StreamCursor.from_string(cursor)
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"{path} is not a readable export manifest ({exc})") from exc
        return cls(path, identity, records, size, cursor)

    def differences(self, identity: dict[str, Any]) -> list[str]:
        """What differs between this manifest's export and a command's, in words."""
        return [
            f"{name} {_describe(field, self.identity[field])} (this command: "
            f"{_describe(field, identity[field])})"
            for field, name in _IDENTITY.items()
            if self.identity[field] != identity[field]
        ]

    def save(self, *, records: int, size: int, cursor: str) -> None:
        """Record a new state: write a temporary file, sync it, rename it over the manifest.

        On a failure (a full disk, say) the manifest on disk still holds the previous
        state, this object too, and the temporary file is removed."""
        data = {
            "kind": _KIND,
            "version": _VERSION,
            **self.identity,
            "records": records,
            "bytes": size,
            "cursor": cursor,
        }
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        temporary = self.path + ".tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                write_all(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, OSError):  # named by the manifest, not its temporary file
                raise OSError(exc.errno, exc.strerror, self.path) from exc
            raise
        self.records, self.bytes, self.cursor = records, size, cursor

    def remove(self) -> None:
        """Delete the manifest (the export completed, or starts over)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
