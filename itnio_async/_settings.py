"""The environment the library, the command line and the examples read: one set of
variables, read here and nowhere else.

``ENVIRONMENT`` names each variable and what it means. ``Settings.from_env()`` reads
them all at once and checks each, so that a wrong value is a ``ValueError`` naming the
variable (not the argument it feeds); ``AsyncVoiceClient`` reads the credentials and
``ITNIO_BASE_URL`` through ``env_value`` when they are not passed.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any, Final, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import httpx

from ._signing import check_credential

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RATE_LIMIT",
    "ENVIRONMENT",
    "ENV_API_KEY",
    "ENV_API_SECRET",
    "ENV_BASE_URL",
    "ENV_RATE_LIMIT",
    "ENV_SERVER_TIMEZONE",
    "Settings",
    "check_base_url",
    "env_value",
]

#: The vendor's production endpoint.
DEFAULT_BASE_URL: Final = "https://api.itniotech.com"
#: Requests per second when none is given. The vendor publishes no limit; this is a
#: conservative start that an account with a known quota should raise.
DEFAULT_RATE_LIMIT: Final = 10.0

ENV_API_KEY: Final = "ITNIO_API_KEY"
ENV_API_SECRET: Final = "ITNIO_API_SECRET"  # noqa: S105 - the variable's name, not a secret
ENV_BASE_URL: Final = "ITNIO_BASE_URL"
ENV_RATE_LIMIT: Final = "ITNIO_RATE_LIMIT"
ENV_SERVER_TIMEZONE: Final = "ITNIO_SERVER_TIMEZONE"

#: Every variable ``Settings.from_env`` reads, and what it means.
ENVIRONMENT: Final[Mapping[str, str]] = {
    ENV_API_KEY: "the account's API key",
    ENV_API_SECRET: "the account's API secret",
    ENV_BASE_URL: f"the vendor's endpoint (default {DEFAULT_BASE_URL})",
    ENV_RATE_LIMIT: (
        f"requests per second at most (default {DEFAULT_RATE_LIMIT:g}); 0 or 'none' for no limit"
    ),
    ENV_SERVER_TIMEZONE: "the vendor's IANA time zone, e.g. Asia/Shanghai (default: none)",
}

_NO_LIMIT: Final = frozenset({"0", "none", "off", "unlimited"})


def env_value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The value of the variable ``name`` (of ``env``, default ``os.environ``), or ``None``
    when it is unset or empty."""
    value = (os.environ if env is None else env).get(name)
    return value or None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: object, name: str = "base_url") -> httpx.URL:
    """A base URL that is safe to sign requests to: https (http only to loopback), no
    credentials, no query. A path prefix is kept (``https://gw/v3`` sends to
    ``https://gw/v3/voice/...``), as ``httpx`` does with its own ``base_url``.

    ``name`` is what the errors call it: the argument, or the variable it came from.
    Raises ``TypeError`` for a value that is not a ``str``, ``ValueError`` for any other
    fault."""
    if not isinstance(base_url, str):
        raise TypeError(f"{name} must be a str, got {type(base_url).__name__}")
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        raise ValueError(f"{name} is not a valid URL") from None
    # Never echo a password or a token: show the URL with its userinfo masked and without
    # its query or fragment (``?token=...``).
    shown = base_url
    if url.userinfo or url.query or url.fragment:
        masked = "***@" if url.userinfo else ""
        shown = f"{url.scheme}://{masked}{url.netloc.decode()}{url.path}"
        shown += "?…" if url.query else "#…" if url.fragment else ""
    if url.userinfo:
        raise ValueError(
            f"{name} must not hold a user name or password, got {shown!r}: the vendor "
            "authenticates by Api-Key and Sign, and a password would show in repr and logs"
        )
    if url.query or url.fragment:
        raise ValueError(f"{name} must not have a query or a fragment, got {shown!r}")
    if url.scheme == "https" and url.host:
        return url
    if url.scheme == "http" and url.host and _is_loopback(url.host):
        return url
    raise ValueError(
        f"{name} must be https:// (plain http:// only to a loopback host), got {shown!r}"
    )


def _rate_limit(text: str) -> float | None:
    word = text.strip().lower()
    if word in _NO_LIMIT:
        return None
    try:
        value = float(word)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"{ENV_RATE_LIMIT} must be a number of requests per second > 0, or 0 or 'none' "
            f"for no limit, got {text!r}"
        )
    return value


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{ENV_SERVER_TIMEZONE} is not a known time zone: {text!r} (an IANA name, such "
            "as Asia/Shanghai)"
        ) from None


def _credential(env: Mapping[str, str] | None, name: str) -> str | Exception | None:
    """The checked credential of the variable ``name``, or the error to raise: returned
    without a traceback, so that no frame of one holds the value."""
    value = env_value(name, env)
    if value is None:
        return None
    try:
        return check_credential(name, value)
    except (TypeError, ValueError) as exc:
        return exc.with_traceback(None)


@attrs.frozen
class Settings:
    """The account, the vendor and the limit, as the environment gives them.

    Read them with ``Settings.from_env()``; ``AsyncVoiceClient(**settings.client_options())``
    makes a client of them. The command line and the examples read the environment this
    way, so one set of variables (``ENVIRONMENT``) configures them all.

    Args:
        api_key: the account's API key (``ITNIO_API_KEY``); ``None`` when unset.
        api_secret: its secret (``ITNIO_API_SECRET``), never shown in the ``repr``.
        base_url: the vendor's endpoint (``ITNIO_BASE_URL``); ``None``: the client's
            default, ``DEFAULT_BASE_URL``.
        rate_limit: requests per second (``ITNIO_RATE_LIMIT``, default
            ``DEFAULT_RATE_LIMIT``, 10); ``None`` for no limit.
        server_timezone: the vendor's zone (``ITNIO_SERVER_TIMEZONE``), or ``None``.
    """

    api_key: str | None = None
    api_secret: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    rate_limit: float | None = DEFAULT_RATE_LIMIT
    server_timezone: tzinfo | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read every variable of ``ENVIRONMENT``; an unset or empty one takes its default.

        Args:
            env: where to read them; default ``os.environ``.

        Returns:
            The settings, each checked.

        Raises:
            ValueError: a variable holds what its setting cannot take (a rate that is not
                a number, an unknown zone, an ``http://`` base URL to another host, a
                credential with a space or a control character); the message names the
                variable and never shows a credential.
        """
        key = _credential(env, ENV_API_KEY)
        if isinstance(key, Exception):
            raise key
        base_url = env_value(ENV_BASE_URL, env)
        if base_url is not None:
            check_base_url(base_url, ENV_BASE_URL)
        rate = env_value(ENV_RATE_LIMIT, env)
        rate_limit = DEFAULT_RATE_LIMIT if rate is None else _rate_limit(rate)
        zone = env_value(ENV_SERVER_TIMEZONE, env)
        server_timezone = None if zone is None else _zone(zone)
        # Last, so that no frame that raises holds the secret.
        secret = _credential(env, ENV_API_SECRET)
        if isinstance(secret, Exception):
            raise secret
        return cls(key, secret, base_url, rate_limit, server_timezone)

    def client_options(self) -> dict[str, Any]:
        """The arguments of ``AsyncVoiceClient`` these settings give: ``api_key``,
        ``api_secret``, ``base_url``, ``rate_limit`` and ``server_timezone``."""
        return {
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "base_url": self.base_url,
            "rate_limit": self.rate_limit,
            "server_timezone": self.server_timezone,
        }
