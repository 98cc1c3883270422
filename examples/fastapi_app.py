"""A FastAPI app that shares one ``AsyncVoiceClient`` between all of its requests.

Run it (``pip install "itnio-async[examples]"``)::

    export ITNIO_API_KEY=... ITNIO_API_SECRET=...
    uvicorn examples.fastapi_app:app --host 127.0.0.1 --port 8000

    curl 'http://127.0.0.1:8000/tasks?start=2024-06-01T00:00:00&end=2024-06-30T23:59:59&size=20'
    curl -N 'http://127.0.0.1:8000/tasks/export?start=2024-06-01T00:00:00&end=2024-06-30T23:59:59'

Endpoints:

* ``GET /tasks?start=&end=&page=1&size=100[&status=2&status=4][&app_id=][&search=]``: one
  page of group-call tasks as JSON (``total``, ``pages``, ``current``, ``size``, ``records``);
* ``GET /tasks/export?start=&end=[&status=...]``: every task of the window as JSON Lines,
  streamed page by page in the vendor's order (newest first). If the client goes away, the
  stream stops at once and sends no more requests to the vendor.

The client is made in the app's *lifespan*, once per process, inside the server's event
loop, and closed at shutdown: it holds the connection pool, the rate limiter and the
learned vendor clock, so every request must go through the same one (one client per
request would open a pool per request and give each request a rate limit of its own).
Run several worker processes (``uvicorn --workers 4``) and each has its own client:
set ``REDIS_URL`` so that they share one rate limit instead of each taking the whole of it.

Settings (environment):

``ITNIO_API_KEY``, ``ITNIO_API_SECRET``
    the account (required).
``ITNIO_BASE_URL``
    the vendor (default ``https://api.itniotech.com``).
``ITNIO_RATE_LIMIT``
    requests per second for the account (default 10): for this process alone, or for all
    processes together with ``REDIS_URL``.
``ITNIO_SERVER_TIMEZONE``
    the vendor's zone, e.g. ``Asia/Shanghai`` (optional; then ``start``/``end`` may carry an
    offset and exports freeze a future ``end``).
``REDIS_URL``
    share the rate limit through this Redis (``pip install "itnio-async[redis]"``).
``ITNIO_LIMIT_PREFIX``
    the Redis keys' prefix (default ``itnio:limit``), to keep apart, say, staging and
    production sharing one Redis.

Errors: bad arguments are ``422``; a vendor or network fault that outlasted the client's
retries is ``502`` (``504`` for a timeout) with the error's type and message. An export
that fails after it started cannot change its status any more: the server then breaks the
connection off, so a consumer never mistakes a truncated export for a whole one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime, tzinfo
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

import attrs
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from itnio_async import (
    AsyncVoiceClient,
    GroupCallPageStream,
    GroupCallRecord,
    ItnioError,
    ItnioTimeoutError,
    Page,
    RateLimiter,
)

__all__ = ["ClientFactory", "Settings", "app", "create_app", "open_client", "record_json"]

logger = logging.getLogger(__name__)

#: Makes the app's one client; entered at startup and exited at shutdown. An
#: ``AsyncVoiceClient`` is itself such a context manager, so a test can pass
#: ``lambda: AsyncVoiceClient(key, secret, transport=fake.transport())``.
ClientFactory = Callable[[], AbstractAsyncContextManager[AsyncVoiceClient]]

#: The client's own default, used when ``ITNIO_RATE_LIMIT`` is not set.
DEFAULT_RATE_LIMIT: Final = 10.0
#: What the export sends: one JSON object per line.
JSON_LINES: Final = "application/x-ndjson"


# -- settings and the one client ---------------------------------------------------------


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
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
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
    """The process's client, with the Redis limiter when ``REDIS_URL`` is set; closes both."""
    settings = settings if settings is not None else Settings.from_env()
    async with contextlib.AsyncExitStack() as stack:
        limiter: RateLimiter | None = None
        if settings.redis_url:
            # Imported here: only apps that share the limit need the redis package.
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


# -- the app -----------------------------------------------------------------------------


def record_json(record: GroupCallRecord) -> dict[str, Any]:
    """A record as plain JSON values."""
    return {
        "job_id": record.job_id,
        "task_name": record.task_name,
        "status": int(record.status),
        "status_name": record.status.name,
        "rate": record.rate,
        "num_cnt": record.num_cnt,
        "call_num": record.call_num,
        "success": record.success,
        "fail": record.fail,
        "created_time": record.created_time.isoformat(sep=" "),
    }


def page_json(page: Page[GroupCallRecord]) -> dict[str, Any]:
    return {
        "total": page.total,
        "pages": page.pages,
        "current": page.current,
        "size": page.size,
        "records": [record_json(record) for record in page.records],
    }


def get_client(request: Request) -> AsyncVoiceClient:
    """The app's one client (a dependency of every endpoint)."""
    client: AsyncVoiceClient = request.app.state.itnio
    return client


Client = Annotated[AsyncVoiceClient, Depends(get_client)]
Start = Annotated[datetime, Query(description="window start, inclusive")]
End = Annotated[datetime, Query(description="window end, inclusive")]
Statuses = Annotated[list[int] | None, Query(alias="status", description="task states to keep")]


async def _export_lines(
    stream: GroupCallPageStream, first: Page[GroupCallRecord] | None
) -> AsyncIterator[str]:
    """The export's body: one chunk of JSON Lines per page; closes the stream however it ends.

    When the client disconnects, the server cancels this generator (or drops it): either
    way ``aclosing`` closes the stream, which cancels its requests in flight.
    """
    outcome = "stopped"  # unless it completes or fails: cancelled, or dropped
    async with contextlib.aclosing(stream):
        try:
            page = first
            while page is not None:
                yield "".join(json.dumps(record_json(r)) + "\n" for r in page.records)
                page = await anext(stream, None)
            outcome = "complete"
        except Exception as exc:
            outcome = f"failed ({type(exc).__name__}: {exc})"
            raise
        finally:
            progress = stream.progress
            logger.info(
                "export %s: %d records, %d requests",
                outcome,
                progress.records_yielded,
                progress.requests,
            )


def create_app(client_factory: ClientFactory | None = None) -> FastAPI:
    """The app. ``client_factory`` makes its one client (default: from the environment)."""
    factory: ClientFactory = client_factory or open_client

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Startup runs inside the server's event loop: the right place for loop-bound objects.
        async with factory() as client:
            app.state.itnio = client
            yield
        # Leaving the block closed the client (and the Redis limiter, if any).

    app = FastAPI(title="itnio_async example", lifespan=lifespan)

    @app.exception_handler(ItnioError)
    async def vendor_fault(request: Request, exc: ItnioError) -> JSONResponse:
        status = 504 if isinstance(exc, ItnioTimeoutError) else 502
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)

    @app.get("/tasks")
    async def tasks(
        client: Client,
        start: Start,
        end: End,
        page: Annotated[int, Query(ge=1)] = 1,
        size: Annotated[int, Query(ge=1, le=100)] = 100,
        status: Statuses = None,
        app_id: int | None = None,
        search: str | None = None,
    ) -> dict[str, Any]:
        try:
            result = await client.query_group_calls(
                start, end, statuses=status, app_id=app_id, search=search, page=page, size=size
            )
        except (ValueError, TypeError) as exc:  # the client checks arguments before sending
            raise HTTPException(422, str(exc)) from exc
        return page_json(result)

    @app.get("/tasks/export")
    async def export(
        client: Client,
        start: Start,
        end: End,
        status: Statuses = None,
        app_id: int | None = None,
        search: str | None = None,
    ) -> StreamingResponse:
        try:
            stream = client.iter_group_call_pages(
                start, end, statuses=status, app_id=app_id, search=search
            )
        except (ValueError, TypeError) as exc:
            raise HTTPException(422, str(exc)) from exc
        # Fetch the first page before answering, so that a fault there (a wrong key, the
        # vendor down) is a proper 502 rather than a 200 with a broken body.
        try:
            first = await anext(stream, None)
        except BaseException:
            await stream.aclose()
            raise
        return StreamingResponse(_export_lines(stream, first), media_type=JSON_LINES)

    return app


#: For ``uvicorn examples.fastapi_app:app``; no client exists until the server starts it.
app = create_app()
