"""The fake's package: independent of the client, with a deliberate public surface."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import itnio_async.testing

PACKAGE = Path(itnio_async.testing.__file__).parent


def test_the_fake_never_imports_the_client() -> None:
    """A fake that shares the client's code would share its bugs."""
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name} imports {node.module} from above"
                names = [node.module or ""] if node.level == 0 else []
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert name.split(".")[0] != "itnio_async" or name.startswith(
                    "itnio_async.testing"
                ), f"{path.name} imports {name}"


def test_every_public_name_is_owned_by_the_fakes_package() -> None:
    for name in itnio_async.testing.__all__:
        value = getattr(itnio_async.testing, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("itnio_async.testing"), name
    assert {"Churn", "ChurnEvent", "Pick", "Lies", "Order", "ReplicaOrder"} <= set(
        itnio_async.testing.__all__
    )
