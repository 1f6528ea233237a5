"""Back-channel logout, in process: registering the URI over the REST API, and the
delivery of queued notices to a real HTTP endpoint on 127.0.0.1, with retries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from api_helpers import PASSWORD, Api
from prometheus_client import REGISTRY

from bastion.oauth.claims import LOGOUT_EVENT
from bastion.oauth.jose import parse_compact, verify_signature
from bastion.server.context import Context
from bastion.server.models import Grant, LoginSession, LogoutNotice
from bastion.server.services import backchannel, outbox
from bastion.server.services.clients import create_client
from bastion.server.services.id_tokens import hint_claims
from bastion.server.services.sessions import public_sid
from bastion.server.services.users import create_user
from support import ISSUER, LogoutReceiver, logout_receiver


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as r:
        yield r


def outcomes(outcome: str) -> float:
    return REGISTRY.get_sample_value("bastion_backchannel_logouts_total",
                                     {"outcome": outcome}) or 0.0


async def signed_in(ctx: Context, uri: str | None) -> tuple[str, str, str]:
    """(user id, client id, session id) of a user with a grant of a new client made in a
    new session; the client is told at ``uri``."""
    user = await create_user(ctx.storage, ctx.passwords, username="ann",
                             email="ann@example.com", password=PASSWORD)
    new = await create_client(ctx.storage, name="Shop", redirect_uris=["https://shop.example/cb"],
                              backchannel_logout_uri=uri)
    now = datetime.now(UTC)
    await ctx.storage.create_session(LoginSession(
        id="sid-1", user_id=user.id, auth_time=now, expires_at=now + timedelta(hours=1),
        created_at=now, user_agent="test"))
    await ctx.storage.create_grant(Grant(
        id="grant-1", client_id=new.client.client_id, user_id=user.id, session_id="sid-1",
        scope="openid", auth_time=now, created_at=now), None)
    return user.id, new.client.client_id, "sid-1"


async def deliver(ctx: Context) -> int:
    return await outbox.deliver_due(backchannel.logout_queue(ctx.storage, ctx.keys, ctx.settings))


async def test_a_logout_token_is_posted_signed_with_the_id_token_key(
        ctx: Context, receiver: LogoutReceiver) -> None:
    await ctx.outbox.stop()  # delivered here, not by the background worker
    user_id, client_id, sid = await signed_in(ctx, receiver.uri)
    await ctx.storage.revoke_session(sid, datetime.now(UTC))
    assert await deliver(ctx) == 1
    compact = parse_compact(receiver.next())
    assert compact.header["typ"] == "logout+jwt"
    verify_signature(compact, await ctx.keys.verifiers(), (ctx.settings.id_token_alg,))
    claims = compact.claims()
    assert {k: claims[k] for k in ("iss", "aud", "sub", "sid", "events")} == {
        "iss": ISSUER, "aud": client_id, "sub": user_id, "sid": public_sid(sid),
        "events": {LOGOUT_EVENT: {}}}
    assert claims["exp"] - claims["iat"] == backchannel.TOKEN_TTL
    assert "nonce" not in claims and len(claims["jti"]) >= 16
    assert await deliver(ctx) == 0  # sent once


async def test_a_failed_post_is_retried_later_and_a_redirect_is_not_followed(
        ctx: Context, receiver: LogoutReceiver, caplog: pytest.LogCaptureFixture) -> None:
    await ctx.outbox.stop()
    _, _, sid = await signed_in(ctx, receiver.uri)
    await ctx.storage.revoke_session(sid, datetime.now(UTC))
    retried, sent = outcomes("retried"), outcomes("sent")
    with logout_receiver() as elsewhere:
        receiver.location = elsewhere.uri
        for status in (500, 302):  # a redirect could send the token elsewhere: a failure
            receiver.answers = [status]
            with caplog.at_level(logging.WARNING, "bastion.logout"):
                assert await deliver(ctx) == 0
            assert f"answered {status}" in caplog.text and "eyJ" not in caplog.text
            assert elsewhere.forms.empty() and not elsewhere.arrived.is_set()
            # Due again later (backoff); taken now as if that time had come.
            (notice,) = await ctx.storage.claim_logout_notices(
                datetime.now(UTC) + timedelta(hours=2))
            assert notice.claimed_until is not None and f"{status}" in str(notice.last_error)
            await ctx.storage.logout_notice_failed(notice.id, "reset", datetime.now(UTC),
                                                   datetime.now(UTC),
                                                   claimed_until=notice.claimed_until)
    assert outcomes("retried") == retried + 2
    assert await deliver(ctx) == 1
    assert parse_compact(receiver.next()).claims()["sid"] == public_sid(sid)
    assert outcomes("sent") == sent + 1


async def test_a_notice_is_given_up_on_after_the_last_attempt(
        ctx: Context, receiver: LogoutReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    await ctx.outbox.stop()
    monkeypatch.setattr(outbox, "MAX_ATTEMPTS", 1)
    _, _, sid = await signed_in(ctx, receiver.uri)
    await ctx.storage.revoke_session(sid, datetime.now(UTC))
    given_up = outcomes("given_up")
    receiver.answers = [503]
    assert await deliver(ctx) == 0
    assert outcomes("given_up") == given_up + 1
    assert await ctx.storage.claim_logout_notices(datetime.now(UTC) + timedelta(days=1)) == []


async def test_a_client_that_stopped_asking_is_not_told(
        ctx: Context, receiver: LogoutReceiver) -> None:
    await ctx.outbox.stop()
    _, client_id, sid = await signed_in(ctx, receiver.uri)
    await ctx.storage.revoke_session(sid, datetime.now(UTC))
    await ctx.storage.update_client(client_id, lambda c: {"backchannel_logout_uri": None})
    skipped = outcomes("skipped")
    assert await deliver(ctx) == 0  # settled, with nothing posted
    assert outcomes("skipped") == skipped + 1 and not receiver.arrived.is_set()
    assert await ctx.storage.claim_logout_notices(datetime.now(UTC) + timedelta(days=1)) == []


async def test_a_logout_token_is_no_id_token_hint(ctx: Context) -> None:
    user_id, client_id, _ = await signed_in(ctx, None)
    notice = LogoutNotice(id=1, client_id=client_id, user_id=user_id, session_id=None,
                          created_at=datetime.now(UTC))
    signer = await ctx.keys.signer("id")
    claims = backchannel.logout_claims(ctx.settings, notice, int(time.time()))
    assert await hint_claims(ctx.keys, ctx.settings, signer.sign(claims, typ="JWT")) is not None
    assert await hint_claims(ctx.keys, ctx.settings,
                             signer.sign(claims, typ="logout+jwt")) is None


async def test_the_worker_delivers_after_a_logout_at_once(
        ctx: Context, receiver: LogoutReceiver) -> None:
    _, _, sid = await signed_in(ctx, receiver.uri)
    await ctx.storage.revoke_session(sid, datetime.now(UTC))
    ctx.outbox.poke()
    token = await asyncio.to_thread(receiver.next)  # the loop runs the worker meanwhile
    assert parse_compact(token).claims()["sid"] == public_sid(sid)


async def test_the_uri_is_registered_checked_and_removed_over_the_api(api: Api) -> None:
    http = api.app.http
    uri = "https://shop.example/backchannel-logout?tenant=1"
    r = await http.post("/api/v1/clients", json={
        "name": "Shop", "redirect_uris": ["https://shop.example/cb"],
        "backchannel_logout_uri": uri})
    assert r.status_code == 201, r.text
    client_id = r.json()["client_id"]
    assert r.json()["backchannel_logout_uri"] == uri
    stored = await api.app.ctx.storage.get_client(client_id)
    assert stored is not None and stored.backchannel_logout_uri == uri
    for bad in ("http://shop.example/logout", "https://shop.example/logout#x",
                "com.example.app:/logout", "/logout"):
        r = await http.patch(f"/api/v1/clients/{client_id}",
                             json={"backchannel_logout_uri": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["field"] == "backchannel_logout_uri", r.text
    r = await http.patch(f"/api/v1/clients/{client_id}", json={"backchannel_logout_uri": None})
    assert r.status_code == 422 and "must not be null" in r.json()["detail"]
    r = await http.patch(f"/api/v1/clients/{client_id}", json={"backchannel_logout_uri": ""})
    assert r.status_code == 200 and r.json()["backchannel_logout_uri"] is None
    r = await http.patch(f"/api/v1/clients/{client_id}",
                         json={"backchannel_logout_uri": "http://127.0.0.1:8000/bcl"})
    assert r.json()["backchannel_logout_uri"] == "http://127.0.0.1:8000/bcl"  # loopback http
    meta = (await http.get("/.well-known/openid-configuration")).json()
    assert meta["backchannel_logout_supported"] is True
    assert meta["backchannel_logout_session_supported"] is True


async def test_revoking_all_sessions_over_the_api_tells_the_client(
        api: Api, receiver: LogoutReceiver) -> None:
    ctx = api.app.ctx
    user_id, client_id, sid = await signed_in(ctx, receiver.uri)
    await ctx.storage.create_grant(Grant(  # a password grant: no session
        id="grant-2", client_id=client_id, user_id=user_id, session_id=None, scope="openid",
        auth_time=datetime.now(UTC), created_at=datetime.now(UTC)), None)
    r = await api.app.http.delete(f"/api/v1/users/{user_id}/sessions")
    assert r.status_code == 204
    tokens = [await asyncio.to_thread(receiver.next) for _ in range(2)]
    told = sorted((parse_compact(t).claims() for t in tokens), key=lambda c: c.get("sid", ""))
    assert [(c["sub"], c.get("sid")) for c in told] == [(user_id, None),
                                                         (user_id, public_sid(sid))]
