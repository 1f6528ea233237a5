"""The sans-IO core driven by hand: no transport, no event loop, no network."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from bastion import InvalidToken
from bastion.client._base import BaseClient, Flow
from bastion.client._config import Settings
from bastion.oauth.jose import PrivateKey

ISSUER = "https://id.example"


def drive(flow: Flow[Any], *responses: httpx2.Response) -> tuple[Any, list[httpx2.Request]]:
    """Feed canned responses to a flow; returns its result and the requests it made."""
    sent: list[httpx2.Request] = []
    queue = list(responses)
    try:
        request = next(flow)
        while True:
            sent.append(request)
            request = flow.send(queue.pop(0))
    except StopIteration as done:
        return done.value, sent


def ok(document: dict[str, Any]) -> httpx2.Response:
    return httpx2.Response(200, content=json.dumps(document).encode())


METADATA = {"issuer": ISSUER, "token_endpoint": ISSUER + "/t", "jwks_uri": ISSUER + "/k"}


def test_client_credentials_flow_builds_the_requests():
    core = BaseClient(
        Settings.from_options({"url": ISSUER, "client_id": "c", "client_secret": "s"})
    )
    tokens, sent = drive(
        core.client_credentials_flow("read"),
        ok(METADATA),
        ok({"access_token": "at", "expires_in": 10}),
    )
    assert [str(r.url) for r in sent] == [
        ISSUER + "/.well-known/openid-configuration",
        ISSUER + "/t",
    ]
    assert sent[1].method == "POST"
    assert sent[1].headers["authorization"] == "Basic Yzpz"
    assert sent[1].content == b"grant_type=client_credentials&scope=read"
    assert tokens.access_token == "at"
    assert not core.is_idempotent(sent[1])
    assert core.is_idempotent(sent[0])


def test_verify_flow_fetches_keys_then_uses_the_clock():
    key = PrivateKey.generate("k", "ES256")
    now = 1_000_000.0
    core = BaseClient(Settings.from_options({"url": ISSUER}), clock=lambda: now)
    token = key.sign(
        {"iss": ISSUER, "aud": ISSUER, "exp": now + 60, "iat": now, "sub": "s"}, typ="at+jwt"
    )
    assert core.verify_cached(token) is None  # no keys yet: I/O needed
    claims, sent = drive(core.verify_flow(token), ok(METADATA), ok({"keys": [key.public_jwk()]}))
    assert claims["sub"] == "s" and len(sent) == 2
    assert core.verify_cached(token) == claims
    now += 120
    with pytest.raises(InvalidToken, match="expired"):
        core.verify_cached(token)
