"""The SDK's REST API calls against the real ``bastion serve``, on SQLite and on
PostgreSQL, through ``Client`` and through ``AsyncClient`` (every test runs four
times): users, organizations, roles and permissions, a user's roles with token
reissue, audit events, and who may call what.

``api`` is a ``Client`` or an ``AsyncClient`` driven through a blocking portal,
so one test body covers both shells.
"""

from __future__ import annotations

import functools
import inspect
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.from_thread
import pytest

from bastion import (
    AsyncClient,
    BadRequest,
    BastionError,
    Client,
    Conflict,
    Event,
    Forbidden,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    InvalidToken,
    Member,
    NotFound,
    Organization,
    Page,
    Permission,
    RegisteredClient,
    Role,
    SigningKey,
    TokenSet,
    User,
    UserRoles,
)
from bastion.client._api import Namespace
from support import ServerProcess, running_server

App = Account = Any  # the dataclasses of tests/e2e/conftest.py


class Blocking:
    """An ``AsyncClient`` (or one of its API namespaces) run through a portal."""

    def __init__(self, target: Any, portal: anyio.from_thread.BlockingPortal) -> None:
        self._target, self._portal = target, portal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._portal.call(functools.partial(attr, *a, **k))
        if isinstance(attr, Namespace):
            return Blocking(attr, self._portal)
        if name == "with_token":
            return lambda *a, **k: Blocking(attr(*a, **k), self._portal)
        if name == "iterate":  # an async iterator: drained in the portal's loop
            async def drain(*a: Any, **k: Any) -> list[Any]:
                return [item async for item in attr(*a, **k)]
            return lambda *a, **k: iter(self._portal.call(functools.partial(drain, *a, **k)))
        return attr


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as portal:
        yield portal


def admin_options(server: ServerProcess, **extra: Any) -> dict[str, Any]:
    return {"url": server.url, "client_id": server.admin_client_id,
            "client_secret": server.admin_client_secret, "retries": 0, **extra}


@pytest.fixture
def make_api(mode: str, portal: Any) -> Iterator[Callable[..., Any]]:
    """``make_api(**options)`` -> a Client, or an AsyncClient behind the portal."""
    opened: list[Any] = []

    def make(**options: Any) -> Any:
        if mode == "sync":
            client: Any = Client(**options)
            opened.append(client.close)
        else:
            client = Blocking(AsyncClient(**options), portal)
            opened.append(client.aclose)
        return client

    yield make
    for close in opened:
        close()


@pytest.fixture
def api(any_server: ServerProcess, make_api: Callable[..., Any]) -> Any:
    """An administrator: the admin client's own bastion:admin token."""
    return make_api(**admin_options(any_server))


@pytest.fixture
def password_app(any_server: ServerProcess, make_app: Callable[..., App]) -> App:
    return make_app(any_server, "--grant-type", "password")


def unique(prefix: str) -> str:
    return prefix + secrets.token_hex(5)


# -- users ------------------------------------------------------------------------------


def test_users_create_get_search_count_update(api: Any) -> None:
    name = unique("Ann")
    user = api.users.create(name, f"{name}@Example.com", "a long passphrase")
    assert isinstance(user, User) and user.username == name and not user.is_administrator
    assert user.created_at is not None and user.created_at.tzinfo and user.deleted_at is None
    assert user.email_verified is False  # until they use a link mailed to it, or we say so
    assert api.users.get(user.id) == user

    found = api.users.search(name.upper())  # case-insensitive substring
    assert isinstance(found, Page) and found == [user] and found.total == 1
    assert api.users.count(name[1:].lower()) == 1
    total = api.users.count()
    assert total >= 1 and api.users.search(limit=1).total == total
    two = api.users.search(limit=2)
    assert len(two) <= 2 and api.users.search(limit=1, offset=1)[:1] == two[1:2]

    changed = api.users.update(user.id, email=f"{name}@new.example", is_administrator=True)
    assert changed.email == f"{name.lower()}@new.example" and changed.is_administrator
    assert changed.updated_at is not None and changed.updated_at >= user.updated_at
    assert api.users.get(user.id).email == f"{name.lower()}@new.example"
    assert api.users.update(user.id, email_verified=True).email_verified is True
    known = api.users.create(unique("v"), f"{unique('v')}@example.com", email_verified=True)
    assert known.email_verified is True
    link_only = api.users.create(unique("link"), f"{unique('l')}@example.com")  # no password
    assert link_only.username.startswith("link")


@pytest.fixture
def signed_in(api: Any, any_server: ServerProcess, password_app: App,
              make_api: Callable[..., Any]) -> Callable[[str], tuple[str, User, Any, TokenSet]]:
    """``signed_in(prefix)`` -> (name, user, app, tokens): a new user, signed in with
    the password grant through ``app`` (a client of ``password_app``)."""
    def make(prefix: str) -> tuple[str, User, Any, TokenSet]:
        name = unique(prefix)
        user = api.users.create(name, f"{name}@example.com", "a long passphrase")
        app = make_api(url=any_server.url, client_id=password_app.client_id,
                       client_secret=password_app.client_secret, retries=0)
        return name, user, app, app.login_password(name, "a long passphrase")
    return make


def test_users_delete_and_restore(api: Any, signed_in: Callable[..., Any]) -> None:
    name, user, app, tokens = signed_in("del")
    assert app.introspect(tokens.access_token)["active"]

    api.users.delete(user.id)
    deleted = api.users.get(user.id)
    assert deleted.deleted_at is not None
    assert api.users.search(name) == [] and api.users.count(name) == 0
    assert api.users.search(name, include_deleted=True) == [deleted]
    assert api.users.count(name, include_deleted=True) == 1
    assert not app.introspect(tokens.access_token)["active"]  # every token revoked
    with pytest.raises(InvalidGrant):
        app.refresh(tokens.refresh_token)
    with pytest.raises(InvalidGrant):  # no more sign-in
        app.login_password(name, "a long passphrase")

    restored = api.users.restore(user.id)
    assert restored.deleted_at is None and api.users.search(name) == [restored]
    assert app.login_password(name, "a long passphrase").access_token


def test_users_erase(api: Any, signed_in: Callable[..., Any]) -> None:
    name, user, app, tokens = signed_in("erase")

    erased = api.users.erase(user.id)
    assert isinstance(erased, User) and erased.id == user.id
    assert erased.erased_at is not None and erased.deleted_at is not None
    assert (erased.username, erased.email) == (f"erased:{user.id}",
                                               f"{user.id}@erased.invalid")
    assert api.users.get(user.id) == erased
    assert api.users.search(name, include_deleted=True) == []
    assert not app.introspect(tokens.access_token)["active"]
    with pytest.raises(InvalidGrant):
        app.refresh(tokens.refresh_token)
    with pytest.raises(InvalidGrant):
        app.login_password(name, "a long passphrase")
    for undo in (lambda: api.users.restore(user.id),
                 lambda: api.users.update(user.id, username=name)):
        with pytest.raises(Conflict) as caught:
            undo()
        assert "erased" in caught.value.error_description
    assert api.users.erase(user.id) == erased  # again: nothing changes
    # The name and address are free again, for a new account.
    fresh = api.users.create(name, f"{name}@example.com", "a long passphrase")
    assert fresh.id != user.id and app.login_password(name, "a long passphrase").access_token
    with pytest.raises(NotFound):
        api.users.erase("no-such-user")


def test_users_export(api: Any, signed_in: Callable[..., Any], password_app: App) -> None:
    name, user, app, tokens = signed_in("export")

    export = api.users.export(user.id)
    assert isinstance(export, dict) and export["user"]["username"] == name
    assert [g["client_id"] for g in export["grants"]] == [password_app.client_id]
    assert [e["action"] for e in export["events"]] == ["login.success", "user.create"]
    with pytest.raises(Forbidden):  # not with an app's token of the user's
        app.users.with_token(tokens).export("me")
    with pytest.raises(NotFound):
        api.users.export("no-such-user")


def test_users_iterate_by_cursor(api: Any) -> None:
    prefix = unique("it")
    made = [api.users.create(f"{prefix}{n}", f"{prefix}{n}@example.com") for n in range(5)]
    first = api.users.search(prefix, limit=2)
    assert first == made[:2] and first.total == 5 and first.next_cursor
    assert api.users.search(prefix, limit=2, after=first.next_cursor) == made[2:4]
    last = api.users.search(prefix, limit=10)
    assert last == made and last.next_cursor is None  # not a full page

    def every(**options: Any) -> list[User]:
        return list(api.users.iterate(prefix, **options))

    assert every(page_size=2) == made
    api.users.delete(made[1].id)
    assert every(page_size=3) == made[:1] + made[2:]
    assert [u.id for u in every(page_size=1, include_deleted=True)] == [u.id for u in made]
    with pytest.raises(BadRequest) as caught:
        api.users.search(prefix, after="not-a-cursor")
    assert caught.value.status_code == 422 and "after" in caught.value.error_description


def test_users_bad_input(api: Any) -> None:
    for limit in (0, 10_000, -1):
        with pytest.raises(BadRequest) as caught:
            api.users.search(limit=limit)
        assert caught.value.status_code == 422 and "limit" in caught.value.error_description
    with pytest.raises(BadRequest, match="offset"):
        api.users.search(offset=-1)
    with pytest.raises(NotFound):
        api.users.get("no-such-user")
    with pytest.raises(NotFound):
        api.users.update("no-such-user", email="x@example.com")
    with pytest.raises(NotFound):
        api.users.delete("no-such-user")
    name = unique("dup")
    api.users.create(name, f"{name}@example.com")
    with pytest.raises(Conflict):
        api.users.create(name, f"other-{name}@example.com")
    with pytest.raises(Conflict):
        api.users.create("other" + name, f"{name}@example.com")
    with pytest.raises(BadRequest, match="password") as refused:
        api.users.create(unique("short"), f"{unique('s')}@example.com", "short")
    assert [field for field, _ in refused.value.errors] == ["password"]
    with pytest.raises(BadRequest) as refused:  # named as the request names it
        api.clients.create(unique("app"), redirect_uris=["https://a.example/cb"],
                           post_logout_redirect_uris=["not a uri"])
    assert refused.value.errors == (
        ("post_logout_redirect_uris", "'not a uri' must be absolute and have no fragment"),)
    with pytest.raises(BastionError, match="at least one field"):  # caught before sending
        api.users.update("anyone")


# -- organizations, roles, permissions ---------------------------------------------------


def test_organizations(api: Any) -> None:
    name = unique("acme")
    org = api.organizations.create(name)
    assert isinstance(org, Organization) and org.name == name and org.created_at
    assert api.organizations.get(name) == org == api.organizations.get(org.id)
    page = api.organizations.list(limit=100)
    assert page.total >= 1 and len(page) <= 100
    everything = [o for offset in range(0, page.total, 100)
                  for o in api.organizations.list(limit=100, offset=offset)]
    assert org in everything and len(everything) == page.total
    with pytest.raises(Conflict):
        api.organizations.create(name)
    with pytest.raises(NotFound):
        api.organizations.get(unique("nope"))
    with pytest.raises(BadRequest):
        api.organizations.list(limit=0)


def test_roles_and_permissions(api: Any) -> None:
    org = api.organizations.create(unique("org"))
    editor = api.roles.create(org, "editor", ["posts:write", "posts:read"])
    assert isinstance(editor, Role) and editor.organization_id == org.id
    assert editor.permissions == ("posts:read", "posts:write")
    assert all(isinstance(p, Permission) for p in editor.permissions)
    viewer = api.roles.create(org.name, "viewer", "posts:read")  # one permission, by name
    empty = api.roles.create(org, "empty")
    assert viewer.permissions == ("posts:read",) and empty.permissions == ()
    roles = api.roles.list(org)
    assert sorted(r.name for r in roles) == ["editor", "empty", "viewer"] and roles.total == 3
    assert api.roles.get(org, "editor") == editor == api.roles.get(org.name, editor.id)

    added = api.roles.add_permissions(org, editor, ["posts:delete", "users:read"])
    assert added.permissions == ("posts:delete", "posts:read", "posts:write", "users:read")
    assert api.roles.add_permissions(org, "editor", "posts:read").permissions == added.permissions
    removed = api.roles.remove_permissions(org, "editor", ["posts:delete", "users:read"])
    assert removed.permissions == ("posts:read", "posts:write")
    assert api.roles.remove_permissions(org, editor, "posts:write").permissions == ("posts:read",)
    assert api.roles.get(org, "editor").permissions == ("posts:read",)

    with pytest.raises(Conflict):
        api.roles.create(org, "editor")
    with pytest.raises(NotFound):
        api.roles.get(org, "no-such-role")
    with pytest.raises(NotFound):
        api.roles.add_permissions(org, "no-such-role", "x")
    with pytest.raises(NotFound):
        api.roles.list(unique("no-such-org"))
    with pytest.raises(BadRequest):
        api.roles.create(org, "x" * 101)

    api.roles.delete(org, empty)
    with pytest.raises(NotFound):
        api.roles.delete(org, "empty")
    # "..": sent as a role's name, not removed from the path with "roles/" (which
    # deleted the organization)
    with pytest.raises(NotFound):
        api.roles.delete(org, "..", force=True)
    assert sorted(r.name for r in api.roles.list(org)) == ["editor", "viewer"]


def test_organization_rename_members_and_delete(
    api: Any, any_server: ServerProcess, password_app: App, make_api: Callable[..., Any],
    account_on: Callable[..., Account],
) -> None:
    org = api.organizations.create(unique("org"))
    other = api.organizations.create(unique("other"))
    api.roles.create(org, "editor", "posts:write")
    api.roles.create(org, "viewer", "posts:read")
    api.roles.create(other, "viewer", "posts:read")
    first, second = account_on(any_server), account_on(any_server)
    api.users.attach_roles(org, second.id, ["viewer", "editor"])
    api.users.attach_roles(org, first.id, "viewer")
    api.users.attach_roles(other, first.id, "viewer")

    renamed = api.organizations.rename(org, unique("renamed"))
    assert renamed.id == org.id and renamed.name != org.name
    assert api.organizations.get(renamed.name) == renamed
    with pytest.raises(Conflict):
        api.organizations.rename(other, renamed.name.upper())

    members = api.organizations.members(org)
    assert isinstance(members, Page) and members.total == 2
    assert all(isinstance(m, Member) and isinstance(m.user, User) for m in members)
    assert [(m.user.id, m.roles) for m in members] == [
        (first.id, ("viewer",)), (second.id, ("editor", "viewer"))]
    assert members[0].user == api.users.get(first.id)
    assert [m.user.id for m in api.organizations.members(renamed.name, limit=1, offset=1)] == [
        second.id]
    assert api.users.organizations(first.id) == [renamed, other]
    assert api.users.organizations(first.id, limit=1).total == 2

    # a user lists their own organizations with their token, and nobody else's
    app = make_api(url=any_server.url, client_id=password_app.client_id,
                   client_secret=password_app.client_secret, retries=0)
    own = app.login_password(first.username, first.password)
    assert api.users.with_token(own).organizations(first.id) == [renamed, other]
    with pytest.raises(Forbidden):
        api.users.with_token(own).organizations(second.id)
    with pytest.raises(Forbidden):
        api.organizations.with_token(own).members(org)

    in_org = app.login_password(first.username, first.password, organization=org.id)
    with pytest.raises(Conflict):  # users hold its roles
        api.organizations.delete(org)
    api.organizations.delete(renamed, force=True)
    with pytest.raises(NotFound):
        api.organizations.get(org.id)
    with pytest.raises(NotFound):
        api.organizations.delete(org.id)
    with pytest.raises(NotFound):
        api.organizations.members(org.id)
    assert not app.introspect(in_org.access_token)["active"]
    with pytest.raises(InvalidGrant):
        app.refresh(in_org.refresh_token)
    assert app.introspect(own.access_token)["active"]  # not issued in it
    assert api.users.organizations(first.id) == [other]


# -- a user's roles, tokens carrying them, reissue -----------------------------------------


def test_user_roles_in_tokens_and_reissue(
    api: Any, any_server: ServerProcess, password_app: App, make_api: Callable[..., Any],
    account_on: Callable[..., Account],
) -> None:
    org = api.organizations.create(unique("org"))
    editor = api.roles.create(org, "editor", ["posts:read", "posts:write"])
    api.roles.create(org, "viewer", ["posts:read"])
    api.roles.create(org, "admin", ["users:manage"])
    person = account_on(any_server)

    assert api.users.roles(org, person.id) == []
    roles = api.users.attach_roles(org, person.id, [editor, "viewer"])
    assert sorted(r.name for r in roles) == ["editor", "viewer"] and roles.total == 2
    assert sorted(r.name for r in api.users.roles(org.name, person.id)) == ["editor", "viewer"]

    app = make_api(url=any_server.url, client_id=password_app.client_id,
                   client_secret=password_app.client_secret, retries=0)
    tokens = app.login_password(person.username, person.password, organization=org.name)
    claims = app.verify_token(tokens.access_token)
    assert claims["org"] == org.id and sorted(claims["roles"]) == ["editor", "viewer"]
    assert sorted(claims["permissions"]) == ["posts:read", "posts:write"]
    assert app.introspect(tokens.access_token)["roles"] == claims["roles"]

    # One transaction: add admin, drop viewer; the user's tokens are reissued at once.
    result = api.users.update_roles(org, person.id, add=["admin"], remove=["viewer"],
                                    reissue=tokens)
    assert isinstance(result, UserRoles)
    assert sorted(r.name for r in result.roles) == ["admin", "editor"]
    new = result.tokens
    assert isinstance(new, TokenSet) and new.refresh_token and new.expires_at
    assert new.client is tokens.client  # still the user's app: refresh keeps working
    claims = app.verify_token(new.access_token)
    assert sorted(claims["roles"]) == ["admin", "editor"]
    assert sorted(claims["permissions"]) == ["posts:read", "posts:write", "users:manage"]
    assert not app.introspect(tokens.access_token)["active"]  # the old family is revoked
    # The app that holds the old tokens hands out the reissued ones instead of
    # presenting the spent refresh token; the server refuses it from anyone else.
    assert app.refresh(tokens.refresh_token).access_token == new.access_token
    stranger = make_api(url=any_server.url, client_id=password_app.client_id,
                        client_secret=password_app.client_secret, retries=0)
    with pytest.raises(InvalidGrant):
        stranger.refresh(tokens.refresh_token)
    refreshed = app.refresh(new.refresh_token)
    assert sorted(app.verify_token(refreshed.access_token)["roles"]) == ["admin", "editor"]

    # Removing roles applies at the next refresh even without reissue.
    left = api.users.remove_roles(org, person.id, "admin")
    assert [r.name for r in left] == ["editor"]
    again = app.refresh(refreshed.refresh_token)
    assert app.verify_token(again.access_token)["roles"] == ["editor"]

    with pytest.raises(NotFound):  # an unknown role: nothing changes
        api.users.update_roles(org, person.id, add=["viewer", "no-such-role"], remove=["editor"])
    assert [r.name for r in api.users.roles(org, person.id)] == ["editor"]
    with pytest.raises(InvalidGrant):  # a refresh token that is not the user's
        api.users.update_roles(org, person.id, reissue="not-a-refresh-token")
    with pytest.raises(Conflict):  # a role in use is not deleted...
        api.roles.delete(org, "editor")
    api.roles.delete(org, "editor", force=True)  # ...unless forced
    assert api.users.roles(org, person.id) == []


def test_a_reissue_and_a_refresh_of_the_same_tokens_at_once_both_succeed(
    api: Any, any_server: ServerProcess, password_app: App, make_api: Callable[..., Any],
    account_on: Callable[..., Account],
) -> None:
    # Each would present the refresh token the other is trading: the token's client
    # runs them one after the other, the second with the tokens the first brought.
    org = api.organizations.create(unique("org"))
    api.roles.create(org, "editor")
    api.roles.create(org, "admin")
    person = account_on(any_server)
    api.users.attach_roles(org, person.id, "editor")
    app = make_api(url=any_server.url, client_id=password_app.client_id,
                   client_secret=password_app.client_secret, retries=0)
    for turn in range(5):
        tokens = app.login_password(person.username, person.password, organization=org.name)
        add, remove = ("admin", "editor") if turn % 2 else ("editor", "admin")
        refreshed, changed = at_once(
            functools.partial(app.refresh, tokens),
            functools.partial(api.users.update_roles, org, person.id, add=add, remove=remove,
                              reissue=tokens))
        assert isinstance(refreshed, TokenSet), (refreshed, changed)
        assert isinstance(changed, UserRoles), (refreshed, changed)
        latest = app.refresh(changed.tokens)  # the newest pair still works
        assert app.verify_token(latest.access_token)["roles"] == [add]


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Each call's result (or exception), the calls started together in threads."""
    start = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:  # returned, so the caller sees both outcomes
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


# -- audit events -------------------------------------------------------------------------


def test_events(api: Any, any_server: ServerProcess) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    name = unique("ev")
    user = api.users.create(name, f"{name}@example.com")
    api.users.update(user.id, email=f"{name}@changed.example")
    created = api.events.list(action="user.create", target=user.id)
    assert len(created) == 1 and created.total == 1
    event = created[0]
    assert isinstance(event, Event) and event.action == "user.create"
    assert event.actor == any_server.admin_client_id and event.actor_type == "client"
    assert event.client_id == any_server.admin_client_id and event.ip == "127.0.0.1"
    assert event.detail == {"username": name, "email": f"{name}@example.com",
                            "is_administrator": False, "email_verified": False}
    assert before <= event.at <= datetime.now(UTC)
    both = api.events.list(target=user.id, since=before)
    assert [e.action for e in both] == ["user.update", "user.create"]  # newest first
    assert api.events.list(target=user.id, until=before) == []
    assert api.events.list(target=user.id, since=before.replace(tzinfo=None)).total == 2
    assert len(api.events.list(actor=any_server.admin_client_id, limit=1)) == 1
    assert api.events.list(target=user.id, limit=1, offset=1)[0].action == "user.create"
    first = api.events.list(target=user.id, limit=1)
    assert first.next_cursor and [e.action for e in api.events.list(
        target=user.id, limit=1, after=first.next_cursor)] == ["user.create"]
    assert [e.action for e in api.events.iterate(target=user.id, page_size=1)] == [
        "user.update", "user.create"]
    with pytest.raises(BadRequest):
        api.events.list(limit=0)


# -- who may call what --------------------------------------------------------------------


def test_only_administrators(
    api: Any, any_server: ServerProcess, password_app: App, make_api: Callable[..., Any],
    account_on: Callable[..., Account], make_app: Callable[..., App],
) -> None:
    app = make_api(url=any_server.url, client_id=password_app.client_id,
                   client_secret=password_app.client_secret, retries=0)
    person, boss = account_on(any_server), account_on(any_server, admin=True)
    user_tokens = app.login_password(person.username, person.password)
    as_user = app.users.with_token(user_tokens)
    with pytest.raises(Forbidden):
        as_user.search()
    with pytest.raises(Forbidden):
        as_user.create(unique("x"), f"{unique('x')}@example.com")
    with pytest.raises(Forbidden):
        app.organizations.with_token(user_tokens).create(unique("org"))
    with pytest.raises(Forbidden):
        app.events.with_token(user_tokens.access_token).list()
    with pytest.raises(Forbidden):
        as_user.get(boss.id)
    assert as_user.get(person.id).username == person.username  # themselves: yes
    assert app.users.me(user_tokens).id == person.id

    # An administrator user's token works like the admin client's when it was asked
    # for with bastion:admin, through a client registered with it; not from any app.
    boss_tokens = app.login_password(boss.username, boss.password)
    with pytest.raises(Forbidden):
        app.users.with_token(boss_tokens).count()
    assert app.users.with_token(boss_tokens).me(boss_tokens).id == boss.id
    console_app = make_app(any_server, "--grant-type", "password", "--scope", "bastion:admin")
    console = make_api(url=any_server.url, client_id=console_app.client_id,
                       client_secret=console_app.client_secret, retries=0)
    boss_tokens = console.login_password(boss.username, boss.password, "openid bastion:admin")
    assert boss_tokens.scope == "openid bastion:admin"
    assert console.users.with_token(boss_tokens).get(person.id).id == person.id
    assert console.users.with_token(boss_tokens).count() >= 2
    assert console.login_password(person.username, person.password,
                                  ["openid", "bastion:admin"]).scope == "openid"

    # A client without bastion:admin cannot get an admin token at all.
    plain = make_api(url=any_server.url, client_id=any_server.client_id,
                     client_secret=any_server.client_secret, retries=0)
    with pytest.raises(InvalidScope):
        plain.users.search()

    # A deleted user's token stops working at once, even for /users/me.
    api.users.delete(person.id)
    with pytest.raises(BastionError) as caught:
        app.users.me(user_tokens)
    assert caught.value.status_code == 401


def test_a_token_of_another_organization(
    api: Any, any_server: ServerProcess, password_app: App, make_api: Callable[..., Any],
    account_on: Callable[..., Account],
) -> None:
    mine, theirs = api.organizations.create(unique("a")), api.organizations.create(unique("b"))
    api.roles.create(mine, "owner", ["org:manage"])
    api.roles.create(theirs, "member", ["posts:read"])
    person, other = account_on(any_server), account_on(any_server)
    api.users.attach_roles(mine, person.id, "owner")
    api.users.attach_roles(theirs, other.id, "member")
    app = make_api(url=any_server.url, client_id=password_app.client_id,
                   client_secret=password_app.client_secret, retries=0)
    tokens = app.login_password(person.username, person.password, organization=mine.id)
    assert app.verify_token(tokens.access_token)["permissions"] == ["org:manage"]
    # Roles in one organization give no admin rights, here or elsewhere.
    for org in (mine, theirs):
        with pytest.raises(Forbidden):
            app.roles.with_token(tokens).list(org)
        with pytest.raises(Forbidden):
            app.users.with_token(tokens).update_roles(org, person.id, add="owner")
    with pytest.raises(Forbidden):
        app.users.with_token(tokens).roles(theirs, other.id)
    assert app.users.with_token(tokens).roles(theirs, person.id) == []  # own roles: yes
    # and the same answer for an organization that does not exist: no way to probe names
    assert app.users.with_token(tokens).roles(unique("no-such-org"), person.id) == []
    with pytest.raises(NotFound):  # an administrator is told
        api.users.roles(unique("no-such-org"), person.id)
    # Asking for a token in an organization the user has no role in is refused.
    with pytest.raises(BastionError) as caught:
        app.login_password(person.username, person.password, organization=theirs.name)
    assert caught.value.status_code in (400, 403)


def test_a_refused_reissue_changes_no_roles(api: Any, any_server: ServerProcess,
                                            account_on: Callable[..., Account]) -> None:
    org = api.organizations.create(unique("org"))
    api.roles.create(org, "editor")
    person = account_on(any_server)
    with pytest.raises(InvalidGrant):
        api.users.update_roles(org, person.id, add="editor", reissue="not-a-refresh-token")
    assert api.users.roles(org, person.id) == []  # "one transaction": nothing changed


# -- OAuth clients and signing keys ----------------------------------------------------


def test_clients_register_change_rotate_and_delete(
    api: Any, any_server: ServerProcess, make_api: Callable[..., Any]
) -> None:
    def as_client(client_id: str, secret: str | None) -> Any:
        return make_api(url=any_server.url, client_id=client_id, client_secret=secret, retries=0)

    name = unique("svc")
    reg = api.clients.create(name, grant_types="client_credentials", scopes=["read", "write"])
    assert isinstance(reg, RegisteredClient) and reg.client_secret and not reg.is_public
    assert reg.grant_types == ("client_credentials",) and reg.scopes == ("read", "write")
    assert reg.client_secret not in repr(reg)
    first = as_client(reg.client_id, reg.client_secret)
    assert first.client_credentials("read").scope == "read"
    fetched = api.clients.get(reg.client_id)
    assert fetched == replace(reg, client_secret=None)
    listing = api.clients.list(limit=100)
    assert fetched in listing and listing.total >= len(listing)

    changed = api.clients.update(reg, name=name + "-2", scopes="read")
    assert changed.name == name + "-2" and changed.scopes == ("read",)
    with pytest.raises(InvalidScope):
        first.client_credentials("write")

    overlap = api.clients.rotate_secret(reg, keep_old_for=timedelta(hours=1))
    assert overlap.client_secret and overlap.client_secret != reg.client_secret
    assert overlap.previous_secret_expires_at is not None
    second = as_client(reg.client_id, overlap.client_secret)
    assert second.client_credentials("read")
    assert first.client_credentials("read")  # the old secret still works, for an hour
    third = api.clients.rotate_secret(reg.client_id)  # ends the others at once
    assert third.previous_secret_expires_at is None
    for old in (first, second):
        with pytest.raises(InvalidClient):
            old.client_credentials("read")
    last = as_client(reg.client_id, third.client_secret)
    tokens = last.client_credentials("read")
    assert last.introspect(tokens.access_token)["active"]

    api.clients.delete(reg)
    with pytest.raises(NotFound):
        api.clients.get(reg.client_id)
    with pytest.raises(InvalidClient):
        last.client_credentials("read")
    assert not api.introspect(tokens.access_token)["active"]
    api.clients.delete(reg)  # again (a retried request): no error
    with pytest.raises(NotFound):
        api.clients.delete("no-such-client")

    public = api.clients.create(unique("spa"), public=True,
                                redirect_uris="https://spa.example/cb")
    assert public.is_public and public.client_secret is None
    assert public.grant_types == ("authorization_code", "refresh_token")
    with pytest.raises(BadRequest) as bad:
        api.clients.create("x", redirect_uris=["http://spa.example/cb"])
    assert "https" in str(bad.value)
    actions = {e.action for e in api.events.list(target=reg.client_id)}
    assert {"client.create", "client.update", "client.secret.rotate", "client.delete"} <= actions


def test_signing_keys_list_and_rotate(
    api: Any, any_server: ServerProcess, make_api: Callable[..., Any]
) -> None:
    before = api.keys.list()
    assert all(isinstance(k, SigningKey) for k in before)
    waiting = {k.use: k.kid for k in before if k.status == "next"}
    assert set(waiting) == {"access", "id"}
    verifier = make_api(**admin_options(any_server))
    verifier.verify_token(verifier.client_credentials().access_token)  # JWKS fetched now

    after = {k.kid: k for k in api.keys.rotate()}
    assert all(after[kid].status == "active" for kid in waiting.values())
    assert {k.use for k in after.values() if k.status == "next"} == {"access", "id"}
    token = make_api(**admin_options(any_server)).client_credentials().access_token
    assert verifier.verify_token(token)["client_id"] == any_server.admin_client_id
    assert any(e.detail.get("kids") == [waiting["access"], waiting["id"]]
               for e in api.events.list(action="keys.rotate"))


def test_a_withdrawn_key_stops_verifying(tmp_path: Any, make_api: Callable[..., Any]) -> None:
    """After a leak: ``keys.withdraw`` takes the key that signs out of the JWKS at once.
    Bastion refuses its tokens at once; an app that fetched the JWKS before trusts its
    copy until that is older than the server's max-age, then refuses them too. (Its own
    server: every token the key signed stops working.)"""
    with running_server(tmp_path / "withdraw", None) as server:
        admin = server.create_client("--name", "ops", "--grant-type", "client_credentials",
                                     "--scope", "bastion:admin")
        api = make_api(url=server.url, client_id=admin["client_id"],
                       client_secret=admin["client_secret"], retries=0)
        app = server.create_client("--name", "svc", "--grant-type", "client_credentials",
                                   "--scope", "read")
        service = Client(url=server.url, client_id=str(app["client_id"]),
                         client_secret=str(app["client_secret"]), retries=0)
        with service:
            token = service.client_credentials("read").access_token
            assert service.verify_token(token)["client_id"] == app["client_id"]
            kid = next(k.kid for k in api.keys.list() if k.use == "access" and
                       k.status == "active")

            after = api.keys.withdraw(kid)
            assert kid not in {k.kid for k in after}
            assert {k.use for k in after if k.status == "active"} == {"access", "id"}
            assert not service.introspect(token)["active"]
            assert service.verify_token(token)  # the app's copy is fresh: still trusted
            keys = service._core.keys
            keys.fetched_at -= 61  # older than the server's max-age (60 s)
            keys.expires_at -= 61
            with pytest.raises(InvalidToken, match="unknown key"):
                service.verify_token(token)
            assert service.verify_token(service.client_credentials("read").access_token)
            with pytest.raises(NotFound):
                api.keys.withdraw(kid)
