"""Request signing, and the server clock it signs with.

The vendor's signature is ``md5(api_key + api_secret + timestamp)`` in lower-case hex,
where ``timestamp`` is Unix time in seconds. It does not cover the body, so the only way a
correctly keyed request is refused is a stale timestamp (``-16``): each attempt is signed
afresh (:func:`signed_headers`), at the moment it is sent (after any wait in the rate
limiter), with our clock corrected by the offset learned from the server's ``Date``
header. :class:`SigningAuth` does the same as an ``httpx.Auth`` flow.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Generator
from datetime import UTC
from email.utils import parsedate_to_datetime

import attrs
import httpx

__all__ = [
    "Credentials",
    "ServerClock",
    "SigningAuth",
    "check_credential",
    "compute_sign",
    "date_of",
    "parse_http_date",
    "signed_headers",
]

#: Header names of the vendor's scheme.
API_KEY_HEADER = "Api-Key"
TIMESTAMP_HEADER = "Timestamp"
SIGN_HEADER = "Sign"
CONTENT_TYPE = "application/json;charset=UTF-8"
#: The largest clock skew a ``-16`` reply may correct: an hour. Real clocks drift by
#: seconds or minutes; a reply claiming more is not believed.
MAX_CLOCK_SKEW = 3600.0


def compute_sign(api_key: str, api_secret: str, timestamp: int | str) -> str:
    """The vendor's ``Sign``: lower-case hex MD5 of ``api_key + api_secret + timestamp``."""
    payload = f"{api_key}{api_secret}{timestamp}".encode()
    return hashlib.md5(payload, usedforsecurity=False).hexdigest()


def parse_http_date(value: str) -> float | None:
    """An HTTP date (``Date``, ``Retry-After``) as Unix time, or ``None`` if unreadable.

    Takes the three forms HTTP allows (IMF-fixdate, RFC 850, asctime); one without a zone
    (asctime, or ``-0000``) is GMT, as every HTTP date is.
    """
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@attrs.frozen(slots=True)
class Credentials:
    """An API key and its secret. The secret never shows in ``repr`` or ``str``."""

    api_key: str
    api_secret: str = attrs.field(repr=False)


def check_credential(name: str, value: object) -> str:
    """``value`` if it is a non-empty ``str`` of visible ASCII, else raise naming ``name``.

    The key travels in a header, where a CR or LF would be a protocol error (and used to
    be retried as a transport fault); a secret with one (a file's trailing newline) signs
    wrongly. The message never shows the value.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    for position, char in enumerate(value):
        if not "!" <= char <= "~":
            raise ValueError(
                f"{name} holds a space, control or non-ASCII character at position "
                f"{position}: only visible ASCII (! to ~) is allowed"
            )
    return value


def signed_headers(credentials: Credentials, timestamp: int) -> dict[str, str]:
    """The vendor's four headers for a request stamped ``timestamp`` (Unix seconds)."""
    stamp = str(timestamp)
    return {
        "Content-Type": CONTENT_TYPE,
        API_KEY_HEADER: credentials.api_key,
        TIMESTAMP_HEADER: stamp,
        SIGN_HEADER: compute_sign(credentials.api_key, credentials.api_secret, stamp),
    }


@attrs.define(slots=True)
class ServerClock:
    """Our estimate of the vendor's clock: local time plus a learned offset, in seconds.

    The offset comes from a reply's ``Date`` header, taken at the midpoint between sending
    the request and receiving the reply. ``Date`` has one-second resolution, so the estimate
    is good to about half a second plus half the round trip, well inside any sane tolerance.
    """

    #: Seconds to add to local time to get the server's time.
    offset: float = 0.0
    #: Whether replies may correct the offset at all.
    enabled: bool = True
    #: The local wall clock (replaceable in tests).
    wall: Callable[[], float] = attrs.field(default=time.time, repr=False)
    #: The largest skew a reply may correct, in seconds.
    max_skew: float = MAX_CLOCK_SKEW

    def now(self) -> float:
        """The server's current Unix time as we estimate it."""
        return self.wall() + self.offset

    def learn(self, headers: httpx.Headers, sent_at: float, received_at: float) -> bool:
        """Update the offset from a reply's ``Date`` header; return whether it was used.

        A reply without ``Date``, with an unreadable one, or with an ``Age`` header (a
        cache answered, so ``Date`` is not the server's "now") teaches nothing.
        """
        server_time = date_of(headers)
        return server_time is not None and self.learn_time(server_time, sent_at, received_at)

    def learn_time(self, server_time: float, sent_at: float, received_at: float) -> bool:
        """Take ``server_time`` (read from a reply) as the server's clock at the midpoint
        of sending and receiving; return whether the offset was updated (not when the
        skew it implies is beyond ``max_skew``: see :meth:`trusts`)."""
        offset = self.offset_from(server_time, sent_at, received_at)
        if not self.enabled or not self.trusts(offset, sent_at, received_at):
            return False
        self.offset = offset
        return True

    @staticmethod
    def offset_from(server_time: float, sent_at: float, received_at: float) -> float:
        """The offset ``server_time`` implies, taken at the midpoint of the exchange."""
        return server_time - (sent_at + received_at) / 2.0

    def trusts(self, offset: float, sent_at: float, received_at: float) -> bool:
        """Whether a skew of ``offset`` is within ``max_skew``, give or take what the
        estimate cannot tell apart (the ``Date`` header's second, half the round trip).

        Nothing authenticates a reply's ``Date`` (a proxy, a captive portal or a probe's
        answer can carry any), and every later request is signed with the offset: a skew
        larger than this is reported, not trusted.
        """
        slack = 1.0 + max(0.0, received_at - sent_at) / 2.0
        return abs(offset) <= self.max_skew + slack


def date_of(headers: httpx.Headers) -> float | None:
    """The server's Unix time by a reply's ``Date`` header: ``None`` without one, with an
    unreadable one, or with an ``Age`` header (a cache answered: not the server's "now")."""
    if "age" in headers:
        return None
    raw = headers.get("date")
    return parse_http_date(raw) if raw else None


class SigningAuth(httpx.Auth):
    """Adds ``Api-Key``, ``Timestamp`` and ``Sign`` to each request as it is sent."""

    def __init__(self, credentials: Credentials, clock: ServerClock) -> None:
        self._credentials = credentials
        self._clock = clock

    def __repr__(self) -> str:
        return f"SigningAuth(api_key={self._credentials.api_key!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = str(int(self._clock.now()))
        request.headers[API_KEY_HEADER] = self._credentials.api_key
        request.headers[TIMESTAMP_HEADER] = timestamp
        request.headers[SIGN_HEADER] = compute_sign(
            self._credentials.api_key, self._credentials.api_secret, timestamp
        )
        yield request
