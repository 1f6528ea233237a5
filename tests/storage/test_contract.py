"""The storage contract, run on SQLite and on a real PostgreSQL cluster."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bastion.server.models import Client, SigningKey, User
from bastion.server.storage import Conflict, SQLStorage, migrate

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def user(n: int = 1, **changes: object) -> User:
    base = User(id=f"00000000-0000-0000-0000-{n:012d}", username=f"User{n}",
                email=f"user{n}@example.com", password_hash="$argon2id$x", is_administrator=False,
                created_at=NOW, updated_at=NOW)
    return replace(base, **changes)  # type: ignore[arg-type]


def client(client_id: str = "app") -> Client:
    return Client(client_id=client_id, name="App", is_public=False, secret_digest=b"d" * 32,
                  redirect_uris=("https://app.example/cb",), grant_types=("client_credentials",),
                  scopes=("read", "write"), created_at=NOW)


def key(kid: str, use: str = "access", at: datetime = NOW) -> SigningKey:
    return SigningKey(kid=kid, alg="ES256", use=use, private_key_enc=b"\x01secret",  # type: ignore[arg-type]
                      public_jwk={"kid": kid, "kty": "EC"}, created_at=at)


async def test_migrations_are_current_and_idempotent(storage: SQLStorage) -> None:
    await migrate.upgrade(storage.engine)
    assert await migrate.current_revision(storage.engine) == migrate.head_revision()


async def test_user_round_trip_keeps_every_field(storage: SQLStorage) -> None:
    u = user(deleted_at=NOW + timedelta(days=1), is_administrator=True)
    await storage.create_user(u)
    assert await storage.get_user(u.id) == u
    assert await storage.get_user("missing") is None


async def test_user_lookup_by_login_is_case_insensitive(storage: SQLStorage) -> None:
    u = user()
    await storage.create_user(u)
    assert await storage.get_user_by_login("user1") == u
    assert await storage.get_user_by_login("USER1@EXAMPLE.COM") == u
    assert await storage.get_user_by_login("nobody") is None


OTHER_ID = "00000000-0000-0000-0000-000000000009"


@pytest.mark.parametrize(("changes", "field"), [
    ({"id": OTHER_ID, "username": "USER1", "email": "other@example.com"}, "username"),
    ({"id": OTHER_ID, "username": "other", "email": "User1@Example.com"}, "email"),
])
async def test_user_uniqueness_is_case_insensitive(storage: SQLStorage, changes, field) -> None:
    await storage.create_user(user())
    with pytest.raises(Conflict) as err:
        await storage.create_user(user(**changes))
    assert err.value.field == field


async def test_client_round_trip_and_conflict(storage: SQLStorage) -> None:
    await storage.create_client(client())
    assert await storage.get_client("app") == client()
    assert await storage.get_client("other") is None
    with pytest.raises(Conflict) as err:
        await storage.create_client(client())
    assert err.value.field == "client_id"


async def test_rotation_retires_only_the_same_use(storage: SQLStorage) -> None:
    await storage.rotate_signing_key(key("a1"))
    await storage.rotate_signing_key(key("i1", use="id"))
    later = NOW + timedelta(hours=1)
    await storage.rotate_signing_key(key("a2", at=later))
    keys = {k.kid: k for k in await storage.signing_keys()}
    assert keys["a1"].retired_at == later
    assert keys["a2"].retired_at is None
    assert keys["i1"].retired_at is None
    assert keys["a1"].private_key_enc == b"\x01secret"
    assert keys["a2"].public_jwk == {"kid": "a2", "kty": "EC"}


async def test_concurrent_rotations_leave_one_active_key(storage: SQLStorage) -> None:
    await asyncio.gather(*(storage.rotate_signing_key(key(f"k{i}", at=NOW + timedelta(seconds=i)))
                           for i in range(5)))
    active = [k for k in await storage.signing_keys() if k.retired_at is None]
    assert len(active) == 1


async def test_ping(storage: SQLStorage) -> None:
    await storage.ping()
