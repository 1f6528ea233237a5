"""TokenSet: tolerant parsing, expiry, redacted repr, and storing it as JSON."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from sdk_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, FakeProvider, SyncClient

from bastion import ConfigurationError, ProtocolError, TokenSet
from bastion.client.tokens import MAX_EXPIRES_IN


def test_from_response_keeps_unknown_fields():
    tokens = TokenSet.from_response(
        {
            "access_token": "at",
            "token_type": "bearer",
            "expires_in": 60,
            "scope": "a b",
            "refresh_token": "rt",
            "issued_token_type": "x",
        },
        now=1000.0,
    )
    assert tokens.expires_at is not None and tokens.expires_at.timestamp() == 1060.0
    assert tokens.scopes == {"a", "b"}
    assert tokens.extra == {"issued_token_type": "x"}
    assert tokens.authorization == "Bearer at"
    assert tokens.expires_within(60, now=1000.0) and not tokens.expires_within(59, now=1000.0)


def test_expiry_unknown_never_expires():
    tokens = TokenSet.from_response({"access_token": "at", "expires_in": "soon"}, now=0)
    assert tokens.expires_at is None and not tokens.expires_within(10**9)


def test_string_expires_in_is_accepted():
    assert TokenSet.from_response({"access_token": "a", "expires_in": "30"}, now=0).expires_at


@pytest.mark.parametrize("body", [{}, {"access_token": ""}, {"access_token": 5}])
def test_missing_access_token_is_a_protocol_error(body: dict[str, object]):
    with pytest.raises(ProtocolError):
        TokenSet.from_response(body, now=0)


@pytest.mark.parametrize("body", [{"access_token": "tok\u00e9n"},
                                  {"access_token": "a\nb"},
                                  {"access_token": "at", "refresh_token": "r\ud800"}])
def test_a_token_not_made_of_visible_ascii_is_a_protocol_error(body: dict[str, object]):
    """RFC 6749 A.12, A.17. Such an access token raised UnicodeEncodeError when an ID
    token's at_hash was checked against it."""
    with pytest.raises(ProtocolError, match="not printable ASCII"):
        TokenSet.from_response(body, now=0, issued=True)
    assert TokenSet.from_response(body, now=0)  # the app's own, as validate_token_set reads


def test_token_sets_hash_and_compare_by_their_tokens():
    body = {"access_token": "at", "refresh_token": "rt", "issued_token_type": "x"}
    one, same = TokenSet.from_response(body, now=0), TokenSet.from_response(body, now=0)
    assert one == same and hash(one) == hash(same) and len({one, same}) == 1
    assert one != TokenSet.from_response({**body, "refresh_token": "rt-2"}, now=0)


def test_repr_hides_tokens():
    tokens = TokenSet(access_token="secret-access", refresh_token="secret-refresh", scope="a")
    assert "secret" not in repr(tokens)
    assert "scope='a'" in repr(tokens)


def test_a_token_set_round_trips_through_a_json_session(provider: FakeProvider):
    """Flask's and Starlette's sessions keep JSON: ``to_dict`` is JSON, the same after
    ``json``, and ``from_dict`` gives the same tokens back, unbound, every field equal."""
    with SyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                    transport=httpx2.MockTransport(provider)) as client:
        tokens = client.login_password("ann", "pw", "openid")
    tokens = dataclasses.replace(tokens, extra={"issued_token_type": "x", "n": 1})
    stored = json.loads(json.dumps(tokens.to_dict()))
    assert stored == tokens.to_dict() and "client" not in stored
    again = TokenSet.from_dict(stored)
    assert again.client is None and again.to_dict() == stored
    fields = [f.name for f in dataclasses.fields(TokenSet) if f.name != "client"]
    assert [getattr(again, name) for name in fields] == [getattr(tokens, name) for name in fields]
    assert again.id_token_claims is not None and again.expires_at == tokens.expires_at
    assert "secret" not in repr(TokenSet.from_dict({"access_token": "secret-at",
                                                     "refresh_token": "secret-rt"}))
    bare = TokenSet(access_token="at")  # the defaults, and names of a later release, too
    assert TokenSet.from_dict({**bare.to_dict(), "later": 1}) == bare
    assert TokenSet.from_dict({"access_token": "at"}) == bare
    naive = TokenSet.from_dict({"access_token": "at", "expires_at": "2030-01-02T03:04:05"})
    assert naive.expires_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)  # comparable: UTC


@pytest.mark.parametrize("data", [
    None, [], {}, {"access_token": ""}, {"access_token": 5}, {"access_token": "a", "scope": 5},
    {"access_token": "a", "expires_at": 1000}, {"access_token": "a", "expires_at": "soon"},
    {"access_token": "a", "extra": None}, {"access_token": "a", "id_token_claims": []},
])
def test_a_token_set_from_a_dict_that_to_dict_did_not_give_is_refused(data: Any):
    with pytest.raises(ConfigurationError, match="from_dict"):
        TokenSet.from_dict(data)


@pytest.mark.parametrize(
    "expires_in",
    [1e20, float("nan"), float("inf"), -5, "99999999999999999999", "9" * 5000, "\u00b2", True],
)
def test_absurd_expires_in_is_treated_as_absent(expires_in: object):
    tokens = TokenSet.from_response({"access_token": "a", "expires_in": expires_in}, now=1000.0)
    assert tokens.expires_at is None


def test_a_ten_year_expires_in_is_still_taken():
    tokens = TokenSet.from_response({"access_token": "a", "expires_in": MAX_EXPIRES_IN}, now=0)
    assert tokens.expires_at is not None


@pytest.mark.parametrize(
    "body",
    [
        b'{"access_token":"a","expires_in":1e20}',
        b'{"access_token":"a","expires_in":NaN}',
        b'{"access_token":"a","expires_in":"99999999999999999999"}',
        b'{"access_token":"a","expires_in":Infinity}',
    ],
)
def test_a_token_response_with_absurd_expires_in_is_read(make_client: Any, provider: Any,
                                                          body: bytes):
    provider.overrides["/tenant/oauth/token"] = [httpx2.Response(200, content=body)]
    assert make_client().client_credentials().expires_at is None
