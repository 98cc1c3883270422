"""``examples/settings.py``: what every example reads from the environment, and its client."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from examples.settings import Settings, open_client
from itnio_async import LocalRateLimiter
from itnio_async.redis import RedisRateLimiter
from itnio_async.testing import Dataset, FakeVendor, aserve

KEY, SECRET = "settings-key", "settings-secret"


def test_settings_come_from_the_environment() -> None:
    default = Settings.from_env({})
    assert (default.rate_limit, default.redis_url, default.server_timezone) == (10.0, None, None)
    settings = Settings.from_env(
        {
            "ITNIO_API_KEY": KEY,
            "ITNIO_API_SECRET": SECRET,
            "ITNIO_BASE_URL": "http://127.0.0.1:9",
            "ITNIO_RATE_LIMIT": "12.5",
            "ITNIO_SERVER_TIMEZONE": "Asia/Shanghai",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "ITNIO_LIMIT_PREFIX": "staging",
        }
    )
    assert (settings.api_key, settings.api_secret) == (KEY, SECRET)
    assert settings.base_url == "http://127.0.0.1:9"
    assert settings.rate_limit == 12.5
    assert settings.server_timezone == ZoneInfo("Asia/Shanghai")
    assert (settings.redis_url, settings.limit_prefix) == ("redis://127.0.0.1:6379/0", "staging")


async def test_without_redis_the_client_has_its_own_limit() -> None:
    settings = Settings(KEY, SECRET, "http://127.0.0.1:9", rate_limit=7.0)
    async with open_client(settings) as client:
        assert isinstance(client.limiter, LocalRateLimiter)
        assert client.limiter.rate == 7.0
    assert client.is_closed


async def test_with_redis_the_client_shares_the_limit_and_closes_it(
    redis_url: str, redis_name: str
) -> None:
    fake = FakeVendor(KEY, SECRET, dataset=Dataset.generate(30, seed=61))
    async with aserve(fake) as url:
        settings = Settings(
            KEY, SECRET, url, rate_limit=40.0, redis_url=redis_url, limit_prefix=redis_name
        )
        async with open_client(settings) as client:
            limiter = client.limiter
            assert isinstance(limiter, RedisRateLimiter)
            assert limiter.rate == 40.0
            assert limiter.bucket_key.startswith(f"{redis_name}:")
            page = await client.query_group_calls(datetime(2024, 1, 1), datetime(2024, 7, 1))
            assert page.total == 30
        assert client.is_closed


async def test_a_shared_limit_needs_the_api_key() -> None:
    settings = Settings(None, SECRET, redis_url="redis://127.0.0.1:9/0")
    with pytest.raises(ValueError, match="ITNIO_API_KEY"):
        async with open_client(settings):
            pass
