"""A sign-in or a link request under way when the user is erased, in process: the
password was right (or the address theirs) a moment before, but no session, token,
link, mail or sign-in event (with the address it came from) is written after the
erasure, and the answer is the one for an account that is not there."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from api_helpers import PASSWORD, Api

from bastion.server.services import links
from bastion.server.services.clients import create_client
from bastion.server.services.users import PERSONAL_DATA, create_user
from bastion.server.storage.tables import one_time_tokens, outbox
from support import hidden_fields

REDIRECT = "https://app.example/callback"


async def _gus(api: Api) -> str:
    ctx = api.app.ctx
    return (await create_user(ctx.storage, ctx.passwords, username="gus",
                              email="gus@example.com", password=PASSWORD)).id


def _erase_after_the_hash(api: Api, monkeypatch: pytest.MonkeyPatch, user_id: str) -> None:
    """The password checks out, and then, before anything is stored, an administrator
    erases the user."""
    passwords = api.app.ctx.passwords
    verify = passwords.averify

    async def then_erase(stored: str | None, password: str) -> bool:
        ok = await verify(stored, password)
        r = await api.app.http.post(f"/api/v1/users/{user_id}/erase")
        assert r.status_code == 200, r.text
        return ok
    monkeypatch.setattr(passwords, "averify", then_erase)


async def _nothing_written(api: Api, user_id: str) -> None:
    found = await api.app.ctx.storage.export_user(user_id, 100, PERSONAL_DATA)
    assert found is not None and found.user.erased_at is not None
    assert found.sessions == [] and found.grants == []
    assert [e.action for e in found.events] == ["user.erase"]  # no sign-in


async def test_the_password_grant_issues_no_token(api: Api,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    gus = await _gus(api)
    _erase_after_the_hash(api, monkeypatch, gus)
    r = await api.app.http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "password", "username": "gus", "password": PASSWORD})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "invalid_grant",
                        "error_description": "Incorrect username or password."}
    await _nothing_written(api, gus)


async def test_the_login_form_starts_no_session(api: Api,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    http = api.app.http
    web = await create_client(api.app.ctx.storage, name="Web", redirect_uris=[REDIRECT],
                              grant_types=["authorization_code"], scopes=["openid"])
    gus = await _gus(api)
    page = await http.get("/oauth/authorize", params={
        "response_type": "code", "client_id": web.client.client_id, "redirect_uri": REDIRECT,
        "scope": "openid", "state": "s"})
    assert page.status_code == 200, page.text
    _erase_after_the_hash(api, monkeypatch, gus)
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
        r = await api.app.http.post(f"/api/v1/users/{gus}/erase")
        assert r.status_code == 200, r.text
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
