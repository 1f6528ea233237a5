"""SIGKILL the server in the middle of a write load; after a restart every write
the server acknowledged is there, whole (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx2

from bastion.server.services.secrets import digest
from bastion.server.storage import open_storage
from support import running_server

SETTINGS = {"password_hash_memory_kib": "8192", "password_hash_time_cost": "1"}
ACKS_BEFORE_KILL = 60


async def load(url: str, admin_token: str, client: tuple[str, str], refresh: list[str],
               acked_users: dict[str, str], acked_tokens: list[str], killed: asyncio.Event,
               kill: object) -> None:
    async with httpx2.AsyncClient(base_url=url, timeout=10) as http:
        async def create_users() -> None:
            while not killed.is_set():
                name = "crash" + secrets.token_hex(6)
                try:
                    r = await http.post("/api/v1/users", json={
                        "username": name, "email": f"{name}@example.com"},
                        headers={"Authorization": "Bearer " + admin_token})
                except httpx2.TransportError:
                    return
                if r.status_code == 201:
                    acked_users[r.json()["id"]] = name
                    maybe_kill()

        async def refresh_chain(i: int) -> None:
            while not killed.is_set():
                try:
                    r = await http.post("/oauth/token", auth=client, data={
                        "grant_type": "refresh_token", "refresh_token": refresh[i]})
                except httpx2.TransportError:
                    return
                if r.status_code != 200:
                    return
                refresh[i] = r.json()["refresh_token"]
                acked_tokens.append(refresh[i])
                maybe_kill()

        def maybe_kill() -> None:
            if len(acked_users) + len(acked_tokens) >= ACKS_BEFORE_KILL and not killed.is_set():
                kill()  # type: ignore[operator]
                killed.set()

        await asyncio.gather(*(create_users() for _ in range(4)),
                             *(refresh_chain(i) for i in range(len(refresh))))


def test_acknowledged_writes_survive_sigkill(tmp_path: Path, database_url: str | None) -> None:
    with running_server(tmp_path, database_url, **SETTINGS) as server:
        admin = server.create_client("--name", "admin", "--grant-type", "client_credentials",
                                     "--scope", "bastion:admin")
        app = server.create_client("--name", "app", "--grant-type", "password",
                                   "--grant-type", "refresh_token")
        password = secrets.token_urlsafe(16)
        server.cli("users", "create", "--username", "chain", "--email", "chain@example.com",
                   "--password-stdin", stdin=password)
        client = (str(app["client_id"]), str(app["client_secret"]))
        token = httpx2.post(server.url + "/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(str(admin["client_id"]), str(admin["client_secret"])),
                            ).json()["access_token"]
        refresh = [httpx2.post(server.url + "/oauth/token", auth=client, data={
            "grant_type": "password", "username": "chain", "password": password},
            ).json()["refresh_token"] for _ in range(4)]
        acked_users: dict[str, str] = {}
        acked_tokens: list[str] = []
        assert server.proc is not None
        asyncio.run(load(server.url, token, client, refresh, acked_users, acked_tokens,
                         asyncio.Event(), server.proc.kill))
        server.proc.wait(10)
        assert server.proc.returncode == -9
    assert len(acked_users) + len(acked_tokens) >= ACKS_BEFORE_KILL

    # Restart on the same database: it starts cleanly ...
    with running_server(tmp_path, database_url, **SETTINGS) as again:
        assert httpx2.get(again.url + "/readyz").status_code == 200
        url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"

        async def check() -> None:
            store = open_storage(url)
            try:
                # ... every acknowledged user is there, whole, and found by search ...
                for user_id, name in acked_users.items():
                    user = await store.get_user(user_id)
                    assert user is not None and user.username == name
                    assert user.email == f"{name}@example.com"
                    assert [u.id for u in await store.search_users(name, 5, 0)] == [user_id]
                # ... and every refresh token handed out exists with its family.
                for plain in acked_tokens:
                    stored = await store.get_refresh_token(digest(plain))
                    assert stored is not None
                    assert await store.get_grant(stored.grant_id) is not None
            finally:
                await store.close()

        asyncio.run(check())
