"""The I/O-free decisions: error mapping, Retry-After and the retry policy."""

from __future__ import annotations

import json

import httpx2
import pytest

from bastion import (
    APIError,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    InvalidClient,
    InvalidToken,
    NotFound,
    OAuthError,
    ProtocolError,
    RateLimited,
    ServerError,
    TemporarilyUnavailable,
    Unauthorized,
)
from bastion.client._responses import error_from_response, json_object, retry_after_seconds
from bastion.client._retry import RetryPolicy


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_oauth_error_json_rebuilds_the_class():
    exc = error_from_response(
        401, {}, body({"error": "invalid_client", "error_description": "bad"}), now=0
    )
    assert isinstance(exc, InvalidClient)
    assert (exc.error_code, exc.error_description, exc.status_code) == (
        "invalid_client",
        "bad",
        401,
    )


def test_unknown_oauth_code_keeps_the_code():
    exc = error_from_response(400, {}, body({"error": "custom_thing"}), now=0)
    assert type(exc) is OAuthError and exc.error_code == "custom_thing"


def test_bearer_challenge_maps_to_oauth_class():
    headers = {"www-authenticate": 'Bearer error="invalid_token", error_description="expired"'}
    exc = error_from_response(401, headers, b"", now=0)
    assert isinstance(exc, InvalidToken) and exc.error_description == "expired"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (422, BadRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (418, APIError),
    ],
)
def test_problem_json_maps_by_status(status: int, cls: type[APIError]):
    problem = {
        "type": "https://bastion/errors/x",
        "title": "Nope",
        "status": status,
        "detail": "because",
    }
    exc = error_from_response(status, {}, body(problem), now=0)
    assert type(exc) is cls
    assert (exc.error_code, exc.error_description, exc.title) == (
        "https://bastion/errors/x",
        "because",
        "Nope",
    )
    assert "because" in str(exc)


def test_server_errors_and_rate_limits():
    assert type(error_from_response(502, {}, b"<html>", now=0)) is ServerError
    unavailable = error_from_response(503, {}, b"", now=0)
    assert type(unavailable) is TemporarilyUnavailable and unavailable.retry_after is None
    later = error_from_response(503, {"retry-after": "30"}, b"", now=0)
    assert isinstance(later, TemporarilyUnavailable) and later.retry_after == 30
    limited = error_from_response(429, {"retry-after": "12"}, b"", now=0)
    assert isinstance(limited, RateLimited) and limited.retry_after == 12


def test_long_server_text_is_truncated():
    exc = error_from_response(404, {}, body({"detail": "x" * 5000}), now=0)
    assert len(str(exc)) < 400


def test_retry_after_forms():
    assert retry_after_seconds({"retry-after": "5"}, now=0) == 5
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_seconds({"retry-after": date}, now=1445412470.0) == 10
    assert retry_after_seconds({"retry-after": "soon"}, now=0) is None
    assert retry_after_seconds({}, now=0) is None


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",  # isdigit() says yes, float() says no
        "\u0663",  # an Arabic-Indic three
        "9" * 400,  # float("inf")
        "Wed, 21 Oct 2015 07:28:00",  # no zone
        "Wed, 21 Oct 99999 07:28:00 GMT",
    ],
)
def test_odd_retry_after_values_are_ignored(value: str):
    assert retry_after_seconds({"retry-after": value}, now=0) is None


def test_an_odd_retry_after_still_gives_rate_limited():
    headers = httpx2.Headers([(b"Retry-After", "\u00b2".encode("latin-1"))])
    limited = error_from_response(429, headers, b"", now=0)
    assert isinstance(limited, RateLimited) and limited.retry_after is None
    policy = RetryPolicy(jitter=lambda: 1.0)
    assert policy.after_response(429, headers, 0, method="GET", now=0) == 0.5


def test_deeply_nested_json_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="not JSON"):
        json_object(b"[" * 100_000 + b"]" * 100_000)


def test_retry_policy_decisions():
    policy = RetryPolicy(retries=2, backoff=1, max_backoff=3, jitter=lambda: 1.0)
    read_error = httpx2.ReadError("x")
    assert policy.after_error(read_error, 0, idempotent=True) == 1
    assert policy.after_error(read_error, 1, idempotent=True) == 2
    assert policy.after_error(read_error, 2, idempotent=True) is None  # out of retries
    assert policy.after_error(read_error, 0, idempotent=False) is None  # may be processed
    assert policy.after_error(httpx2.ConnectError("x"), 0, idempotent=False) == 1
    assert policy.after_error(ValueError("x"), 0, idempotent=True) is None
    assert policy.after_response(503, {}, 5 - 5, method="GET", now=0) == 1
    assert policy.after_response(503, {}, 0, method="POST", now=0) is None
    assert policy.after_response(429, {"retry-after": "4"}, 0, method="GET", now=0) == 4
    assert policy.after_response(429, {"retry-after": "4"}, 0, method="POST", now=0) is None
    assert policy.after_response(429, {"retry-after": "600"}, 0, method="GET", now=0) is None
    assert policy.after_response(500, {}, 0, method="GET", now=0) is None
    assert RetryPolicy(backoff=1, max_backoff=3, jitter=lambda: 1.0)._backoff(10) == 3



def test_a_retry_after_longer_than_the_timeout_is_not_waited_for():
    from sdk_fakes import CLIENT_ID, ISSUER, FakeProvider

    provider = FakeProvider()
    provider.overrides["/tenant/.well-known/openid-configuration"] = [
        httpx2.Response(503, headers={"Retry-After": "6"}),
        httpx2.Response(503, headers={"Retry-After": "4"}),
    ]
    slept: list[float] = []
    with Client(ISSUER, client_id=CLIENT_ID, timeout=5,
                transport=httpx2.MockTransport(provider)) as client:
        client._sleep = slept.append  # not for 6 s: raised at once instead
        with pytest.raises(TemporarilyUnavailable) as caught:
            client.discover()
    assert slept == [] and provider.calls["/tenant/.well-known/openid-configuration"] == 1
    assert caught.value.retry_after == 6  # the caller learns how long to wait
