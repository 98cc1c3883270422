"""A FastAPI app that shares one ``AsyncVoiceClient`` between all of its requests.

Run it from the repository's root (``pip install "itnio-async[examples]"``)::

    export ITNIO_API_KEY=... ITNIO_API_SECRET=...
    uvicorn examples.fastapi_app:app --host 127.0.0.1 --port 8000

    python -m examples.fastapi_app --demo       # no account: the fake of itnio-async --demo
    ITNIO_DEMO=1 uvicorn examples.fastapi_app:app   # the same, under uvicorn

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

Settings (environment, read by ``examples/settings.py``, which says what each means):
``ITNIO_API_KEY``, ``ITNIO_API_SECRET`` (required), ``ITNIO_BASE_URL``, ``ITNIO_RATE_LIMIT``
(requests per second for the account, default 10), ``ITNIO_SERVER_TIMEZONE`` (then
``start``/``end`` may carry an offset and exports freeze a future ``end``), and
``REDIS_URL`` with ``ITNIO_LIMIT_PREFIX`` to share the limit through Redis.

Errors: bad arguments are ``422``; a vendor or network fault that outlasted the client's
retries is ``502`` (``504`` for a timeout) with the error's type and message. An export
that fails after it started cannot change its status any more: the server then breaks the
connection off, so a consumer never mistakes a truncated export for a whole one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BeforeValidator

from examples.records import json_lines, page_json
from examples.settings import ClientFactory, open_client, script_settings
from itnio_async import (
    AsyncVoiceClient,
    GroupCallPageStream,
    GroupCallRecord,
    ItnioError,
    ItnioTimeoutError,
    Page,
    parse_time,
)

__all__ = ["app", "create_app"]

logger = logging.getLogger(__name__)

#: What the export sends: one JSON object per line.
JSON_LINES: Final = "application/x-ndjson"


# -- the app -----------------------------------------------------------------------------


def get_client(request: Request) -> AsyncVoiceClient:
    """The app's one client (a dependency of every endpoint)."""
    client: AsyncVoiceClient = request.app.state.itnio
    return client


Client = Annotated[AsyncVoiceClient, Depends(get_client)]


def _start(value: object) -> object:
    # The library's reading, as the command line's (YYYY-MM-DD, or a date and time).
    return parse_time(value) if isinstance(value, str) else value


def _end(value: object) -> object:
    # As for itnio-async: a bare end date means the last second of that day.
    return parse_time(value, end=True) if isinstance(value, str) else value


Start = Annotated[datetime, BeforeValidator(_start), Query(description="window start, inclusive")]
End = Annotated[
    datetime,
    BeforeValidator(_end),
    Query(description="window end, inclusive (a bare date: all of that day)"),
]
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
                yield json_lines(page.records)
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
#: With ``ITNIO_DEMO=1`` in the environment it serves the in-process fake vendor's tasks.
app = create_app()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m examples.fastapi_app [--demo] [--host H] [--port P]``: serve ``app``."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the FastAPI example with uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--demo", action="store_true", help="serve the in-process fake vendor's tasks"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    settings = script_settings(parser, demo=args.demo)
    uvicorn.run(create_app(lambda: open_client(settings)), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
