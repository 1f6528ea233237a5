"""A sign-in at Bastion's pages ends when unused for ``session_idle_timeout``, in
process. Time is moved by rewriting the stored session, never by waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bastion.oauth import pkce
from bastion.server.services.clients import create_client
from bastion.server.services.users import create_user
from bastion.server.settings import Settings
from bastion.server.storage.tables import login_sessions
from support import App, callback_params, sign_in

REDIRECT = "https://app.example/callback"
PASSWORD = "correct horse battery staple"
IDLE = 600


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"session_idle_timeout": IDLE})


async def _client(app: App) -> str:
    new = await create_client(app.ctx.storage, name="Web", public=True, redirect_uris=[REDIRECT],
                              grant_types=["authorization_code"], scopes=["openid"])
    await create_user(app.ctx.storage, app.ctx.passwords, username="alice",
                      email="alice@example.com", password=PASSWORD)
    return new.client.client_id


def _url(client_id: str, **extra: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "scope": "openid", "code_challenge": pkce.challenge(pkce.new_verifier()),
              "code_challenge_method": "S256", **extra}
    return "/oauth/authorize?" + "&".join(f"{k}={v}" for k, v in params.items())


async def _session(app: App) -> dict[str, datetime]:
    def read(conn: sa.Connection) -> dict[str, datetime]:
        row = conn.execute(sa.select(login_sessions)).mappings().one()
        return {"auth_time": row["auth_time"], "expires_at": row["expires_at"]}
    return await app.ctx.storage._read(read)  # type: ignore[attr-defined]


async def _move(app: App, **values: datetime) -> None:
    await app.ctx.storage._write(  # type: ignore[attr-defined]
        lambda conn: conn.execute(login_sessions.update().values(**values)))


async def test_an_unused_session_ends_and_a_used_one_lives_on(app: App) -> None:
    client_id = await _client(app)
    before = datetime.now(UTC)
    await sign_in(app.http, _url(client_id), "alice", PASSWORD)
    stored = await _session(app)
    assert before + timedelta(seconds=IDLE) <= stored["expires_at"] <= datetime.now(
        UTC) + timedelta(seconds=IDLE)

    # Used 5 minutes before its end: an authorization moves the end on.
    await _move(app, expires_at=datetime.now(UTC) + timedelta(seconds=300))
    r = await app.http.get(_url(client_id, prompt="none"))
    assert "code" in callback_params(r)
    assert (await _session(app))["expires_at"] >= datetime.now(UTC) + timedelta(
        seconds=IDLE - 5)
    # Uses within a minute of each other record nothing more.
    first = (await _session(app))["expires_at"]
    await app.http.get(_url(client_id, prompt="none"))
    assert "alice@example.com" in (await app.http.get("/account")).text  # a use too
    assert (await _session(app))["expires_at"] == first

    # Never past session_ttl after the sign-in, however it is used.
    signed_in = datetime.now(UTC) - timedelta(seconds=app.ctx.settings.session_ttl - 120)
    await _move(app, auth_time=signed_in, expires_at=datetime.now(UTC) + timedelta(seconds=30))
    r = await app.http.get(_url(client_id, prompt="none"))
    assert "code" in callback_params(r)
    end = signed_in + timedelta(seconds=app.ctx.settings.session_ttl)
    assert abs((await _session(app))["expires_at"] - end) < timedelta(seconds=1)

    # Unused for the timeout: it counts as none.
    await _move(app, auth_time=datetime.now(UTC) - timedelta(seconds=IDLE + 5),
                expires_at=datetime.now(UTC) - timedelta(seconds=1))
    r = await app.http.get(_url(client_id, prompt="none"))
    assert callback_params(r)["error"] == "login_required"
    r = await app.http.get(_url(client_id))
    assert r.status_code == 200 and 'name="password"' in r.text  # the form again
    r = await app.http.get("/account")  # the sign-in form, not the account
    assert r.status_code == 200 and 'name="password"' in r.text and "alice@" not in r.text
    # ... and is not brought back by being presented
    assert (await _session(app))["expires_at"] < datetime.now(UTC)


async def test_without_an_idle_timeout_only_session_ttl_ends_it(app: App) -> None:
    app.ctx.settings = app.ctx.settings.model_copy(update={"session_idle_timeout": 0})
    client_id = await _client(app)
    await sign_in(app.http, _url(client_id), "alice", PASSWORD)
    stored = await _session(app)
    ttl = timedelta(seconds=app.ctx.settings.session_ttl)
    assert stored["expires_at"] - stored["auth_time"] == ttl
    r = await app.http.get(_url(client_id, prompt="none"))
    assert "code" in callback_params(r)
    assert await _session(app) == stored
