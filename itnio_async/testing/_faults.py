"""Faults the fake vendor can inject: :class:`Fault` values and the :class:`FaultPlan`.

A fault replaces the normal answer to one request (except :meth:`Fault.delay`,
which only adds latency before the normal answer)::

    FaultPlan(
        by_request={1: Fault.code(-18)},               # the 1st request to arrive
        by_page={3: [Fault.http(502, html=True),        # the 1st request for page 3
                     Fault.drop()]},                    # the 2nd request for page 3
    )
    FaultPlan.random(seed=7, probability=0.1)           # seeded chance per request

Precedence for one request: ``by_request``, then the next unused ``by_page`` fault
of its page, then the seeded random draw. Everything is deterministic given the
plan and the arrival order of requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

import attrs

from . import _rng

__all__ = ["DEFAULT_RANDOM_KINDS", "Fault", "FaultKind", "FaultPlan"]

#: The kinds of fault: a vendor code in HTTP 200, an HTTP error status, a dropped
#: connection, or extra latency.
FaultKind = Literal["code", "http", "drop", "delay"]

_RANDOM_STREAM: Final = 1_000  # hash stream of the "does this request fail" draw
_KIND_STREAM: Final = 1_001  # hash stream of the "which fault" draw


@attrs.frozen
class Fault:
    """One injected fault; build it with :meth:`code`, :meth:`http`, :meth:`drop`, :meth:`delay`.

    Attributes (also the constructor's arguments, in this order):
        kind:
        vendor_code: the vendor code of a ``code`` fault (an ``int``, or a ``str`` sent
            verbatim) Default ``None``.
        msg: the ``msg`` of a ``code`` fault (``None``: the vendor's standard message) Default
            ``None``.
        status: the HTTP status of an ``http`` fault Default ``None``.
        retry_after: a ``Retry-After`` header: seconds (rounded up) or a string sent verbatim
            Default ``None``.
        html: answer an ``http`` fault with nginx's HTML error page instead of JSON Default
            ``False``.
        seconds: the extra latency of a ``delay`` fault, in seconds Default ``0.0``.
    """

    kind: FaultKind
    #: the vendor code of a ``code`` fault (an ``int``, or a ``str`` sent verbatim)
    vendor_code: int | str | None = None
    #: the ``msg`` of a ``code`` fault (``None``: the vendor's standard message)
    msg: str | None = None
    #: the HTTP status of an ``http`` fault
    status: int | None = None
    #: a ``Retry-After`` header: seconds (rounded up) or a string sent verbatim
    retry_after: float | str | None = None
    #: answer an ``http`` fault with nginx's HTML error page instead of JSON
    html: bool = False
    #: the extra latency of a ``delay`` fault, in seconds
    seconds: float = 0.0

    @classmethod
    def code(cls, code: int | str, msg: str | None = None) -> Fault:
        """Answer HTTP 200 with ``{"code": code, "msg": msg, "data": null}``.

        ``Fault.code(-18)`` is the vendor's transient "port program unusual";
        ``Fault.code(-16)`` a timestamp refusal; any code works.
        """
        return cls("code", vendor_code=code, msg=msg)

    @classmethod
    def http(
        cls, status: int, *, retry_after: float | str | None = None, html: bool = False
    ) -> Fault:
        """Answer with an HTTP error ``status`` as a proxy or framework would.

        ``html=True`` sends nginx's HTML error page (``Fault.http(502, html=True)``);
        otherwise a Spring-style JSON error body. ``retry_after`` adds a
        ``Retry-After`` header (``Fault.http(429, retry_after=1.0)``).
        """
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        return cls("http", status=status, retry_after=retry_after, html=html)

    @classmethod
    def drop(cls) -> Fault:
        """Drop the connection mid-response: headers and part of the body, then a close.

        An httpx client sees ``httpx.RemoteProtocolError`` both in-process (through
        :meth:`FakeVendor.transport`) and served on loopback.
        """
        return cls("drop")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` more, then answer normally (to trip a client's timeout)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return cls("delay", seconds=seconds)


#: What :meth:`FaultPlan.random` injects by default: the transient faults a client
#: must retry through, none of which makes it wait long.
DEFAULT_RANDOM_KINDS: Final[tuple[Fault, ...]] = (
    Fault.code(-18),
    Fault.http(502, html=True),
    Fault.http(503),
    Fault.drop(),
)


def _by_request(value: Mapping[int, Fault] | None) -> dict[int, Fault]:
    return dict(value or {})


def _by_page(value: Mapping[int, Fault | Iterable[Fault]] | None) -> dict[int, tuple[Fault, ...]]:
    pages: dict[int, tuple[Fault, ...]] = {}
    for page, faults in (value or {}).items():
        pages[page] = (faults,) if isinstance(faults, Fault) else tuple(faults)
    return pages


def _kinds(value: Iterable[Fault]) -> tuple[Fault, ...]:
    return tuple(value)


@attrs.frozen
class FaultPlan:
    """Which requests fail and how; a pure description (a fake keeps its own cursor).

    - ``by_request``: ``{n: fault}`` for the ``n``-th request to arrive (1-based,
      every request that reaches the fake counts).
    - ``by_page``: ``{page: [fault, ...]}``; successive requests for that ``current``
      page consume the faults in order; later requests for it are answered normally.
    - ``probability``/``seed``/``kinds``: every other request fails with this
      probability, with a fault picked from ``kinds``, both drawn from ``seed`` and
      the request's arrival number (see :meth:`random`).
    """

    by_request: dict[int, Fault] = attrs.field(factory=dict, converter=_by_request)
    by_page: dict[int, tuple[Fault, ...]] = attrs.field(factory=dict, converter=_by_page)
    probability: float = 0.0
    seed: int = 0
    kinds: tuple[Fault, ...] = attrs.field(default=DEFAULT_RANDOM_KINDS, converter=_kinds)

    def __attrs_post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.probability > 0 and not self.kinds:
            raise ValueError("kinds must not be empty when probability > 0")

    @classmethod
    def random(
        cls,
        seed: int,
        probability: float = 0.1,
        kinds: Iterable[Fault] = DEFAULT_RANDOM_KINDS,
    ) -> FaultPlan:
        """Fail each request with ``probability``, choosing among ``kinds``, seeded by ``seed``.

        The draw for request ``n`` depends only on ``(seed, n)``, so a run is
        reproducible whatever the timing.
        """
        return cls(probability=probability, seed=seed, kinds=kinds)

    def random_fault(self, n: int) -> Fault | None:
        """The seeded random fault for the ``n``-th request, if it draws one."""
        if self.probability <= 0.0:
            return None
        if _rng.unit(_rng.stream_key(self.seed, _RANDOM_STREAM), n) >= self.probability:
            return None
        return self.kinds[_rng.draw(_rng.stream_key(self.seed, _KIND_STREAM), n) % len(self.kinds)]


class FaultCursor:
    """A fake's progress through a plan: how many ``by_page`` faults each page used."""

    def __init__(self, plan: FaultPlan | None) -> None:
        self.plan = plan
        self._used: dict[int, int] = {}  # page -> how many of its by_page faults were consumed

    def next_fault(self, n: int, page: int | None) -> Fault | None:
        """The fault for the ``n``-th request, asking for ``page`` (``None``: unknown page)."""
        plan = self.plan
        if plan is None:
            return None
        fault = plan.by_request.get(n)
        if fault is not None:
            return fault
        if page is not None:
            queue = plan.by_page.get(page, ())
            used = self._used.get(page, 0)
            if used < len(queue):
                self._used[page] = used + 1
                return queue[used]
        return plan.random_fault(n)
