"""The high-level models (``User``, ``Organization``, ``Role``, ``Event``) over named
connections, against the real server on SQLite and PostgreSQL; each test runs with
the sync calls and with their ``a``-prefixed twins.

``call(obj, "get", ...)`` runs ``obj.get(...)``, or ``await obj.aget(...)`` on an
event loop (a blocking portal: the shared async clients live in that loop).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import pickle
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import anyio.from_thread
import pytest

from bastion import (
    Client,
    ConfigurationError,
    Conflict,
    Event,
    InvalidGrant,
    NotFound,
    Organization,
    Role,
    TokenSet,
    User,
    configure,
)
from support import ServerProcess

App = Account = Any


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    if request.param == "sync":
        yield lambda obj, name, *a, **k: getattr(obj, name)(*a, **k)
        return
    with anyio.from_thread.start_blocking_portal() as portal:
        yield lambda obj, name, *a, **k: portal.call(
            functools.partial(getattr(obj, "a" + name), *a, **k)
        )


@pytest.fixture
def connections(any_server: ServerProcess, make_app: Callable[..., App]) -> Iterator[App]:
    app = make_app(any_server, "--grant-type", "password")
    configure(
        default={"url": any_server.url, "client_id": app.client_id,
                 "client_secret": app.client_secret},
        admin={"url": any_server.url, "client_id": any_server.admin_client_id,
               "client_secret": any_server.admin_client_secret},
    )
    yield app
    configure()


def unique(prefix: str) -> str:
    return prefix + secrets.token_hex(5)


def test_users(connections: App, call: Callable[..., Any]) -> None:
    name = unique("Model")
    user = call(User, "create", name, f"{name}@example.com", "a long passphrase", using="admin")
    assert user.username == name and user.client is not None
    assert call(User, "get", user.identifier, using="admin") == user
    found = call(User, "search", name.lower(), 20, 0, "admin")
    assert found == [user] and found.total == 1
    assert call(User, "count", name, "admin") == 1
    # An object runs its calls on the client it was fetched with ("admin").
    assert call(user, "update", email=f"{name}@new.example") is user
    assert user.email == f"{name.lower()}@new.example"
    call(user, "delete")
    assert call(User, "get", user.id, using="admin").deleted_at is not None
    assert call(User, "count", name, "admin", include_deleted=True) == 1
    assert call(user, "restore") is user and user.deleted_at is None
    assert call(User, "search", name, using="admin", include_deleted=True) == [user]
    # It pickles without its client (sessions pickle their values); a copy keeps it,
    # so its calls go where the original's do.
    unpickled = pickle.loads(pickle.dumps(user))  # noqa: S301 - our own bytes
    assert unpickled == user and unpickled.client is None
    for copied in (copy.copy(user), copy.deepcopy(user)):
        assert copied == user and copied.client is user.client
    with pytest.raises(NotFound):
        call(User, "get", "no-such-user", using="admin")
    with pytest.raises(Conflict):
        call(User, "create", name, f"other{name}@example.com", using="admin")
    assert call(user, "export")["user"]["id"] == user.id
    assert call(user, "erase") is user and user.erased_at is not None
    assert user.username == f"erased:{user.id}" and user.deleted_at is not None
    assert call(User, "count", name, "admin", include_deleted=True) == 0


def test_users_iterate(connections: App) -> None:
    prefix = unique("Iter")
    made = [User.create(f"{prefix}{n}", f"{prefix}{n}@example.com", using="admin").id
            for n in range(3)]
    assert [u.id for u in User.iterate(prefix, "admin", page_size=2)] == made

    async def drain() -> list[str]:
        return [u.id async for u in User.aiterate(prefix, "admin", page_size=2)]
    with anyio.from_thread.start_blocking_portal() as portal:
        assert portal.call(drain) == made


def test_organizations_roles_and_user_roles(
    connections: App, call: Callable[..., Any], any_server: ServerProcess,
    account_on: Callable[..., Account],
) -> None:
    org = call(Organization, "create", unique("org"), using="admin")
    assert call(Organization, "get", org.name, using="admin") == org
    page = call(Organization, "list", 100, 0, "admin")
    assert page.total >= 1 and all(isinstance(o, Organization) for o in page)
    role = call(Role, "create", org, "editor", ["posts:read"], using="admin")
    assert call(role, "add_permissions", ["posts:write", "posts:delete"]) is role
    assert role.permissions == ("posts:delete", "posts:read", "posts:write")
    call(role, "remove_permissions", "posts:delete")
    assert call(Role, "get", org.id, "editor", using="admin").permissions == role.permissions
    assert call(Role, "list", org.name, using="admin") == [role] == call(org, "roles")
    viewer = call(Role, "create", org.id, "viewer", "posts:read", using="admin")

    person = account_on(any_server)
    user = call(User, "get", person.id, using="admin")
    # The user's own tokens, from the app's connection, carrying the organization.
    attached = call(user, "attach_roles", org, [role, "viewer"])
    assert sorted(r.name for r in attached) == ["editor", "viewer"] and attached.total == 2
    with Client(using="default") as app:
        user.token = app.login_password(person.username, person.password, organization=org.name)
        old = user.token
        roles, tokens = call(user, "update_roles", org, remove=[viewer], reissue=user.token)
        assert [r.name for r in roles] == ["editor"]
        assert tokens is not None and user.token is tokens and tokens is not old
        assert app.verify_token(tokens.access_token)["roles"] == ["editor"]
        assert not app.introspect(old.access_token)["active"]
    assert [r.name for r in call(user, "remove_roles", org, "editor")] == []
    assert call(user, "roles", org) == []
    call(viewer, "delete")
    with pytest.raises(NotFound):
        call(Role, "get", org, "viewer", using="admin")
    with pytest.raises(Conflict):
        call(Organization, "create", org.name, using="admin")

    # membership: the organization's users, and the user's organizations
    call(user, "attach_roles", org, "editor")
    members = call(org, "members")
    assert [(m.user, m.roles) for m in members] == [(user, ("editor",))]
    assert members[0].user.client is org.client  # its calls run where the org's do
    assert call(user, "organizations") == [org]
    new_name = unique("renamed")
    assert call(org, "rename", new_name) is org and org.name == new_name
    assert call(Organization, "get", new_name, using="admin") == org
    with pytest.raises(Conflict):
        call(org, "delete")
    call(org, "delete", force=True)
    assert call(user, "organizations") == []
    with pytest.raises(NotFound):
        call(Organization, "get", org.id, using="admin")


def test_events(connections: App, call: Callable[..., Any]) -> None:
    org = call(Organization, "create", unique("evorg"), using="admin")
    events = call(Event, "list", action="organization.create", target=org.id, using="admin")
    assert [(e.action, e.detail) for e in events] == [("organization.create", {"name": org.name})]
    every = list(Event.iterate(target=org.id, page_size=1, using="admin"))
    assert [e.id for e in every] == [e.id for e in events]


def test_a_signed_in_user_kept_in_a_session_can_refresh(
        connections: App, call: Callable[..., Any], any_server: ServerProcess,
        account_on: Callable[..., Account]) -> None:
    """A pickled session (Django's, Flask-Session's) or a JSON one (``to_dict``): the
    restored tokens refresh on the "default" connection, as the restored ``User`` does."""
    account = account_on(any_server)
    with Client() as request_client:  # one request's client, closed when it ends
        tokens = request_client.login_password(account.username, account.password, "openid")
    user = User.from_token(tokens)
    restored = pickle.loads(pickle.dumps(user))  # noqa: S301 - our own bytes
    assert restored.token is not None and restored.token.client is None
    restored.token = call(restored.token, "refresh")  # the docs' "keep the rotated tokens"
    assert restored.token.refresh_token != tokens.refresh_token
    stored = json.loads(json.dumps(restored.token.to_dict()))
    newer = call(TokenSet.from_dict(stored), "refresh")
    assert call(User, "from_token", newer).identifier == account.id
    call(TokenSet.from_dict(newer.to_dict()), "revoke")
    with pytest.raises(InvalidGrant):
        call(newer, "refresh")


def test_objects_keep_to_their_shell(connections: App) -> None:
    user = User.create(unique("shell"), f"{unique('s')}@example.com", using="admin")
    with pytest.raises(ConfigurationError, match=r"use update\(\)"):
        asyncio.run(user.aupdate(email="x@example.com"))

    async def fetch() -> User:
        return await User.aget(user.id, using="admin")

    fetched = asyncio.run(fetch())
    with pytest.raises(ConfigurationError, match=r"use aupdate\(\)"):
        fetched.update(email="x@example.com")
    assert fetched.update(email=f"{unique('y')}@example.com", using="admin").email != user.email


def test_the_shared_async_clients_of_a_loop_close_with_it(connections: App) -> None:
    # One asyncio.run per job (a script, a task queue, a test's loop), and no
    # aclose_clients(): each loop's shared clients close at its end, with their
    # connections, instead of keeping the loop and a socket each for good.
    import gc
    import os
    import weakref

    from bastion.client import _shared
    from bastion.client.integrations.bearer import aclose_clients

    user = User.create(unique("loop"), f"{unique('l')}@example.com", using="admin")
    before = len(os.listdir("/proc/self/fd"))
    loops = []

    async def job() -> User:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return await User.aget(user.id, using="admin")

    for _ in range(5):
        assert asyncio.run(job()).id == user.id
    gc.collect()
    assert len(_shared._async_clients) == 0 and [ref() for ref in loops] == [None] * 5
    assert len(os.listdir("/proc/self/fd")) <= before

    async def closed_then_again() -> None:  # a loop that outlives one aclose_clients()
        await User.aget(user.id, using="admin")
        await aclose_clients()
        await User.aget(user.id, using="admin")
        gc.collect()  # (the first closer, had it been dropped, would close the second)
        await asyncio.sleep(0)
        assert (await User.aget(user.id, using="admin")).id == user.id

    asyncio.run(closed_then_again())
