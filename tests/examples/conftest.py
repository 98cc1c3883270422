"""Fixtures of the examples' tests (``redis_url`` comes from the suite's conftest)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def redis_name(redis_url: str) -> Iterator[str]:
    """A name of this test's own for Redis keys; every key containing it is deleted after."""
    name = f"itnio-example-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{name}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
