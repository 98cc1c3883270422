"""Fixtures of the examples' tests: a Redis on loopback for the ones that share a limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.redis_support import RedisNotAvailable, redis_for_tests, under_ci


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``ITNIO_TEST_REDIS_URL``, or a ``redis-server`` started on a free loopback port.

    Without either the test skips, except under CI, where it fails: CI must run it.
    """
    try:
        with redis_for_tests() as url:
            yield url
    except RedisNotAvailable as exc:
        if under_ci():
            pytest.fail(f"under CI the Redis tests must run, but: {exc}")
        pytest.skip(f"no Redis for this test: {exc}")


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
