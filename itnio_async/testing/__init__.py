"""A faithful, in-process fake of the Itniotech vendor server, for testing.

Test your application against :class:`FakeVendor` instead of the real API. It is an
independent implementation of the vendor's published rules (it never imports the
client), so it catches signing, paging and retry bugs:

- ``POST /voice/group/call/query`` is served, and beside it a task's details
  (``GET /voice/group/call/detail/{id}``) and its calls (``POST /voice/recordGroupQuery``,
  ``GET /voice/recordGroup/{voiceId}``, answered as ``{"status", "reason", "data"}``,
  with ISO 8601 times, 31 days a query, the last two months only): HTTP 404/405
  elsewhere; :func:`call_account` makes tasks with the calls that match their
  ``callNum``, :meth:`FakeVendor.insert_calls` appends calls while a client pages;
- ``Api-Key`` must be the fake's key and ``Sign`` the lower-case hex MD5 of
  ``api_key + api_secret + Timestamp`` (compared case-insensitively), else code -1;
- ``Timestamp`` (unix seconds) must be within ``timestamp_tolerance`` of the fake's
  clock, else -16; the HTTP ``Date`` header of every answer tells that clock;
- the body is validated (``current`` >= 1, ``size`` 1..100, ``params.strTime`` and
  ``params.endTime`` as ``YYYY-MM-DD HH:MM:SS``...), else -22;
- tasks with ``strTime <= createdTime <= endTime`` (both ends inclusive) that match
  ``statusList``, ``idxAppId`` and ``searchCondition`` (a case-insensitive substring
  of the task name) are returned newest first (``createdTime`` desc, then ``jobId``
  desc), paged by offset with ``total``, ``pages``, ``size``, ``current``,
  ``searchCount`` like MyBatis-Plus.

Vendor codes arrive in HTTP 200 as ``{"code": ..., "msg": ..., "data": ...}``.

In-process, with no sockets::

    import httpx
    from itnio_async.testing import Dataset, FakeVendor

    fake = FakeVendor("my-key", "my-secret", dataset=Dataset.generate(5_000, seed=1))
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url="https://fake.itnio.test"
    ) as http:
        ...  # point your client at it, then compare with fake.expected(start, end)

On loopback (``pip install itnio-async[testing]`` for uvicorn)::

    with serve(fake) as base_url:          # a background thread, any caller
        ...
    async with aserve(fake) as base_url:   # inside a running event loop
        ...

or in its own process (prints one line ``listening on http://127.0.0.1:PORT``)::

    python -m itnio_async.testing --port 0 --tasks 20000 --seed 1 --latency 0.04

Misbehaviour on demand: :class:`FaultPlan` with :class:`Fault` values (vendor codes,
HTTP errors, dropped connections, delays), ``rate_limit`` (HTTP 429 with
``Retry-After``), ``latency``/``jitter``, ``clock_offset``, ``code_as_string``;
mutations while a client pages (:meth:`FakeVendor.insert_tasks`,
:meth:`~FakeVendor.change_status`, :meth:`~FakeVendor.remove_tasks`,
:meth:`~FakeVendor.on_request`), and :class:`Churn`, which on chosen requests moves
tasks into and out of a status filter (balanced, so the total holds still, or one
way), creates or removes them, picks them by :class:`Pick` (newest, oldest, seeded
random, within times) and records each :class:`ChurnEvent`, so a test knows which
records ``stayed`` in the filter throughout; ``replicas`` that answer in turn (or
seeded at random) and may disagree, so ``total`` flaps (:meth:`Dataset.copy` makes
one to lag); :class:`Lies` in correct pages (a capped ``size``, page 1 for every
page, a false ``current``, ``total`` or ``pages``, an empty or half page in the
middle), for all requests or chosen ones; other server semantics, ``end_exclusive``
(``strTime <= createdTime < endTime``) and ``order="oldest_first"``, which
:meth:`FakeVendor.expected` follows; and what the fake saw in :class:`FakeStats`.
Every choice is deterministic, fixed by seeds and request arrival numbers.

With pytest, the ``itnio_fake`` fixture (``itnio_async.testing.pytest_plugin``)
gives each test a fresh fake with a small generated dataset.
"""

from __future__ import annotations

from ._calls import CallLog, FakeCall, call_account
from ._churn import Churn, ChurnEvent, ChurnKind, ChurnMode, Pick, PickWhich
from ._dataset import Dataset, FakeTask, Order, Query
from ._faults import DEFAULT_RANDOM_KINDS, Fault, FaultKind, FaultPlan
from ._lies import Lies, LiesPredicate
from ._serve import aserve, serve
from ._stats import FakeStats
from ._vendor import (
    DroppedConnection,
    FakeTransport,
    FakeVendor,
    ReplicaOrder,
    RequestCallback,
)
from ._wire import (
    CALL_PATH_PREFIX,
    CALL_QUERY_PATH,
    DETAIL_PATH_PREFIX,
    QUERY_PATH,
    WIRE_TIME_FORMAT,
)

__all__ = [
    # the server
    "FakeVendor",
    "FakeTransport",
    "FakeStats",
    "RequestCallback",
    "DroppedConnection",
    "ReplicaOrder",
    "Order",
    # its data
    "Dataset",
    "FakeTask",
    "Query",
    "CallLog",
    "FakeCall",
    "call_account",
    # misbehaviour
    "Fault",
    "FaultKind",
    "FaultPlan",
    "DEFAULT_RANDOM_KINDS",
    "Lies",
    "LiesPredicate",
    "Churn",
    "ChurnEvent",
    "ChurnKind",
    "ChurnMode",
    "Pick",
    "PickWhich",
    # serving on loopback
    "serve",
    "aserve",
    # wire facts
    "QUERY_PATH",
    "CALL_QUERY_PATH",
    "DETAIL_PATH_PREFIX",
    "CALL_PATH_PREFIX",
    "WIRE_TIME_FORMAT",
]
