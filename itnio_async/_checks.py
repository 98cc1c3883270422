"""Validators for the settings classes, to combine with attrs' own.

The bounds are attrs' (``ge``, ``gt``, ``le``, composed with ``optional`` and ``and_``):
they raise a ``ValueError`` that names the attribute. The kind of a value is checked here
instead of with ``attrs.validators.instance_of`` for two reasons: a bool is not a number
here (``True == 1``, and ``instance_of(int)`` takes it), and ``instance_of``'s
``TypeError`` carries the attribute and the type as further arguments, so that
``str(error)`` prints a tuple of attrs internals instead of one readable line. A number
must also be finite, which ``ge(0)`` does not say (it lets infinity through).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from attrs.validators import and_

__all__ = ["INTEGER", "NUMBER", "Validator", "finite", "kind_of"]

#: What attrs calls with ``(instance, attribute, value)``.
Validator = Callable[[Any, Any, Any], Any]


def kind_of(types: type | tuple[type, ...], what: str) -> Validator:
    """A validator: the value is one of ``types`` and not a bool (unless ``types`` has
    ``bool``); else a ``TypeError`` such as "burst must be an int, got float"."""
    allows_bool = bool in (types if isinstance(types, tuple) else (types,))

    def check(_instance: object, attribute: Any, value: object) -> None:
        if not isinstance(value, types) or (isinstance(value, bool) and not allows_bool):
            raise TypeError(f"{attribute.name} must be {what}, got {type(value).__name__}")

    return check


def finite(_instance: object, attribute: Any, value: float) -> None:
    """A validator: the number is neither infinite nor NaN."""
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


#: An ``int`` that is not a bool.
INTEGER: Validator = kind_of(int, "an int")
#: A finite ``int`` or ``float`` that is not a bool.
NUMBER: Validator = and_(kind_of((int, float), "a number"), finite)
