"""itnio_async: an asyncio client for the Itniotech voice API.

Signed, rate-limited and retried requests, and a concurrent stream of every group-call
task in a window, each exactly once and in order::

    async with AsyncVoiceClient() as client:          # ITNIO_API_KEY / ITNIO_API_SECRET
        async for record in client.iter_group_calls(start, end):
            ...
"""

import logging

from ._call_records import CallRecordPageStream, CallRecordStream
from ._client import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    AsyncVoiceClient,
)
from ._errors import (
    AuthenticationError,
    ClientStateError,
    InvalidParameterError,
    IPRestrictedError,
    ItnioAPIError,
    ItnioError,
    ItnioHTTPError,
    ItnioTimeoutError,
    ItnioTransportError,
    LimiterTimeoutError,
    LimiterUnavailableError,
    MalformedResponseError,
    RateLimitedError,
    ResultUnstableError,
    TimestampExpiredError,
    VendorServerError,
)
from ._group_calls import GroupCallPageStream, GroupCallStream
from ._hooks import AttemptEvent, ClientHooks, PageEvent, RetryEvent
from ._limiter import LocalRateLimiter, RateLimiter
from ._models import CallRecord, GroupCallDetail, GroupCallRecord, GroupCallStatus, Page
from ._paging import PagingMode, Range, StreamCursor
from ._query import MAX_PAGE_SIZE
from ._records import RECORD_COLUMNS, parse_time, record_row
from ._retry import RetryPolicy
from ._settings import ENVIRONMENT, Settings
from ._shards import Shard, plan_shards
from ._signing import compute_sign
from ._stream import StreamProgress

__version__ = "0.1.0.dev0"

# A library only adds a NullHandler: where the logs go is the application's choice, and
# without it Python's last-resort handler would print retry warnings on stderr.
logging.getLogger("itnio_async").addHandler(logging.NullHandler())

__all__ = [
    # the client and its settings
    "AsyncVoiceClient",
    "RetryPolicy",
    "RateLimiter",
    "LocalRateLimiter",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_MAX_CONNECTIONS",
    "compute_sign",
    # the environment: one set of variables for the library, the CLI and the examples
    "Settings",
    "ENVIRONMENT",
    # hooks for metrics and tracing
    "ClientHooks",
    "AttemptEvent",
    "RetryEvent",
    "PageEvent",
    # data
    "GroupCallRecord",
    "GroupCallStatus",
    "GroupCallDetail",
    "CallRecord",
    "Page",
    "MAX_PAGE_SIZE",
    "record_row",
    "RECORD_COLUMNS",
    "parse_time",
    # streams and splitting a job across workers
    "plan_shards",
    "Shard",
    "GroupCallStream",
    "GroupCallPageStream",
    "CallRecordStream",
    "CallRecordPageStream",
    "StreamProgress",
    "StreamCursor",
    "Range",
    "PagingMode",
    # errors
    "ItnioError",
    "ItnioAPIError",
    "AuthenticationError",
    "IPRestrictedError",
    "TimestampExpiredError",
    "VendorServerError",
    "InvalidParameterError",
    "ItnioHTTPError",
    "RateLimitedError",
    "ItnioTransportError",
    "ItnioTimeoutError",
    "MalformedResponseError",
    "ClientStateError",
    "LimiterUnavailableError",
    "LimiterTimeoutError",
    "ResultUnstableError",
    "__version__",
]
