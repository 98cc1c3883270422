"""Every error the client raises for a fault of the vendor, the network or its own state.

Bad arguments are not faults: they raise the built-in ``ValueError`` or ``TypeError``
before any request is sent, with a message that names the argument.

The tree; the last column is ``transient`` (what the retry policy retries)::

    ItnioError                    root: catch this to catch everything below
    ├── ItnioAPIError             the vendor answered with a non-zero ``code``        no
    │   ├── AuthenticationError       -1  wrong key or signature                      no
    │   ├── IPRestrictedError         -2  caller's IP not allowed                     no
    │   ├── TimestampExpiredError    -16  clock skew outlasted the correction         yes
    │   ├── VendorServerError        -18  "port program unusual"                      yes
    │   └── InvalidParameterError    -22  the vendor refused the body                 no
    ├── ItnioHTTPError            an HTTP status other than 200: 429, 500, 502,
    │   │                         503, 504 (``RETRYABLE_HTTP_STATUSES``) yes, else    no
    │   └── RateLimitedError          429, with ``retry_after`` if sent               yes
    ├── ItnioTransportError       refused, reset or dropped, bad protocol             yes
    │   └── ItnioTimeoutError         connect, read, write or pool timeout            yes
    ├── MalformedResponseError    a reply we cannot read (not JSON, an HTML page,
    │                             fields missing or wrongly typed), or one that
    │                             contradicts itself or the request                   no
    ├── ClientStateError          the client is closed, or used from another loop     no
    ├── LimiterUnavailableError   a shared limiter's store (Redis) cannot be used     no
    ├── LimiterTimeoutError       no token within the limiter's ``max_wait``          no
    └── ResultUnstableError       the result kept changing under a stream beyond a
                                  bounded number of re-reads                          no

Every error says whether it is transient, as ``transient``: true when the same request may
well succeed if simply tried again later, which is exactly what the retry policy retries
(a class-level default; ``ItnioHTTPError`` sets it from its status). The limiter errors
are not: going on without a shared limit would break it, and a limiter's own ``max_wait``
already bounds its wait.

Errors raised after retries carry ``attempts``, the number of requests made for the call;
errors raised by a record stream also carry ``page``, the page to resume from with
``start_page=``, and ``resume_from``, the stream's own cursor (``None`` elsewhere). The
underlying exception (``httpx``, ``json``, ``cattrs``, ``redis``) is chained as
``__cause__``. No error holds the API secret or a request's ``Sign`` header.
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
    "LimiterTimeoutError",
    "LimiterUnavailableError",
    "MalformedResponseError",
    "RateLimitedError",
    "ResultUnstableError",
    "TimestampExpiredError",
    "VendorServerError",
]

#: HTTP statuses that a proxy or an overloaded server answers and that pass with time.
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})

#: How much of a reply body an error keeps, so a huge HTML page does not flood a log.
BODY_EXCERPT_CHARS = 200


def shorten(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ItnioError(Exception):
    """Root of every error that the client raises for a fault (not for bad arguments).

    Args:
        message: what happened, in one line; ``str(error)`` adds the page and the attempts
            when they are known.

    Attributes:
        transient: whether the fault may pass if the request is simply made again (the
            retry policy retries exactly these).
        attempts: requests made for the call that failed, retries included, or ``None``.
        page: for a record stream in offset mode, the page to pass as ``start_page=``.
        resume_from: for a record stream, its ``StreamCursor`` at the failure, to pass as
            ``resume_from=``; ``None`` elsewhere.
    """

    #: Whether the fault may pass if the request is simply made again (the retry policy
    #: retries exactly these). A class-level default; a subclass may set it per instance.
    transient: bool = False
    #: Requests made for the call that failed, retries included (``None`` if not known).
    attempts: int | None
    #: For a record stream in offset mode: the page to pass as ``start_page=`` to resume.
    page: int | None
    #: For a record stream: its ``StreamCursor`` at the failure, to pass as ``resume_from=``
    #: (``None`` elsewhere). Typed ``Any`` here because cursors live in a higher layer.
    resume_from: Any = None

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
    """The vendor answered with a non-zero ``code``; ``code`` is always an ``int``.

    Args:
        code: the vendor's code (``-1``, ``-22``...), kept as ``.code``.
        msg: the vendor's message, kept as ``.msg`` (may be empty).
        status_code: the HTTP status the reply came with (default 200).
    """

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

    transient = True

    #: Whether the reply's ``Date`` corrected our clock (the retry then goes at once).
    clock_corrected: bool = False


class VendorServerError(ItnioAPIError):
    """``-18`` ("port program unusual"): a transient fault on the vendor's side."""

    transient = True


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
    """The server answered with an HTTP status other than 200.

    Args:
        status_code: the HTTP status, kept as ``.status_code``; 429 and 500, 502, 503,
            504 are transient.
        body: the reply body; only its start (200 characters, whitespace collapsed) is
            kept, as ``.body``.
        reason: the HTTP reason phrase, for the message (default none).
        retry_after: the server's ``Retry-After`` in seconds, when it sent one (default
            ``None``), kept as ``.retry_after``.
    """

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
        #: 429 and the 5xx that pass with time are transient; 501 and the 4xx are not.
        self.transient = status_code in RETRYABLE_HTTP_STATUSES


class RateLimitedError(ItnioHTTPError):
    """HTTP 429: the server asks us to slow down; ``retry_after`` is its hint in seconds."""

    transient = True


class ItnioTransportError(ItnioError):
    """The request did not complete: connection refused, reset or dropped, bad protocol."""

    transient = True


class ItnioTimeoutError(ItnioTransportError):
    """The request timed out (connect, read, write, or waiting for a pooled connection)."""


class MalformedResponseError(ItnioError):
    """The reply cannot be read as the vendor's envelope: not JSON, or fields missing/wrong,
    or a reply that contradicts itself or the request.

    Args:
        reason: what is wrong with it, kept as ``.reason``.
        status_code: the reply's HTTP status.
        body: the reply body; only its start is kept, as ``.body``.
    """

    def __init__(self, reason: str, *, status_code: int, body: str) -> None:
        excerpt = shorten(body)
        super().__init__(f"malformed reply (HTTP {status_code}): {reason}; body: {excerpt!r}")
        self.reason = reason
        self.status_code = status_code
        #: The start of the reply body, whitespace collapsed.
        self.body = excerpt


class ClientStateError(ItnioError, RuntimeError):
    """The client cannot serve the call: it is closed, or bound to another event loop."""


class LimiterUnavailableError(ItnioError):
    """A shared limiter's store (Redis) could not be used; its error is ``__cause__``.

    Raised by ``itnio_async.redis.RedisRateLimiter`` without a ``fallback``, so a worker
    never goes on without the limit that it shares with the others. Not transient: the
    retry policy does not wait out an outage of the limiter's store.
    """


class LimiterTimeoutError(ItnioError):
    """No token could be had within the limiter's ``max_wait``; nothing was taken.

    Args:
        message: what happened.
        max_wait: the limit that was reached, in seconds, kept as ``.max_wait``.
    """

    def __init__(self, message: str, *, max_wait: float) -> None:
        super().__init__(message)
        #: The limit that was reached, in seconds.
        self.max_wait = max_wait


class ResultUnstableError(ItnioError):
    """The result kept changing under a stream beyond a bounded number of re-reads.

    Not transient in the retry policy's sense (retrying one request does not help); a
    later run, or a window whose tasks no longer change (an end in the past), does.
    """
