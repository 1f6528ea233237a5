"""CSRF on every hosted form besides login and logout (those are in ``test_csrf.py``):
the sign-in link request, the link confirmation, the account forms (profile,
password, session revoke) and the email-change confirmation.

For each form: a control with the browser's own token succeeds; no token, a forged
token, and a token minted for another browser's cookie are refused with 400 and
change nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx2
import pytest
import sqlalchemy as sa
from security_helpers import PASSWORD, Env, authorize_url, get_code, hidden_fields, login_form

from bastion.server.services import links
from bastion.server.services.sessions import COOKIE as SESSION_COOKIE
from bastion.server.storage.tables import outbox, users

ATTACKS = ["missing", "forged", "other-browser"]


async def attack_token(env: Env, attack: str, own: str) -> str | None:
    """The csrf_token an attacker's page would submit."""
    if attack == "missing":
        return None
    if attack == "forged":
        return own[:-4] + "AAAA"
    other = await env.browser()
    return hidden_fields((await other.get(authorize_url(env.web.client_id))).text)["csrf_token"]


def with_token(fields: dict[str, str], token: str | None) -> dict[str, str]:
    fields = {k: v for k, v in fields.items() if k != "csrf_token"}
    return fields if token is None else {**fields, "csrf_token": token}


async def queued_mails(env: Env) -> int:
    await env.ctx.outbox.settled()  # a link's mail is queued after the answer
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(outbox)))
                   .scalar_one())


async def email_of(env: Env) -> str:
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        return str((await conn.execute(sa.select(users.c.email)
                                       .where(users.c.id == env.user.id))).scalar_one())


# -- the sign-in link request on the login page ---------------------------------------------


async def post_link_request(env: Env, attack: str | None) -> httpx2.Response:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    token = fields["csrf_token"] if attack is None else await attack_token(
        env, attack, fields["csrf_token"])
    return await env.http.post("/login/link/request", data={
        **with_token(fields, token), "email": "alice@example.com"})


async def test_link_request_with_a_valid_token_queues_a_mail(env: Env) -> None:
    r = await post_link_request(env, None)
    assert r.status_code == 200 and "Check your email" in r.text
    assert await queued_mails(env) == 1


@pytest.mark.parametrize("attack", ATTACKS)
async def test_link_request_without_a_valid_csrf_token_is_refused(env: Env, attack: str) -> None:
    r = await post_link_request(env, attack)
    assert r.status_code == 400 and "This form has expired" in r.text
    assert await queued_mails(env) == 0


# -- the sign-in link confirmation (POST /login/link) -----------------------------------------


async def sign_in_link(env: Env) -> str:
    issued = await links._issue(env.ctx.storage, env.ctx.settings, "sign_in", env.user.email,
                                env.user, env.web.client_id,
                                {"authorize": authorize_url(env.web.client_id).split("?", 1)[1]})
    assert issued is not None
    return issued[0]


async def confirm_link(env: Env, attack: str | None) -> httpx2.Response:
    token = await sign_in_link(env)
    page = await env.http.get("/login/link?" + urlencode({"token": token}))
    assert page.status_code == 200
    fields = hidden_fields(page.text)
    csrf = fields["csrf_token"] if attack is None else await attack_token(
        env, attack, fields["csrf_token"])
    return await env.http.post("/login/link", data=with_token(fields, csrf))


async def test_link_confirmation_with_a_valid_token_signs_in(env: Env) -> None:
    r = await confirm_link(env, None)
    assert r.status_code == 303 and SESSION_COOKIE in r.headers["set-cookie"]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_link_confirmation_without_a_valid_csrf_token_is_refused(env: Env,
                                                                       attack: str) -> None:
    # Login CSRF: an attacker's page must not sign the victim in with the attacker's link.
    r = await confirm_link(env, attack)
    assert r.status_code == 400 and "This form has expired" in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


# -- the account forms ------------------------------------------------------------------------


@dataclass
class AccountForm:
    path: str
    data: Callable[[Env], Awaitable[dict[str, str]]]
    changed: Callable[[Env], Awaitable[bool]]


async def _profile(env: Env) -> dict[str, str]:
    return {"username": "mallory-was-here", "email": ""}


async def _profile_changed(env: Env) -> bool:
    user = await env.ctx.storage.get_user(env.user.id)
    return user is not None and user.username == "mallory-was-here"


async def _password(env: Env) -> dict[str, str]:
    return {"current_password": PASSWORD, "new_password": "chosen by the attacker 123"}


async def _password_changed(env: Env) -> bool:
    r = await env.password_grant(password="chosen by the attacker 123")
    return r.status_code == 200


async def _other_session(env: Env) -> str:
    sessions = await env.ctx.storage.list_sessions(env.user.id)
    return sessions[0].id


async def _revoke(env: Env) -> dict[str, str]:
    return {"session_id": await _other_session(env)}


async def _revoked(env: Env) -> bool:
    return len(await env.ctx.storage.list_sessions(env.user.id)) < 2


async def _email(env: Env) -> dict[str, str]:
    return {"username": "", "email": "mallory@evil.example"}


async def _email_mail_queued(env: Env) -> bool:
    return await queued_mails(env) > 0


ACCOUNT_FORMS = {
    "profile": AccountForm("/account/profile", _profile, _profile_changed),
    "profile-email": AccountForm("/account/profile", _email, _email_mail_queued),
    "password": AccountForm("/account/password", _password, _password_changed),
    "session-revoke": AccountForm("/account/sessions/revoke", _revoke, _revoked),
}


async def account_post(env: Env, form: AccountForm, attack: str | None) -> httpx2.Response:
    await get_code(env, http=await env.browser())  # a second session, to revoke
    await get_code(env)  # the victim's browser is signed in
    page = await env.http.get("/account")
    assert page.status_code == 200
    own = hidden_fields(page.text)["csrf_token"]
    token = own if attack is None else await attack_token(env, attack, own)
    data = await form.data(env)
    return await env.http.post(form.path, data=with_token(data, token))


@pytest.mark.parametrize("name", ACCOUNT_FORMS)
async def test_account_form_with_a_valid_token_is_applied(env: Env, name: str) -> None:
    form = ACCOUNT_FORMS[name]
    r = await account_post(env, form, None)
    assert r.status_code == 303, r.text[:300]
    assert await form.changed(env)


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("name", ACCOUNT_FORMS)
async def test_account_form_without_a_valid_csrf_token_is_refused(env: Env, name: str,
                                                                  attack: str) -> None:
    form = ACCOUNT_FORMS[name]
    r = await account_post(env, form, attack)
    assert r.status_code == 400 and "This form has expired" in r.text
    assert not await form.changed(env)


# -- the email-change confirmation (POST /account/email) -------------------------------------


async def confirm_email_change(env: Env, attack: str | None) -> httpx2.Response:
    issued = await links._issue(env.ctx.storage, env.ctx.settings, "email_change",
                                "new-alice@example.com", env.user, None, {})
    assert issued is not None
    token = issued[0]
    await get_code(env)  # confirmed in a browser signed in to the account
    page = await env.http.get(links.EMAIL_CHANGE_PATH + "?" + urlencode({"token": token}))
    assert page.status_code == 200
    fields = hidden_fields(page.text)
    csrf = fields["csrf_token"] if attack is None else await attack_token(
        env, attack, fields["csrf_token"])
    return await env.http.post(links.EMAIL_CHANGE_PATH, data=with_token(fields, csrf))


async def test_email_change_confirmation_with_a_valid_token_changes_the_email(env: Env) -> None:
    r = await confirm_email_change(env, None)
    assert r.status_code == 200 and "new-alice@example.com" in r.text
    assert await email_of(env) == "new-alice@example.com"


@pytest.mark.parametrize("attack", ATTACKS)
async def test_email_change_confirmation_without_a_valid_csrf_token_is_refused(
        env: Env, attack: str) -> None:
    r = await confirm_email_change(env, attack)
    assert r.status_code == 400 and "This form has expired" in r.text
    assert await email_of(env) == "alice@example.com"


async def test_account_forms_without_a_session_change_nothing(env: Env) -> None:
    # A cross-site POST that carries no session cookie goes to the account page.
    for form in ACCOUNT_FORMS.values():
        r = await env.http.post(form.path, data=await _profile(env))
        assert r.status_code == 303 and r.headers["location"] == "/account"
    assert not await _profile_changed(env)
