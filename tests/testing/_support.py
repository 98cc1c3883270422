"""Tiny helpers for the fake vendor's tests: raw httpx and a local MD5 signer.

Deliberately not the client library: these tests pin the fake to the vendor's
published rules, independently of the client.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from itnio_async.testing import FakeVendor

BASE_URL = "https://fake.itnio.test"
PATH = "/voice/group/call/query"
START = "2024-01-01 00:00:00"
END = "2024-07-01 00:00:00"


def sign(key: str, secret: str, timestamp: str) -> str:
    """The vendor's signature: lower-case hex md5 of key + secret + timestamp."""
    return hashlib.md5((key + secret + timestamp).encode()).hexdigest()


def signed_headers(
    fake: FakeVendor,
    *,
    key: str | None = None,
    secret: str | None = None,
    timestamp: str | None = None,
) -> dict[str, str]:
    """Headers signed for ``fake`` (its own key, secret and clock unless overridden)."""
    key = fake.api_key if key is None else key
    secret = fake.api_secret if secret is None else secret
    timestamp = str(int(fake.time())) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": key,
        "Timestamp": timestamp,
        "Sign": sign(key, secret, timestamp),
    }


def body(
    current: int = 1, size: int = 10, start: str = START, end: str = END, **params: Any
) -> dict[str, Any]:
    """A query body; extra keyword arguments go into ``params``."""
    return {
        "current": current,
        "size": size,
        "params": {"strTime": start, "endTime": end, **params},
    }


def client(fake: FakeVendor) -> httpx.AsyncClient:
    """An httpx client wired to ``fake`` in-process."""
    return httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL)


async def post(http: httpx.AsyncClient, fake: FakeVendor, payload: Any) -> httpx.Response:
    """POST ``payload`` as JSON to the query path, signed for ``fake``."""
    return await http.post(PATH, json=payload, headers=signed_headers(fake))


async def fetch_all(
    http: httpx.AsyncClient, fake: FakeVendor, size: int, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every record of a query, page after page, as the wire carries them."""
    records: list[dict[str, Any]] = []
    current = 1
    while True:
        answer = (await post(http, fake, body(current=current, size=size, **kwargs))).json()
        assert answer["code"] == 0, answer
        records.extend(answer["data"]["records"])
        if current >= answer["data"]["pages"]:
            return records
        current += 1
