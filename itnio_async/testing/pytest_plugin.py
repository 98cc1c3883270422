"""A pytest plugin with the ``itnio_fake`` fixture: a fresh :class:`FakeVendor` per test.

Enable it with the ``pytest11`` entry point the package declares, or in a
``conftest.py``::

    pytest_plugins = ["itnio_async.testing.pytest_plugin"]

Then::

    async def test_my_app_reads_every_task(itnio_fake):
        transport = itnio_fake.transport()
        ...  # key "test-key", secret "test-secret"
        assert seen == itnio_fake.expected("2024-01-01 00:00:00", "2024-07-01 00:00:00")

The fixture's dataset is ``Dataset.generate(ITNIO_FAKE_TASKS, seed=0)`` (tasks created
between 2024-01-01 and 2024-07-01 across apps 1, 2 and 3), with no faults, no rate
limit and no latency; change any of them on the fixture in the test.

An ``async def`` test that uses the fixture runs as it is, in a fresh event loop
(``asyncio.run``), with nothing more installed or configured than pytest: such a test is
the first a user writes. When an async plugin takes the test itself (pytest-asyncio in
``auto`` mode or with ``@pytest.mark.asyncio``, anyio with ``@pytest.mark.anyio``), that
plugin runs it instead, with its own loop and its async fixtures.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Final

import pytest

from ._dataset import Dataset
from ._vendor import FakeVendor

__all__ = ["ITNIO_FAKE_TASKS", "itnio_fake"]

#: Tasks in the ``itnio_fake`` fixture's dataset.
ITNIO_FAKE_TASKS: Final = 250


@pytest.fixture
def itnio_fake() -> FakeVendor:
    """A fake vendor (key ``test-key``, secret ``test-secret``) with 250 generated tasks."""
    return FakeVendor(dataset=Dataset.generate(ITNIO_FAKE_TASKS, seed=0))


#: Markers of async plugins that run a coroutine test themselves.
_ASYNC_MARKERS: Final = ("asyncio", "anyio", "trio")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses ``itnio_fake`` when no async plugin took it.

    Hand-written (a dozen lines) rather than a dependency on an async plugin: the
    ``testing`` extra must not impose pytest-asyncio's or anyio's configuration on the
    user's own suite. pytest-asyncio and anyio replace the test function with a
    synchronous one (or mark it), so their tests are left to them.

    Args:
        pyfuncitem: the test about to run.

    Returns:
        ``True`` when the test was run here, ``None`` to let pytest (or another plugin)
        run it.
    """
    function = pyfuncitem.obj
    if "itnio_fake" not in pyfuncitem.fixturenames or not inspect.iscoroutinefunction(function):
        return None
    if any(pyfuncitem.get_closest_marker(name) for name in _ASYNC_MARKERS):
        return None
    if "anyio_backend" in pyfuncitem.funcargs:
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(function(**arguments))
    return True
