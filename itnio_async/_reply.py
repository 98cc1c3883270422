"""What a reply means, read as data: no waiting, no logging, no state.

:func:`classify` turns a reply's status, headers and (already capped) body into a
:class:`Reply`: the envelope, or the error to raise, with the ``Retry-After`` to honour
and the server's clock reading for a ``-16``. The send path (``_send``) acts on it.
:class:`ServerFaultBurst` tells a burst of ``-18`` replies from a blip.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Final

import attrs
import httpx

from ._converter import Envelope, decode_envelope
from ._errors import (
    ItnioAPIError,
    ItnioError,
    ItnioHTTPError,
    ItnioTransportError,
    MalformedResponseError,
    RateLimitedError,
    TimestampExpiredError,
)
from ._retry import RetryPolicy
from ._signing import date_of, parse_http_date

__all__ = [
    "ERROR_BODY_BYTES",
    "RETRY_AFTER_STATUSES",
    "SERVER_FAULT_BURST",
    "RawReply",
    "Reply",
    "ServerFaultBurst",
    "classify",
    "outcome_label",
    "parse_retry_after",
]

#: Only these statuses ask every caller to wait: a ``Retry-After`` on any other reply
#: (a 200 included) is not a request to slow down, and is ignored.
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
#: How much of an error reply's body is read: an error keeps a short excerpt, so a huge
#: error page is neither read whole nor processed whole.
ERROR_BODY_BYTES: Final = 4096
#: This many -18 replies within one second pause the whole (possibly shared) limiter.
SERVER_FAULT_BURST: Final = 3


@attrs.frozen(slots=True)
class RawReply:
    """A reply as the transport read it; ``body`` is capped (see ``_send``)."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes


@attrs.frozen(slots=True)
class Reply:
    """What a reply means: exactly one of ``envelope`` and ``error`` is set."""

    envelope: Envelope | None = None
    error: ItnioError | None = None
    #: Seconds the server asks every caller to wait (429 and 503 only).
    retry_after: float | None = None
    #: For a ``-16``: the server's Unix time by its ``Date`` header (``None`` without a
    #: usable one, or when a cache answered).
    server_time: float | None = None


def classify(raw: RawReply) -> Reply:
    """Read a reply: success envelope, vendor code, HTTP status, retry-after, clock."""
    status = raw.status
    if 300 <= status < 400:
        return Reply(error=_redirect_error(raw))
    if not 200 <= status < 300:
        retry_after = (
            parse_retry_after(raw.headers.get("retry-after"))
            if status in RETRY_AFTER_STATUSES
            else None
        )
        error_cls = RateLimitedError if status == 429 else ItnioHTTPError
        text = raw.body[:ERROR_BODY_BYTES].decode("utf-8", errors="replace")
        error = error_cls(status, text, reason=raw.reason, retry_after=retry_after)
        return Reply(error=error, retry_after=retry_after)
    try:
        return Reply(envelope=decode_envelope(raw.body, status))
    except TimestampExpiredError as exc:
        return Reply(error=exc, server_time=date_of(raw.headers))
    except ItnioError as exc:
        return Reply(error=exc)


def _redirect_error(raw: RawReply) -> ItnioHTTPError:
    # Never followed: the signing headers must not travel to whatever host a redirect
    # names, and a 301/302 would turn the POST into a GET. Only the host is named: the
    # rest of a Location may carry anything.
    try:
        host = httpx.URL(raw.headers.get("location", "")).host
    except httpx.InvalidURL:
        host = ""
    where = f"to {host}" if host else "on the same host"
    return ItnioHTTPError(
        raw.status,
        f"a redirect {where}, not followed (requests are never redirected, so that the "
        "signing headers stay with the vendor): point base_url at the new address",
        reason=raw.reason,
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a finite number, or an HTTP date measured from now."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = parse_http_date(value)
        return None if when is None else max(0.0, when - time.time())
    # "nan" and "inf" parse as floats but are no wait a server can mean.
    return max(0.0, seconds) if math.isfinite(seconds) else None


def outcome_label(exc: BaseException) -> str:
    """A short, low-cardinality label for how an attempt failed (for logs and metrics)."""
    if isinstance(exc, ItnioAPIError):
        return f"vendor:{exc.code}"
    if isinstance(exc, ItnioHTTPError):
        return f"http:{exc.status_code}"
    if isinstance(exc, ItnioTransportError):
        return f"transport:{type(exc.__cause__ or exc).__name__}"
    if isinstance(exc, MalformedResponseError):
        return "malformed"
    return type(exc).__name__


class ServerFaultBurst:
    """Counts ``-18`` replies; on a burst, says how long every task should hold off.

    One ``-18`` is retried by its own call. Several within a second mean the vendor is
    struggling: pausing the shared limiter (for every process, with a shared one) backs
    everyone off together instead of each task hammering on its own. The pause starts at
    ``initial_backoff`` and doubles with each further fault, up to ``max_backoff``.
    """

    __slots__ = ("_policy", "_recent")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        # Loop times of the -18 replies of the last second.
        self._recent: deque[float] = deque()

    def note(self, now: float) -> float | None:
        """Count one ``-18`` seen at loop time ``now``; the pause to impose, if any."""
        recent = self._recent
        recent.append(now)
        while now - recent[0] > 1.0:
            recent.popleft()
        if len(recent) < SERVER_FAULT_BURST:
            return None
        return self._policy.backoff_ceiling(len(recent) - SERVER_FAULT_BURST + 1)

    @property
    def recent(self) -> int:
        """``-18`` replies within the last second, as last counted."""
        return len(self._recent)
