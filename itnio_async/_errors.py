"""Every error the client raises for a fault of the vendor, the network or its own state.

Bad arguments are not faults: they raise the built-in ``ValueError`` or ``TypeError``
before any request is sent, with a message that names the argument.

The tree::

    ItnioError                      root: catch this to catch everything below
    ├── ItnioAPIError               the vendor answered with a non-zero ``code``
    │   ├── AuthenticationError         -1   wrong key or signature (not retried)
    │   ├── IPRestrictedError           -2   caller's IP not allowed (not retried)
    │   ├── TimestampExpiredError      -16   clock skew outlasted the correction (retried)
    │   ├── VendorServerError          -18   "port program unusual" (retried)
    │   └── InvalidParameterError      -22   the vendor refused the body (not retried)
    ├── ItnioHTTPError              an HTTP status other than 200 (429 and 5xx are retried)
    │   └── RateLimitedError            429, with ``retry_after`` when the server sent one
    ├── ItnioTransportError         the connection failed: refused, dropped, protocol error
    │   └── ItnioTimeoutError           connect, read, write or pool timeout
    ├── MalformedResponseError      a reply we cannot read: not JSON, an HTML page,
    │                               missing or wrongly typed fields, or one that
    │                               contradicts itself or the request
    ├── ResultUnstableError         a stream's result kept changing beyond a bounded
    │                               number of re-reads
    └── ClientStateError            the client is closed, or used from a second event loop

Errors raised after retries carry ``attempts``, the number of requests made for the call;
errors raised by a record stream also carry ``resume_from``, the stream's cursor to pass
as ``resume_from=`` to go on exactly where it stopped (and, in offset mode, ``page``,
the page to resume from with ``start_page=``). The underlying exception (``httpx``,
``json``, ``cattrs``) is chained as ``__cause__``. No error holds the API secret or a
request's ``Sign`` header.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "ClientStateError",
    "IPRestrictedError",
    "InvalidParameterError",
    "ItnioAPIError",
    "ItnioError",
    "ItnioHTTPError",
    "ItnioTimeoutError",
    "ItnioTransportError",
    "LimiterUnavailableError",
    "MalformedResponseError",
    "RateLimitedError",
    "ResultUnstableError",
    "TimestampExpiredError",
    "VendorServerError",
]

#: How much of a reply body an error keeps, so a huge HTML page does not flood a log.
BODY_EXCERPT_CHARS = 200


def shorten(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ItnioError(Exception):
    """Root of every error that the client raises for a fault (not for bad arguments)."""

    #: Requests made for the call that failed, retries included (``None`` if not known).
    attempts: int | None
    #: For a record stream in offset mode: the page to pass as ``start_page=`` to resume.
    page: int | None
    #: For a record stream: its cursor when it stopped, to pass as ``resume_from=``.
    resume_from: Any

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = None
        self.page = None
        self.resume_from = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments than the message: rebuild from the
        # attributes, so errors survive pickling (process pools, logging queues) and copy.
        return (_restore, (type(self), self.args, self.__dict__.copy()))

    def __str__(self) -> str:
        extra = []
        if self.page is not None:
            extra.append(f"page {self.page}")
        if self.attempts is not None:
            extra.append(f"after {self.attempts} attempt{'s' if self.attempts != 1 else ''}")
        return f"{self.message} ({', '.join(extra)})" if extra else self.message


def _restore(cls: type[ItnioError], args: tuple[Any, ...], state: dict[str, Any]) -> ItnioError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ItnioAPIError(ItnioError):
    """The vendor answered with a non-zero ``code``; ``code`` is always an ``int``."""

    def __init__(self, code: int, msg: str, *, status_code: int = 200) -> None:
        super().__init__(f"vendor error {code}: {msg or '(no message)'}")
        self.code = code
        self.msg = msg
        self.status_code = status_code


class AuthenticationError(ItnioAPIError):
    """``-1``: the API key is unknown or the signature does not match. Never retried."""


class IPRestrictedError(ItnioAPIError):
    """``-2``: the account does not accept requests from this IP address. Never retried."""


class TimestampExpiredError(ItnioAPIError):
    """``-16``: the vendor found our ``Timestamp`` stale, even after clock correction."""

    #: Whether the reply's ``Date`` corrected our clock (the retry then goes at once).
    clock_corrected: bool = False


class VendorServerError(ItnioAPIError):
    """``-18`` ("port program unusual"): a transient fault on the vendor's side."""


class InvalidParameterError(ItnioAPIError):
    """``-22``: the vendor refused the request's parameters. Never retried."""


#: The documented codes and their classes; any other code raises plain ``ItnioAPIError``.
API_ERRORS: dict[int, type[ItnioAPIError]] = {
    -1: AuthenticationError,
    -2: IPRestrictedError,
    -16: TimestampExpiredError,
    -18: VendorServerError,
    -22: InvalidParameterError,
}


def api_error(code: int, msg: str, *, status_code: int = 200) -> ItnioAPIError:
    """Build the typed error for a vendor ``code``."""
    return API_ERRORS.get(code, ItnioAPIError)(code, msg, status_code=status_code)


class ItnioHTTPError(ItnioError):
    """The server answered with an HTTP status other than 200."""

    def __init__(
        self, status_code: int, body: str, *, reason: str = "", retry_after: float | None = None
    ) -> None:
        label = f"HTTP {status_code}" + (f" {reason}" if reason else "")
        excerpt = shorten(body)
        super().__init__(f"{label}: {excerpt}" if excerpt else label)
        self.status_code = status_code
        #: The start of the reply body, whitespace collapsed.
        self.body = excerpt
        #: The server's ``Retry-After``, in seconds, when it sent one.
        self.retry_after = retry_after


class RateLimitedError(ItnioHTTPError):
    """HTTP 429: the server asks us to slow down; ``retry_after`` is its hint in seconds."""


class ItnioTransportError(ItnioError):
    """The request did not complete: connection refused, reset or dropped, bad protocol."""


class ItnioTimeoutError(ItnioTransportError):
    """The request timed out (connect, read, write, or waiting for a pooled connection)."""


class MalformedResponseError(ItnioError):
    """The reply cannot be read as the vendor's envelope: not JSON, or fields missing/wrong."""

    def __init__(self, reason: str, *, status_code: int, body: str) -> None:
        excerpt = shorten(body)
        super().__init__(f"malformed reply (HTTP {status_code}): {reason}; body: {excerpt!r}")
        self.reason = reason
        self.status_code = status_code
        #: The start of the reply body, whitespace collapsed.
        self.body = excerpt


class ResultUnstableError(ItnioError):
    """A stream's result kept changing under it (replicas that disagree, a task flapping
    in and out of the filter) beyond a bounded number of re-reads. ``resume_from`` tells
    where to go on once it settles."""


class ClientStateError(ItnioError, RuntimeError):
    """The client cannot serve the call: it is closed, or bound to another event loop."""


class LimiterUnavailableError(ItnioError):
    """The shared limiter's Redis could not be used; the ``redis`` error is ``__cause__``.

    Raised by :class:`RedisRateLimiter` without a ``fallback``, so a worker never goes on
    without the limit that it shares with the others.
    """
