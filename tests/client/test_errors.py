"""What the SDK's errors carry: the server's own words, its request id, and both
again after a pickle (a task queue, a multiprocessing pool)."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import httpx2
import pytest
from sdk_fakes import FakeProvider

from bastion import (
    BadRequest,
    BastionError,
    ConfigurationError,
    InvalidGrant,
    InvalidToken,
    NotFound,
    OAuthError,
    RateLimited,
    TemporarilyUnavailable,
    TimeoutError,
    TransportError,
)
from bastion.client._responses import error_from_response

#: What Bastion's REST API answers when ``update_roles(..., reissue=...)`` is refused.
REISSUE_REFUSED = {
    "type": "about:blank",
    "title": "Invalid grant",
    "status": 400,
    "detail": "The refresh token to reissue is not a valid token of this user.",
    "error": "invalid_grant",
}


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_problem_json_with_an_oauth_code_keeps_its_detail():
    exc = error_from_response(400, {}, body(REISSUE_REFUSED), now=0)
    assert type(exc) is InvalidGrant
    assert exc.error_description == REISSUE_REFUSED["detail"]
    assert str(exc) == "invalid_grant: " + REISSUE_REFUSED["detail"]
    # error_description still comes first, as RFC 6749 has it.
    both = {**REISSUE_REFUSED, "error_description": "Spent."}
    assert error_from_response(400, {}, body(both), now=0).error_description == "Spent."


def test_a_refused_call_says_what_the_server_said(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/api/thing"] = [httpx2.Response(400, json=REISSUE_REFUSED)]
    with pytest.raises(InvalidGrant) as caught:
        make_client().request("POST", "/api/thing")
    assert caught.value.error_description == REISSUE_REFUSED["detail"]


@pytest.mark.parametrize(
    ("status", "headers", "content"),
    [
        (404, {}, body({"title": "Not Found", "status": 404, "detail": "No user 'x'."})),
        (400, {}, body({"error": "invalid_grant"})),
        (400, {}, body(REISSUE_REFUSED)),
        (401, {"www-authenticate": 'Bearer error="invalid_token"'}, b""),
        (429, {"retry-after": "3"}, b""),
        (503, {}, b""),
        (502, {}, b"<html>"),
    ],
)
def test_errors_carry_the_request_id(status: int, headers: dict[str, str], content: bytes):
    plain = error_from_response(status, headers, content, now=0)
    assert plain.request_id is None
    tagged = error_from_response(status, {**headers, "x-request-id": "3f2a9c"}, content, now=0)
    assert tagged.request_id == "3f2a9c"
    assert str(tagged) == f"{plain} (request id 3f2a9c)"
    assert tagged.message == plain.message  # the message itself is the server's


@pytest.mark.parametrize("given", ["", "a b", "x\nFAKE LOG LINE", "é", "x" * 129])
def test_an_odd_request_id_is_left_out(given: str):
    exc = error_from_response(404, {"x-request-id": given}, b"", now=0)
    assert exc.request_id is None and "request id" not in str(exc)


def test_a_refused_call_carries_the_request_id(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/api/thing"] = [
        httpx2.Response(404, json={"detail": "No user 'x'."}, headers={"X-Request-ID": "r-1"})
    ]
    with pytest.raises(NotFound) as caught:
        make_client().request("GET", "/api/thing")
    assert caught.value.request_id == "r-1"
    assert str(caught.value) == "404 NotFound: No user 'x'. (request id r-1)"


def _limited() -> BastionError:
    return error_from_response(429, {"retry-after": "7", "x-request-id": "r-2"},
                               body({"detail": "Slow down."}), now=0)


def _unavailable() -> BastionError:
    return error_from_response(503, {"retry-after": "5"}, b"", now=0)


def _not_sent() -> TransportError:
    error = TransportError("Could not reach the provider (ConnectError).")
    error.sent = False
    return error


@pytest.mark.parametrize(
    "make",
    [
        lambda: error_from_response(404, {}, body({"detail": "No user 'x'."}), now=0),
        lambda: error_from_response(400, {"x-request-id": "r-3"}, body(REISSUE_REFUSED), now=0),
        lambda: error_from_response(400, {}, body({"error": "custom_thing"}), now=0),
        lambda: InvalidToken(headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}),
        lambda: OAuthError("odd", error="custom_thing", status_code=418),
        _limited,
        _unavailable,
        _not_sent,
        lambda: TimeoutError("The request to the provider timed out."),
        lambda: ConfigurationError("option 'url' must be an http(s) URL"),
        lambda: BastionError(),
    ],
)
def test_errors_survive_pickling_and_copying(make: Any):
    error = make()
    unpickled = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    for again in (unpickled, copy.copy(error), copy.deepcopy(error)):
        assert type(again) is type(error)
        assert (str(again), repr(again), again.args) == (str(error), repr(error), error.args)
        assert again.__dict__ == error.__dict__
    if isinstance(error, RateLimited | TemporarilyUnavailable):
        assert unpickled.retry_after == error.retry_after


def test_an_unpickled_not_found_reads_as_before():
    error = error_from_response(404, {}, body({"detail": "No user 'x'."}), now=0)
    unpickled = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert str(unpickled) == "404 NotFound: No user 'x'."


def test_an_error_without_a_message_shows_its_request_id_alone():
    error = BastionError()
    error.request_id = "r-4"
    assert str(error) == "(request id r-4)" and str(BastionError()) == ""


def test_a_copy_has_notes_and_headers_of_its_own_and_the_same_chain():
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise InvalidToken(headers={"WWW-Authenticate": "Bearer"}) from OSError("cause")
    except InvalidToken as exc:
        error = exc
    error.add_note("original")
    again = copy.copy(error)
    again.add_note("copy")
    again.headers["X-Copy"] = "1"
    assert error.__notes__ == ["original"] and error.headers == {"WWW-Authenticate": "Bearer"}
    assert again.__notes__ == ["original", "copy"]
    assert (again.__cause__, again.__context__, again.__suppress_context__) == (
        error.__cause__, error.__context__, True)
    assert again.__traceback__ is None  # where the original was raised is the original's


@pytest.mark.parametrize(("errors", "read"), [
    ([{"field": "scopes.0", "message": "bad"}, {"field": "name", "message": "long"}],
     (("scopes.0", "bad"), ("name", "long"))),
    ([{"field": "x"}, "y", {"field": 1, "message": "m"}, {"message": "m"}], ()),
    ({"field": "x", "message": "m"}, ()),
    (None, ()),
])
def test_a_422_names_its_fields_as_pairs(errors: Any, read: tuple[tuple[str, str], ...]) -> None:
    problem = {"type": "about:blank", "title": "Invalid input", "detail": "d", "errors": errors}
    exc = error_from_response(422, {}, body(problem), now=0)
    assert isinstance(exc, BadRequest) and exc.errors == read
