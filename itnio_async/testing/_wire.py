"""The vendor's wire conventions, restated independently of the client library.

Nothing here imports the client: the fake must disagree with a buggy client, not
share its bugs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any, Final

#: The task query's route.
QUERY_PATH: Final = "/voice/group/call/query"
#: The call-record query's route (``status``/``reason`` envelope, ISO times).
CALL_QUERY_PATH: Final = "/voice/recordGroupQuery"
#: ``GET`` routes, each followed by an id: a task's details, one call record.
DETAIL_PATH_PREFIX: Final = "/voice/group/call/detail/"
CALL_PATH_PREFIX: Final = "/voice/recordGroup/"

#: ``LocalDateTime`` on the wire: ``YYYY-MM-DD HH:MM:SS``, no zone.
WIRE_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

#: A strict shape check: ``strptime`` alone would accept ``2024-1-1 0:0:0``.
_WIRE_TIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")

#: The content type the vendor answers with (Spring's spelling).
JSON_CONTENT_TYPE: Final = b"application/json;charset=UTF-8"

#: Vendor status codes and the messages the fake answers them with.
CODE_OK: Final = 0
CODE_AUTH: Final = -1
CODE_IP: Final = -2
CODE_TIMESTAMP: Final = -16
CODE_UNUSUAL: Final = -18
CODE_PARAMS: Final = -22
CODE_NOT_FOUND: Final = -24

#: Default ``msg`` for each documented code, used by faults and checks.
CODE_MESSAGES: Final[dict[int, str]] = {
    CODE_OK: "success",
    CODE_AUTH: "Authentication error",
    CODE_IP: "Restricted IP access",
    CODE_TIMESTAMP: "Timestamp expires",
    CODE_UNUSUAL: "Port program unusual",
    CODE_PARAMS: "Parameter exception",
    CODE_NOT_FOUND: "Data does not exist",
}

#: ISO 8601 with an offset, to the second: ``2022-02-18T00:00:00+08:00`` (or ``Z``).
_ISO_TIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z)")
#: How far back call records are kept, in calendar months.
CALL_RETENTION_MONTHS: Final = 2
#: The longest call-record query window.
CALL_MAX_WINDOW: Final = timedelta(days=31)

#: Reason phrases for the HTTP statuses the fake can answer with.
HTTP_REASONS: Final[dict[int, str]] = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_EPOCH: Final = datetime(1970, 1, 1)  # naive: wire times carry no zone
_SECOND: Final = timedelta(seconds=1)


def expected_sign(api_key: str, api_secret: str, timestamp: str) -> str:
    """Return the vendor's signature: lower-case hex MD5 of key + secret + timestamp."""
    return hashlib.md5((api_key + api_secret + timestamp).encode("utf-8")).hexdigest()


def sign_matches(given: str, api_key: str, api_secret: str, timestamp: str) -> bool:
    """Compare a ``Sign`` header with the expected one, case-insensitively, in constant time."""
    want = expected_sign(api_key, api_secret, timestamp)
    return hmac.compare_digest(given.strip().lower().encode("utf-8"), want.encode("ascii"))


def format_wire_time(value: datetime) -> str:
    """Format a naive datetime as the vendor's ``LocalDateTime``."""
    return value.strftime(WIRE_TIME_FORMAT)


def parse_wire_time(text: str) -> datetime:
    """Parse ``YYYY-MM-DD HH:MM:SS`` strictly; raise ``ValueError`` otherwise."""
    if not _WIRE_TIME_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not YYYY-MM-DD HH:MM:SS")
    return datetime.strptime(text, WIRE_TIME_FORMAT)


def parse_iso_time(text: str) -> datetime:
    """Parse an ISO 8601 time with an offset strictly (aware); ``ValueError`` otherwise."""
    if not _ISO_TIME_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not ISO 8601 with an offset")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def months_back(now: datetime, months: int) -> datetime:
    """``now`` (aware) that many calendar months back, the day capped at the month's end."""
    total = now.year * 12 + now.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    days = [
        31,
        29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month - 1]
    return now.replace(year=year, month=month, day=min(now.day, days), microsecond=0)


def to_seconds(value: datetime) -> int:
    """Whole seconds of a naive datetime since 1970-01-01 (floor)."""
    return (value.replace(tzinfo=None) - _EPOCH) // _SECOND


def to_seconds_ceil(value: datetime) -> int:
    """Whole seconds of a naive datetime since 1970-01-01, rounded up."""
    return -((_EPOCH - value.replace(tzinfo=None)) // _SECOND)


def from_seconds(seconds: int) -> datetime:
    """The naive datetime ``seconds`` after 1970-01-01."""
    return _EPOCH + timedelta(seconds=seconds)


def http_date(unix_seconds: float) -> bytes:
    """An RFC 7231 ``Date`` header value for a unix time."""
    return formatdate(unix_seconds, usegmt=True).encode("ascii")


def retry_after_value(seconds: float | str) -> bytes:
    """A ``Retry-After`` value: a string is sent verbatim, a number rounds up to whole seconds."""
    if isinstance(seconds, str):
        return seconds.encode("latin-1")
    return str(max(0, math.ceil(seconds))).encode("ascii")


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as a Java server writes it."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def spring_error(status: int, path: str, now: float, message: str = "") -> bytes:
    """A Spring Boot style JSON error body, as the vendor's framework writes it."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    return dumps(
        {
            "timestamp": stamp,
            "status": status,
            "error": HTTP_REASONS.get(status, "Error"),
            "message": message,
            "path": path,
        }
    )


def nginx_error_page(status: int) -> bytes:
    """The HTML page nginx serves for a proxy error such as 502."""
    title = f"{status} {HTTP_REASONS.get(status, 'Error')}"
    return (
        "<html>\r\n"
        f"<head><title>{title}</title></head>\r\n"
        "<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n"
        "</body>\r\n"
        "</html>\r\n"
    ).encode("ascii")
