"""Replies that lie: :class:`Lies`, a description of how a fake bends a correct page.

A client that trusts ``size``, ``current``, ``total`` or ``pages`` blindly, or takes
a short or empty page for the end, loses records against a server that misreports
them. Each lie is switched on alone, and any number combine::

    fake.lies = Lies(cap_size=50)                  # serve at most 50, and say size: 50
    fake.lies = Lies(fixed_page=True)              # page 1 for every page, current: 1
    fake.lies = Lies(fixed_page=True, lie_current=True)  # ... but current: <asked>
    fake.lies = Lies(total=10**9)                  # a huge total, empty pages beyond
    fake.lies = Lies(empty_pages={3})              # page 3 empty, the real total
    fake.lies = Lies(half_pages={3})               # page 3 half full, the real total
    fake.lies = Lies(pages=1)                      # ``pages`` that disagrees with total
    fake.lies = Lies(total=0, requests={2})        # only the 2nd request lies

Lies bend a page the dataset answered correctly; they never change the data, so
:meth:`FakeVendor.expected` still tells what a correct client must end up with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

__all__ = ["Lies", "LiesPredicate"]

#: ``when(n, body)``: whether request ``n`` (1-based arrival order), with its parsed
#: JSON body, is lied to.
LiesPredicate = Callable[[int, dict[str, Any]], bool]

_T = TypeVar("_T")


def _page_set(value: Iterable[int]) -> frozenset[int]:
    return frozenset(value)


def _request_set(value: Iterable[int] | None) -> frozenset[int] | None:
    return None if value is None else frozenset(value)


@attrs.frozen
class Lies:
    """How a fake vendor misreports a page; every field off by default.

    - ``cap_size``: serve pages of at most this many records and say so (``size``
      is the capped size; the offset and ``pages`` follow it), as a server with a
      page-size limit does; ``None``: no cap.
    - ``fixed_page``: answer page 1 whatever ``current`` asks, saying ``current: 1``,
      or, with ``lie_current``, saying the ``current`` that was asked.
    - ``total``: say this ``total`` (and ``pages`` from it) instead of the real one;
      pages past the real data come back empty.
    - ``empty_pages``: these page numbers (as asked) come back with no records but
      the real ``total``.
    - ``half_pages``: these page numbers come back with the first half (rounded
      down) of their records; the rest are not served on any page.
    - ``pages``: say this ``pages`` whatever the total.
    - ``requests``: lie only to these request numbers (1-based arrival order);
      ``None``: to every request.
    - ``when``: lie only when ``when(n, body)`` is true (and ``n`` is in
      ``requests``); ``None``: always.
    """

    cap_size: int | None = None
    fixed_page: bool = False
    lie_current: bool = False
    total: int | None = None
    empty_pages: frozenset[int] = attrs.field(default=frozenset(), converter=_page_set)
    half_pages: frozenset[int] = attrs.field(default=frozenset(), converter=_page_set)
    pages: int | None = None
    requests: frozenset[int] | None = attrs.field(default=None, converter=_request_set)
    when: LiesPredicate | None = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.cap_size is not None and self.cap_size < 1:
            raise ValueError("cap_size must be >= 1 (or None for no cap)")
        if self.lie_current and not self.fixed_page:
            raise ValueError("lie_current needs fixed_page: only a fixed page can lie about it")
        if self.total is not None and self.total < 0:
            raise ValueError("total must be >= 0")
        if self.pages is not None and self.pages < 0:
            raise ValueError("pages must be >= 0")
        if any(page < 1 for page in self.empty_pages | self.half_pages):
            raise ValueError("page numbers start at 1")

    def applies(self, n: int, body: dict[str, Any]) -> bool:
        """Whether request ``n`` with this parsed ``body`` is lied to."""
        if self.requests is not None and n not in self.requests:
            return False
        return self.when is None or bool(self.when(n, body))

    def serve(
        self, current: int, size: int, page: Callable[[int, int], tuple[int, list[_T]]]
    ) -> tuple[list[_T], dict[str, int]]:
        """Answer page ``current`` of ``size``, reading true pages through ``page``.

        ``page(current, size)`` returns the dataset's ``(total, records)``. The result
        is the records to send and the ``total``, ``size``, ``current`` and ``pages``
        to say. ``Lies()`` answers the truth.
        """
        size_said = size if self.cap_size is None else min(size, self.cap_size)
        total, records = page(1 if self.fixed_page else current, size_said)
        if current in self.empty_pages:
            records = []
        elif current in self.half_pages:
            records = records[: len(records) // 2]
        total_said = total if self.total is None else self.total
        said = {
            "total": total_said,
            "size": size_said,
            "current": 1 if self.fixed_page and not self.lie_current else current,
            "pages": -(-total_said // size_said) if self.pages is None else self.pages,
        }
        return records, said
