"""What users write by hand with ``httpx``: the baselines the library is compared with.

No limiter, no retries, no models: sign each request (md5 by hand), POST the body,
``json.loads`` the reply and visit its records one by one (the library's side of each
comparison does the same with every record it yields).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import datetime
from typing import Any, Final

import httpx

__all__ = ["QUERY_PATH", "body", "concurrent_loop", "post_page", "sequential_loop", "sign"]

QUERY_PATH: Final = "/voice/group/call/query"
_WIRE_TIME: Final = "%Y-%m-%d %H:%M:%S"


def sign(api_key: str, api_secret: str) -> dict[str, str]:
    """The vendor's four headers for a request sent now."""
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": api_key,
        "Timestamp": timestamp,
        "Sign": hashlib.md5(f"{api_key}{api_secret}{timestamp}".encode()).hexdigest(),
    }


def body(start: datetime, end: datetime, page: int, size: int = 100) -> bytes:
    """The request body of one page of the window."""
    params = {"strTime": start.strftime(_WIRE_TIME), "endTime": end.strftime(_WIRE_TIME)}
    return json.dumps({"current": page, "size": size, "params": params}).encode()


def _consume(records: list[Any]) -> int:
    """Visit every record, as the library's benchmark loop does; return their count."""
    count = 0
    for _record in records:
        count += 1
    return count


async def post_page(
    http: httpx.AsyncClient,
    api_key: str,
    api_secret: str,
    start: datetime,
    end: datetime,
    page: int,
    size: int = 100,
) -> dict[str, Any]:
    """One page: signed POST, ``json.loads``, the ``data`` member."""
    response = await http.post(
        QUERY_PATH, content=body(start, end, page, size), headers=sign(api_key, api_secret)
    )
    parsed: dict[str, Any] = json.loads(response.content)
    if parsed["code"] != 0:
        raise RuntimeError(f"the fake refused a bare request: {parsed}")
    data: dict[str, Any] = parsed["data"]
    return data


async def sequential_loop(
    http: httpx.AsyncClient, api_key: str, api_secret: str, start: datetime, end: datetime
) -> tuple[int, int]:
    """Page after page until the last one; return the records seen and requests sent."""
    records = 0
    page, pages = 1, 1
    while page <= pages:
        data = await post_page(http, api_key, api_secret, start, end, page)
        records += _consume(data["records"])
        pages = data["pages"]
        page += 1
    return records, page - 1


async def concurrent_loop(
    http: httpx.AsyncClient,
    api_key: str,
    api_secret: str,
    start: datetime,
    end: datetime,
    concurrency: int,
) -> tuple[int, int]:
    """The first page alone, then the rest with a semaphore and ``gather``; return the
    records seen and requests sent (one a page: nothing is checked or planned)."""
    first = await post_page(http, api_key, api_secret, start, end, 1)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(page: int) -> int:
        async with semaphore:
            data = await post_page(http, api_key, api_secret, start, end, page)
        return _consume(data["records"])

    rest = await asyncio.gather(*(one(page) for page in range(2, first["pages"] + 1)))
    return _consume(first["records"]) + sum(rest), 1 + len(rest)
