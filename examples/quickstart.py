"""The README's first example: one page, then a stream of every task of a window.

Run it against your account::

    ITNIO_API_KEY=... ITNIO_API_SECRET=... python examples/quickstart.py

or, with no credentials, against the library's in-process fake vendor::

    python examples/quickstart.py --demo
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import datetime

from itnio_async import AsyncVoiceClient, GroupCallStatus, Settings, StreamProgress


def make_client(demo: bool) -> AsyncVoiceClient:
    if not demo:
        # ITNIO_API_KEY, ITNIO_API_SECRET and the rest, read as the CLI reads them.
        return AsyncVoiceClient(**Settings.from_env().client_options())
    from itnio_async.testing import Dataset, FakeVendor

    fake = FakeVendor("demo-key", "demo-secret", dataset=Dataset.generate(5_000, seed=7))
    return AsyncVoiceClient(
        "demo-key",
        "demo-secret",
        base_url="https://demo.itnio.test",
        transport=fake.transport(),
        rate_limit=None,
    )


def show(progress: StreamProgress) -> None:
    print(
        f"\r{progress.records_yielded}/{progress.total} records, "
        f"page {progress.pages_done}/{progress.pages_known}, {progress.retries} retries",
        end="",
        file=sys.stderr,
    )


async def main(demo: bool) -> None:
    start, end = datetime(2024, 1, 1), datetime(2024, 7, 1)
    try:
        client = make_client(demo)
    except ValueError as exc:  # no credentials, or a wrong ITNIO_* variable
        sys.exit(
            f"quickstart: {exc}\n(set ITNIO_API_KEY and ITNIO_API_SECRET for your account, "
            "or try it without one: python examples/quickstart.py --demo)"
        )
    async with client:
        # One page: the newest 10 completed tasks of the window.
        page = await client.query_group_calls(
            start, end, statuses=[GroupCallStatus.COMPLETED], size=10
        )
        print(f"{page.total} completed tasks; the newest:")
        for record in page.records[:3]:
            print(f"  {record.job_id} {record.task_name!r} {record.created_time:%Y-%m-%d %H:%M}")

        # Every task of the window, pages fetched 8 at a time, in the server's order.
        calls = 0
        stream = client.iter_group_calls(start, end, concurrency=8, on_progress=show)
        async with contextlib.aclosing(stream):
            async for record in stream:
                calls += record.call_num
        print(f"\n{stream.progress.records_yielded} tasks made {calls} calls")


if __name__ == "__main__":
    asyncio.run(main(demo="--demo" in sys.argv[1:]))
