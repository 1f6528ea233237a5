"""The CLI contract of DESIGN.md, run in process on a throwaway SQLite file."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bastion.cli import main
from bastion.server.models import Event
from bastion.server.storage import open_storage
from bastion.server.storage.tables import signing_keys


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    for key in [k for k in __import__("os").environ if k.startswith("BASTION_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BASTION_PASSWORD_HASH_MEMORY_KIB", "8192")
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"

    def invoke(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main([*args, "--database-url", url, "--data-dir", str(tmp_path)])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    invoke.url = url  # type: ignore[attr-defined]
    return invoke


def count(url: str, table: str) -> int:
    async def go() -> int:
        import sqlalchemy as sa
        store = open_storage(url)
        try:
            async with store.engine.connect() as conn:
                return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar())  # noqa: S608 - fixed names
        finally:
            await store.close()
    return asyncio.run(go())


def backdate_next_keys(url: str, by: timedelta) -> None:
    async def go() -> None:
        store = open_storage(url)
        try:
            async with store.engine.begin() as conn:
                await conn.execute(signing_keys.update()
                                   .where(signing_keys.c.activated_at.is_(None))
                                   .values(created_at=datetime.now(UTC) - by))
        finally:
            await store.close()
    asyncio.run(go())


def events(url: str, action: str) -> list[Event]:
    async def go() -> list[Event]:
        store = open_storage(url)
        try:
            return (await store.list_events({"action": action}, 10, 0))[0]
        finally:
            await store.close()
    return asyncio.run(go())


def test_migrate_on_a_fresh_database(run) -> None:
    code, out, _ = run("migrate")
    assert code == 0
    from bastion.server.storage import migrate

    assert f"revision {migrate.head_revision()}" in out


def test_commands_on_a_current_schema_do_not_wait_for_the_write_lock(run, tmp_path) -> None:
    import sqlite3

    assert run("clients", "create", "--name", "web", "--json")[0] == 0
    writer = sqlite3.connect(tmp_path / "cli.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a server in the middle of a write
        code, out, err = run("clients", "list", "--json")
        assert code == 0, err
        assert [json.loads(line)["name"] for line in out.splitlines()] == ["web"]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_clients_create_json_confidential(run) -> None:
    code, out, _ = run("clients", "create", "--name", "API", "--grant-type", "client_credentials",
                       "--scope", "read", "--scope", "write", "--json")
    assert code == 0
    body = json.loads(out)
    assert body["client_id"] and len(body["client_secret"]) >= 40
    assert body["grant_types"] == ["client_credentials"]
    assert body["scopes"] == ["read", "write"]
    (event,) = events(run.url, "client.create")
    assert event.target == body["client_id"] and event.actor_type == "system"
    assert event.detail == {"via": "cli", "grant_types": ["client_credentials"],
                            "scopes": ["read", "write"]}
    assert body["client_secret"] not in json.dumps(event.detail)


def test_clients_create_json_public_has_no_secret(run) -> None:
    code, out, _ = run("clients", "create", "--name", "SPA", "--public",
                       "--redirect-uri", "http://127.0.0.1:5000/cb", "--json")
    assert code == 0
    body = json.loads(out)
    assert "client_secret" not in body
    assert body["grant_types"] == ["authorization_code", "refresh_token"]


@pytest.mark.parametrize(("args", "message"), [
    (["--redirect-uri", "not a uri"], "redirect_uri"),
    (["--redirect-uri", "http://example.com/cb"], "https"),
    (["--redirect-uri", "https://example.com/cb#frag"], "fragment"),
    (["--grant-type", "implicit"], "unknown grant type"),
    (["--public", "--grant-type", "client_credentials"], "public client"),
    (["--scope", "bad\"scope"], "scope"),
])
def test_clients_create_bad_arguments(run, args, message) -> None:
    code, out, err = run("clients", "create", "--name", "x", *args, "--json")
    assert code == 1
    assert message in err
    assert out == ""
    assert count(run.url, "clients") == 0


def test_clients_list_rotate_secret_and_delete(run) -> None:
    from bastion.server.services import secrets

    _, out, _ = run("clients", "create", "--name", "API", "--json")
    first = json.loads(out)
    run("clients", "create", "--name", "SPA", "--public", "--redirect-uri",
        "http://127.0.0.1:5000/cb")
    code, out, _ = run("clients", "list", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [c["name"] for c in listed] == ["API", "SPA"]
    assert all("client_secret" not in c for c in listed)
    code, out, _ = run("clients", "list")
    assert code == 0 and "name: API" in out and "name: SPA" in out

    code, out, _ = run("clients", "rotate-secret", first["client_id"], "--keep-old-for",
                       "600", "--json")
    rotated = json.loads(out)
    assert code == 0 and rotated["client_secret"] != first["client_secret"]
    assert rotated["previous_secret_expires_at"]

    async def stored() -> tuple[bytes | None, bytes | None]:
        store = open_storage(run.url)
        try:
            client = await store.get_client(first["client_id"])
            assert client is not None
            return client.secret_digest, client.previous_secret_digest
        finally:
            await store.close()

    digests = asyncio.run(stored())
    assert digests == (secrets.digest(rotated["client_secret"]),
                       secrets.digest(first["client_secret"]))
    (event,) = events(run.url, "client.secret.rotate")
    assert event.detail == {"via": "cli", "keep_old_for": 600}
    code, out, _ = run("clients", "rotate-secret", first["client_id"])
    assert code == 0 and "shown once" in out and "previous_secret" not in out

    assert run("clients", "rotate-secret", "nope")[0] == 1
    assert run("clients", "rotate-secret", first["client_id"], "--keep-old-for", "-1")[0] == 2
    code, out, _ = run("clients", "delete", first["client_id"])
    assert code == 0 and "revoked its tokens" in out
    _, out, _ = run("clients", "list", "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["SPA"]
    code, out, _ = run("clients", "delete", first["client_id"])  # again: said, not an error
    assert code == 0 and "was deleted before" in out
    assert [e.target for e in events(run.url, "client.delete")] == [first["client_id"]]
    code, _, err = run("clients", "delete", "never")
    assert code == 1 and "No client" in err


def test_users_create_json_and_duplicates(run) -> None:
    code, out, _ = run("users", "create", "--username", "alice", "--email", "alice@example.com",
                       "--admin", "--password-stdin", "--json", stdin="correct horse battery\n")
    assert code == 0
    body = json.loads(out)
    assert body["username"] == "alice" and body["id"]
    assert body["is_administrator"] is True and body["email_verified"] is False
    (event,) = events(run.url, "user.create")  # an administrator made outside the API
    assert (event.target, event.actor_type) == (body["id"], "system")
    assert event.detail == {"via": "cli", "username": "alice", "email": "alice@example.com",
                            "is_administrator": True, "email_verified": False}
    code, _, err = run("users", "create", "--username", "ALICE", "--email", "other@example.com",
                       "--password-stdin", stdin="another password\n")
    assert code == 1
    assert "username 'ALICE' is already taken" in err
    code, _, err = run("users", "create", "--username", "bob", "--email", "Alice@example.com",
                       "--password-stdin", stdin="another password\n")
    assert code == 1
    assert "email" in err
    assert count(run.url, "users") == 1
    code, out, _ = run("users", "create", "--username", "carol", "--email", "c@example.com",
                       "--email-verified", "--password-stdin", "--json", stdin="a password!\n")
    assert code == 0 and json.loads(out)["email_verified"] is True


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--username", "bob", "--email", "nope"], "long enough pw", "email"),
    (["--username", "bad name", "--email", "b@example.com"], "long enough pw", "username"),
    (["--username", "bob", "--email", "b@example.com"], "short", "password"),
])
def test_users_create_bad_input(run, args, stdin, message) -> None:
    code, _, err = run("users", "create", *args, "--password-stdin", stdin=stdin + "\n")
    assert code == 1
    assert message in err
    assert count(run.url, "users") == 0


def test_password_is_stored_as_argon2id(run) -> None:
    run("users", "create", "--username", "carol", "--email", "c@example.com", "--password-stdin",
        stdin="a good password\n")

    async def stored() -> str:
        store = open_storage(run.url)
        try:
            user = await store.get_user_by_login("carol")
            assert user is not None and user.password_hash
            return user.password_hash
        finally:
            await store.close()

    assert asyncio.run(stored()).startswith("$argon2id$")


def test_users_erase(run) -> None:
    _, out, _ = run("users", "create", "--username", "dora", "--email", "d@example.com",
                    "--password-stdin", "--json", stdin="a good password\n")
    user_id = json.loads(out)["id"]
    code, _, err = run("users", "erase", user_id)  # no --yes: refused, nothing done
    assert code == 2 and "--yes" in err

    async def stored() -> Any:
        store = open_storage(run.url)
        try:
            return await store.get_user(user_id)
        finally:
            await store.close()

    assert asyncio.run(stored()).erased_at is None
    code, out, _ = run("users", "erase", user_id, "--yes")
    assert code == 0 and f"erased user {user_id}" in out
    erased = asyncio.run(stored())
    assert erased.erased_at and erased.username == f"erased:{user_id}"
    (event,) = events(run.url, "user.erase")
    assert event.target == user_id and event.detail == {"via": "cli"}
    code, _, err = run("users", "erase", "no-such-user", "--yes")
    assert code == 1 and "No user 'no-such-user'" in err


def test_keys_rotate(run) -> None:
    code, out, _ = run("keys", "rotate")  # an empty store: no next key to activate
    assert code == 0 and "as no next key was stored" in out
    assert count(run.url, "signing_keys") == 4  # an active and a next key per use
    code, out, _ = run("keys", "rotate")  # the next keys, published a moment ago
    assert code == 0 and "published less than 60 s ago" in out
    assert out.count("access-") == 2 and out.count("id-") == 2
    assert count(run.url, "signing_keys") == 6
    backdate_next_keys(run.url, timedelta(seconds=61))
    code, out, _ = run("keys", "rotate")  # next keys every relying party has seen
    assert code == 0 and "may refuse" not in out
    assert out.count("access-") == 1 and out.count("id-") == 1
    rotations = events(run.url, "keys.rotate")
    assert len(rotations) == 3 and all(e.actor_type == "system" for e in rotations)
    assert all(kid in out for kid in rotations[0].detail["kids"])  # newest first


def test_keys_withdraw(run) -> None:
    run("keys", "rotate")
    async def stored() -> list[Any]:
        store = open_storage(run.url)
        try:
            return await store.signing_keys()
        finally:
            await store.close()

    signing = next(k for k in asyncio.run(stored()) if k.use == "id" and k.retired_at is None
                   and k.activated_at is not None)
    code, out, _ = run("keys", "withdraw", signing.kid)
    assert code == 0 and f"withdrew {signing.kid}" in out
    left = asyncio.run(stored())
    assert signing.kid not in {k.kid for k in left}
    assert sum(k.use == "id" and k.activated_at is not None for k in left) == 1
    assert sum(k.use == "id" and k.activated_at is None for k in left) == 1
    (event,) = events(run.url, "keys.withdraw")
    assert event.target == signing.kid and event.detail["via"] == "cli"
    code, _, err = run("keys", "withdraw", signing.kid)
    assert code == 1 and "No signing key" in err


def test_unknown_command_is_an_error(run) -> None:
    code, _, err = run("frobnicate")
    assert code == 2
    assert "invalid choice" in err


def test_a_client_id_never_begins_with_a_dash(run, monkeypatch) -> None:
    """One in 64 did: given to a command, it read as an option (argparse's error, exit
    2, nothing on stdout), and this file's tests failed as often."""
    import secrets as _secrets

    drawn = iter(["-looks-like-an-option", "Abc-def_123"])
    monkeypatch.setattr(_secrets, "token_urlsafe", lambda _n: next(drawn))
    code, out, _ = run("clients", "create", "--name", "SPA", "--public", "--redirect-uri",
                       "http://127.0.0.1:5000/cb", "--json")  # (no secret drawn first)
    assert code == 0 and json.loads(out)["client_id"] == "Abc-def_123"
