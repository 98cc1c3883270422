"""The error tree: who is whose parent, and what an error says about itself."""

from __future__ import annotations

import pickle

import pytest

from itnio_async import _errors
from itnio_async._errors import (
    API_ERRORS,
    BODY_EXCERPT_CHARS,
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
    api_error,
    shorten,
)

#: Every class and its direct parent in the tree, as the module docstring draws it.
TREE = {
    ItnioAPIError: ItnioError,
    AuthenticationError: ItnioAPIError,
    IPRestrictedError: ItnioAPIError,
    TimestampExpiredError: ItnioAPIError,
    VendorServerError: ItnioAPIError,
    InvalidParameterError: ItnioAPIError,
    ItnioHTTPError: ItnioError,
    RateLimitedError: ItnioHTTPError,
    ItnioTransportError: ItnioError,
    ItnioTimeoutError: ItnioTransportError,
    MalformedResponseError: ItnioError,
    ClientStateError: ItnioError,
    LimiterUnavailableError: ItnioError,
    LimiterTimeoutError: ItnioError,
    ResultUnstableError: ItnioError,
}

#: The branches under the root that must stay apart (catching one never catches another).
BRANCHES = [
    ItnioAPIError,
    ItnioHTTPError,
    ItnioTransportError,
    MalformedResponseError,
    ClientStateError,
    LimiterUnavailableError,
    LimiterTimeoutError,
    ResultUnstableError,
]

#: Each class's own ``transient``: true for exactly what the retry policy retries.
TRANSIENT = {
    ItnioError: False,
    ItnioAPIError: False,
    AuthenticationError: False,
    IPRestrictedError: False,
    TimestampExpiredError: True,
    VendorServerError: True,
    InvalidParameterError: False,
    ItnioHTTPError: False,
    RateLimitedError: True,
    ItnioTransportError: True,
    ItnioTimeoutError: True,
    MalformedResponseError: False,
    ClientStateError: False,
    LimiterUnavailableError: False,
    LimiterTimeoutError: False,
    ResultUnstableError: False,
}


@pytest.mark.parametrize(("cls", "parent"), TREE.items(), ids=lambda c: c.__name__)
def test_each_error_sits_under_the_parent_the_tree_draws(cls: type, parent: type) -> None:
    assert parent in cls.__bases__
    assert issubclass(cls, ItnioError)
    assert issubclass(cls, Exception)


def test_the_tree_names_every_public_error() -> None:
    """No public error class is left out of the drawing (and so out of these tests)."""
    public = {getattr(_errors, name) for name in _errors.__all__} - {ItnioError}
    assert public == set(TREE)


def test_the_module_docstring_draws_every_error_of_the_tree() -> None:
    drawing = (_errors.__doc__ or "").split("::\n\n", 1)[1].split("\n\n", 1)[0]
    drawn = {line.split("── ")[-1].split()[0] for line in drawing.splitlines() if "── " in line}
    assert drawn == {cls.__name__ for cls in TREE}
    assert drawing.startswith("    ItnioError ")


@pytest.mark.parametrize(("cls", "transient"), TRANSIENT.items(), ids=lambda c: str(c))
def test_each_error_class_says_whether_it_is_transient(cls: type, transient: bool) -> None:
    assert cls.transient is transient
    assert set(TRANSIENT) == {ItnioError, *TREE}


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        *((status, True) for status in (429, 500, 502, 503, 504)),
        *((status, False) for status in (400, 401, 403, 404, 501, 505)),
    ],
)
def test_an_http_error_is_transient_by_its_status(status: int, transient: bool) -> None:
    assert ItnioHTTPError(status, "").transient is transient


def test_a_stream_error_has_no_resume_cursor_until_a_stream_sets_one() -> None:
    error = ResultUnstableError("the result kept changing")
    assert error.resume_from is None
    assert error.page is None
    error.resume_from = ("cursor", 7)
    assert str(error) == "the result kept changing"


@pytest.mark.parametrize("branch", BRANCHES, ids=lambda c: c.__name__)
def test_the_branches_under_the_root_do_not_overlap(branch: type) -> None:
    for other in BRANCHES:
        if other is not branch:
            assert not issubclass(branch, other)
            assert not issubclass(other, branch)


def test_a_timeout_is_a_transport_fault() -> None:
    with pytest.raises(ItnioTransportError):
        raise ItnioTimeoutError("read timed out")


def test_client_state_error_is_also_a_runtime_error() -> None:
    """Code that guards a closed resource with ``except RuntimeError`` still catches it."""
    assert issubclass(ClientStateError, RuntimeError)
    with pytest.raises(RuntimeError, match="closed"):
        raise ClientStateError("the client is closed")


def test_only_client_state_error_is_a_runtime_error() -> None:
    for cls in TREE:
        if cls is not ClientStateError:
            assert not issubclass(cls, RuntimeError), cls


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (-1, AuthenticationError),
        (-2, IPRestrictedError),
        (-16, TimestampExpiredError),
        (-18, VendorServerError),
        (-22, InvalidParameterError),
    ],
)
def test_each_documented_code_builds_its_own_class(code: int, cls: type) -> None:
    error = api_error(code, "why", status_code=200)
    assert type(error) is cls
    assert error.code == code
    assert error.msg == "why"
    assert API_ERRORS[code] is cls


@pytest.mark.parametrize("code", [-3, -17, 1, 500, 99999])
def test_an_unknown_code_builds_a_plain_api_error_that_keeps_code_and_message(code: int) -> None:
    error = api_error(code, "something new", status_code=200)
    assert type(error) is ItnioAPIError
    assert error.code == code
    assert error.msg == "something new"
    assert str(code) in str(error)
    assert "something new" in str(error)


def test_an_api_error_without_a_message_says_so() -> None:
    error = ItnioAPIError(-5, "")
    assert error.msg == ""
    assert str(error) == "vendor error -5: (no message)"


def test_an_api_error_keeps_the_http_status_it_came_with() -> None:
    assert ItnioAPIError(-18, "x").status_code == 200
    assert api_error(-18, "x", status_code=500).status_code == 500


def test_str_is_the_bare_message_when_neither_attempts_nor_page_is_set() -> None:
    error = ItnioTransportError("POST /x failed")
    assert error.attempts is None
    assert error.page is None
    assert str(error) == "POST /x failed"


def test_str_counts_the_attempts_when_they_are_set() -> None:
    error = VendorServerError(-18, "port program unusual")
    error.attempts = 6
    assert str(error) == "vendor error -18: port program unusual (after 6 attempts)"


def test_str_says_attempt_in_the_singular_after_one_attempt() -> None:
    error = AuthenticationError(-1, "bad sign")
    error.attempts = 1
    assert str(error) == "vendor error -1: bad sign (after 1 attempt)"


def test_str_names_the_page_to_resume_from_before_the_attempts() -> None:
    error = ItnioTimeoutError("POST /x timed out")
    error.page = 7
    assert str(error) == "POST /x timed out (page 7)"
    error.attempts = 3
    assert str(error) == "POST /x timed out (page 7, after 3 attempts)"


def test_http_error_body_is_whitespace_collapsed() -> None:
    error = ItnioHTTPError(502, "<html>\n  <body>\tBad   gateway\r\n</body>\n</html>\n")
    assert error.body == "<html> <body> Bad gateway </body> </html>"
    assert error.status_code == 502
    assert str(error) == "HTTP 502: <html> <body> Bad gateway </body> </html>"


def test_http_error_body_is_shortened_to_the_excerpt_limit_with_an_ellipsis() -> None:
    huge = "<html>" + "x" * 10_000 + "</html>"
    error = ItnioHTTPError(503, huge, reason="Service Unavailable")
    assert len(error.body) <= BODY_EXCERPT_CHARS == 200
    assert error.body.endswith("…")
    assert error.body.startswith("<html>xxx")
    assert len(str(error)) < 300
    assert str(error).startswith("HTTP 503 Service Unavailable: <html>")


def test_http_error_without_a_body_shows_only_its_status_line() -> None:
    error = ItnioHTTPError(500, "  \n ", reason="Internal Server Error")
    assert error.body == ""
    assert str(error) == "HTTP 500 Internal Server Error"


def test_http_error_keeps_retry_after() -> None:
    assert RateLimitedError(429, "", retry_after=2.5).retry_after == 2.5
    assert ItnioHTTPError(503, "").retry_after is None


def test_malformed_response_error_keeps_a_short_excerpt_and_the_http_status() -> None:
    body = "<!DOCTYPE html>\n<html>\n" + "<p>maintenance</p>\n" * 500 + "</html>"
    error = MalformedResponseError("not JSON", status_code=502, body=body)
    assert error.status_code == 502
    assert error.reason == "not JSON"
    assert len(error.body) <= BODY_EXCERPT_CHARS
    assert "\n" not in error.body
    assert error.body.startswith("<!DOCTYPE html> <html> <p>maintenance</p>")
    assert "HTTP 502" in str(error)
    assert "not JSON" in str(error)
    assert len(str(error)) < 300


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("short", "short"),
        ("a\n\n b\t c ", "a b c"),
        ("x" * 200, "x" * 200),
        ("x" * 201, "x" * 199 + "…"),
    ],
)
def test_shorten_collapses_whitespace_and_cuts_at_the_limit(text: str, expected: str) -> None:
    assert shorten(text) == expected
    assert len(shorten(text)) <= BODY_EXCERPT_CHARS


def test_errors_chain_their_cause_when_raised_from_one() -> None:
    cause = ValueError("Expecting value")
    with pytest.raises(MalformedResponseError) as info:
        raise MalformedResponseError("not JSON", status_code=200, body="<") from cause
    assert info.value.__cause__ is cause


def _with_context(error: ItnioError) -> ItnioError:
    error.attempts = 3
    error.page = 4
    error.resume_from = {"page": 4, "end": "2024-06-30 23:59:59"}
    return error


PICKLABLE = [
    _with_context(ItnioTransportError("connection reset")),
    _with_context(api_error(-18, "port program unusual", status_code=200)),
    _with_context(ItnioAPIError(-99, "unknown")),
    _with_context(RateLimitedError(429, "slow down", reason="Too Many", retry_after=2.0)),
    _with_context(MalformedResponseError("not JSON", status_code=502, body="<html>")),
    _with_context(ClientStateError("closed")),
    _with_context(LimiterUnavailableError("redis is down")),
    _with_context(LimiterTimeoutError("too long", max_wait=2.0)),
    _with_context(ResultUnstableError("the result kept changing")),
]


@pytest.mark.parametrize("error", PICKLABLE, ids=lambda e: type(e).__name__)
def test_an_error_survives_pickling_with_its_fields(error: ItnioError) -> None:
    """Errors cross process boundaries (``ProcessPoolExecutor``, ``QueueHandler`` logging).

    ``Exception.__reduce__`` rebuilds an error as ``cls(*self.args)``, that is
    ``cls(message)``; an ``__init__`` that needs more (``code, msg``; ``status_code, body``;
    ``reason, status_code=, body=``) raises ``TypeError`` on unpickling. ``copy.copy``
    goes the same way.
    """
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert vars(again) == vars(error)
