"""Sign-in links over real SMTP (aiosmtpd) and the account pages, in process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from bastion.oauth import pkce
from bastion.server.app import create_app
from bastion.server.context import Context
from bastion.server.mail import SMTPMailer
from bastion.server.models import Grant, OneTimeToken, OutgoingMail, User
from bastion.server.services import links, outbox, secrets, sessions
from bastion.server.services.clients import create_client
from bastion.server.services.users import (
    PERSONAL_DATA,
    create_user,
    delete_user,
    erase_user,
    restore_user,
    update_user,
)
from bastion.server.settings import Settings
from bastion.server.storage import migrate
from bastion.server.storage.tables import login_sessions, login_throttle, one_time_tokens
from bastion.server.storage.tables import outbox as outbox_table
from support import (
    ISSUER,
    KNOWN_COOKIE,
    Mailbox,
    await_until,
    callback_params,
    free_port,
    hidden_fields,
    sign_in,
    smtp_server,
)

REDIRECT = "https://app.example/cb"
PASSWORD = "a long enough password"


class Env:
    def __init__(self, http: httpx2.AsyncClient, ctx: Context, box: Mailbox, client_id: str,
                 secret: str) -> None:
        self.http, self.ctx, self.box = http, ctx, box
        self.client_id, self.secret = client_id, secret
        self.verifier = pkce.new_verifier()

    def authorize_query(self, **extra: str) -> str:
        return urlencode({"response_type": "code", "client_id": self.client_id,
                          "redirect_uri": REDIRECT, "scope": "openid email", "state": "s1",
                          "code_challenge": pkce.challenge(self.verifier),
                          "code_challenge_method": "S256", **extra})

    async def mails(self, count: int = 1) -> list[object]:
        await asyncio.to_thread(self.box.wait_for, count)
        return self.box.messages

    async def request_link(self, email: str) -> httpx2.Response:
        page = await self.http.get("/oauth/authorize?" + self.authorize_query(prompt="login"))
        fields = hidden_fields(page.text)
        return await self.http.post("/login/link/request", data={
            "csrf_token": fields["csrf_token"], "continue": fields["continue"], "email": email})

    async def follow_link(self, link: str) -> httpx2.Response:
        path = urlsplit(link).path + "?" + urlsplit(link).query
        page = await self.http.get(path)
        if page.status_code != 200 or "<form" not in page.text:
            return page
        return await self.http.post(urlsplit(link).path, data=hidden_fields(page.text))


@asynccontextmanager
async def open_env(tmp_path: Path, **overrides: Any) -> AsyncIterator[Env]:
    with smtp_server() as (host, port, box):
        settings = Settings(**{"data_dir": tmp_path, "issuer": ISSUER, "secret_key": "k" * 40,
                               "smtp_host": host, "smtp_port": port, "smtp_tls": "none",
                               "password_hash_memory_kib": 8192, "password_hash_time_cost": 1,
                               "link_limit_per_email": 3, "housekeeping_interval": 0,
                               **overrides})
        ctx = Context.open(settings)
        await migrate.upgrade(ctx.storage.engine)  # type: ignore[attr-defined]
        await ctx.start()
        try:
            web = await create_client(ctx.storage, name="Web app", redirect_uris=[REDIRECT],
                                      scopes=["openid", "email"],
                                      grant_types=["authorization_code", "refresh_token"])
            await create_user(ctx.storage, ctx.passwords, username="alice",
                              email="alice@example.com", password=PASSWORD)
            transport = httpx2.ASGITransport(app=create_app(settings, ctx))
            async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as http:
                assert web.client_secret
                yield Env(http, ctx, box, web.client.client_id, web.client_secret)
        finally:
            await ctx.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_env(tmp_path) as opened:
        yield opened


@pytest.fixture
async def signup_env(tmp_path: Path) -> AsyncIterator[Env]:
    """Unknown addresses get an account with their first sign-in link."""
    async with open_env(tmp_path, passwordless_signup=True) as opened:
        yield opened


async def test_sign_in_link_completes_the_authorization(env: Env) -> None:
    answer = await env.request_link("Alice@Example.com")
    assert answer.status_code == 200 and "Check your email" in answer.text
    (msg,) = await env.mails()
    assert msg["To"] == "alice@example.com" and msg["From"].startswith("Bastion")
    assert msg.get_body(preferencelist=("html",)) is not None
    link = Mailbox.link(msg)
    assert link.startswith(ISSUER + "/login/link?token=")
    assert len(link.split("token=")[1]) >= 43  # 256 bits
    back = await env.follow_link(link)
    assert back.status_code == 303 and back.headers["location"].startswith("/oauth/authorize?")
    params = callback_params(await env.http.get(back.headers["location"]))
    r = await env.http.post("/oauth/token", auth=(env.client_id, env.secret), data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
        "code_verifier": env.verifier})
    assert r.status_code == 200 and r.json()["id_token"]
    # the sent mail's body is erased from the outbox, once the sender has recorded it
    # (the SMTP server may hand the mail to the test before that commits)
    async def erased() -> bool:
        async with env.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
            texts = (await conn.execute(sa.text("SELECT text FROM outbox"))).scalars().all()
        assert len(texts) == 1
        return texts == [""]

    await await_until(erased, what="the sent mail's text to be erased")


async def test_replayed_and_expired_links_are_refused(env: Env) -> None:
    await env.request_link("alice@example.com")
    link = Mailbox.link((await env.mails())[0])
    assert (await env.follow_link(link)).status_code == 303
    replay = await env.follow_link(link)
    assert replay.status_code == 400 and "already used" in replay.text
    await env.request_link("alice@example.com")
    second = Mailbox.link((await env.mails(2))[1])
    async with env.ctx.storage.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(one_time_tokens.update().values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    expired = await env.follow_link(second)
    assert expired.status_code == 400 and "expired" in expired.text
    forged = await env.follow_link(ISSUER + "/login/link?token=" + "A" * 43)
    assert forged.status_code == 400


async def _link_form(env: Env) -> tuple[str, dict[str, str]]:
    """A sign-in link's page opened in time: where its form posts, and its fields."""
    await env.request_link("alice@example.com")
    parts = urlsplit(Mailbox.link((await env.mails())[0]))
    page = await env.http.get(parts.path + "?" + parts.query)
    return parts.path, hidden_fields(page.text)


async def test_a_sign_in_links_form_posted_twice_signs_in_once(env: Env) -> None:
    # Opening the page only peeks at the link; the POST is what uses it up.
    path, fields = await _link_form(env)
    assert (await env.http.post(path, data=fields)).status_code == 303
    assert (await env.http.post(path, data=fields)).status_code == 400


async def test_a_sign_in_links_form_posted_after_it_expired_is_refused(env: Env) -> None:
    path, fields = await _link_form(env)
    async with env.ctx.storage.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(one_time_tokens.update().values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert (await env.http.post(path, data=fields)).status_code == 400


async def test_a_link_sign_in_as_another_user_than_the_hint_names_is_login_required(
        env: Env) -> None:
    # As on the password form (Core 3.1.2.1): the app asked for bob, alice signed in.
    await create_user(env.ctx.storage, env.ctx.passwords, username="bob",
                      email="bob@example.com", password=PASSWORD)
    signed = await sign_in(env.http, "/oauth/authorize?" + env.authorize_query(), "bob",
                           PASSWORD)
    tokens = (await env.http.post("/oauth/token", auth=(env.client_id, env.secret), data={
        "grant_type": "authorization_code", "code": callback_params(signed)["code"],
        "redirect_uri": REDIRECT, "code_verifier": env.verifier})).json()
    env.http.cookies.clear()  # another browser, where alice asks for a link
    page = await env.http.get("/oauth/authorize?" + env.authorize_query(
        id_token_hint=tokens["id_token"]))
    fields = hidden_fields(page.text)
    await env.http.post("/login/link/request", data={
        "csrf_token": fields["csrf_token"], "continue": fields["continue"],
        "email": "alice@example.com"})
    back = await env.follow_link(Mailbox.link((await env.mails())[0]))
    params = callback_params(back)
    assert params["error"] == "login_required" and params["state"] == "s1", params


async def test_unknown_addresses_get_the_same_answer_and_no_mail(env: Env) -> None:
    known = await env.request_link("alice@example.com")
    unknown = await env.request_link("nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    await env.mails(1)
    await env.ctx.outbox.settled()  # the unknown address's turn has come too
    await outbox.send_due(env.ctx.storage, env.ctx.outbox.mailer, env.ctx.outbox.seal)
    assert len(env.box.messages) == 1


async def test_link_requests_are_rate_limited_per_address(env: Env) -> None:
    for _ in range(3):
        assert (await env.request_link("alice@example.com")).status_code == 200
    limited = await env.request_link("alice@example.com")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0 and "Try again in" in limited.text


async def test_the_api_sends_links_for_its_own_client_only(env: Env) -> None:
    form = dict(pair.split("=", 1) for pair in env.authorize_query().split("&"))
    from urllib.parse import unquote_plus
    form = {k: unquote_plus(v) for k, v in form.items()}
    ok = await env.http.post("/oauth/passwordless", auth=(env.client_id, env.secret),
                             data={**form, "email": "alice@example.com"})
    assert ok.status_code == 200 and ok.json()["status"] == "accepted"
    same = await env.http.post("/oauth/passwordless", auth=(env.client_id, env.secret),
                               data={**form, "email": "ghost@example.com"})
    assert same.json() == ok.json()
    other = await create_client(env.ctx.storage, name="Other", redirect_uris=[REDIRECT],
                                scopes=["openid"])
    assert other.client_secret
    foreign = await env.http.post("/oauth/passwordless",
                                  auth=(other.client.client_id, other.client_secret),
                                  data={**form, "email": "alice@example.com"})
    assert (foreign.status_code, foreign.json()["error"]) == (400, "invalid_request")
    bad = await env.http.post("/oauth/passwordless", auth=(env.client_id, env.secret),
                              data={**form, "email": "not-an-address"})
    assert bad.json()["error"] == "invalid_request"
    link = Mailbox.link((await env.mails())[0])
    back = await env.follow_link(link)
    assert "code" in callback_params(await env.http.get(back.headers["location"]))


class Down:
    """A mailer whose SMTP server refuses connections."""

    async def send(self, mail: OutgoingMail) -> None:
        raise ConnectionRefusedError("smtp down")


async def test_failed_sends_are_retried_not_lost(env: Env) -> None:
    def mail_count(outcome: str) -> float:
        return REGISTRY.get_sample_value("bastion_mail_total", {"outcome": outcome}) or 0.0

    retried, sent = mail_count("retried"), mail_count("sent")
    await env.ctx.outbox.stop()
    await outbox.enqueue(env.ctx.storage, env.ctx.outbox.seal, "x@example.com", "hello",
                         "sign_in", link="L",
                         client_name="", expires_in="15 minutes")
    assert await outbox.send_due(env.ctx.storage, Down(), env.ctx.outbox.seal) == 0
    assert mail_count("retried") == retried + 1
    (claimed,) = await env.ctx.storage.claim_mail(datetime.now(UTC) + timedelta(hours=2))
    mail_id = claimed.id
    stored = await env.ctx.storage.get_mail(mail_id)
    assert stored is not None and stored.attempts == 1 and "smtp down" in str(stored.last_error)
    assert claimed.claimed_until is not None
    await env.ctx.storage.mail_failed(mail_id, "reset claim", datetime.now(UTC), datetime.now(UTC),
                                      claimed_until=claimed.claimed_until)
    assert await outbox.send_due(env.ctx.storage, env.ctx.outbox.mailer,
                                 env.ctx.outbox.seal) == 1
    assert env.box.wait_for(1)[0]["Subject"] == "hello"
    assert mail_count("sent") == sent + 1


async def test_a_link_mail_that_expired_in_an_smtp_outage_is_not_sent(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Each link's mail expires with the link; once that has passed, a retry settles
    it unsent. The notice of a change carries no link and still goes."""
    def skipped() -> float:
        return REGISTRY.get_sample_value("bastion_mail_total", {"outcome": "skipped"}) or 0.0

    storage, settings = env.ctx.storage, env.ctx.settings
    before = skipped()
    await env.ctx.outbox.stop()  # sent here, not by the background worker
    await env.request_link("alice@example.com")
    await env.ctx.outbox.settled()
    alice = await storage.get_user_by_login("alice")
    assert alice is not None
    work = await links.send_email_change(storage, settings, user=alice,
                                         new_email="new@example.com")
    assert work is not None and await work
    await links.send_email_changed(storage, settings, user=alice, old_email="old@example.com")
    down = SMTPMailer(settings.model_copy(update={"smtp_port": free_port()}))  # refused
    assert await outbox.send_due(storage, down, env.ctx.outbox.seal) == 0

    engine = storage.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        tokens = dict((await conn.execute(sa.select(
            one_time_tokens.c.email, one_time_tokens.c.expires_at))).all())
        queued = dict((await conn.execute(sa.select(
            outbox_table.c.to, outbox_table.c.expires_at).where(
            outbox_table.c.attempts == 1))).all())
        assert queued == {**tokens, "old@example.com": None}
        assert set(tokens) == {"alice@example.com", "new@example.com"}
        # the links expire during the outage, and the retries fall due
        now = datetime.now(UTC)
        await conn.execute(outbox_table.update().values(next_attempt_at=now))
        await conn.execute(outbox_table.update().where(outbox_table.c.expires_at.is_not(None))
                           .values(expires_at=now - timedelta(seconds=1)))

    with caplog.at_level(logging.WARNING, "bastion.mail"):
        assert await outbox.send_due(storage, env.ctx.outbox.mailer, env.ctx.outbox.seal) == 1
    assert [m["To"] for m in env.box.wait_for(1)] == ["old@example.com"]
    expired = [r.getMessage() for r in caplog.records if "expired" in r.getMessage()]
    assert len(expired) == 2 and skipped() == before + 2
    assert not any("@" in line or "token" in line for line in expired)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox_table.c.sent_at, outbox_table.c.text)
                                   .where(outbox_table.c.expires_at.is_not(None)))).all()
    assert len(rows) == 2 and all(sent is not None and text == "" for sent, text in rows)
    assert await storage.claim_mail(datetime.now(UTC) + timedelta(days=1)) == []
    assert [m["To"] for m in env.box.messages] == ["old@example.com"]


async def test_mail_given_up_on_is_counted(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def given_up() -> float:
        return REGISTRY.get_sample_value("bastion_mail_total", {"outcome": "given_up"}) or 0.0

    before = given_up()
    monkeypatch.setattr(outbox, "MAX_ATTEMPTS", 1)
    await env.ctx.outbox.stop()
    await outbox.enqueue(env.ctx.storage, env.ctx.outbox.seal, "x@example.com", "hello",
                         "sign_in", link="L", client_name="", expires_in="15 minutes")
    assert await outbox.send_due(env.ctx.storage, Down(), env.ctx.outbox.seal) == 0
    assert given_up() == before + 1


async def _sign_in_to_account(env: Env, **query: str) -> httpx2.Response:
    page = await env.http.get("/account?" + urlencode(query))
    assert page.status_code == 200 and 'name="next"' in page.text
    fields = hidden_fields(page.text)
    r = await env.http.post("/login", data={**fields, "login": "alice", "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"].startswith("/account")
    return await env.http.get(r.headers["location"])


async def test_account_edits_persist(env: Env) -> None:
    page = await _sign_in_to_account(env)
    fields = hidden_fields(page.text)
    r = await env.http.post("/account/profile", data={
        "csrf_token": fields["csrf_token"], "username": "alice2", "email": "alice@example.com"})
    assert r.status_code == 303
    assert (await env.ctx.storage.get_user_by_login("alice2")) is not None
    r = await env.http.post("/account/password", data={
        "csrf_token": fields["csrf_token"], "new_password": "a brand new password"})
    assert r.status_code == 303
    user = await env.ctx.storage.get_user_by_login("alice2")
    assert user is not None and env.ctx.passwords.verify(user.password_hash,
                                                         "a brand new password")
    # an email change waits for the confirmation link sent to the new address
    await env.http.post("/account/profile", data={
        "csrf_token": fields["csrf_token"], "username": "alice2", "email": "new@example.com"})
    (msg,) = await env.mails()
    assert msg["To"] == "new@example.com"
    assert (await env.ctx.storage.get_user_by_login("alice2")).email == "alice@example.com"
    done = await env.follow_link(Mailbox.link(msg))
    assert done.status_code == 200 and "new@example.com" in done.text
    user = await env.ctx.storage.get_user_by_login("alice2")
    assert user is not None and user.email == "new@example.com"
    # Each change is audited with the new value, and the value goes with an erasure.
    flags = {"account.username": {"is_administrator": False, "email_verified": False},
             "account.email": {"is_administrator": False, "email_verified": True}}
    names = {"account.username": {"username": "alice2"},
             "account.email": {"email": "new@example.com"}}
    for action, name in names.items():
        (event,), _ = await env.ctx.storage.list_events({"action": action}, 10, 0)
        assert (event.actor, event.target, event.detail) == (user.id, user.id,
                                                             {**name, **flags[action]})
    await env.ctx.storage.erase_user(user.id, datetime.now(UTC), PERSONAL_DATA)
    for action in names:
        (event,), _ = await env.ctx.storage.list_events({"action": action}, 10, 0)
        assert event.detail == flags[action]


async def test_account_forms_need_csrf_and_a_session(env: Env) -> None:
    r = await env.http.post("/account/profile", data={"username": "mallory"})
    assert r.status_code == 303 and r.headers["location"] == "/account"
    await _sign_in_to_account(env)
    r = await env.http.post("/account/profile", data={"csrf_token": "forged",
                                                      "username": "mallory"})
    assert r.status_code == 400
    assert await env.ctx.storage.get_user_by_login("mallory") is None


async def test_the_account_page_downloads_the_users_data(env: Env) -> None:
    r = await env.http.get("/account/export")  # no session: sign in first
    assert r.status_code == 200 and 'name="next"' in r.text and "/account" in r.text
    page = await _sign_in_to_account(env)
    assert 'href="/account/export"' in page.text
    r = await env.http.get("/account/export")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-disposition"].startswith('attachment; filename="user-')
    assert r.headers["x-content-type-options"] == "nosniff"
    export = r.json()
    alice = await env.ctx.storage.get_user_by_login("alice")
    assert alice is not None and export["user"]["id"] == alice.id
    assert [s["revoked_at"] for s in export["sessions"]] == [None]
    # Only from Bastion's own pages, or an address typed in: not another site's link.
    for site in ("cross-site", "same-site"):
        r = await env.http.get("/account/export", headers={"Sec-Fetch-Site": site})
        assert r.status_code == 303 and r.headers["location"] == "/account"
    typed = await env.http.get("/account/export", headers={"Sec-Fetch-Site": "none"})
    assert typed.status_code == 200
    events, _ = await env.ctx.storage.list_events({"action": "user.export"}, 10, 0)
    assert [(e.actor, e.target) for e in events] == [(alice.id, alice.id)] * 2


async def test_return_to_only_for_registered_redirect_uris(env: Env) -> None:
    page = await _sign_in_to_account(env, client_id=env.client_id, return_to=REDIRECT)
    assert f'href="{REDIRECT}"' in page.text and "Back to Web app" in page.text
    for foreign in ("https://evil.example/", REDIRECT + "/../evil", "javascript:alert(1)"):
        page = await env.http.get("/account?" + urlencode({"client_id": env.client_id,
                                                           "return_to": foreign}))
        assert page.status_code == 200 and 'id="back"' not in page.text


async def test_sessions_are_listed_and_can_be_ended(env: Env) -> None:
    await sign_in(env.http, "/oauth/authorize?" + env.authorize_query(), "alice", PASSWORD)
    other = httpx2.AsyncClient(transport=env.http._transport, base_url=ISSUER)
    async with other:
        await sign_in(other, "/oauth/authorize?" + env.authorize_query(), "alice", PASSWORD)
        page = await env.http.get("/account")
        assert page.text.count("<li>") == 2
        fields = [f for f in page.text.split("<form") if "session_id" in f]
        session_id = hidden_fields(fields[0])["session_id"]
        r = await env.http.post("/account/sessions/revoke", data={
            "csrf_token": hidden_fields(page.text)["csrf_token"], "session_id": session_id})
        assert r.status_code == 303
        # the other browser is signed out
        r = await other.get("/oauth/authorize?" + env.authorize_query(prompt="none"))
        assert callback_params(r)["error"] == "login_required"


async def _age_sessions(env: Env) -> None:
    """Move every sign-in six minutes back: past FRESH_LOGIN."""
    async with env.ctx.storage.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(login_sessions.update().values(
            auth_time=datetime.now(UTC) - timedelta(minutes=6)))


async def _queued(env: Env) -> list[str]:
    await env.ctx.outbox.settled()
    async with env.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
        return list((await conn.execute(sa.select(outbox_table.c.to))).scalars())


async def test_an_email_change_needs_the_current_password_after_five_minutes(env: Env) -> None:
    await _sign_in_to_account(env)
    await _age_sessions(env)
    page = await env.http.get("/account")
    assert 'id="profile_password"' in page.text
    change = {"csrf_token": hidden_fields(page.text)["csrf_token"], "username": "alice",
              "email": "new@example.com"}
    r = await env.http.post("/account/profile", data=change)
    assert r.status_code == 400 and "Enter your current password" in r.text
    r = await env.http.post("/account/profile", data={**change, "username": "alice2",
                                                      "current_password": "not the password"})
    assert r.status_code == 400 and "The current password is not right." in r.text
    assert await _queued(env) == []
    assert await env.ctx.storage.get_user_by_login("alice2") is None  # nothing was changed
    # a new username alone needs no password
    r = await env.http.post("/account/profile", data={**change, "username": "alice2",
                                                      "email": "alice@example.com"})
    assert r.status_code == 303 and await env.ctx.storage.get_user_by_login("alice2")
    r = await env.http.post("/account/profile", data={**change, "username": "alice2",
                                                      "current_password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"].endswith("done=email")
    assert await _queued(env) == ["new@example.com"]


async def test_the_old_address_is_told_when_the_email_changes(env: Env) -> None:
    page = await _sign_in_to_account(env)
    await env.http.post("/account/profile", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"], "username": "alice",
        "email": "new@example.com"})
    (confirm,) = await env.mails()
    assert confirm["To"] == "new@example.com"  # asking tells only the new address
    done = await env.follow_link(Mailbox.link(confirm))
    assert done.status_code == 200 and "new@example.com" in done.text
    notice = (await env.mails(2))[1]
    assert notice["To"] == "alice@example.com"
    assert notice["Subject"] == "Your email address was changed"
    text = notice.get_body(preferencelist=("plain",)).get_content()
    assert "now new@example.com" in text and f"{ISSUER}/account" in text
    assert "new@example.com" in notice.get_body(preferencelist=("html",)).get_content()


async def test_a_new_password_ends_the_other_sessions_and_every_grant(env: Env) -> None:
    native = await create_client(env.ctx.storage, name="Native", scopes=["openid"],
                                 grant_types=["password", "refresh_token"])
    assert native.client_secret
    auth = (native.client.client_id, native.client_secret)
    r = await env.http.post("/oauth/token", auth=auth, data={
        "grant_type": "password", "username": "alice", "password": PASSWORD, "scope": "openid"})
    refresh_token = r.json()["refresh_token"]
    other = httpx2.AsyncClient(transport=env.http._transport, base_url=ISSUER)
    async with other:
        await sign_in(other, "/oauth/authorize?" + env.authorize_query(), "alice", PASSWORD)
        page = await _sign_in_to_account(env)
        r = await env.http.post("/account/password", data={
            "csrf_token": hidden_fields(page.text)["csrf_token"],
            "new_password": "a brand new password"})
        assert r.status_code == 303
        # the other browser is signed out, the password grant's refresh token is revoked
        r = await other.get("/oauth/authorize?" + env.authorize_query(prompt="none"))
        assert callback_params(r)["error"] == "login_required"
        r = await env.http.post("/oauth/token", auth=auth, data={
            "grant_type": "refresh_token", "refresh_token": refresh_token})
        assert r.json()["error"] == "invalid_grant"
    # this browser stays signed in, alone
    page = await env.http.get("/account")
    assert page.status_code == 200 and page.text.count("<li>") == 1
    r = await env.http.get("/oauth/authorize?" + env.authorize_query(prompt="none"))
    assert "code" in callback_params(r)


async def test_a_send_that_outlives_its_claim_is_not_recorded_twice(env: Env) -> None:
    """Each message is claimed just before its own send, and a worker whose claim
    expired mid-send (another instance took the message) does not settle it."""
    await env.ctx.outbox.stop()
    for n in range(3):
        await outbox.enqueue(env.ctx.storage, env.ctx.outbox.seal, f"u{n}@example.com", f"m{n}",
                             "sign_in",
                             link="L", client_name="", expires_in="15 minutes")
    storage, smtp = env.ctx.storage, env.ctx.outbox.mailer
    taken: list[OutgoingMail] = []

    class SlowFirst:
        async def send(self, mail: OutgoingMail) -> None:
            if not taken:  # the first send outlives its claim: another instance takes it
                assert mail.claimed_until is not None
                # the rest of the batch is not held by this worker meanwhile
                free = await storage.claim_mail(datetime.now(UTC), limit=10)
                for other in free:
                    assert other.claimed_until is not None
                    await storage.mail_failed(other.id, "released", datetime.now(UTC),
                                              datetime.now(UTC),
                                              claimed_until=other.claimed_until)
                assert len(free) == 2
                taken.extend(await storage.claim_mail(
                    mail.claimed_until + timedelta(seconds=1), limit=1))
                assert [m.id for m in taken] == [mail.id]
            await smtp.send(mail)

    assert await outbox.send_due(storage, SlowFirst(), env.ctx.outbox.seal) == 2
    assert sorted(m["To"] for m in env.box.wait_for(3)) == [
        "u0@example.com", "u1@example.com", "u2@example.com"]
    first = await storage.get_mail(taken[0].id)
    assert first is not None and first.sent_at is None and first.attempts == 0  # not settled
    assert first.claimed_until == taken[0].claimed_until  # still the other instance's
    assert taken[0].claimed_until is not None
    assert await storage.mail_sent(first.id, datetime.now(UTC),
                                   claimed_until=taken[0].claimed_until)


async def test_a_hung_send_is_cut_off_inside_the_claim(env: Env, monkeypatch) -> None:
    from bastion.server.storage import sql_mail

    assert outbox.SEND_SECONDS < sql_mail._CLAIM_SECONDS
    await env.ctx.outbox.stop()
    mail = await outbox.enqueue(env.ctx.storage, env.ctx.outbox.seal, "x@example.com", "hello",
                                "sign_in",
                                link="L", client_name="", expires_in="15 minutes")

    class Hung:
        async def send(self, mail: OutgoingMail) -> None:
            await asyncio.Event().wait()  # an SMTP server that never answers

    monkeypatch.setattr(outbox, "SEND_SECONDS", 0)  # the deadline has passed at once
    assert await outbox.send_due(env.ctx.storage, Hung(), env.ctx.outbox.seal) == 0
    stored = await env.ctx.storage.get_mail(mail.id)
    assert stored is not None and stored.attempts == 1 and stored.sent_at is None
    assert "TimeoutError" in str(stored.last_error) and stored.claimed_until is None
    monkeypatch.undo()
    (due,) = await env.ctx.storage.claim_mail(datetime.now(UTC) + timedelta(hours=2))
    assert due.claimed_until is not None
    await env.ctx.storage.mail_failed(mail.id, "reset claim", datetime.now(UTC),
                                      datetime.now(UTC), claimed_until=due.claimed_until)
    assert await outbox.send_due(env.ctx.storage, env.ctx.outbox.mailer,
                                 env.ctx.outbox.seal) == 1
    assert env.box.wait_for(1)[0]["Subject"] == "hello"


async def _link_to(env: Env, to: str) -> str:
    for msg in env.box.messages:
        if msg["To"] == to:
            return Mailbox.link(msg)
    raise AssertionError(f"no mail to {to}")


async def test_only_the_newest_email_change_link_works(env: Env) -> None:
    page = await _sign_in_to_account(env)
    csrf = hidden_fields(page.text)["csrf_token"]
    for address in ("typo@exampel.com", "new@example.com"):
        r = await env.http.post("/account/profile", data={
            "csrf_token": csrf, "username": "alice", "email": address})
        assert r.status_code == 303
    await env.mails(2)
    typo, new = await _link_to(env, "typo@exampel.com"), await _link_to(env, "new@example.com")
    refused = await env.follow_link(typo)
    assert refused.status_code == 400 and "cannot be used" in refused.text
    done = await env.follow_link(new)
    assert done.status_code == 200 and "new@example.com" in done.text
    assert (await env.follow_link(typo)).status_code == 400
    assert (await env.ctx.storage.get_user_by_login("alice")).email == "new@example.com"


async def test_a_sign_in_link_to_an_old_address_is_refused(env: Env) -> None:
    """Even with the link not cancelled, its address must still be the user's."""
    await env.request_link("alice@example.com")
    link = Mailbox.link((await env.mails())[0])
    user = await env.ctx.storage.get_user_by_login("alice")
    assert user is not None
    await env.ctx.storage.update_user(user.id, {"email": "moved@example.com"})  # no cancelling
    refused = await env.follow_link(link)
    assert refused.status_code == 400 and "invalid, has expired" in refused.text
    r = await env.http.get("/oauth/authorize?" + env.authorize_query(prompt="none"))
    assert callback_params(r)["error"] == "login_required"
    moved = await env.ctx.storage.get_user(user.id)
    assert moved is not None and moved.email_verified_at is None  # nothing was proven


async def test_an_admin_email_change_cancels_pending_links(env: Env) -> None:
    admin = await create_client(env.ctx.storage, name="admin", scopes=["bastion:admin"],
                                grant_types=["client_credentials"])
    assert admin.client_secret
    token = (await env.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                 auth=(admin.client.client_id, admin.client_secret))).json()
    sign_in_link, change = await _pending_links(env)
    user = await env.ctx.storage.get_user_by_login("alice")
    assert user is not None
    r = await env.http.patch(f"/api/v1/users/{user.id}", json={"email": "Other@Example.com"},
                             headers={"Authorization": "Bearer " + token["access_token"]})
    assert r.status_code == 200, r.text
    assert (await env.follow_link(change)).status_code == 400
    assert (await env.follow_link(sign_in_link)).status_code == 400
    assert (await env.ctx.storage.get_user(user.id)).email == "other@example.com"
    # a change that keeps the address leaves new links alone
    await env.request_link("other@example.com")
    link = Mailbox.link((await env.mails(3))[2])
    r = await env.http.patch(f"/api/v1/users/{user.id}", json={"username": "alice"},
                             headers={"Authorization": "Bearer " + token["access_token"]})
    assert r.status_code == 200
    back = await env.follow_link(link)
    assert back.status_code == 303 and back.headers["location"].startswith("/oauth/authorize?")


# -- addresses that are lists, odd local parts, links that outlive what they were for --


async def test_an_address_list_gets_no_link_and_cannot_become_the_email(env: Env) -> None:
    """``a,b@c`` is two mailboxes to a mail header: refused where it is typed."""
    refused = await env.request_link("postmaster,attacker@evil.example")
    assert refused.status_code == 400 and "Enter a valid email address." in refused.text
    page = await _sign_in_to_account(env)
    r = await env.http.post("/account/profile", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"], "username": "alice",
        "email": "alice@example.com,"})
    assert r.status_code == 400 and "is not an email address" in r.text
    assert await _queued(env) == []


@pytest.mark.parametrize(("address", "username"), [
    (".dot@example.com", "dot"), ("_under_@example.com", "under"), ("+plus@example.com", "plus"),
    ("-dash.@example.com", "dash"), ("+.-@example.com", "user")])
async def test_signup_makes_a_valid_username_of_any_local_part(signup_env: Env, address: str,
                                                              username: str) -> None:
    env = signup_env
    assert (await env.request_link(address)).status_code == 200
    back = await env.follow_link(Mailbox.link((await env.mails())[0]))
    assert back.status_code == 303 and back.headers["location"].startswith("/oauth/authorize?")
    user = await env.ctx.storage.get_user_by_login(address)
    assert user is not None and user.username == username
    created, _ = await env.ctx.storage.list_events({"action": "user.create"}, 10, 0)
    assert [(e.actor, e.target, e.client_id, e.detail) for e in created] == [
        (user.id, user.id, env.client_id, {"via": "passwordless", "username": username,
                                           "email": address, "is_administrator": False,
                                           "email_verified": True})]


async def test_a_signup_that_cannot_be_made_answers_with_a_page(signup_env: Env) -> None:
    """A link mailed before addresses were checked this strictly makes no account, and
    the browser gets a page saying why, not the REST API's JSON."""
    env, plain, now = signup_env, "t" * 43, datetime.now(UTC)
    await env.ctx.storage.create_one_time_token(OneTimeToken(
        digest=secrets.digest(plain), purpose="sign_in", email="bob@example.com,", user_id=None,
        client_id=env.client_id, payload={"authorize": env.authorize_query()}, created_at=now,
        expires_at=now + timedelta(minutes=5)))
    page = await env.follow_link(f"{ISSUER}/login/link?token={plain}")
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert "Cannot create your account" in page.text
    assert await env.ctx.storage.get_user_by_login("bob") is None


async def _pending_links(env: Env) -> tuple[str, str]:
    """Alice, signed in here, has a sign-in link and a link to make new@example.com hers."""
    page = await _sign_in_to_account(env)
    await env.http.post("/account/profile", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"], "username": "alice",
        "email": "new@example.com"})
    await env.request_link("alice@example.com")
    await env.mails(2)
    return await _link_to(env, "alice@example.com"), await _link_to(env, "new@example.com")


async def _unused_links(env: Env, user_id: str) -> int:
    async with env.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(sa.select(sa.func.count()).where(
            one_time_tokens.c.user_id == user_id, one_time_tokens.c.used_at.is_(None))
        )).scalar_one())


async def _alice(env: Env) -> User:
    user = await env.ctx.storage.get_user_by_login("alice")
    assert user is not None
    return user


async def test_deleting_a_user_cancels_their_pending_links(env: Env) -> None:
    sign_in_link, change = await _pending_links(env)
    user = await _alice(env)
    assert await _unused_links(env, user.id) == 2
    await delete_user(env.ctx.storage, user.id)
    assert await _unused_links(env, user.id) == 0
    assert (await env.follow_link(change)).status_code == 400
    assert (await env.follow_link(sign_in_link)).status_code == 400
    assert (await env.ctx.storage.get_user(user.id)).email == "alice@example.com"


async def test_an_email_change_link_is_refused_for_a_deleted_user(env: Env) -> None:
    """Even with the link not cancelled (the deletion made straight in the database)."""
    _, change = await _pending_links(env)
    user = await _alice(env)
    await env.ctx.storage.update_user(user.id, {"deleted_at": datetime.now(UTC)})
    refused = await env.follow_link(change)
    assert refused.status_code == 400 and "cannot be used" in refused.text
    assert (await env.ctx.storage.get_user(user.id)).email == "alice@example.com"


async def test_a_new_password_cancels_pending_links(env: Env) -> None:
    sign_in_link, change = await _pending_links(env)
    page = await env.http.get("/account")
    r = await env.http.post("/account/password", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"],
        "new_password": "a brand new password"})
    assert r.status_code == 303
    assert (await env.follow_link(change)).status_code == 400
    assert (await env.follow_link(sign_in_link)).status_code == 400
    assert (await _alice(env)).email == "alice@example.com"
    # a link asked for afterwards works
    await env.request_link("alice@example.com")
    fresh = Mailbox.link((await env.mails(3))[2])
    assert (await env.follow_link(fresh)).status_code == 303


async def test_a_password_set_through_the_api_cancels_pending_links(env: Env) -> None:
    admin = await create_client(env.ctx.storage, name="admin", scopes=["bastion:admin"],
                                grant_types=["client_credentials"])
    assert admin.client_secret
    token = (await env.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                 auth=(admin.client.client_id, admin.client_secret))).json()
    await env.request_link("alice@example.com")
    link = Mailbox.link((await env.mails())[0])
    r = await env.http.patch(f"/api/v1/users/{(await _alice(env)).id}",
                             json={"password": "a brand new password"},
                             headers={"Authorization": "Bearer " + token["access_token"]})
    assert r.status_code == 200, r.text
    assert (await env.follow_link(link)).status_code == 400


async def test_closing_cancels_handed_over_work_that_outlives_the_wait(
        env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Else it would reach the storage after the context closed it.
    monkeypatch.setattr(outbox, "AFTER_ANSWER_SECONDS", (0.0, 0.0))
    monkeypatch.setattr(outbox, "STOP_SECONDS", 0.01)
    started, never = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:
        started.set()
        await never.wait()

    async def not_started() -> None:
        raise AssertionError("cancelled before its turn, so never run")

    env.ctx.outbox.after_answer(stuck())
    await started.wait()
    monkeypatch.setattr(outbox, "AFTER_ANSWER_SECONDS", (60.0, 60.0))
    env.ctx.outbox.after_answer(not_started())
    await env.ctx.outbox.close()
    assert "dropped 2 mail(s)" in caplog.text
    await asyncio.wait_for(env.ctx.outbox.settled(), 10)  # nothing is left running
    env.ctx.outbox.after_answer(not_started())  # after closing: refused, not run later
    assert "mail not queued: stopping" in caplog.text
    await asyncio.wait_for(env.ctx.outbox.settled(), 10)


async def test_one_stuck_piece_of_handed_over_work_does_not_hold_up_the_rest(
        env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(outbox, "AFTER_ANSWER_SECONDS", (0.0, 0.0))
    monkeypatch.setattr(outbox, "SEND_SECONDS", 0.05)
    done: list[str] = []

    async def stuck() -> None:
        await asyncio.Event().wait()

    async def next_one() -> None:
        done.append("next")

    env.ctx.outbox.after_answer(stuck())
    env.ctx.outbox.after_answer(next_one())
    await asyncio.wait_for(env.ctx.outbox.settled(), 10)
    assert done == ["next"] and "queuing mail after an answer failed" in caplog.text


async def test_a_link_spent_just_before_a_new_password_signs_no_one_in(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new password cancels the links mailed before it, but this one was spent a
    moment earlier, and its session was stored after the password had ended every
    session: a live session, and tokens, for whoever held the link (seen with two
    instances on PostgreSQL, 5 times in 40)."""
    from bastion.server.endpoints import passwordless

    assert (await env.request_link("alice@example.com")).status_code == 200
    link = Mailbox.link((await env.mails())[0])
    alice = await env.ctx.storage.get_user_by_login("alice")
    assert alice is not None
    checks = passwordless.other_than_hinted

    async def password_changed_meanwhile(*args: Any) -> Any:  # after the spend
        await update_user(env.ctx.storage, env.ctx.passwords, alice.id,
                          password="a brand new password")
        return await checks(*args)

    monkeypatch.setattr(passwordless, "other_than_hinted", password_changed_meanwhile)
    done = await env.follow_link(link)
    assert done.status_code == 400 and "invalid, has expired or was already used" in done.text
    assert await env.ctx.storage.list_sessions(alice.id) == []
    assert "set-cookie" not in done.headers or "session" not in done.headers["set-cookie"]


async def test_a_full_backlog_refuses_link_requests_and_loses_none_it_took(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work handed over past ``MAX_HANDED`` was dropped (a log line), after the answer
    said a link was on its way: under a flood of requests real users got no mail."""
    monkeypatch.setattr(outbox, "MAX_HANDED", 2)
    monkeypatch.setattr(outbox, "AFTER_ANSWER_SECONDS", (0.0, 0.0))
    running, release = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:  # ahead of the others: they wait their turn
        running.set()
        await release.wait()

    env.ctx.outbox.after_answer(stuck())
    await running.wait()
    form = {k: v[0] for k, v in parse_qs(env.authorize_query()).items()}
    for _ in range(2):
        assert (await env.request_link("alice@example.com")).status_code == 200
    page = await env.request_link("alice@example.com")
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert "Too many emails are waiting to go out" in page.text
    api = await env.http.post("/oauth/passwordless", auth=(env.client_id, env.secret),
                              data={**form, "email": "alice@example.com"})
    assert api.status_code == 503 and api.headers["retry-after"] == "5"
    assert api.json()["error"] == "temporarily_unavailable"
    release.set()
    await asyncio.wait_for(env.ctx.outbox.settled(), 10)
    assert len(await env.mails(2)) == 2  # both taken, neither lost
    # the refused ones spent none of the address's three links
    assert (await env.request_link("alice@example.com")).status_code == 200
    assert len(await env.mails(3)) == 3


async def test_a_full_backlog_refuses_an_email_change_whole(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its confirmation link is mailed after the answer: refused before anything
    changes (the new username too), so the user can simply send the form again."""
    page = await _sign_in_to_account(env)
    monkeypatch.setattr(env.ctx.outbox, "busy", lambda: True)
    change = {"csrf_token": hidden_fields(page.text)["csrf_token"], "username": "alice2",
              "email": "new@example.com"}
    r = await env.http.post("/account/profile", data=change)
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "Too many emails are waiting to go out" in r.text
    assert (await env.ctx.storage.get_user_by_login("alice2")) is None
    monkeypatch.undo()
    assert (await env.http.post("/account/profile", data=change)).status_code == 303
    (msg,) = await env.mails()
    assert msg["To"] == "new@example.com"


async def test_handed_over_work_runs_in_order_whatever_its_delays(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # So a link asked for first is queued first: what came after it shows it is done.
    monkeypatch.setattr(outbox, "AFTER_ANSWER_SECONDS", (0.0, 0.05))
    done: list[int] = []

    async def work(n: int) -> None:
        done.append(n)

    for n in range(8):
        env.ctx.outbox.after_answer(work(n))
    await asyncio.wait_for(env.ctx.outbox.settled(), 10)
    assert done == list(range(8))


# -- email_verified ---------------------------------------------------------------------


async def id_token_claims(env: Env, callback: httpx2.Response) -> dict[str, Any]:
    """The ID token's claims (scope openid email) for the code of ``callback`` (the 303
    to the redirect URI); UserInfo must say the same."""
    import jwt

    params = callback_params(callback)
    r = await env.http.post("/oauth/token", auth=(env.client_id, env.secret), data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
        "code_verifier": env.verifier})
    tokens = r.json()
    userinfo = await env.http.get("/oauth/userinfo", headers={
        "Authorization": "Bearer " + tokens["access_token"]})
    claims: dict[str, Any] = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert userinfo.json()["email_verified"] == claims["email_verified"]
    return claims


async def test_a_used_sign_in_link_verifies_the_address(env: Env) -> None:
    alice = await env.ctx.storage.get_user_by_login("alice")
    assert alice is not None and alice.email_verified_at is None  # made by an admin
    await env.request_link("alice@example.com")
    back = await env.follow_link(Mailbox.link((await env.mails())[0]))
    claims = await id_token_claims(env, await env.http.get(back.headers["location"]))
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    verified = await env.ctx.storage.get_user_by_login("alice")
    assert verified is not None and verified.email_verified_at is not None
    assert verified.updated_at > alice.updated_at


async def test_a_password_sign_in_does_not_verify_the_address(env: Env) -> None:
    url = "/oauth/authorize?" + env.authorize_query()
    claims = await id_token_claims(env, await sign_in(env.http, url, "alice", PASSWORD))
    assert claims["email_verified"] is False


async def test_signing_up_by_link_and_an_email_change_link_verify_the_address(
    signup_env: Env,
) -> None:
    env = signup_env
    await env.request_link("new-user@example.com")
    await env.follow_link(Mailbox.link((await env.mails())[0]))
    made = await env.ctx.storage.get_user_by_login("new-user@example.com")
    assert made is not None and made.email_verified_at is not None
    # The sign-up's link and mail are the new user's now (an erasure finds them).
    async with env.ctx.storage.engine.begin() as conn:  # type: ignore[attr-defined]
        owners = {*(await conn.execute(sa.select(one_time_tokens.c.user_id))).scalars(),
                  *(await conn.execute(sa.select(outbox_table.c.user_id).where(
                      outbox_table.c.to == "new-user@example.com"))).scalars()}
    assert owners == {made.id}

    # alice changes her address on the account page: verified once the link is used
    env.http.cookies.clear()  # another browser
    page = await _sign_in_to_account(env)
    await env.http.post("/account/profile", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"], "username": "alice",
        "email": "alice@new.example"})
    (confirm,) = [m for m in await env.mails(2) if m["To"] == "alice@new.example"]
    assert (await env.follow_link(Mailbox.link(confirm))).status_code == 200
    alice = await env.ctx.storage.get_user_by_login("alice")
    assert alice is not None and alice.email == "alice@new.example"
    assert alice.email_verified_at is not None


async def test_an_admin_sets_or_clears_it_and_another_address_is_unverified(env: Env) -> None:
    alice = await env.ctx.storage.get_user_by_login("alice")
    assert alice is not None
    passwords = env.ctx.passwords
    user = await update_user(env.ctx.storage, passwords, alice.id, email_verified=True)
    assert user.email_verified_at is not None
    user = await update_user(env.ctx.storage, passwords, alice.id, email="ALICE@example.com")
    assert user.email_verified_at is not None  # the same address, in another case
    user = await update_user(env.ctx.storage, passwords, alice.id, email="alice@other.example")
    assert user.email_verified_at is None  # another address: not proven
    user = await update_user(env.ctx.storage, passwords, alice.id, email="a@third.example",
                             email_verified=True)
    assert user.email_verified_at is not None
    assert not await env.ctx.storage.verify_email(alice.id, "alice@other.example",
                                                  user.email_verified_at)


@pytest.mark.parametrize("change", ["password", "email", "deletion"])
async def test_a_sign_up_link_mailed_before_the_account_dies_with_its_links(
        signup_env: Env, change: str) -> None:
    """Two sign-up links to one address: the first makes the account. A new password (or
    address, or a deletion) then cancels the second as it does the account's own links;
    it used to sign in to the account all the same."""
    env = signup_env
    assert (await env.request_link("bob@example.com")).status_code == 200
    assert (await env.request_link("Bob@Example.com")).status_code == 200
    first, second = (Mailbox.link(m) for m in await env.mails(2))
    assert (await env.follow_link(first)).status_code == 303
    bob = await env.ctx.storage.get_user_by_login("bob@example.com")
    assert bob is not None
    if change == "password":
        await update_user(env.ctx.storage, env.ctx.passwords, bob.id,
                          password="a brand new passphrase")
    elif change == "email":
        await update_user(env.ctx.storage, env.ctx.passwords, bob.id, email="bob@new.example")
    else:  # and a restore: the link must not come back to life with the account
        await delete_user(env.ctx.storage, bob.id)
        await restore_user(env.ctx.storage, bob.id)
    env.http.cookies.clear()  # another browser
    page = await env.follow_link(second)
    assert page.status_code == 400 and "This link cannot be used" in page.text


async def test_the_link_page_says_whose_link_it_is(env: Env) -> None:
    """Someone may send a link they asked for their own account to another person: one
    click would sign that browser in as them (login CSRF). The page names the account,
    and says when it replaces the one signed in."""
    sign_in_link, _change = await _pending_links(env)  # alice is signed in here
    await create_user(env.ctx.storage, env.ctx.passwords, username="mallory",
                      email="mallory@example.com", password=PASSWORD)
    await env.request_link("mallory@example.com")
    await env.mails(3)
    mallorys = await _link_to(env, "mallory@example.com")
    page = await env.http.get(urlsplit(mallorys).path + "?" + urlsplit(mallorys).query)
    assert "Continue to sign in as mallory@example.com." in page.text
    assert "This browser is signed in as alice; it will be signed in as" in page.text
    own = await env.http.get(urlsplit(sign_in_link).path + "?" + urlsplit(sign_in_link).query)
    assert "Continue to sign in as alice@example.com." in own.text
    assert "This browser is signed in" not in own.text


async def test_a_link_posted_to_the_wrong_page_is_not_spent(env: Env) -> None:
    _sign_in, change = await _pending_links(env)
    token = change.split("token=", 1)[1]
    page = await env.http.get("/login/link?token=" + token)  # not a sign-in link
    assert page.status_code == 400
    fields = hidden_fields((await env.http.get("/account")).text)
    r = await env.http.post("/login/link", data={"csrf_token": fields["csrf_token"],
                                                 "token": token})
    assert r.status_code == 400
    confirmed = await env.follow_link(change)  # the email change still works
    assert confirmed.status_code in (200, 303) and "cannot be used" not in confirmed.text
    user = await env.ctx.storage.get_user_by_login("alice")
    assert user is not None and user.email == "new@example.com"


async def test_the_account_page_can_be_reached_by_a_link(signup_env: Env) -> None:
    """An account made by a sign-up link has no password: the account page's sign-in
    offers a link too, which comes back to the account page (and, being a fresh
    sign-in, lets them set a password without a current one). An unknown address gets
    the same answer and no mail, sign-ups or not: there is no app to sign up to."""
    env = signup_env
    page = await env.http.get("/account?tab=security")
    assert page.status_code == 200 and 'action="/login/link/request"' in page.text
    fields = hidden_fields(page.text)
    assert fields["next"].startswith("/account")
    unknown = await env.http.post("/login/link/request", data={**fields,
                                                               "email": "nobody@example.com"})
    asked = await env.http.post("/login/link/request", data={**fields,
                                                             "email": "Alice@Example.com"})
    assert unknown.status_code == asked.status_code == 200
    assert "Check your email" in unknown.text and "Check your email" in asked.text
    (mail,) = await env.mails()
    assert mail["To"] == "alice@example.com"
    assert "Use this link to sign in:" in mail.get_body(preferencelist=("plain",)).get_content()
    env.http.cookies.clear()  # the link may be opened in another browser
    back = await env.follow_link(Mailbox.link(mail))
    assert back.status_code == 303 and back.headers["location"].startswith("/account")
    account = await env.http.get(back.headers["location"])
    assert account.status_code == 200 and "alice@example.com" in account.text
    r = await env.http.post("/account/password", data={
        "csrf_token": hidden_fields(account.text)["csrf_token"],
        "new_password": "a brand new passphrase"})
    assert r.status_code == 303, r.text
    await env.ctx.outbox.settled()  # the unknown address's turn has come too
    assert len(env.box.messages) == 1  # no mail to it, and no account made for it
    assert await env.ctx.storage.get_user_by_login("nobody@example.com") is None


async def _throttled_events(env: Env) -> int:
    async with env.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(sa.text(
            "SELECT count(*) FROM events WHERE action = 'login.throttled'"))).scalar())


@pytest.mark.parametrize("account_page_first", [False, True])
async def test_the_first_refused_sign_in_of_a_wait_is_audited_whoever_asks_first(
        tmp_path: Path, account_page_first: bool) -> None:
    # The account page's password check is refused too, but audits nothing: it must
    # not spend the wait's one login.throttled event.
    async with open_env(tmp_path, login_lock_after=3, login_lock_seconds=900,
                        login_delay_after=100) as env:
        await _sign_in_to_account(env)  # alice's own browser
        # without its mark, which would give it a count of its own (it is not refused)
        env.http.cookies.delete(KNOWN_COOKIE)
        await _age_sessions(env)  # her next change asks for her password
        transport = httpx2.ASGITransport(app=create_app(env.ctx.settings, env.ctx))
        async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as attacker:

            async def guess() -> int:
                page = await attacker.get("/oauth/authorize?" + env.authorize_query(
                    prompt="login"))
                return (await attacker.post("/login", data={
                    **hidden_fields(page.text), "login": "alice",
                    "password": "wrong password!"})).status_code

            assert [await guess() for _ in range(3)] == [401] * 3
            if account_page_first:
                page = await env.http.get("/account")
                r = await env.http.post("/account/profile", data={
                    "csrf_token": hidden_fields(page.text)["csrf_token"], "username": "alice",
                    "email": "new@example.com", "current_password": PASSWORD})
                assert r.status_code == 400 and "Too many failed sign-ins" in r.text
            assert [await guess() for _ in range(5)] == [429] * 5
        assert await _throttled_events(env) == 1


@pytest.mark.parametrize("name", ["before the tag", "tagged", "prefixed"])
async def test_a_path_issuers_logout_ends_the_session_of_any_cookie_name(
        tmp_path: Path, name: str) -> None:
    # Earlier releases named the cookie without the path's tag, or without the prefix
    # of an https issuer: a logout with it still ends the session and its grants.
    async with open_env(tmp_path, issuer=ISSUER + "/tenant") as env:
        ctx = env.ctx
        alice = await ctx.storage.get_user_by_login("alice")
        assert alice is not None
        started = await sessions.start(ctx.storage, ctx.settings, ctx.signer, alice, "ua")
        assert started is not None
        session, cookie = started
        now = datetime.now(UTC)
        assert await ctx.storage.create_grant(Grant(
            id="g-1", client_id=env.client_id, user_id=alice.id, session_id=session.id,
            scope="openid", auth_time=now, created_at=now), None)
        assert ctx.settings.cookie_suffix
        cookie_name = {"before the tag": "bastion_session",
                       "tagged": "bastion_session" + ctx.settings.cookie_suffix,
                       "prefixed": ctx.settings.cookie_name("bastion_session")}[name]
        sent = {"cookie": f"{cookie_name}={cookie}"}
        page = await env.http.get("/tenant/oauth/logout", headers=sent)
        csrf = page.headers["set-cookie"].split(";")[0]
        r = await env.http.post("/tenant/oauth/logout", data=hidden_fields(page.text),
                                headers={"cookie": f"{sent['cookie']}; {csrf}"})
        assert r.status_code == 200, r.text
        grant = await ctx.storage.get_grant("g-1")
        assert grant is not None and grant.revoked_at is not None


async def test_only_the_accounts_own_browser_can_confirm_an_email_change(env: Env) -> None:
    """Else alice could ask for bob's address, and bob's click on the mail he got would
    give alice's account his address, verified: his later sign-in links would sign him
    in to her account."""
    page = await _sign_in_to_account(env)
    r = await env.http.post("/account/profile", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"], "email": "bob@example.com"})
    assert r.status_code == 303
    await env.mails()
    link = await _link_to(env, "bob@example.com")
    parts = urlsplit(link)
    transport = env.http._transport  # the same app, another browser
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as bobs:
        shown = await bobs.get(f"{parts.path}?{parts.query}")
        assert shown.status_code == 403 and "Sign in to that account" in shown.text
        assert "<form" not in shown.text and 'href="/account"' in shown.text
        forged = await bobs.post(parts.path, data={  # a valid CSRF token, no session
            "csrf_token": hidden_fields((await bobs.get("/account")).text)["csrf_token"],
            "token": parse_qs(parts.query)["token"][0]})
        assert forged.status_code == 403 and "Sign in to that account" in forged.text
        await create_user(env.ctx.storage, env.ctx.passwords, username="bob",
                          email="bob-old@example.com", password=PASSWORD)
        await sign_in(bobs, "/account", "bob", PASSWORD)
        other = await bobs.get(f"{parts.path}?{parts.query}")
        assert other.status_code == 403 and "another account than bob" in other.text
        posted = await bobs.post(parts.path, data={  # a form's token, not an account's
            "csrf_token": hidden_fields((await bobs.get("/oauth/logout")).text)["csrf_token"],
            "token": parse_qs(parts.query)["token"][0]})
        assert posted.status_code == 403 and "another account than bob" in posted.text
    alice = await env.ctx.storage.get_user_by_login("alice")
    assert alice is not None and alice.email == "alice@example.com"
    mine = await env.http.get(f"{parts.path}?{parts.query}")  # not spent by the refusals
    assert mine.status_code == 200 and "your account alice?" in mine.text
    done = await env.follow_link(link)
    assert done.status_code == 200 and "Your email address is now bob@example.com." in done.text


async def test_an_email_change_to_another_accounts_address_mails_nobody(env: Env) -> None:
    """The link could only fail; mailing it would tell bob about alice's account. The
    page answers as for any address, so it does not tell which have an account."""
    await create_user(env.ctx.storage, env.ctx.passwords, username="bob",
                      email="bob@example.com", password=PASSWORD)
    page = await _sign_in_to_account(env)
    csrf = hidden_fields(page.text)["csrf_token"]
    taken = await env.http.post("/account/profile", data={"csrf_token": csrf,
                                                           "email": "Bob@Example.com"})
    free = await env.http.post("/account/profile", data={"csrf_token": csrf,
                                                          "email": "carol@example.com"})
    assert taken.status_code == free.status_code == 303
    assert taken.headers["location"] == free.headers["location"]
    assert await _queued(env) == ["carol@example.com"]
    # The taken address's link was spent alone, after the answer: the newer one lives.
    await env.mails()
    done = await env.follow_link(await _link_to(env, "carol@example.com"))
    assert done.status_code == 200 and "carol@example.com" in done.text


async def test_an_account_without_a_password_signs_in_again_to_set_one(signup_env: Env) -> None:
    """Made by a sign-up link, it has no current password to give once its sign-in is
    over five minutes old: the page offers a fresh sign-in instead, by an emailed link."""
    env = signup_env
    await env.request_link("new-user@example.com")
    await env.follow_link(Mailbox.link((await env.mails())[0]))
    await _age_sessions(env)
    page = await env.http.get("/account")
    assert page.status_code == 200 and 'id="current_password"' not in page.text
    assert "no password yet" in page.text and 'href="/account?reauth=1"' in page.text
    r = await env.http.post("/account/password", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"], "new_password": "a new passphrase"})
    assert r.status_code == 400 and "sign in again to set one" in r.text
    again = await env.http.get("/account?reauth=1")  # the sign-in form, though signed in
    assert again.status_code == 200 and 'action="/login/link/request"' in again.text
    fields = hidden_fields(again.text)
    assert fields["next"] == "/account"
    await env.http.post("/login/link/request", data={**fields, "email": "new-user@example.com"})
    back = await env.follow_link(Mailbox.link((await env.mails(2))[1]))
    assert back.status_code == 303 and back.headers["location"] == "/account"
    fresh = await env.http.get("/account")
    assert "no password yet" not in fresh.text
    r = await env.http.post("/account/password", data={
        "csrf_token": hidden_fields(fresh.text)["csrf_token"], "new_password": "a new passphrase"})
    assert r.status_code == 303, r.text


async def test_a_stale_sign_in_may_sign_in_again_instead_of_giving_the_password(env: Env) -> None:
    await _sign_in_to_account(env)
    await _age_sessions(env)
    page = await env.http.get("/account")
    assert 'id="current_password"' in page.text and "Forgot it?" in page.text
    again = await env.http.get("/account?reauth=1")
    fields = hidden_fields(again.text)
    r = await env.http.post("/login", data={**fields, "login": "alice", "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/account"
    fresh = await env.http.get("/account")
    assert 'id="current_password"' not in fresh.text


async def test_a_stranger_cannot_use_up_the_links_of_a_browser_that_signed_in(env: Env) -> None:
    """The address's budget of links is shared by whoever asks for it: a stranger
    asking link_limit_per_email times locked its owner out for an hour. A browser
    that has signed in to the account has a budget of its own for it."""
    await _sign_in_to_account(env)  # alice's browser: marked as known
    known = env.http.cookies.get(KNOWN_COOKIE)
    assert known and "alice" not in known
    user = await env.ctx.storage.get_user_by_login("alice")
    assert user is not None and user.id not in known  # a MAC: it names no account
    transport = env.http._transport
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as stranger:
        stranger_env = Env(stranger, env.ctx, env.box, env.client_id, env.secret)
        answers = [(await stranger_env.request_link("alice@example.com")).status_code
                   for _ in range(4)]
        assert answers == [200, 200, 200, 429]  # link_limit_per_email is 3 here
        stranger.cookies.set(KNOWN_COOKIE, "forged." + known[:10])
        assert (await stranger_env.request_link("alice@example.com")).status_code == 429
    own = await env.request_link("alice@example.com")
    assert own.status_code == 200 and "Check your email" in own.text
    await env.mails(4)  # the stranger's three, and alice's own
    answers = [(await env.request_link("alice@example.com")).status_code for _ in range(3)]
    assert answers == [200, 200, 429]  # her browser's own budget: 3 as well
    assert "for this address" in (await env.request_link("alice@example.com")).text


async def test_an_email_change_answers_before_it_looks_the_address_up(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether another account has the address is found out after the answer, as for a
    sign-in link: a taken address returned sooner than a free one (no link stored, no
    mail queued), which told which addresses have an account. The link is stored
    before the answer whoever has the address (in the order the changes were asked
    for, and for an erasure to find), and cancelled after it for a taken one."""
    await create_user(env.ctx.storage, env.ctx.passwords, username="bob",
                      email="bob@example.com", password=PASSWORD)
    page = await _sign_in_to_account(env)
    csrf = hidden_fields(page.text)["csrf_token"]
    lookups: list[str] = []
    real = env.ctx.storage.get_user_by_login

    async def counted(login: str) -> Any:
        lookups.append(login)
        return await real(login)

    monkeypatch.setattr(env.ctx.storage, "get_user_by_login", counted)
    monkeypatch.setattr(outbox, "AFTER_ANSWER_SECONDS", (60.0, 60.0))  # not before the end
    monkeypatch.setattr(outbox, "STOP_SECONDS", 0.1)  # the end: dropped unrun
    for address in ("bob@example.com", "carol@example.com"):
        r = await env.http.post("/account/profile", data={"csrf_token": csrf,
                                                          "email": address})
        assert r.status_code == 303 and r.headers["location"].endswith("done=email")
    assert lookups == []
    await env.ctx.outbox.close()  # the work handed over is dropped, unrun


async def test_email_change_links_do_not_spend_the_addresss_sign_in_links(env: Env) -> None:
    """A signed-in stranger changing their address to alice's, again and again, spent
    her budget of sign-in links: she could not sign in by link for an hour."""
    await create_user(env.ctx.storage, env.ctx.passwords, username="mallory",
                      email="mallory@example.com", password=PASSWORD)
    transport = env.http._transport
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as mallory:
        await sign_in(mallory, "/account", "mallory", PASSWORD)
        csrf = hidden_fields((await mallory.get("/account")).text)["csrf_token"]
        answers = [(await mallory.post("/account/profile", data={
            "csrf_token": csrf, "email": "alice@example.com"})).status_code for _ in range(4)]
        assert answers == [303, 303, 303, 429]  # her own budget of changes: 3 here
        limited = await mallory.post("/account/profile", data={
            "csrf_token": csrf, "email": "somebody@example.com"})
        assert limited.status_code == 429 and "by this account" in limited.text
    stranger = await env.request_link("alice@example.com")  # alice, in a new browser
    assert stranger.status_code == 200 and "Check your email" in stranger.text


async def test_an_erasure_right_after_an_email_change_leaves_no_trace_of_the_address(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new address's count of links names it; an erasure finds it through the
    pending link, which is stored before the answer, not after it."""
    page = await _sign_in_to_account(env)
    monkeypatch.setattr(outbox, "AFTER_ANSWER_SECONDS", (60.0, 60.0))  # not before the end
    monkeypatch.setattr(outbox, "STOP_SECONDS", 0.1)
    r = await env.http.post("/account/profile", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"], "email": "alice.new@example.org"})
    assert r.status_code == 303
    alice = await _alice(env)
    await erase_user(env.ctx.storage, alice.id)
    async with env.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
        keys = (await conn.execute(sa.select(login_throttle.c.key))).scalars().all()
    assert not [k for k in keys if "alice" in k], keys
    await env.ctx.outbox.close()  # the mail's work, dropped unrun
