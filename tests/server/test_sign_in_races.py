"""A sign-in or a link request under way when the user is erased, or given a new
password, in process: the password was right (or the address theirs) a moment before,
but no session, token, link, mail or sign-in event (with the address it came from) is
written after the change, and the answer is the one for a wrong password. Otherwise
an attacker signing in again and again with a stolen password would keep a session
through the new password meant to shut them out."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from api_helpers import PASSWORD, Api

from bastion.server.services import links, sessions
from bastion.server.services.clients import create_client
from bastion.server.services.users import PERSONAL_DATA, create_user
from bastion.server.storage.tables import one_time_tokens, outbox
from support import callback_params, hidden_fields

REDIRECT = "https://app.example/callback"


async def _gus(api: Api) -> str:
    ctx = api.app.ctx
    return (await create_user(ctx.storage, ctx.passwords, username="gus",
                              email="gus@example.com", password=PASSWORD)).id


CHANGES = pytest.mark.parametrize("change", ["erase", "new password"])


async def _change(api: Api, user_id: str, change: str) -> None:
    http = api.app.http
    r = await (http.post(f"/api/v1/users/{user_id}/erase") if change == "erase" else
               http.patch(f"/api/v1/users/{user_id}", json={"password": "another password"}))
    assert r.status_code == 200, r.text


def _change_after_the_hash(api: Api, monkeypatch: pytest.MonkeyPatch, user_id: str,
                           change: str) -> None:
    """The password checks out, and then, before anything is stored, an administrator
    erases the user or gives them a new password."""
    passwords = api.app.ctx.passwords
    verify = passwords.averify

    async def then_change(stored: str | None, password: str) -> bool:
        ok = await verify(stored, password)
        monkeypatch.undo()
        await _change(api, user_id, change)
        return ok
    monkeypatch.setattr(passwords, "averify", then_change)


async def _nothing_written(api: Api, user_id: str) -> None:
    found = await api.app.ctx.storage.export_user(user_id, 100, PERSONAL_DATA)
    assert found is not None
    assert found.sessions == [] and found.grants == []
    assert "login.success" not in [e.action for e in found.events]


@CHANGES
@pytest.mark.parametrize("org", [None, "acme"])
async def test_the_password_grant_issues_no_token(
        api: Api, monkeypatch: pytest.MonkeyPatch, change: str, org: str | None) -> None:
    http = api.app.http
    gus = await _gus(api)
    asked = {}
    if org:  # a member: the grant is refused for the change, not for the organization
        assert (await http.post("/api/v1/organizations", json={"name": org})).is_success
        assert (await http.post(f"/api/v1/organizations/{org}/roles", json={
            "name": "viewer", "permissions": []})).is_success
        assert (await http.post(f"/api/v1/organizations/{org}/users/{gus}/roles",
                                json={"add": ["viewer"]})).is_success
        asked = {"organization": org}
    _change_after_the_hash(api, monkeypatch, gus, change)
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "password", "username": "gus", "password": PASSWORD, **asked})
    if org and change == "erase":  # the erasure took the membership, which is checked first
        assert r.status_code == 403 and r.json()["error"] == "access_denied", r.text
    else:
        assert r.status_code == 400, r.text
        assert r.json() == {"error": "invalid_grant",
                            "error_description": "Incorrect username or password."}
    await _nothing_written(api, gus)
    if change == "new password":  # which works
        assert (await api.user_token("gus", password="another password", **asked)
                )["access_token"]


@CHANGES
async def test_the_login_form_starts_no_session(
        api: Api, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    http = api.app.http
    web = await create_client(api.app.ctx.storage, name="Web", redirect_uris=[REDIRECT],
                              grant_types=["authorization_code"], scopes=["openid"])
    gus = await _gus(api)
    page = await http.get("/oauth/authorize", params={
        "response_type": "code", "client_id": web.client.client_id, "redirect_uri": REDIRECT,
        "scope": "openid", "state": "s"})
    assert page.status_code == 200, page.text
    _change_after_the_hash(api, monkeypatch, gus, change)
    posted = await http.post("/login", data={**hidden_fields(page.text), "login": "gus",
                                              "password": PASSWORD})
    assert posted.status_code == 401, posted.text
    assert "Incorrect username or password." in posted.text
    assert "bastion_session" not in posted.headers.get("set-cookie", "")
    await _nothing_written(api, gus)


async def test_a_sign_in_link_is_neither_stored_nor_mailed(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = api.app.ctx
    web = await create_client(ctx.storage, name="Web", redirect_uris=[REDIRECT],
                              grant_types=["authorization_code"], scopes=["openid"])
    gus = await _gus(api)
    lookup = links._user_by_email

    async def found_then_erased(storage: Any, email: str) -> Any:
        user = await lookup(storage, email)
        await _change(api, gus, "erase")
        return user
    monkeypatch.setattr(links, "_user_by_email", found_then_erased)
    assert not await links._sign_in_link(ctx.storage, ctx.settings, "gus@example.com",
                                         web.client, "client_id=x")
    engine = ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        for table in (one_time_tokens, outbox):
            count = await conn.execute(sa.select(sa.func.count()).select_from(table))
            assert count.scalar_one() == 0, table.name
    await _nothing_written(api, gus)


@pytest.mark.parametrize("prompt", [None, "none"])
async def test_an_authorization_in_a_session_a_new_password_ends_gets_no_code(
        api: Api, monkeypatch: pytest.MonkeyPatch, prompt: str | None) -> None:
    """The authorization request found the session live; before its code is stored,
    the user (elsewhere) sets a new password, which ends that session."""
    http = api.app.http
    web = await create_client(api.app.ctx.storage, name="Web", redirect_uris=[REDIRECT],
                              grant_types=["authorization_code"], scopes=["openid"])
    gus = await _gus(api)
    authorize = {"response_type": "code", "client_id": web.client.client_id,
                 "redirect_uri": REDIRECT, "scope": "openid", "state": "s"}
    page = await http.get("/oauth/authorize", params=authorize)
    posted = await http.post("/login", data={**hidden_fields(page.text), "login": "gus",
                                              "password": PASSWORD})
    assert posted.status_code == 303, posted.text  # signed in, a session cookie set
    current = sessions.current

    async def then_new_password(*args: Any) -> Any:
        found = await current(*args)
        monkeypatch.undo()
        await _change(api, gus, "new password")
        return found
    monkeypatch.setattr(sessions, "current", then_new_password)
    again = await http.get("/oauth/authorize",
                           params={**authorize, **({"prompt": prompt} if prompt else {})})
    if prompt == "none":
        assert again.status_code == 303, again.text
        assert callback_params(again)["error"] == "login_required"
    else:
        assert again.status_code == 200 and 'id="login"' in again.text  # sign in first
    found = await api.app.ctx.storage.export_user(gus, 100, PERSONAL_DATA)
    assert found is not None
    assert found.grants == []  # no code, and no grant the new password missed
