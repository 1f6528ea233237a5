"""Changes to the signing keys made elsewhere (another instance, the CLI) or by a
restart with another algorithm: every token that should verify does, on every
instance, and a withdrawn key stops signing within ``keys.RELOAD_EVERY``."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from security_helpers import Env, authorize_url, location_params

from bastion.oauth.jose import b64url_encode, parse_compact
from bastion.server import keys as keys_module

MakeEnv = Any


def header(token: str) -> dict[str, Any]:
    return dict(parse_compact(token).header)


class Clock:
    """``time`` for the keys module only: monotonic time that passes only when a test
    moves it on (and by a microsecond a reading, so that readings are ordered), however
    slow the machine."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        self.now += 1e-6
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(keys_module, "time", fake)
    return fake


async def tokens(env: Env) -> dict[str, str]:
    r = await env.password_grant(scope="openid")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_key_withdrawn_elsewhere_stops_signing_and_verifying_within_a_second(
        make_env: MakeEnv, clock: Clock) -> None:
    # cache_ttl is long here: the keys are read again every RELOAD_EVERY all the same.
    a = await make_env(cache_ttl=60)
    b = await make_env(share=a, cache_ttl=60)
    old = (await tokens(b))["access_token"]
    kid = header(old)["kid"]
    await keys_module.withdraw(a.ctx.storage, a.ctx.settings, kid)  # its private key leaked
    assert header((await tokens(b))["access_token"])["kid"] == kid  # b has not read them yet
    clock.now += keys_module.RELOAD_EVERY
    assert header((await tokens(b))["access_token"])["kid"] != kid
    assert (await b.userinfo(old)).status_code == 401
    assert await b.introspect(old) == {"active": False}


async def test_a_token_signed_with_a_key_made_elsewhere_a_moment_ago_verifies(
        make_env: MakeEnv, clock: Clock) -> None:
    # The clock stands still: b reads the keys again only because the kid is unknown.
    a = await make_env(cache_ttl=60)
    b = await make_env(share=a, cache_ttl=60)
    assert (await b.userinfo((await tokens(b))["access_token"])).status_code == 200  # b loaded
    for _ in range(2):  # two rotations in a row: a signs with a key b has never seen
        await keys_module.rotate(a.ctx.storage, a.ctx.settings)
    await a.ctx.keys.reload()
    fresh = await tokens(a)
    assert header(fresh["access_token"])["kid"] not in await b.ctx.keys.verifiers()
    assert (await b.userinfo(fresh["access_token"])).status_code == 200
    assert (await b.introspect(fresh["access_token"]))["active"] is True
    # A made-up kid is still refused, after one read of the keys.
    _, payload, signature = fresh["access_token"].split(".")
    made_up = b64url_encode(json.dumps({**header(fresh["access_token"]), "kid": "x"}).encode())
    assert (await b.userinfo(f"{made_up}.{payload}.{signature}")).status_code == 401


async def test_a_changed_algorithm_keeps_earlier_tokens_valid_and_comes_with_one_rotation(
        make_env: MakeEnv) -> None:
    a = await make_env(access_token_alg="PS256", id_token_alg="RS256")
    before = await tokens(a)
    assert header(before["access_token"])["alg"] == "PS256"
    # A restart with other algorithms (here a second instance with the new settings).
    b = await make_env(share=a, access_token_alg="ES384", id_token_alg="ES256")
    assert (await b.userinfo(before["access_token"])).status_code == 200
    assert (await b.introspect(before["access_token"]))["active"] is True
    hinted = await b.http.get(authorize_url(b.web.client_id, prompt="none",
                                            id_token_hint=before["id_token"]))
    assert location_params(hinted)["error"] == "login_required"  # a hint it issued: taken
    meta = (await b.http.get("/.well-known/openid-configuration")).json()
    # The key signing now keeps its algorithm; the one published to come next has the
    # new one already, so the next rotation brings it.
    assert meta["access_token_signing_alg_values_supported"] == ["PS256", "ES384"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert header((await tokens(b))["access_token"])["alg"] == "PS256"
    await keys_module.rotate(b.ctx.storage, b.ctx.settings)
    await b.ctx.keys.reload()
    after = await tokens(b)
    assert (header(after["access_token"])["alg"], header(after["id_token"])["alg"]) == (
        "ES384", "ES256")
    assert (await b.userinfo(before["access_token"])).status_code == 200  # still valid
    r = await b.http.get("/oauth/logout?" + urlencode({"id_token_hint": after["id_token"]}))
    assert r.status_code == 200 and "signed out" in r.text  # no session: at once
