"""The vendor's signature, the credentials that feed it, and the server clock it signs with."""

from __future__ import annotations

import hashlib
import string
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from itnio_async._signing import (
    API_KEY_HEADER,
    SIGN_HEADER,
    TIMESTAMP_HEADER,
    Credentials,
    ServerClock,
    SigningAuth,
    compute_sign,
    parse_http_date,
)

#: The vendor's published test vector.
VECTOR_KEY = "bDqJFiq9"
VECTOR_SECRET = "7bz1lzh9"
VECTOR_TIMESTAMP = 1630468800
VECTOR_SIGN = "05d7a50893e22a5c4bb3216ae3396c7c"

#: 2021-09-01 04:00:00 UTC, the vector's timestamp, as an HTTP date.
VECTOR_HTTP_DATE = "Wed, 01 Sep 2021 04:00:00 GMT"


def sign_of(request: httpx.Request, auth: SigningAuth) -> httpx.Request:
    """Run the auth flow once and return the request as it would leave."""
    flow = auth.auth_flow(request)
    signed = next(flow)
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))
    return signed


def a_request() -> httpx.Request:
    return httpx.Request("POST", "https://api.itniotech.com/voice/group/call/query", json={})


# -- compute_sign ------------------------------------------------------------------------


def test_the_published_test_vector_signs_as_the_vendor_says() -> None:
    assert compute_sign(VECTOR_KEY, VECTOR_SECRET, VECTOR_TIMESTAMP) == VECTOR_SIGN


def test_the_timestamp_may_be_given_as_its_decimal_string() -> None:
    assert compute_sign(VECTOR_KEY, VECTOR_SECRET, str(VECTOR_TIMESTAMP)) == VECTOR_SIGN


def test_the_sign_depends_on_key_secret_and_timestamp() -> None:
    assert compute_sign(VECTOR_KEY, VECTOR_SECRET, VECTOR_TIMESTAMP + 1) != VECTOR_SIGN
    assert compute_sign(VECTOR_KEY, "7bz1lzh8", VECTOR_TIMESTAMP) != VECTOR_SIGN
    assert compute_sign("bDqJFiq8", VECTOR_SECRET, VECTOR_TIMESTAMP) != VECTOR_SIGN


@given(
    key=st.text(),
    secret=st.text(),
    timestamp=st.integers(min_value=0, max_value=2**40),
)
def test_the_sign_is_lower_case_hex_md5_of_the_concatenation(
    key: str, secret: str, timestamp: int
) -> None:
    sign = compute_sign(key, secret, timestamp)
    assert len(sign) == 32
    assert set(sign) <= set(string.hexdigits.lower())
    expected = hashlib.md5((key + secret + str(timestamp)).encode("utf-8")).hexdigest()
    assert sign == expected


# -- Credentials ---------------------------------------------------------------------------

_secrets = st.text(min_size=1).filter(lambda s: s.strip())


def test_credentials_repr_shows_the_key_and_not_the_secret() -> None:
    credentials = Credentials("my-key", "hunter2-very-secret")
    assert repr(credentials) == "Credentials(api_key='my-key')"
    assert "hunter2" not in str(credentials)


@given(key=st.text(), secret=_secrets)
def test_credentials_repr_and_str_never_contain_the_secret(key: str, secret: str) -> None:
    credentials = Credentials(key, secret)
    expected = f"Credentials(api_key={key!r})"
    assert repr(credentials) == expected
    assert str(credentials) == expected
    # Only meaningful when the secret is not a piece of the key's own rendering.
    assume(secret not in expected)
    assert secret not in repr(credentials)
    assert secret not in str(credentials)
    assert secret not in f"{credentials}"


def test_credentials_are_frozen() -> None:
    credentials = Credentials("k", "s")
    with pytest.raises(AttributeError):
        credentials.api_secret = "other"  # type: ignore[misc]


# -- ServerClock ---------------------------------------------------------------------------


def test_a_new_clock_has_no_offset_and_reads_the_wall() -> None:
    clock = ServerClock(wall=lambda: 1000.25)
    assert clock.offset == 0.0
    assert clock.enabled
    assert clock.now() == 1000.25


def test_now_adds_the_offset_to_the_wall_clock() -> None:
    clock = ServerClock(offset=-3.5, wall=lambda: 1000.0)
    assert clock.now() == 996.5


def test_the_default_wall_is_the_system_clock() -> None:
    before = time.time()
    now = ServerClock().now()
    assert before - 1 <= now <= time.time() + 1


def test_learn_takes_the_offset_at_the_midpoint_of_sent_and_received() -> None:
    """The server stamped ``Date`` somewhere during the round trip; assume its middle."""
    clock = ServerClock(wall=lambda: 0.0)
    headers = httpx.Headers({"Date": VECTOR_HTTP_DATE})
    # Our clock is 100 s behind: we sent at T-101 and got the reply at T-99.
    assert clock.learn(headers, VECTOR_TIMESTAMP - 101.0, VECTOR_TIMESTAMP - 99.0)
    assert clock.offset == pytest.approx(100.0)


def test_learn_then_now_gives_the_servers_time() -> None:
    local = VECTOR_TIMESTAMP + 42.0  # our clock runs 42 s fast
    clock = ServerClock(wall=lambda: local)
    assert clock.learn(httpx.Headers({"date": VECTOR_HTTP_DATE}), local - 0.2, local + 0.2)
    assert clock.offset == pytest.approx(-42.0)
    assert clock.now() == pytest.approx(VECTOR_TIMESTAMP)


def test_learn_replaces_an_older_offset() -> None:
    clock = ServerClock(offset=500.0, wall=lambda: 0.0)
    assert clock.learn(
        httpx.Headers({"Date": VECTOR_HTTP_DATE}), VECTOR_TIMESTAMP, VECTOR_TIMESTAMP
    )
    assert clock.offset == 0.0


@given(
    skew=st.integers(min_value=-3600, max_value=3600),
    round_trip=st.floats(min_value=0.0, max_value=30.0),
)
def test_learn_recovers_any_whole_second_skew_up_to_an_hour(skew: int, round_trip: float) -> None:
    server_time = VECTOR_TIMESTAMP + 1234
    date = format_datetime(datetime.fromtimestamp(server_time, tz=UTC), usegmt=True)
    middle = server_time - skew
    clock = ServerClock(wall=lambda: float(middle))
    assert clock.learn(
        httpx.Headers({"Date": date}), middle - round_trip / 2, middle + round_trip / 2
    )
    assert clock.offset == pytest.approx(skew, abs=1e-6)
    assert clock.now() == pytest.approx(server_time, abs=1e-6)


# The clock trusts an hour, give or take the Date header's second and half the round trip
# (up to 1 s here): 3,602 s is still inside that, 3,603 s is the first skew beyond it.
@given(
    skew=st.integers(min_value=3603, max_value=10**9) | st.integers(-(10**9), -3603),
    round_trip=st.floats(min_value=0.0, max_value=2.0),
)
@example(skew=3603, round_trip=2.0)
def test_learn_refuses_a_skew_beyond_an_hour(skew: int, round_trip: float) -> None:
    server_time = VECTOR_TIMESTAMP + 1234
    date = format_datetime(datetime.fromtimestamp(server_time, tz=UTC), usegmt=True)
    middle = server_time - skew
    clock = ServerClock(offset=2.5, wall=lambda: float(middle))
    assert not clock.learn(
        httpx.Headers({"Date": date}), middle - round_trip / 2, middle + round_trip / 2
    )
    assert clock.offset == 2.5


@pytest.mark.parametrize("age", ["0", "120"])
def test_learn_ignores_a_reply_that_a_cache_answered(age: str) -> None:
    """With ``Age`` present, ``Date`` is when the cache stored the reply, not now."""
    clock = ServerClock(offset=1.5, wall=lambda: 0.0)
    headers = httpx.Headers({"Date": VECTOR_HTTP_DATE, "Age": age})
    assert not clock.learn(headers, 0.0, 1.0)
    assert clock.offset == 1.5


def test_learn_ignores_a_reply_without_date() -> None:
    clock = ServerClock(offset=1.5, wall=lambda: 0.0)
    assert not clock.learn(httpx.Headers({"Server": "nginx"}), 0.0, 1.0)
    assert not clock.learn(httpx.Headers({"Date": ""}), 0.0, 1.0)
    assert clock.offset == 1.5


@pytest.mark.parametrize(
    "date",
    [
        "yesterday",
        "not a date at all",
        "Wed, 32 Sep 2021 04:00:00 GMT",
        "Wed, 01 Sep 2021 25:61:00 GMT",
        "1630468800",
        "Wed, 01 Foo 2021 04:00:00 GMT",
    ],
)
def test_learn_ignores_an_unreadable_date(date: str) -> None:
    clock = ServerClock(offset=1.5, wall=lambda: 0.0)
    assert not clock.learn(httpx.Headers({"Date": date}), 0.0, 1.0)
    assert clock.offset == 1.5


def test_learn_does_nothing_when_correction_is_disabled() -> None:
    clock = ServerClock(enabled=False, wall=lambda: 0.0)
    assert not clock.learn(httpx.Headers({"Date": VECTOR_HTTP_DATE}), 0.0, 0.0)
    assert clock.offset == 0.0


@pytest.fixture
def local_zone_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the test with the process's local zone set to New York (UTC-4 in September)."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("local_zone_new_york")
@pytest.mark.parametrize(
    "date",
    [
        "Wed Sep  1 04:00:00 2021",  # asctime, which HTTP recipients must accept; it is GMT
        "Wed, 01 Sep 2021 04:00:00 -0000",
        "Wed, 01 Sep 2021 04:00:00 GMT",
    ],
)
def test_learn_reads_every_http_date_form_as_gmt_whatever_the_local_zone(date: str) -> None:
    """HTTP dates are always GMT (RFC 9110 5.6.7), including the zone-less asctime form.

    ``parsedate_to_datetime`` returns a naive datetime for asctime and ``-0000``; calling
    ``.timestamp()`` on it reads it in the process's local zone, which shifts the learned
    offset by the local UTC offset (4 h in New York).
    """
    clock = ServerClock(wall=lambda: float(VECTOR_TIMESTAMP))
    assert clock.learn(httpx.Headers({"Date": date}), VECTOR_TIMESTAMP, VECTOR_TIMESTAMP)
    assert clock.offset == pytest.approx(0.0)


@pytest.mark.usefixtures("local_zone_new_york")
@pytest.mark.parametrize(
    "date",
    [
        "Wed Sep  1 04:00:00 2021",
        "Wed, 01 Sep 2021 04:00:00 -0000",
        "Wed, 01 Sep 2021 04:00:00 GMT",
        "Wednesday, 01-Sep-21 04:00:00 GMT",  # RFC 850, also one HTTP allows
    ],
)
def test_the_http_date_parser_reads_every_form_as_gmt(date: str) -> None:
    """The one parser of ``Date`` (for the clock) and of ``Retry-After`` (for the client)."""
    assert parse_http_date(date) == VECTOR_TIMESTAMP


@pytest.mark.parametrize("date", ["", "yesterday", "Wed, 32 Sep 2021 04:00:00 GMT", "1630468800"])
def test_an_unreadable_http_date_parses_to_none(date: str) -> None:
    assert parse_http_date(date) is None


# -- SigningAuth ---------------------------------------------------------------------------


def test_signing_auth_stamps_the_published_vector() -> None:
    clock = ServerClock(wall=lambda: VECTOR_TIMESTAMP + 0.4)
    auth = SigningAuth(Credentials(VECTOR_KEY, VECTOR_SECRET), clock)
    signed = sign_of(a_request(), auth)
    assert signed.headers[API_KEY_HEADER] == VECTOR_KEY
    assert signed.headers[TIMESTAMP_HEADER] == "1630468800"
    assert signed.headers[SIGN_HEADER] == VECTOR_SIGN
    assert (API_KEY_HEADER, TIMESTAMP_HEADER, SIGN_HEADER) == ("Api-Key", "Timestamp", "Sign")


def test_signing_auth_signs_with_the_corrected_clock() -> None:
    clock = ServerClock(offset=-100.0, wall=lambda: VECTOR_TIMESTAMP + 100.9)
    auth = SigningAuth(Credentials(VECTOR_KEY, VECTOR_SECRET), clock)
    signed = sign_of(a_request(), auth)
    assert signed.headers["Timestamp"] == "1630468800"
    assert signed.headers["Sign"] == VECTOR_SIGN


def test_signing_auth_signs_each_request_afresh() -> None:
    """A retry is signed at the moment it leaves, not with the first attempt's stamp."""
    now = [float(VECTOR_TIMESTAMP)]
    auth = SigningAuth(Credentials(VECTOR_KEY, VECTOR_SECRET), ServerClock(wall=lambda: now[0]))
    first = sign_of(a_request(), auth)
    now[0] += 61
    second = sign_of(a_request(), auth)
    assert first.headers["Timestamp"] == "1630468800"
    assert second.headers["Timestamp"] == "1630468861"
    assert second.headers["Sign"] == compute_sign(VECTOR_KEY, VECTOR_SECRET, 1630468861)
    assert second.headers["Sign"] != first.headers["Sign"]


def test_signing_auth_keeps_the_requests_other_headers_and_body() -> None:
    request = httpx.Request(
        "POST",
        "https://api.itniotech.com/voice/group/call/query",
        content=b'{"current":1}',
        headers={"Content-Type": "application/json;charset=UTF-8"},
    )
    auth = SigningAuth(Credentials("k", "s"), ServerClock(wall=lambda: 1.0))
    signed = sign_of(request, auth)
    assert signed.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert signed.content == b'{"current":1}'


def test_signing_auth_repr_shows_the_key_and_not_the_secret() -> None:
    auth = SigningAuth(Credentials("my-key", "hunter2-very-secret"), ServerClock())
    assert repr(auth) == "SigningAuth(api_key='my-key')"
    assert "hunter2" not in str(auth)


@given(secret=_secrets)
def test_signing_auth_repr_never_contains_the_secret(secret: str) -> None:
    auth = SigningAuth(Credentials("key", secret), ServerClock())
    assume(secret not in "SigningAuth(api_key='key')")
    assert secret not in repr(auth)
    assert secret not in str(auth)
