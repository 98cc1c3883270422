"""The examples' settings, read from the environment, and the one client of a process.

Every app and worker in ``examples/`` reads the same variables the same way, through the
library's own ``itnio_async.Settings.from_env()`` (the command line reads them so too):
``ITNIO_API_KEY``, ``ITNIO_API_SECRET``, ``ITNIO_BASE_URL``, ``ITNIO_RATE_LIMIT`` and
``ITNIO_SERVER_TIMEZONE`` (the README's table says what each means), and, for the examples
alone:

``REDIS_URL``
    share the rate limit through this Redis (``pip install "itnio-async[redis]"``).
``ITNIO_LIMIT_PREFIX``
    the Redis keys' prefix (default ``itnio:limit``), to keep apart, say, staging and
    production sharing one Redis.
``ITNIO_DEMO``
    ``1``: ignore the account and run against the library's in-process fake vendor, the
    one ``itnio-async --demo`` uses (30,000 tasks over the 30 days before today, a little
    latency, a few transient faults, 200 requests/s). The scripts also take ``--demo``.

``open_client(settings)`` makes the process's one ``AsyncVoiceClient`` from them, with a
``RedisRateLimiter`` when ``REDIS_URL`` is set, and closes both on exit. Make it once per
process, inside the event loop that uses it (an app's startup, a worker's ``on_startup``).

The examples import this module as ``examples.settings``: run them from the repository's
root as modules (``python -m examples.aiohttp_app``, ``uvicorn examples.fastapi_app:app``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import tzinfo
from typing import Any, Self

import attrs

import itnio_async
from itnio_async import DEFAULT_RATE_LIMIT, AsyncVoiceClient, RateLimiter
from itnio_async.cli import DEMO_RATE_LIMIT, demo_vendor, demo_window

# DEFAULT_RATE_LIMIT, the client's own default, applies when ITNIO_RATE_LIMIT is not set.
__all__ = [
    "DEFAULT_RATE_LIMIT",
    "ClientFactory",
    "Settings",
    "demo_client",
    "demo_window",
    "open_client",
    "script_settings",
]

#: What ``ITNIO_DEMO`` takes for "yes".
_YES = frozenset({"1", "true", "yes", "on"})

#: Makes a process's one client; entered at startup and exited at shutdown. ``open_client``
#: is one, and so is an ``AsyncVoiceClient`` itself, so a test can pass
#: ``lambda: AsyncVoiceClient(key, secret, transport=fake.transport())``.
ClientFactory = Callable[[], AbstractAsyncContextManager[AsyncVoiceClient]]


@attrs.frozen
class Settings:
    """What the environment says about the account, the limit and the vendor."""

    api_key: str | None = None
    api_secret: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    rate_limit: float | None = DEFAULT_RATE_LIMIT
    server_timezone: tzinfo | None = None
    redis_url: str | None = None
    limit_prefix: str | None = None
    demo: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """The library's ``Settings.from_env(env)``, with ``REDIS_URL``,
        ``ITNIO_LIMIT_PREFIX`` and ``ITNIO_DEMO``; a wrong value is a ``ValueError``
        naming its variable."""
        demo = (env.get("ITNIO_DEMO") or "").strip().lower() in _YES
        # The demo ignores the account's variables, as itnio-async --demo does.
        library = itnio_async.Settings() if demo else itnio_async.Settings.from_env(env)
        return cls(
            api_key=library.api_key,
            api_secret=library.api_secret,
            base_url=library.base_url,
            rate_limit=library.rate_limit,
            server_timezone=library.server_timezone,
            redis_url=env.get("REDIS_URL") or None,
            limit_prefix=env.get("ITNIO_LIMIT_PREFIX") or None,
            demo=demo,
        )


def script_settings(parser: argparse.ArgumentParser, *, demo: bool = False) -> Settings:
    """A script's settings, read before it starts anything: the environment's, with
    ``--demo`` (``demo``) on top. A wrong variable, or no credentials without the demo,
    ends the script through ``parser.error`` (one line, exit 2), not with a traceback
    from inside a server's startup."""
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        parser.error(str(exc))
    if demo:
        settings = attrs.evolve(settings, demo=True)
    if not settings.demo and not (settings.api_key and settings.api_secret):
        parser.error(
            "set ITNIO_API_KEY and ITNIO_API_SECRET for your account, or try it without "
            "one: --demo (or ITNIO_DEMO=1)"
        )
    return settings


def demo_client(**options: Any) -> AsyncVoiceClient:
    """A client of the command line's demo fake vendor (``itnio-async --demo``), in-process.

    ``options``: more arguments of ``AsyncVoiceClient`` (``hooks=``, say).
    """
    fake = demo_vendor()
    arguments: dict[str, Any] = {
        "api_key": fake.api_key,
        "api_secret": fake.api_secret,
        "base_url": "https://demo.itnio.test",
        "transport": fake.transport(),
        "rate_limit": DEMO_RATE_LIMIT,
    }
    return AsyncVoiceClient(**(arguments | options))


@contextlib.asynccontextmanager
async def open_client(settings: Settings | None = None) -> AsyncIterator[AsyncVoiceClient]:
    """The process's client, with the Redis limiter when ``REDIS_URL`` is set; closes both.

    ``settings``: by default, from the environment.
    """
    settings = settings if settings is not None else Settings.from_env()
    if settings.demo:
        async with demo_client() as client:
            yield client
        return
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
