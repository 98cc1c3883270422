"""Hooks for metrics and tracing: what the client did, as small event objects.

Subclass :class:`ClientHooks`, override the methods you need, and pass an instance as
``AsyncVoiceClient(hooks=...)``. Each method is called on the event loop, synchronously,
right after the thing happened, so keep it quick (increment a counter, end a span). A hook
that raises is logged and ignored: metrics must never break a paging job.

The events carry no secret and no ``Sign``.
"""

from __future__ import annotations

import logging

import attrs

__all__ = ["AttemptEvent", "CallTally", "ClientHooks", "PageEvent", "RetryEvent"]

logger = logging.getLogger("itnio_async")


@attrs.define(slots=True)
class CallTally:
    """Counts that one caller (a stream, say) collects over the calls it makes."""

    #: Requests sent, retries included.
    attempts: int = 0
    #: Retries (attempts after the first of each call).
    retries: int = 0
    #: Seconds spent waiting for the rate limiter.
    limiter_wait: float = 0.0
    #: Seconds spent waiting for a connection slot (all the client's connections busy).
    slot_wait: float = 0.0


@attrs.frozen(slots=True)
class AttemptEvent:
    """One request sent (or that failed to be sent) and how it ended.

    Attributes (also the constructor's arguments, in this order):
        path: The endpoint's path.
        attempt: 1 for the first attempt of a call, 2 for its first retry, and so on.
        outcome: ``"ok"``, ``"vendor:<code>"``, ``"http:<status>"``,
            ``"transport:<ExceptionName>"``, or ``"malformed"``: a low-cardinality label for
            a metric.
        status_code: The HTTP status, when a reply came.
        duration: Seconds from sending to the end of the reply (or of the failure).
        limiter_wait: Seconds this attempt waited for the rate limiter before it was sent.
        slot_wait: Seconds this attempt waited, before that, for one of the client's
            connections. Default ``0.0``.
    """

    #: The endpoint's path.
    path: str
    #: 1 for the first attempt of a call, 2 for its first retry, and so on.
    attempt: int
    #: ``"ok"``, ``"vendor:<code>"``, ``"http:<status>"``, ``"transport:<ExceptionName>"``,
    #: or ``"malformed"``: a low-cardinality label for a metric.
    outcome: str
    #: The HTTP status, when a reply came.
    status_code: int | None
    #: Seconds from sending to the end of the reply (or of the failure).
    duration: float
    #: Seconds this attempt waited for the rate limiter before it was sent.
    limiter_wait: float
    #: Seconds this attempt waited, before that, for one of the client's connections.
    slot_wait: float = 0.0


@attrs.frozen(slots=True)
class RetryEvent:
    """A call will be retried.

    Attributes (also the constructor's arguments, in this order):
        path: The endpoint's path.
        attempt: The attempt that failed.
        reason: Why: the failed attempt's ``outcome`` (see ``AttemptEvent``).
        wait: Seconds the client will wait before the retry.
    """

    #: The endpoint's path.
    path: str
    #: The attempt that failed.
    attempt: int
    #: Why: the failed attempt's ``outcome`` (see ``AttemptEvent``).
    reason: str
    #: Seconds the client will wait before the retry.
    wait: float


@attrs.frozen(slots=True)
class PageEvent:
    """A stream accepted a page.

    Attributes (also the constructor's arguments, in this order):
        page: The page number.
        records: Records it yields from this page (repeats after a resync not counted).
        pages: Pages in the result, as last reported.
        total: Records in the result, as last reported.
    """

    #: The page number.
    page: int
    #: Records it yields from this page (repeats after a resync not counted).
    records: int
    #: Pages in the result, as last reported.
    pages: int
    #: Records in the result, as last reported.
    total: int


class ClientHooks:
    """Override any of these; the defaults do nothing."""

    def on_attempt(self, event: AttemptEvent) -> None:
        """A request ended (success or failure): ``event``, an ``AttemptEvent``, says how.
        Returns nothing; an exception it raises is logged and ignored."""

    def on_retry(self, event: RetryEvent) -> None:
        """A failed attempt will be retried after ``event.wait`` seconds (``event``: a
        ``RetryEvent``). Returns nothing; an exception it raises is logged and ignored."""

    def on_clock_offset(self, offset: float) -> None:
        """The learned offset of the vendor's clock changed: ``offset``, in seconds, is how
        far it is ahead of ours. Returns nothing; an exception is logged and ignored."""

    def on_page(self, event: PageEvent) -> None:
        """A stream accepted a page (``event``: a ``PageEvent``). Returns nothing; an
        exception it raises is logged and ignored."""


def call_hook(hooks: ClientHooks | None, name: str, arg: object) -> None:
    """Call ``hooks.<name>(arg)``; log and swallow what it raises."""
    if hooks is None:
        return
    try:
        getattr(hooks, name)(arg)
    except Exception:
        logger.warning("the %s hook raised; ignored", name, exc_info=True)
