"""Every public callable documents itself: ``help()`` and an IDE show what each argument
is, not one line pointing elsewhere.

Walks the ``__all__`` of each public module: every function and class has a docstring;
every argument of a function, of a class's constructor (in the class's or
``__init__``'s docstring) and of each public method and property defined in the package
is named in its docstring. (Type aliases such as ``FaultKind`` are documented by their
``#:`` comments and are not callables of their own.)
"""

from __future__ import annotations

import enum
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

MODULES = ["itnio_async", "itnio_async.redis", "itnio_async.testing", "itnio_async.cli"]


def documented_parameters(function: Callable[..., Any]) -> list[str]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return []
    return [
        p.name
        for p in signature.parameters.values()
        if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def own_members(cls: type) -> Iterator[tuple[str, Any]]:
    """The public methods and properties that the package itself defines on ``cls``."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("itnio_async"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or isinstance(member, type):
                continue
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if isinstance(member, property) or inspect.isfunction(member):
                yield f"{klass.__name__}.{name}", member


def public_callables() -> Iterator[tuple[str, Any]]:
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module_name}.{name}", obj


def problems_of(qualified: str, obj: Any) -> list[str]:
    problems: list[str] = []
    if not (obj.__doc__ or "").strip():
        return [f"{qualified}: no docstring"]
    if inspect.isfunction(obj):
        missing = [p for p in documented_parameters(obj) if p not in obj.__doc__]
        if missing:
            problems.append(f"{qualified}: arguments not documented: {missing}")
        return problems
    if issubclass(obj, enum.Enum):
        return problems
    init = obj.__dict__.get("__init__")
    init_doc = obj.__doc__ + ((init.__doc__ or "") if init is not None else "")
    if init is not None or hasattr(obj, "__attrs_attrs__"):
        missing = [p for p in documented_parameters(obj) if p not in init_doc]
        if missing:
            problems.append(f"{qualified}(): arguments not documented: {missing}")
    seen: set[str] = set()
    for name, member in own_members(obj):
        short = name.split(".", 1)[1]
        if short in seen:
            continue  # overridden lower in the MRO: the override was checked
        seen.add(short)
        function = member.fget if isinstance(member, property) else member
        doc = function.__doc__ or ""
        if not doc.strip():
            problems.append(f"{qualified}.{short}: no docstring")
        elif not isinstance(member, property):
            missing = [p for p in documented_parameters(function) if p not in doc]
            if missing:
                problems.append(f"{qualified}.{short}: arguments not documented: {missing}")
    return problems


def test_every_public_callable_documents_its_arguments() -> None:
    problems = [problem for name, obj in public_callables() for problem in problems_of(name, obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "name",
    ["__init__", "query_group_calls", "iter_group_calls", "iter_group_call_pages"],
)
def test_the_client_says_what_it_raises_and_returns(name: str) -> None:
    from itnio_async import AsyncVoiceClient

    doc = (
        (AsyncVoiceClient.__doc__ or "")
        if name == "__init__"
        else getattr(AsyncVoiceClient, name).__doc__
    )
    assert doc is not None
    assert "Raises:" in doc
    if name != "__init__":
        assert "Returns:" in doc
