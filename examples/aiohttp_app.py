"""An aiohttp app that shares one ``AsyncVoiceClient`` between all of its requests.

Run it from the repository's root (``pip install "itnio-async[examples]"``)::

    export ITNIO_API_KEY=... ITNIO_API_SECRET=...
    python -m examples.aiohttp_app --host 127.0.0.1 --port 8080

    python -m examples.aiohttp_app --demo   # no account: the fake of itnio-async --demo

    curl 'http://127.0.0.1:8080/tasks?start=2024-06-01T00:00:00&end=2024-06-30T23:59:59&size=20'
    curl -N 'http://127.0.0.1:8080/tasks/export?start=2024-06-01T00:00:00&end=2024-06-30T23:59:59'

The same endpoints as ``examples/fastapi_app.py``:

* ``GET /tasks?start=&end=&page=1&size=100[&status=2&status=4][&app_id=][&search=]``: one
  page as JSON (``total``, ``pages``, ``current``, ``size``, ``records``);
* ``GET /tasks/export?start=&end=[&status=...]``: every task of the window as JSON Lines,
  page by page, newest first; a client that goes away stops it and its requests.

The client is made in a ``cleanup_ctx`` generator: the code before its ``yield`` runs at
startup, inside the server's event loop, and the code after it at shutdown, so the one
client of the process is made on the right loop and always closed. Every handler reads
it from ``request.app[CLIENT]``. With several processes behind one account, set
``REDIS_URL`` so that they share the rate limit.

Settings (environment, read by ``examples/settings.py``, which says what each means):
``ITNIO_API_KEY``, ``ITNIO_API_SECRET`` (required), ``ITNIO_BASE_URL``, ``ITNIO_RATE_LIMIT``
(requests per second for the account, default 10), ``ITNIO_SERVER_TIMEZONE`` (e.g.
``Asia/Shanghai``), and ``REDIS_URL`` with ``ITNIO_LIMIT_PREFIX`` to share the limit.

Errors: bad arguments are ``400``; a vendor or network fault that outlasted the client's
retries is ``502`` (``504`` for a timeout). An export that fails after it started breaks
the connection off instead of ending the body as if it were whole.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Final

import attrs
from aiohttp import web

from examples.records import json_lines, page_json
from examples.settings import ClientFactory, Settings, open_client, script_settings
from itnio_async import AsyncVoiceClient, ItnioError, ItnioTimeoutError, parse_time

__all__ = ["CLIENT", "create_app", "main"]

logger = logging.getLogger(__name__)

#: Where the app keeps its one client.
CLIENT: Final = web.AppKey("itnio_client", AsyncVoiceClient)


# -- requests ----------------------------------------------------------------------------


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": "bad request", "detail": message}),
        content_type="application/json",
    )


def _fault_response(exc: ItnioError) -> web.Response:
    """A vendor or network fault that outlasted the retries: 502, or 504 for a timeout."""
    status = 504 if isinstance(exc, ItnioTimeoutError) else 502
    return web.json_response({"error": type(exc).__name__, "detail": str(exc)}, status=status)


def _datetime_arg(request: web.Request, name: str) -> datetime:
    value = request.query.get(name)
    if value is None:
        raise _bad_request(f"{name} is required")
    try:
        # The library's reading, as the command line's: a bare end date is its last second.
        return parse_time(value, end=name == "end")
    except ValueError as exc:
        raise _bad_request(f"{name}: {exc}") from None


def _optional_int_arg(request: web.Request, name: str, low: int, high: int) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise _bad_request(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise _bad_request(f"{name} must be between {low} and {high}, got {number}")
    return number


def _int_arg(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    number = _optional_int_arg(request, name, low, high)
    return default if number is None else number


def _filters(request: web.Request) -> dict[str, Any]:
    """``statuses``, ``app_id`` and ``search`` from the query string."""
    try:
        statuses = [int(value) for value in request.query.getall("status", [])] or None
    except ValueError:
        raise _bad_request("status must be an integer") from None
    return {
        "statuses": statuses,
        "app_id": _optional_int_arg(request, "app_id", 0, 2**63 - 1),
        "search": request.query.get("search"),
    }


async def get_page(request: web.Request) -> web.Response:
    """``GET /tasks``: one page as JSON."""
    client = request.app[CLIENT]
    start, end = _datetime_arg(request, "start"), _datetime_arg(request, "end")
    page = _int_arg(request, "page", 1, 1, 2**31 - 1)
    size = _int_arg(request, "size", 100, 1, 100)
    try:
        result = await client.query_group_calls(
            start, end, page=page, size=size, **_filters(request)
        )
    except (ValueError, TypeError) as exc:  # the client checks arguments before sending
        raise _bad_request(str(exc)) from exc
    except ItnioError as exc:
        return _fault_response(exc)
    return web.json_response(page_json(result))


async def export(request: web.Request) -> web.StreamResponse:
    """``GET /tasks/export``: every task of the window as JSON Lines, one chunk per page."""
    client = request.app[CLIENT]
    start, end = _datetime_arg(request, "start"), _datetime_arg(request, "end")
    try:
        stream = client.iter_group_call_pages(start, end, **_filters(request))
    except (ValueError, TypeError) as exc:
        raise _bad_request(str(exc)) from exc
    outcome = "stopped"  # unless it completes or fails: the client went away, or shutdown
    # However the handler ends, aclosing closes the stream and cancels its requests.
    async with contextlib.aclosing(stream):
        try:
            # The first page before answering: a fault there is a proper 502, not a 200.
            try:
                page = await anext(stream, None)
            except ItnioError as exc:
                outcome = f"failed ({type(exc).__name__}: {exc})"
                return _fault_response(exc)
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            while page is not None:
                # Raises ConnectionResetError once the client has gone away.
                await response.write(json_lines(page.records).encode())
                page = await anext(stream, None)
            await response.write_eof()
            outcome = "complete"
            return response
        except ConnectionResetError:  # the client went away
            raise
        except Exception as exc:  # too late for a status: aiohttp breaks the connection off
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


def create_app(client_factory: ClientFactory | None = None) -> web.Application:
    """The app. ``client_factory`` makes its one client (default: from the environment)."""
    factory: ClientFactory = client_factory or open_client

    async def one_client(app: web.Application) -> AsyncIterator[None]:
        # Before the yield: startup, in the server's loop. After it: cleanup.
        async with factory() as client:
            app[CLIENT] = client
            yield

    app = web.Application()
    app.cleanup_ctx.append(one_client)
    app.router.add_get("/tasks", get_page)
    app.router.add_get("/tasks/export", export)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--demo", action="store_true", help="serve the in-process fake vendor's tasks"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    settings = script_settings(parser, demo=args.demo)
    web.run_app(create_app(lambda: open_client(settings)), host=args.host, port=args.port)


def demo_factory() -> ClientFactory:
    """The client factory of ``--demo``: the in-process fake vendor, whatever the
    environment says (as ``ITNIO_DEMO=1``)."""
    settings = attrs.evolve(Settings.from_env(), demo=True)
    return lambda: open_client(settings)


if __name__ == "__main__":
    main()
