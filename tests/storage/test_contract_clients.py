"""The storage contract for OAuth clients: listing, changes, secret rotation, deletion."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_contract import NOW, client, grant
from test_contract_tokens import LATER, refresh

from bastion.server.storage import Conflict, SQLStorage
from bastion.server.storage.tables import clients


async def test_clients_list_oldest_first_with_a_count(storage: SQLStorage) -> None:
    for n in range(5):
        await storage.create_client(replace(client(f"c{n}"), created_at=NOW + timedelta(seconds=n)))
    items, count = await storage.list_clients(2, 1)
    assert [c.client_id for c in items] == ["c1", "c2"] and count == 5
    assert items[0] == replace(client("c1"), created_at=NOW + timedelta(seconds=1))
    assert await storage.list_clients(10, 5) == ([], 5)


async def test_an_update_sets_only_the_given_fields(storage: SQLStorage) -> None:
    await storage.create_client(client())
    updated = await storage.update_client("app", lambda c: {"name": "New", "scopes": ("a",)})
    assert updated == replace(client(), name="New", scopes=("a",))
    assert await storage.get_client("app") == updated
    assert await storage.update_client("app", lambda c: {}) == updated
    assert await storage.update_client("other", lambda c: {"name": "x"}) is None


async def test_a_refused_change_writes_nothing(storage: SQLStorage) -> None:
    await storage.create_client(client())

    def refuse(current: object) -> dict[str, object]:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await storage.update_client("app", refuse)
    assert await storage.get_client("app") == client()


async def test_concurrent_changes_each_see_the_last_one(storage: SQLStorage) -> None:
    """Each change reads the client under its row lock: twenty appends of a redirect
    URI at once keep all twenty (a read before the lock would lose some)."""
    await storage.create_client(client())

    def add(n: int):  # type: ignore[no-untyped-def]
        return lambda current: {"redirect_uris": (*current.redirect_uris, f"https://{n}.example/cb")}

    await asyncio.gather(*(storage.update_client("app", add(n)) for n in range(20)))
    final = await storage.get_client("app")
    assert final is not None and len(final.redirect_uris) == 21


async def test_a_secret_rotation_keeps_the_previous_digest(storage: SQLStorage) -> None:
    await storage.create_client(client())
    kept = await storage.update_client("app", lambda c: {
        "secret_digest": b"n" * 32, "previous_secret_digest": c.secret_digest,
        "previous_secret_expires_at": LATER})
    assert kept is not None and kept.secret_digest == b"n" * 32
    assert kept.previous_secret_digest == b"d" * 32 and kept.previous_secret_expires_at == LATER


async def test_deleting_a_client_revokes_its_grants_only(storage: SQLStorage) -> None:
    from test_contract import user

    await storage.create_user(user())
    for client_id in ("app", "other"):
        await storage.create_client(client(client_id))
    await storage.create_grant(grant("g1"), refresh(b"1" * 32, "g1"))
    await storage.create_grant(grant("g2", client_id="other"), refresh(b"2" * 32, "g2"))

    assert await storage.delete_client("app", NOW) == "deleted"
    assert await storage.get_client("app") is None
    assert await storage.is_revoked("jti", "g1")
    gone = await storage.get_refresh_token(b"1" * 32)
    assert gone is not None and gone.revoked_at is not None
    assert not await storage.is_revoked("jti", "g2")  # another client's grant lives on
    kept = await storage.get_refresh_token(b"2" * 32)
    assert kept is not None and kept.revoked_at is None
    assert await storage.delete_client("app", NOW) == "already"
    assert await storage.delete_client("never", NOW) == "missing"


async def test_a_deleted_client_is_kept_marked_and_its_id_never_reused(
    storage: SQLStorage,
) -> None:
    await storage.create_client(client())
    await storage.create_client(client("other"))
    await storage.delete_client("app", NOW)
    assert await storage.list_clients(10, 0) == ([client("other")], 1)
    assert await storage.update_client("app", lambda c: {"name": "back"}) is None
    with pytest.raises(Conflict):
        await storage.create_client(client())
    async with storage.engine.connect() as conn:
        row = (await conn.execute(sa.select(clients).where(clients.c.client_id == "app"))
               ).mappings().one()
    assert row["deleted_at"] == NOW and row["name"] == "App"
    assert row["secret_digest"] is None and row["previous_secret_digest"] is None
