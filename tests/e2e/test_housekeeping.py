"""Housekeeping against the real server process, on SQLite and on PostgreSQL: the
server purges what no longer decides anything in the background, ``bastion purge`` does
it at once, and what is live keeps working through the SDK."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa

from bastion import Client, InvalidToken
from bastion.oauth.jose import b64url_decode
from bastion.server.models import Grant, RefreshToken
from bastion.server.services.secrets import digest
from bastion.server.storage import SQLStorage, open_storage
from bastion.server.storage.tables import signing_keys
from support import ServerProcess, running_server, wait_until

SETTINGS = {"password_hash_memory_kib": "8192", "password_hash_time_cost": "1"}


def store_url(server: ServerProcess) -> str:
    return server.database_url or f"sqlite+aiosqlite:///{server.data_dir / 'bastion.db'}"


def with_store(server: ServerProcess, work):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        store = open_storage(store_url(server), pool_size=1)
        try:
            return await work(store)
        finally:
            await store.close()
    return asyncio.run(run())


def stale_family(server: ServerProcess, user_id: str, client_id: str) -> str:
    """A token family whose refresh token expired two days ago, as if made long ago;
    returns its grant id."""
    long_ago = datetime.now(UTC) - timedelta(days=40)

    async def add(store: SQLStorage) -> str:
        grant = Grant(id="stale-" + secrets.token_hex(4), client_id=client_id, user_id=user_id,
                      session_id=None, scope="openid", auth_time=long_ago, created_at=long_ago)
        await store.create_grant(grant, RefreshToken(
            digest=digest(secrets.token_urlsafe(16)), grant_id=grant.id, client_id=client_id,
            user_id=user_id, scope="openid", created_at=long_ago,
            expires_at=long_ago + timedelta(days=38)))
        await store.revoke_access_token("stale-jti", long_ago + timedelta(minutes=10))
        return grant.id
    return with_store(server, add)


def rows(server: ServerProcess, grant_id: str) -> tuple[int, int, int]:
    """The stale family's grant and refresh tokens, and the stale revoked jti."""
    async def count(store: SQLStorage) -> tuple[int, int, int]:
        async with store.engine.connect() as conn:
            found = [(await conn.execute(sa.text(query), {"id": key})).scalar() for query, key in (
                ("SELECT count(*) FROM grants WHERE id = :id", grant_id),
                ("SELECT count(*) FROM refresh_tokens WHERE grant_id = :id", grant_id),
                ("SELECT count(*) FROM revoked_access_tokens WHERE jti = :id", "stale-jti"))]
        return found[0], found[1], found[2]
    return with_store(server, count)


def app_and_user(server: ServerProcess) -> tuple[Client, tuple[str, str], str, str]:
    """A Client of a new password+refresh app, its id and secret, and a user's id and
    password."""
    app = server.create_client("--name", "app", "--grant-type", "password",
                               "--grant-type", "refresh_token", "--scope", "openid")
    password = secrets.token_urlsafe(16)
    done = server.cli("users", "create", "--username", "kim", "--email", "kim@example.com",
                      "--password-stdin", "--json", stdin=password)
    assert done.returncode == 0, done.stderr
    client = Client(server.url, client_id=str(app["client_id"]),
                    client_secret=str(app["client_secret"]))
    auth = (str(app["client_id"]), str(app["client_secret"]))
    return client, auth, json.loads(done.stdout)["id"], password


def test_the_server_purges_in_the_background_and_live_tokens_keep_working(
        tmp_path: Path, database_url: str | None) -> None:
    with running_server(tmp_path, database_url, housekeeping_interval="1", **SETTINGS) as server:
        client, auth, user_id, password = app_and_user(server)
        with client:
            tokens = client.login_password("kim", password, scope="openid")
            fresh = client.refresh(tokens)
            stale = stale_family(server, user_id, auth[0])  # (may be purged at once)
            wait_until(lambda: rows(server, stale) == (0, 0, 0), timeout=30, interval=0.2,
                       what="the background purge")
            # the live family was left alone: its tokens work, and its used refresh
            # token is still known, so presenting it again revokes the family
            assert client.introspect(fresh.access_token)["active"] is True
            replay = httpx2.post(server.url + "/oauth/token", auth=auth, data={
                "grant_type": "refresh_token", "refresh_token": tokens.refresh_token})
            assert replay.status_code == 400 and "already used" in replay.text
            assert client.introspect(fresh.access_token)["active"] is False

        def counted() -> bool:  # the round's figures come right after its last batch
            metrics = httpx2.get(server.url + "/metrics").text
            return ('bastion_purged_rows_total{kind="grants"} ' in metrics
                    and "housekeeping deleted" in server.log())
        wait_until(counted, timeout=30, interval=0.2, what="the purge's metrics and log line")


def test_bastion_purge_deletes_what_is_due_at_once(tmp_path: Path,
                                                    database_url: str | None) -> None:
    with running_server(tmp_path, database_url, housekeeping_interval="0", **SETTINGS) as server:
        client, auth, user_id, password = app_and_user(server)
        with client:
            tokens = client.login_password("kim", password, scope="openid")
            stale = stale_family(server, user_id, auth[0])

            done = server.cli("purge", "--json")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout) == {"grants": 1, "refresh_tokens": 1,
                                               "revoked_access_tokens": 1}
            assert rows(server, stale) == (0, 0, 0)
            assert server.cli("purge").stdout.strip() == "deleted nothing: no row was due"
            assert client.refresh(tokens).access_token


def test_a_purged_signing_key_stops_verifying_in_the_sdk(tmp_path: Path) -> None:
    """A key retired (after a leak: rotate twice) leaves the JWKS once purged; an app
    that fetched the JWKS before stops trusting it when its copy is older than the
    server's max-age."""
    with running_server(tmp_path, None, housekeeping_interval="0", **SETTINGS) as server:
        client, _, _, password = app_and_user(server)
        with client:
            token = client.login_password("kim", password, scope="openid").access_token
            assert client.verify_token(token)["sub"]
            keys = client._core.keys
            assert keys.expires_at - keys.fetched_at == 60  # the server's max-age

            for _ in range(2):
                assert server.cli("keys", "rotate").returncode == 0
            kid = json.loads(b64url_decode(token.split(".")[0]))["kid"]

            async def retire_long_ago(store: SQLStorage) -> None:
                async with store.engine.begin() as conn:
                    await conn.execute(sa.update(signing_keys).where(
                        signing_keys.c.kid == kid).values(
                        retired_at=datetime.now(UTC) - timedelta(days=2)))
            with_store(server, retire_long_ago)
            done = server.cli("purge", "--json")
            assert json.loads(done.stdout)["signing_keys"] >= 1
            jwks = httpx2.get(server.url + "/.well-known/jwks.json").json()
            assert kid not in {k["kid"] for k in jwks["keys"]}

            assert client.verify_token(token)  # the app's copy is fresh: still trusted
            keys.fetched_at -= 61
            keys.expires_at -= 61
            with pytest.raises(InvalidToken, match="unknown key"):
                client.verify_token(token)
