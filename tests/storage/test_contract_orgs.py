"""The storage contract of an organization's life: rename, members, delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import TypeVar

import pytest
from test_contract import NOW, grant, user
from test_contract_tokens import refresh

from bastion.server.models import Organization, Role
from bastion.server.storage import Conflict, SQLStorage, open_storage
from bastion.server.storage.base import Missing

LATER = NOW + timedelta(minutes=1)
T = TypeVar("T")
U = TypeVar("U")


async def org_with_roles(storage: SQLStorage, org_id: str = "o", *names: str) -> None:
    await storage.create_organization(Organization(id=org_id, name=org_id, created_at=NOW))
    for name in names or ("viewer",):
        await storage.create_role(Role(id=f"{org_id}-{name}", organization_id=org_id,
                                       name=name, permissions=(f"{name}:x",), created_at=NOW))


async def test_rename_keeps_the_id_and_refuses_a_taken_name(storage: SQLStorage) -> None:
    await org_with_roles(storage, "o")
    await org_with_roles(storage, "other")
    renamed = await storage.rename_organization("o", "Acme")
    assert renamed == Organization(id="o", name="Acme", created_at=NOW)
    assert await storage.get_organization("acme") == renamed
    with pytest.raises(Conflict):
        await storage.rename_organization("other", "ACME")
    assert (await storage.get_organization("other")).name == "other"  # type: ignore[union-attr]
    assert await storage.rename_organization("missing", "x") is None


async def test_members_and_a_users_organizations(storage: SQLStorage) -> None:
    for n in (1, 2, 3):
        await storage.create_user(user(n, created_at=NOW + timedelta(seconds=n)))
    await org_with_roles(storage, "o", "editor", "viewer")
    await org_with_roles(storage, "p")
    await org_with_roles(storage, "empty")
    u1, u2, u3 = (user(n).id for n in (1, 2, 3))
    await storage.change_user_roles(u3, "o", ["o-viewer", "o-editor"], [])
    await storage.change_user_roles(u1, "o", ["o-viewer"], [])
    await storage.change_user_roles(u1, "p", ["p-viewer"], [])

    members, count = await storage.list_members("o", 10, 0)
    assert count == 2
    assert [(m.user.id, m.roles) for m in members] == [  # oldest user first
        (u1, ("viewer",)), (u3, ("editor", "viewer"))]
    assert members[0].user == await storage.get_user(u1)
    page, count = await storage.list_members("o", 1, 1)
    assert [m.user.id for m in page] == [u3] and count == 2
    assert await storage.list_members("empty", 10, 0) == ([], 0)
    assert await storage.list_members("missing", 10, 0) == ([], 0)
    # a deleted user keeps their roles, listed only when asked for
    await storage.update_user(u1, {"deleted_at": NOW})
    members, count = await storage.list_members("o", 10, 0)
    assert [m.user.id for m in members] == [u3] and count == 1
    members, count = await storage.list_members("o", 10, 0, include_deleted=True)
    assert [m.user.id for m in members] == [u1, u3] and count == 2

    orgs, count = await storage.user_organizations(u1, 10, 0)
    assert [o.id for o in orgs] == ["o", "p"] and count == 2
    orgs, count = await storage.user_organizations(u1, 1, 1)
    assert [o.id for o in orgs] == ["p"] and count == 2
    assert await storage.user_organizations(u2, 10, 0) == ([], 0)


async def test_delete_takes_roles_assignments_and_grants_with_it(storage: SQLStorage) -> None:
    await storage.create_user(user())
    uid = user().id
    await org_with_roles(storage, "o", "editor", "viewer")
    await org_with_roles(storage, "p")
    await storage.change_user_roles(uid, "o", ["o-editor"], [])
    await storage.change_user_roles(uid, "p", ["p-viewer"], [])
    await storage.create_grant(grant("in-o", organization_id="o"), refresh(b"1" * 32, "in-o"))
    await storage.create_grant(grant("in-p", organization_id="p"), refresh(b"2" * 32, "in-p"))
    await storage.create_grant(grant("plain"), refresh(b"3" * 32, "plain"))

    assert await storage.delete_organization("o", force=False, at=LATER) == "in_use"
    assert [r.id for r in await storage.user_roles(uid, "o")] == ["o-editor"]
    assert (await storage.get_grant("in-o")).revoked_at is None  # type: ignore[union-attr]

    assert await storage.delete_organization("o", force=True, at=LATER) == "deleted"
    assert await storage.get_organization("o") is None
    assert await storage.list_roles("o") == []
    assert await storage.user_roles(uid, "o") == []
    assert (await storage.get_grant("in-o")).revoked_at == LATER  # type: ignore[union-attr]
    assert (await storage.get_refresh_token(b"1" * 32)).revoked_at == LATER  # type: ignore[union-attr]
    for kept, digest in (("in-p", b"2" * 32), ("plain", b"3" * 32)):
        assert (await storage.get_grant(kept)).revoked_at is None  # type: ignore[union-attr]
        assert (await storage.get_refresh_token(digest)).revoked_at is None  # type: ignore[union-attr]
    assert [r.id for r in await storage.user_roles(uid, "p")] == ["p-viewer"]
    assert await storage.delete_organization("o", force=True, at=LATER) == "missing"
    # the name is free again, and a role cannot be made in the deleted one
    await storage.create_organization(Organization(id="o2", name="O", created_at=NOW))
    with pytest.raises(Missing):
        await storage.create_role(Role(id="late", organization_id="o", name="late",
                                       permissions=(), created_at=NOW))
    # an organization without members needs no force
    await org_with_roles(storage, "q")
    assert await storage.delete_organization("q", force=False, at=LATER) == "deleted"


@pytest.fixture
async def twin(storage: SQLStorage) -> AsyncIterator[SQLStorage]:
    """A second storage on the same database: another instance (or worker process),
    with its own connections, so the two really race."""
    other = open_storage(storage.engine.url.render_as_string(hide_password=False),
                         pool_size=5)
    try:
        yield other
    finally:
        await other.close()


def both_orders(n: int, a: Awaitable[T], b: Awaitable[U]) -> Awaitable[tuple[T, U]]:
    """``gather(a, b)``, started in turn in either order (SQLite answers the first
    at once when it can), with exceptions returned; the results as (a, b)."""
    async def run() -> tuple[T, U]:
        if n % 2:
            second, first = await asyncio.gather(b, a, return_exceptions=True)
        else:
            first, second = await asyncio.gather(a, b, return_exceptions=True)
        return first, second  # type: ignore[return-value]
    return run()


async def test_an_organization_with_members_is_never_deleted_without_force(
        storage: SQLStorage, twin: SQLStorage) -> None:
    """An add racing a plain delete: the add goes first and the delete answers
    ``in_use``, or the delete goes first and the add finds no role. Never both done
    (the deletion would take the new assignment away unseen)."""
    await storage.create_user(user())
    uid = user().id
    for n in range(16):
        org = f"o{n}"
        await org_with_roles(storage, org)
        added, deleted = await both_orders(
            n, storage.change_user_roles(uid, org, [f"{org}-viewer"], []),
            twin.delete_organization(org, force=False, at=LATER))
        if isinstance(added, Missing):
            assert deleted == "deleted"
            assert await storage.get_organization(org) is None
        else:
            assert deleted == "in_use", (n, added, deleted)
            assert [r.id for r in await storage.user_roles(uid, org)] == [f"{org}-viewer"]


async def test_a_role_created_while_its_organization_is_deleted(
        storage: SQLStorage, twin: SQLStorage) -> None:
    """The role is made first (and deleted with the organization), or finds none:
    ``Missing``, never a name conflict or a role left without its organization."""
    for n in range(10):
        org = f"o{n}"
        await org_with_roles(storage, org)
        role = Role(id=f"{org}-new", organization_id=org, name="new", permissions=("p",),
                    created_at=NOW)
        created, deleted = await both_orders(
            n, storage.create_role(role), twin.delete_organization(org, force=False, at=LATER))
        assert deleted == "deleted"
        assert created is None or isinstance(created, Missing), created
        assert await storage.list_roles(org) == []
        assert await storage.get_role(org, role.id) is None


async def test_a_grant_in_an_organization_needs_a_role_there(storage: SQLStorage) -> None:
    await storage.create_user(user())
    uid = user().id
    await org_with_roles(storage, "o")
    assert not await storage.create_grant(grant("g1", organization_id="o"),
                                          refresh(b"1" * 32, "g1"))
    assert await storage.get_grant("g1") is None and await storage.get_refresh_token(
        b"1" * 32) is None
    await storage.change_user_roles(uid, "o", ["o-viewer"], [])
    assert await storage.create_grant(grant("g1", organization_id="o"), refresh(b"1" * 32, "g1"))
    await storage.change_user_roles(uid, "o", [], ["o-viewer"])
    # a reissue into it is refused too, and changes nothing
    assert not await storage.reissue_grant("g1", grant("g2", organization_id="o"),
                                           refresh(b"2" * 32, "g2"), LATER)
    assert (await storage.get_grant("g1")).revoked_at is None  # type: ignore[union-attr]
    assert await storage.get_grant("g2") is None


async def test_no_grant_outlives_its_organization(storage: SQLStorage, twin: SQLStorage) -> None:
    """A sign-in into an organization racing its deletion: its grant is refused (the
    deletion went first) or stored and then revoked with the others, never left live."""
    await storage.create_user(user())
    uid = user().id
    for n in range(16):
        org = f"o{n}"
        await org_with_roles(storage, org)
        await storage.change_user_roles(uid, org, [f"{org}-viewer"], [])
        family = grant(f"g{n}", organization_id=org)
        created, deleted = await both_orders(
            n, storage.create_grant(family, refresh(bytes([n]) * 32, family.id)),
            twin.delete_organization(org, force=True, at=LATER))
        assert deleted == "deleted" and isinstance(created, bool), (created, deleted)
        found = await storage.get_grant(family.id)
        if created:
            assert found is not None and found.revoked_at == LATER
            token = await storage.get_refresh_token(bytes([n]) * 32)
            assert token is not None and token.revoked_at == LATER
        else:
            assert found is None


class _TooMuch(Exception):
    pass


def _at_most(n: int):  # type: ignore[no-untyped-def]
    def check(held: object) -> None:
        count = len(held) if isinstance(held, list) else len(held.permissions)  # type: ignore[attr-defined]
        if count > n:
            raise _TooMuch(count)
    return check


async def test_concurrent_role_adds_each_see_the_other_in_their_check(
        storage: SQLStorage, twin: SQLStorage) -> None:
    """What a token can carry is checked in the transaction, after the adds committed
    before it: two instances adding a role each to a user who may hold one cannot
    both pass (each checking only what it read before would)."""
    await storage.create_user(user())
    uid = user().id
    for n in range(8):
        org = f"o{n}"
        await org_with_roles(storage, org, "a", "b")
        first, second = await both_orders(
            n, storage.change_user_roles(uid, org, [f"{org}-a"], [], _at_most(1)),
            twin.change_user_roles(uid, org, [f"{org}-b"], [], _at_most(1)))
        outcomes = sorted(type(x).__name__ for x in (first, second))
        assert outcomes == ["_TooMuch", "list"], (first, second)
        assert len(await storage.user_roles(uid, org)) == 1  # the refused one undone


async def test_concurrent_permission_adds_each_see_the_other_in_their_check(
        storage: SQLStorage, twin: SQLStorage) -> None:
    for n in range(8):
        org = f"p{n}"
        await org_with_roles(storage, org)  # the role has one permission
        role_id = f"{org}-viewer"
        first, second = await both_orders(
            n, storage.change_permissions(role_id, ["a:1"], [], _at_most(2)),
            twin.change_permissions(role_id, ["b:1"], [], _at_most(2)))
        outcomes = sorted(type(x).__name__ for x in (first, second))
        assert outcomes == ["NoneType", "_TooMuch"], (first, second)
        [role] = [r for r in await storage.list_roles(org) if r.id == role_id]
        assert len(role.permissions) == 2


async def test_a_role_add_locks_the_user_before_the_roles(storage: SQLStorage) -> None:
    """Sign-ins hold the user's row, then the role they are issued with; a forced
    organization delete locks its roles. A role add that held its roles while waiting
    for the user's row closed a cycle with the two (PostgreSQL: deadlock detected, a
    500). Waiting for the user, it must hold no role yet."""
    if storage.engine.dialect.name != "postgresql":
        pytest.skip("row locks: SQLite has one writer at a time")
    import sqlalchemy as sa
    from test_contract_live_user import _until

    from bastion.server.storage.tables import roles, users

    await storage.create_user(user())
    uid = user().id
    await org_with_roles(storage, "o", "held", "added")
    await storage.change_user_roles(uid, "o", ["o-held"], [])
    async with storage.engine.connect() as sign_in, storage.engine.connect() as watch, \
            storage.engine.connect() as deleting:
        await watch.execution_options(isolation_level="AUTOCOMMIT")
        pid = (await sign_in.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        await sign_in.execute(sa.select(users.c.id).where(users.c.id == uid)
                              .with_for_update(read=True))  # as create_grant does
        add = asyncio.ensure_future(storage.change_user_roles(uid, "o", ["o-added"], []))

        async def waiting() -> bool:
            blocked = await watch.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE :pid = ANY(pg_blocking_pids(pid))"), {"pid": pid})
            return bool(blocked.scalar_one())
        await _until(waiting, add)  # type: ignore[arg-type]
        # the role to add is free: a delete of the organization could lock it now
        await deleting.execute(sa.select(roles.c.id).where(roles.c.id == "o-added")
                               .with_for_update(nowait=True))
        await deleting.rollback()
        await sign_in.commit()
        assert sorted(r.id for r in await add) == ["o-added", "o-held"]
