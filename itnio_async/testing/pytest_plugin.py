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
"""

from __future__ import annotations

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
