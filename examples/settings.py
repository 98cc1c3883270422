"""The examples' settings, read from the environment, and the one client of a process.

Every app and worker in ``examples/`` reads the same variables the same way:

``ITNIO_API_KEY``, ``ITNIO_API_SECRET``
    the account (required).
``ITNIO_BASE_URL``
    the vendor (default ``https://api.itniotech.com``).
``ITNIO_RATE_LIMIT``
    requests per second for the account (default 10): for this process alone, or for all
    processes together with ``REDIS_URL``.
``ITNIO_SERVER_TIMEZONE``
    the vendor's zone, e.g. ``Asia/Shanghai`` (optional; then a window may carry an offset
    and an end in the future can be frozen at the vendor's "now").
``REDIS_URL``
    share the rate limit through this Redis (``pip install "itnio-async[redis]"``).
``ITNIO_LIMIT_PREFIX``
    the Redis keys' prefix (default ``itnio:limit``), to keep apart, say, staging and
    production sharing one Redis.

``open_client(settings)`` makes the process's one ``AsyncVoiceClient`` from them, with a
``RedisRateLimiter`` when ``REDIS_URL`` is set, and closes both on exit. Make it once per
process, inside the event loop that uses it (an app's startup, a worker's ``on_startup``).

The examples import this module as ``examples.settings``: run them from the repository's
root as modules (``python -m examples.aiohttp_app``, ``uvicorn examples.fastapi_app:app``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import tzinfo
from typing import Self
from zoneinfo import ZoneInfo

import attrs

from itnio_async import DEFAULT_RATE_LIMIT, AsyncVoiceClient, RateLimiter

# DEFAULT_RATE_LIMIT, the client's own default, applies when ITNIO_RATE_LIMIT is not set.
__all__ = ["DEFAULT_RATE_LIMIT", "ClientFactory", "Settings", "open_client"]

#: Makes a process's one client; entered at startup and exited at shutdown. ``open_client``
#: is one, and so is an ``AsyncVoiceClient`` itself, so a test can pass
#: ``lambda: AsyncVoiceClient(key, secret, transport=fake.transport())``.
ClientFactory = Callable[[], AbstractAsyncContextManager[AsyncVoiceClient]]


@attrs.frozen
class Settings:
    """What the environment says about the account, the limit and the vendor."""

    api_key: str | None = None
    api_secret: str | None = None
    base_url: str | None = None
    rate_limit: float = DEFAULT_RATE_LIMIT
    server_timezone: tzinfo | None = None
    redis_url: str | None = None
    limit_prefix: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        zone = env.get("ITNIO_SERVER_TIMEZONE")
        return cls(
            api_key=env.get("ITNIO_API_KEY"),
            api_secret=env.get("ITNIO_API_SECRET"),
            base_url=env.get("ITNIO_BASE_URL"),
            rate_limit=float(env.get("ITNIO_RATE_LIMIT") or DEFAULT_RATE_LIMIT),
            server_timezone=ZoneInfo(zone) if zone else None,
            redis_url=env.get("REDIS_URL") or None,
            limit_prefix=env.get("ITNIO_LIMIT_PREFIX") or None,
        )


@contextlib.asynccontextmanager
async def open_client(settings: Settings | None = None) -> AsyncIterator[AsyncVoiceClient]:
    """The process's client, with the Redis limiter when ``REDIS_URL`` is set; closes both.

    ``settings``: by default, from the environment.
    """
    settings = settings if settings is not None else Settings.from_env()
    async with contextlib.AsyncExitStack() as stack:
        limiter: RateLimiter | None = None
        if settings.redis_url:
            # Imported here: only processes that share the limit need the redis package.
            from itnio_async.redis import DEFAULT_PREFIX, RedisRateLimiter

            if not settings.api_key:
                raise ValueError("ITNIO_API_KEY is required: the shared limit is per account")
            limiter = await stack.enter_async_context(
                RedisRateLimiter(
                    settings.redis_url,
                    settings.api_key,
                    settings.rate_limit,
                    prefix=settings.limit_prefix or DEFAULT_PREFIX,
                )
            )
        client = AsyncVoiceClient(
            settings.api_key,
            settings.api_secret,
            base_url=settings.base_url,
            rate_limit=settings.rate_limit,
            limiter=limiter,
            server_timezone=settings.server_timezone,
        )
        yield await stack.enter_async_context(client)
