"""The public surface is exactly what ``__all__`` says, and nothing drifts in by accident."""

from __future__ import annotations

import inspect
import types

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
    "StreamProgress",
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


def test_all_lists_exactly_the_public_surface() -> None:
    assert set(itnio_async.__all__) == EXPECTED
    assert len(itnio_async.__all__) == len(EXPECTED)


def test_every_name_in_all_is_importable_and_owned_by_the_package() -> None:
    for name in itnio_async.__all__:
        value = getattr(itnio_async, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("itnio_async"), name


def test_public_names_not_in_all_are_only_modules() -> None:
    # ("@..." names are pytest's assertion rewriting: the package holds a pytest plugin.)
    public = {name for name in dir(itnio_async) if not name.startswith(("_", "@"))}
    extra = public - set(itnio_async.__all__)
    assert all(isinstance(getattr(itnio_async, name), types.ModuleType) for name in extra), extra


def test_the_fake_vendors_pytest_plugin_is_registered_for_users() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("itnio_async") == "itnio_async.testing.pytest_plugin"


def test_the_itnio_fake_fixture_gives_a_fresh_fake(itnio_fake: object) -> None:
    from itnio_async.testing import FakeVendor

    assert isinstance(itnio_fake, FakeVendor)
    assert itnio_fake.stats.requests == 0
