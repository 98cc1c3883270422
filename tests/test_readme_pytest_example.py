"""The README's pytest example, copied verbatim into a fresh project that installs the
built wheel, passes there: with nothing but pytest, and with pytest-asyncio (strict
mode, its default) installed beside it.

The fresh environment is a new venv holding only the wheel built from this checkout; the
wheel's dependencies (httpx, attrs, pytest...) are borrowed from the running environment
through a ``.pth`` line, so that the test stays offline and quick. That line adds the
running environment's packages as a plain path, whose own ``.pth`` files are not read, so
an editable install of the checkout there stays invisible: the test checks that the
package it runs is the wheel's.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from itnio_async.testing import pytest_plugin

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: The sentence of the README just before the example.
LEAD_IN = "The pytest plugin gives each test a fresh fake as the `itnio_fake` fixture:"


def readme_example() -> str:
    """The README's pytest example, exactly as written there."""
    text = README.read_text(encoding="utf-8")
    after = text.split(LEAD_IN, 1)
    assert len(after) == 2, "the README no longer introduces its pytest example that way"
    found = re.match(r"\s*```python\n(.*?)\n```", after[1], re.DOTALL)
    assert found, "no python block right after the README's pytest lead-in"
    return found.group(1) + "\n"


def test_the_readme_names_what_to_install() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Testing your code against the fake vendor", 1)[1].split("\n## ", 1)[0]
    assert 'pip install "itnio-async[testing]" pytest' in section


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel of this checkout installed, its dependencies borrowed."""
    base = tmp_path_factory.mktemp("fresh-env")
    wheels = base / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=120,
    )
    (wheel,) = wheels.glob("itnio_async-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "borrowed_dependencies.pth").write_text(
        "".join(f"{path}\n" for path in sorted(borrowed)), encoding="utf-8"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    where = subprocess.run(
        [str(python), "-c", "import itnio_async; print(itnio_async.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=base,
    ).stdout.strip()
    assert Path(where).is_relative_to(purelib), f"not the wheel's package: {where}"
    return python


@pytest.mark.parametrize(
    "plugins",
    [
        pytest.param([], id="with-pytest-asyncio-strict"),
        pytest.param(["-p", "no:asyncio", "-p", "no:anyio"], id="pytest-only"),
    ],
)
def test_the_readme_example_passes_in_a_fresh_project(
    fresh_python: Path, tmp_path: Path, plugins: list[str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_export.py").write_text(readme_example(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "COV"))}
    result = subprocess.run(
        [str(fresh_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"^1 passed", output, re.MULTILINE), output
    # pytest-asyncio warns at start-up about its own unset option, whatever the tests: only
    # a warning that pytest collected from the test run counts.
    assert "warnings summary" not in result.stdout, output
    if not plugins:  # pytest-asyncio beside it
        return
    assert "warning" not in output.lower(), output


class _Item:
    """What ``pytest_pyfunc_call`` reads of a test item."""

    def __init__(self, function: Any, fixtures: dict[str, Any], markers: tuple[str, ...] = ()):
        self.obj = function
        self.fixturenames = list(fixtures)
        self.funcargs = fixtures
        self._fixtureinfo = SimpleNamespace(argnames=tuple(fixtures))
        self._markers = markers

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name in self._markers else None


def test_the_plugin_runs_an_async_test_of_the_fixture_in_a_loop_of_its_own() -> None:
    ran: list[object] = []

    async def test(itnio_fake: object) -> None:
        ran.append(itnio_fake)
        await asyncio.sleep(0)

    fake = object()
    assert pytest_plugin.pytest_pyfunc_call(_Item(test, {"itnio_fake": fake})) is True
    assert ran == [fake]


@pytest.mark.parametrize(
    "case", ["sync", "no-fixture", "marked-asyncio", "marked-anyio", "anyio-backend"]
)
def test_the_plugin_leaves_other_tests_to_pytest_and_their_plugins(case: str) -> None:
    async def coroutine_test(**_: object) -> None:
        raise AssertionError("must not run here")

    def sync_test(**_: object) -> None:
        raise AssertionError("must not run here")

    fixtures: dict[str, Any] = {"itnio_fake": object()}
    markers: tuple[str, ...] = ()
    function: Any = coroutine_test
    if case == "sync":
        function = sync_test
    elif case == "no-fixture":
        fixtures = {"tmp_path": object()}
    elif case == "marked-asyncio":
        markers = ("asyncio",)
    elif case == "marked-anyio":
        markers = ("anyio",)
    else:
        fixtures["anyio_backend"] = "asyncio"
    item = _Item(function, fixtures, markers)
    assert pytest_plugin.pytest_pyfunc_call(item) is None
