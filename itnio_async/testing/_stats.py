"""What the fake vendor saw: :class:`FakeStats`."""

from __future__ import annotations

from collections import Counter

__all__ = ["FakeStats"]


class FakeStats:
    """Counters of the requests a :class:`~itnio_async.testing.FakeVendor` received.

    Every request that reached the fake counts, whatever its answer (faults, rate
    limiting, bad paths included).

    Attributes:
        requests: how many requests arrived.
        per_page: ``Counter`` of the ``current`` page each request body asked for.
        in_flight: requests being answered right now.
        max_in_flight: the most requests answered at once since the last reset.
        arrival_times: the monotonic arrival time of each request, in arrival order.
        codes: ``Counter`` of answers: the vendor ``code`` (an ``int``, e.g. ``0``,
            ``-16``) for HTTP 200 answers, else the HTTP status (``429``, ``502``...),
            or ``"drop"`` for a dropped connection.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.per_page: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrival_times: list[float] = []
        self.codes: Counter[int | str] = Counter()

    def reset(self) -> None:
        """Forget everything counted so far (requests still in flight stay in flight)."""
        self.requests = 0
        self.per_page.clear()
        self.max_in_flight = self.in_flight
        self.arrival_times.clear()
        self.codes.clear()

    def max_in_any_second(self) -> int:
        """The most arrivals in any window ``[t, t + 1.0)`` seconds."""
        times = sorted(self.arrival_times)
        best = 0
        first = 0
        for last, arrival in enumerate(times):
            while arrival - times[first] >= 1.0:
                first += 1
            best = max(best, last - first + 1)
        return best

    def arrive(self, now: float) -> int:
        """Count a new request arriving at monotonic time ``now``; return its number (1-based)."""
        self.requests += 1
        self.arrival_times.append(now)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self.requests

    def finish(self, answer: int | str) -> None:
        """Count the answer of a request that is no longer in flight."""
        self.in_flight -= 1
        self.codes[answer] += 1

    def __repr__(self) -> str:
        return (
            f"FakeStats(requests={self.requests}, in_flight={self.in_flight}, "
            f"max_in_flight={self.max_in_flight}, codes={dict(self.codes)!r})"
        )
