"""The public surfaces are exactly what their ``__all__`` says; nothing drifts in by accident."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

import itnio_async

EXPECTED = {
    "AsyncVoiceClient",
    "RetryPolicy",
    "RateLimiter",
    "LocalRateLimiter",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_MAX_CONNECTIONS",
    "MAX_PAGE_SIZE",
    "compute_sign",
    "Settings",
    "ENVIRONMENT",
    "record_row",
    "RECORD_COLUMNS",
    "parse_time",
    "ClientHooks",
    "AttemptEvent",
    "RetryEvent",
    "PageEvent",
    "GroupCallRecord",
    "GroupCallStatus",
    "Page",
    "GroupCallStream",
    "plan_shards",
    "Shard",
    "GroupCallPageStream",
    # a task's details and the calls it made
    "GroupCallDetail",
    "CallRecord",
    "CallRecordStream",
    "CallRecordPageStream",
    "StreamProgress",
    "StreamCursor",
    "Range",
    "PagingMode",
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
}


REDIS_EXPECTED = {
    "DEFAULT_PREFIX",
    "LimiterTimeoutError",
    "LimiterUnavailableError",
    "LocalFallback",
    "RedisRateLimiter",
}

TESTING_EXPECTED = {
    "FakeVendor",
    "FakeTransport",
    "FakeStats",
    "RequestCallback",
    "DroppedConnection",
    "Dataset",
    "FakeTask",
    "Query",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "DEFAULT_RANDOM_KINDS",
    "serve",
    "aserve",
    "QUERY_PATH",
    "WIRE_TIME_FORMAT",
    # churn, replicas, lies and other rules
    "Churn",
    "ChurnEvent",
    "ChurnKind",
    "ChurnMode",
    "Pick",
    "PickWhich",
    "Lies",
    "LiesPredicate",
    "Order",
    "ReplicaOrder",
    # call records
    "CallLog",
    "FakeCall",
    "call_account",
    "CALL_QUERY_PATH",
    "DETAIL_PATH_PREFIX",
    "CALL_PATH_PREFIX",
}

CLI_EXPECTED = {"main", "demo_vendor", "demo_window", "DEMO_RATE_LIMIT"}

#: Each public module and the exact surface it promises: adding or dropping a name is a
#: decision, made here as well, never an accident of an import.
SURFACES = {
    "itnio_async": EXPECTED,
    "itnio_async.redis": REDIS_EXPECTED,
    "itnio_async.testing": TESTING_EXPECTED,
    "itnio_async.cli": CLI_EXPECTED,
}


@pytest.mark.parametrize(("name", "expected"), SURFACES.items())
def test_all_lists_exactly_the_public_surface(name: str, expected: set[str]) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == expected
    assert len(module.__all__) == len(expected)  # no name listed twice


@pytest.mark.parametrize("name", SURFACES)
def test_every_name_in_all_is_importable_and_owned_by_the_package(name: str) -> None:
    module = importlib.import_module(name)
    for attribute in module.__all__:
        value = getattr(module, attribute)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("itnio_async"), attribute


def test_the_packages_top_level_holds_no_stray_public_name() -> None:
    # ("@..." names are pytest's assertion rewriting: the package holds a pytest plugin.)
    public = {name for name in dir(itnio_async) if not name.startswith(("_", "@"))}
    extra = public - set(itnio_async.__all__)
    assert all(isinstance(getattr(itnio_async, name), types.ModuleType) for name in extra), extra


def test_the_redis_module_reexports_the_packages_limiter_errors() -> None:
    import itnio_async.redis

    assert itnio_async.redis.LimiterUnavailableError is itnio_async.LimiterUnavailableError
    assert itnio_async.redis.LimiterTimeoutError is itnio_async.LimiterTimeoutError


def test_the_fake_vendors_pytest_plugin_is_registered_for_users() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("itnio_async") == "itnio_async.testing.pytest_plugin"


def test_the_itnio_fake_fixture_gives_a_fresh_fake(itnio_fake: object) -> None:
    from itnio_async.testing import FakeVendor

    assert isinstance(itnio_fake, FakeVendor)
    assert itnio_fake.stats.requests == 0
