"""``verify_logout_token`` against the fake provider's JWKS, in both shells: every
check of Back-Channel Logout 1.0 section 2.6. The real server's tokens are verified in
tests/e2e/test_backchannel_logout.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sdk_fakes import CLIENT_ID, ISSUER, FakeProvider

from bastion import InvalidToken, LogoutToken, MemoryReplayStore
from bastion.oauth.claims import LOGOUT_EVENT as EVENT
from bastion.oauth.jose import PrivateKey


def logout_token(provider: FakeProvider, typ: str | None = "logout+jwt",
                 key: PrivateKey | None = None, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": CLIENT_ID, "iat": now, "exp": now + 120,
                              "jti": "jti-1", "sub": "user-1", "sid": "sid-1",
                              "events": {EVENT: {}}}
    claims.update(changes)
    return (key or provider.id_key).sign({k: v for k, v in claims.items() if v is not None},
                                         typ=typ)


def test_a_valid_token_names_the_user_and_session(make_client: Any, provider: FakeProvider):
    client = make_client()
    logout = client.verify_logout_token(logout_token(provider))
    assert isinstance(logout, LogoutToken)
    assert (logout.sub, logout.sid, logout.jti) == ("user-1", "sid-1", "jti-1")
    only_user = client.verify_logout_token(logout_token(provider, sid=None, aud=[CLIENT_ID, "x"],
                                                          azp=CLIENT_ID))
    assert (only_user.sub, only_user.sid) == ("user-1", None)
    only_session = client.verify_logout_token(logout_token(provider, sub=None, key=provider.key))
    assert (only_session.sub, only_session.sid) == (None, "sid-1")


@pytest.mark.parametrize(("typ", "claims", "message"), [
    ("JWT", {}, "not a logout token"),
    (None, {}, "not a logout token"),
    ("at+jwt", {}, "not a logout token"),
    ("logout+jwt", {"iss": "https://other.example"}, "another issuer"),
    ("logout+jwt", {"aud": "another-client"}, "not meant for this client"),
    ("logout+jwt", {"aud": [CLIENT_ID, "x"]}, "authorized party"),
    ("logout+jwt", {"azp": "another-client"}, "authorized party"),
    ("logout+jwt", {"exp": 1000}, "expired"),
    ("logout+jwt", {"exp": None}, "numeric exp"),
    ("logout+jwt", {"iat": 4_000_000_000}, "future"),
    ("logout+jwt", {"events": None}, "no backchannel-logout event"),
    ("logout+jwt", {"events": {EVENT: True}}, "no backchannel-logout event"),
    ("logout+jwt", {"events": {"http://other/event": {}}}, "no backchannel-logout event"),
    ("logout+jwt", {"nonce": "n"}, "nonce"),
    ("logout+jwt", {"sub": None, "sid": None}, "neither a user"),
    ("logout+jwt", {"sid": 7}, "sid claim is not a string"),
    ("logout+jwt", {"jti": None}, "no jti"),
])
def test_a_bad_token_is_refused(make_client: Any, provider: FakeProvider, typ: str | None,
                                claims: dict[str, Any], message: str):
    client = make_client()
    with pytest.raises(InvalidToken, match=message):
        client.verify_logout_token(logout_token(provider, typ=typ, **claims))


def test_a_forged_or_malformed_token_is_refused(make_client: Any, provider: FakeProvider):
    client = make_client(jwks_refresh_interval=0)
    forged = PrivateKey("id-1", "RS256", PrivateKey.generate("x", "RS256").key)
    with pytest.raises(InvalidToken, match="signature"):
        client.verify_logout_token(logout_token(provider, key=forged))
    with pytest.raises(InvalidToken, match="unknown key"):
        client.verify_logout_token(logout_token(provider, key=PrivateKey.generate("k9", "ES256")))
    for junk in ("", "a.b", "a.b.c", "x" * 100_000, None):
        with pytest.raises(InvalidToken):
            client.verify_logout_token(junk)


def test_with_a_replay_store_a_token_is_accepted_once(make_client: Any, provider: FakeProvider):
    client = make_client()
    store = MemoryReplayStore()
    token = logout_token(provider)
    client.verify_logout_token(token, replay_store=store)
    with pytest.raises(InvalidToken, match="used before"):
        client.verify_logout_token(token, replay_store=store)
    client.verify_logout_token(logout_token(provider, jti="jti-2"), replay_store=store)
