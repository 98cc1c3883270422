"""The group-call query's arguments: checked, converted to the server's zone, and put on
the wire. Pure code with no I/O, so that every rule is tested alone and every bad argument
is refused before a request is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

import attrs
from attrs.validators import ge, optional

from ._checks import INTEGER, Validator, kind_of
from ._converter import format_wire_time
from ._models import GroupCallStatus

__all__ = ["MAX_PAGE_SIZE", "GroupCallQuery", "check_page", "check_positive_int"]

#: The vendor's largest page.
MAX_PAGE_SIZE = 100

_APP_ID: Validator = optional([INTEGER, ge(0)])
_SEARCH: Validator = optional(kind_of(str, "a str"))


def check_positive_int(
    name: str, value: object, *, minimum: int = 1, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an ``int`` in range, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_page(page: object, size: object) -> tuple[int, int]:
    """Check a page number (from 1) and a page size (1..100)."""
    return (
        check_positive_int("page", page),
        check_positive_int("size", size, maximum=MAX_PAGE_SIZE),
    )


def _to_server_time(name: str, value: object, server_timezone: tzinfo | None) -> datetime:
    """A naive datetime in the server's zone, as the wire wants it.

    A naive value is taken to be in the server's zone already and sent as it is. An aware
    value is converted to ``server_timezone``; without one we cannot know the server's
    zone, and guessing would shift the window silently, so it is refused.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=None, microsecond=0)
    if server_timezone is None:
        raise ValueError(
            f"{name} is timezone-aware but the client has no server_timezone: pass a naive "
            "datetime in the vendor's zone, or set AsyncVoiceClient(server_timezone=...)"
        )
    return value.astimezone(server_timezone).replace(tzinfo=None, microsecond=0)


def _check_statuses(statuses: object) -> tuple[int, ...]:
    """The statuses as distinct numbers in their first order; see ``GroupCallStatus.parse``."""
    if statuses is None:
        return ()
    if isinstance(statuses, str | bytes | int) or not isinstance(statuses, Iterable):
        raise TypeError(
            "statuses must be an iterable of GroupCallStatus, int or str, got "
            f"{type(statuses).__name__}"
        )
    values: list[int] = []
    for status in statuses:
        try:
            number = int(GroupCallStatus.parse(status))
        except TypeError:
            raise TypeError(
                "statuses must hold GroupCallStatus, int or str values, got "
                f"{type(status).__name__}"
            ) from None
        except ValueError as exc:
            raise ValueError(f"statuses: {exc}") from None
        if number not in values:
            values.append(number)
    return tuple(values)


@attrs.frozen(slots=True)
class GroupCallQuery:
    """A checked group-call query, its times already naive in the server's zone.

    ``build`` checks and converts the caller's arguments; the fields' validators hold for
    every query however it is made (``build``, ``with_end``, ``attrs.evolve``).
    """

    #: Window start, inclusive, naive in the server's zone.
    start: datetime = attrs.field(validator=kind_of(datetime, "a datetime"))
    #: Window end, inclusive, naive in the server's zone.
    end: datetime = attrs.field(validator=kind_of(datetime, "a datetime"))
    #: Status values to keep; empty keeps all.
    statuses: tuple[int, ...] = ()
    #: Application id filter.
    app_id: int | None = attrs.field(default=None, validator=_APP_ID)
    #: The vendor's fuzzy search text.
    search: str | None = attrs.field(default=None, validator=_SEARCH)

    @classmethod
    def build(
        cls,
        start: object,
        end: object,
        *,
        statuses: object = None,
        app_id: object = None,
        search: object = None,
        server_timezone: tzinfo | None = None,
    ) -> GroupCallQuery:
        """Check every argument and build the query, or raise naming the bad argument."""
        wire_start = _to_server_time("start", start, server_timezone)
        wire_end = _to_server_time("end", end, server_timezone)
        if wire_end < wire_start:
            raise ValueError(f"end ({wire_end}) is before start ({wire_start})")
        if isinstance(search, str) and not search.isascii():
            try:
                search.encode()
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"search holds a lone surrogate at position {exc.start}: not text"
                ) from None
        return cls(
            wire_start,
            wire_end,
            _check_statuses(statuses),
            app_id,  # type: ignore[arg-type]  # checked by the field's validator
            None if search == "" else search,  # type: ignore[arg-type]  # likewise
        )

    def with_end(self, end: datetime) -> GroupCallQuery:
        """The same query with another (naive, server-zone) end."""
        return attrs.evolve(self, end=end)

    def with_window(self, start: datetime, end: datetime) -> GroupCallQuery:
        """The same filters over another (naive, server-zone) window."""
        return attrs.evolve(self, start=start, end=end)

    def filters(self) -> dict[str, Any]:
        """The filters apart from the window, JSON-ready (what a stream cursor carries)."""
        # Sorted: the same set of statuses in another order is the same filter.
        return {"statuses": sorted(self.statuses), "app_id": self.app_id, "search": self.search}

    def body(self, page: int, size: int) -> dict[str, Any]:
        """The request body for one page, as the vendor documents it."""
        params: dict[str, Any] = {
            "strTime": format_wire_time(self.start),
            "endTime": format_wire_time(self.end),
            "statusList": list(self.statuses),
        }
        if self.app_id is not None:
            params["idxAppId"] = self.app_id
        if self.search is not None:
            params["searchCondition"] = self.search
        return {"current": page, "size": size, "params": params}
