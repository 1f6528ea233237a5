"""Access-token claim checks (RFC 9068 section 4)."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.oauth.claims import check_access_token_claims, check_access_token_type, timestamp
from bastion.oauth.errors import InsufficientScope, InvalidToken

NOW = 1_000_000
GOOD = {"iss": "i", "aud": "a", "exp": NOW + 10, "iat": NOW, "scope": "read write"}


def check(claims: dict[str, Any], **kwargs: Any) -> None:
    options = {"issuer": "i", "audience": "a", "now": NOW, "leeway": 5, **kwargs}
    check_access_token_claims(claims, **options)


def test_good_claims_pass():
    check(GOOD)
    check({**GOOD, "aud": ["x", "a"], "nbf": NOW + 5, "exp": NOW - 4}, scopes=["read"])


@pytest.mark.parametrize(
    "change",
    [
        {"iss": "j"},
        {"aud": "b"},
        {"aud": ["b"]},
        {"exp": NOW - 5},
        {"exp": True},
        {"nbf": NOW + 6},
        {"iat": NOW + 6},
        {"iat": "now"},
        {"exp": float("nan")},  # json reads NaN and Infinity: they passed every check
        {"exp": float("inf")},
        {"nbf": float("-inf")},
        {"exp": 10**400},  # raised OverflowError
        {"iat": 2**53},
    ],
)
def test_bad_claims_raise_invalid_token(change: dict[str, Any]):
    with pytest.raises(InvalidToken):
        check({**GOOD, **change})


def test_scopes():
    with pytest.raises(InsufficientScope):
        check(GOOD, scopes=["admin"])
    with pytest.raises(InsufficientScope):
        check({**GOOD, "scope": None}, scopes=["read"])


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_access_token_types(typ: str):
    check_access_token_type({"typ": typ})


@pytest.mark.parametrize("header", [{}, {"typ": "JWT"}, {"typ": 1}])
def test_other_types_are_refused(header: dict[str, Any]):
    with pytest.raises(InvalidToken):
        check_access_token_type(header)


@pytest.mark.parametrize(("value", "read"), [
    (NOW, NOW), (1.5, 1.5), (-3, -3), (True, None), (None, None), ("1", None),
    (float("nan"), None), (float("inf"), None), (10**400, None), (2**53 - 1, 2**53 - 1)])
def test_a_time_claim_is_a_finite_number(value: Any, read: Any) -> None:
    assert timestamp(value) == read
