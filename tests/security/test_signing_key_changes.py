"""Changes to the signing keys made elsewhere (another instance, the CLI) or by a
restart with another algorithm: every token that should verify does, on every
instance, a withdrawn key stops signing within ``keys.RELOAD_EVERY`` (and at most
``RELOAD_GRACE`` more), and a new key
keeps the algorithm the servers publish wherever it is made."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from security_helpers import Env, authorize_url, location_params

from bastion.oauth.jose import b64url_encode, parse_compact
from bastion.server import keys as keys_module
from bastion.server.storage.base import Storage

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


class HeldRead:
    """A storage's reads of the signing keys held until the test releases them (then
    failing with ``failure``, if set): a read under way, however fast the database."""

    def __init__(self, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = 0
        self.release = asyncio.Event()
        self.failure: Exception | None = None
        real = storage.signing_keys

        async def held() -> Any:
            self.reads += 1
            await self.release.wait()
            if self.failure is not None:
                raise self.failure
            return await real()

        monkeypatch.setattr(storage, "signing_keys", held)


async def under_way(*calls: Any) -> list[asyncio.Task[Any]]:
    """``calls`` begun together, each as far as it goes before the held read ends."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    for _ in range(5):
        await asyncio.sleep(0)
    return tasks


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
    clock.now += keys_module.RELOAD_EVERY + keys_module.RELOAD_GRACE
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


@pytest.mark.parametrize("change", ["withdraw", "rotate"])
async def test_requests_together_after_an_idle_spell_all_sign_with_the_keys_of_now(
        make_env: MakeEnv, clock: Clock, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """While one of them read the keys again, the others were given the keys from
    before the idle spell: a key withdrawn meanwhile signed on, or a key retired by a
    rotation (after a long enough spell, one no longer in the JWKS)."""
    a = await make_env(cache_ttl=60)
    b = await make_env(share=a, cache_ttl=60)
    old = (await b.ctx.keys.signer("access")).kid
    if change == "withdraw":  # its private key leaked
        await keys_module.withdraw(a.ctx.storage, a.ctx.settings, old)
    else:
        await keys_module.rotate(a.ctx.storage, a.ctx.settings)
    now = next(k.kid for k in await a.ctx.storage.signing_keys()
               if k.use == "access" and keys_module.signs(k))
    clock.now += 2 * keys_module.RELOAD_EVERY  # idle
    read = HeldRead(b.ctx.storage, monkeypatch)
    together = await under_way(*(b.ctx.keys.signer("access") for _ in range(3)))
    read.release.set()
    assert [s.kid for s in await asyncio.gather(*together)] == [now] * 3
    assert read.reads == 1  # one read, shared


async def test_under_traffic_no_request_waits_for_the_keys_to_be_read_again(
        make_env: MakeEnv, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Just past their reload the keys are read again while the requests go on with
    them: when every request waited, each second the requests that came during the
    read queued behind it (on SQLite, behind the writes on its one connection)."""
    a = await make_env(cache_ttl=60)
    b = await make_env(share=a, cache_ttl=60)
    old = (await b.ctx.keys.signer("access")).kid
    await keys_module.withdraw(a.ctx.storage, a.ctx.settings, old)
    clock.now += keys_module.RELOAD_EVERY  # due, within the grace
    read = HeldRead(b.ctx.storage, monkeypatch)
    together = await under_way(*(b.ctx.keys.signer("access") for _ in range(3)))
    assert all(t.done() for t in together)  # none waited for the held read
    assert [t.result().kid for t in together] == [old] * 3 and read.reads == 1
    read.release.set()
    assert b.ctx.keys._reading is not None
    await b.ctx.keys._reading[1]  # the read they began
    assert (await b.ctx.keys.signer("access")).kid != old  # used from now on
    assert read.reads == 1


async def withdrawn_elsewhere(make_env: MakeEnv, clock: Clock) -> tuple[Env, str]:
    """An instance whose access key was withdrawn through another one, a reload
    interval ago; and the kid of that key."""
    a = await make_env(cache_ttl=60)
    b = await make_env(share=a, cache_ttl=60)
    old = (await b.ctx.keys.signer("access")).kid
    await keys_module.withdraw(a.ctx.storage, a.ctx.settings, old)
    clock.now += keys_module.RELOAD_EVERY + keys_module.RELOAD_GRACE
    return b, old


async def test_a_request_cancelled_while_waiting_for_the_keys_leaves_the_read_to_the_others(
        make_env: MakeEnv, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    b, old = await withdrawn_elsewhere(make_env, clock)
    read = HeldRead(b.ctx.storage, monkeypatch)
    gone, waiting = await under_way(b.ctx.keys.signer("access"), b.ctx.keys.signer("access"))
    gone.cancel()  # the first one, which began the read: its client went away
    read.release.set()
    assert (await waiting).kid != old
    assert gone.cancelled() and read.reads == 1


async def test_a_read_of_the_keys_that_fails_fails_every_request_waiting_for_it(
        make_env: MakeEnv, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """None of them falls back on keys older than ``RELOAD_EVERY`` (they could be
    withdrawn); the next request reads again, and keys read recently need no read."""
    b, old = await withdrawn_elsewhere(make_env, clock)
    read = HeldRead(b.ctx.storage, monkeypatch)
    read.failure = ConnectionError("the database does not answer")
    together = await under_way(*(b.ctx.keys.signer("access") for _ in range(3)))
    read.release.set()
    outcomes = await asyncio.gather(*together, return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionError] * 3
    assert read.reads == 1
    read.failure = None  # the database is back
    assert (await b.ctx.keys.signer("access")).kid != old
    assert read.reads == 2
    # Fresh keys are handed out at once: no read, not even an await.
    with pytest.raises(StopIteration) as at_once:
        b.ctx.keys.signer("access").send(None)
    assert at_once.value.value.kid != old and read.reads == 2


async def test_a_new_key_keeps_the_algorithm_of_the_key_it_follows_wherever_it_is_made(
        make_env: MakeEnv) -> None:
    """``bastion keys rotate`` from a cron host without BASTION_ACCESS_TOKEN_ALG made
    the next key ES256 on RS256 servers, which signed from the rotation after."""
    a = await make_env(access_token_alg="RS256", id_token_alg="RS256")
    elsewhere = a.ctx.settings.model_copy(  # the settings of the host that runs the CLI
        update={"access_token_alg": "ES256", "id_token_alg": "ES256"})
    for _ in range(2):
        await keys_module.rotate(a.ctx.storage, elsewhere)
    for use in keys_module.USES:  # the key that signs, then the next one
        for signing in (True, False):
            kid = next(k.kid for k in await a.ctx.storage.signing_keys()
                       if k.use == use and keys_module.signs(k) is signing and not k.retired_at)
            await keys_module.withdraw(a.ctx.storage, elsewhere, kid)
    live = [k for k in await a.ctx.storage.signing_keys() if k.retired_at is None]
    assert sorted((k.use, k.alg) for k in live) == [("access", "RS256")] * 2 + [("id", "RS256")] * 2
    await a.ctx.keys.reload()
    issued = await tokens(a)
    assert header(issued["access_token"])["alg"] == header(issued["id_token"])["alg"] == "RS256"


async def test_a_new_key_takes_another_algorithm_when_asked(make_env: MakeEnv) -> None:
    a = await make_env()  # ES256 access keys, RS256 ID keys
    await keys_module.rotate(a.ctx.storage, a.ctx.settings, algorithms={"access": "ES384"})
    nexts = {k.use: k for k in await a.ctx.storage.signing_keys() if k.activated_at is None}
    assert (nexts["access"].alg, nexts["id"].alg) == ("ES384", "RS256")
    await keys_module.withdraw(a.ctx.storage, a.ctx.settings, nexts["id"].kid, alg="PS256")
    assert {k.alg for k in await a.ctx.storage.signing_keys()
            if k.use == "id" and k.activated_at is None} == {"PS256"}
