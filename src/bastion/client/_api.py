"""``client.users``, ``client.organizations``, ``client.roles``, ``client.events``:
Bastion's REST API on the blocking ``Client``, each call one flow of ``_admin_users``,
``_admin_orgs`` or ``_admin_events``.

Calls run as an administrator with this client's own token (client
credentials, scope ``bastion:admin``, fetched and renewed automatically);
``.with_token(tokens)`` gives the same calls with a user's access token (a user
reading their own account, or an administrator's token asked for with scope
``bastion:admin`` through a client registered with it). ``_async_api`` is the
awaited twin.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from . import _admin_events, _admin_orgs, _admin_users
from ._admin import Token
from .events import Event
from .models import User
from .organizations import Member, Organization, Role, UserRoles
from .paging import Page, _walk
from .tokens import TokenSet

if TYPE_CHECKING:  # a cycle at run time: the shells import this module
    from ._client import Client  # noqa: F401 - named in quotes below

__all__ = ["Events", "Namespace", "Organizations", "Roles", "Users"]

C = TypeVar("C")
RoleRefs = Role | str | Iterable[Role | str]
OrgRef = Organization | str


class Namespace(Generic[C]):
    """A group of API calls run by one client, optionally with a user's token."""

    def __init__(self, client: C, token: Token | None = None) -> None:
        self._client = client
        self._token = token

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client!r})"

    def with_token(self, token: Token) -> Self:
        """The same calls, authorized by a user's access token instead."""
        return type(self)(self._client, token)


class Users(Namespace["Client"]):
    def get(self, user_id: str) -> User:
        """The user with this id; ``NotFound`` if there is none."""
        return self._client._run(
            _admin_users.get_user_flow(self._client._core, user_id, self._token)
        )

    def me(self, token: Token) -> User:
        """The user ``token`` belongs to (no admin rights needed)."""
        return self._client._run(_admin_users.me_flow(self._client._core, token))

    def search(
        self,
        query: str | None = None,
        limit: int = 20,
        offset: int = 0,
        include_deleted: bool = False,
        *,
        after: str | None = None,
        count: bool = True,
    ) -> Page[User]:
        """Users whose username or email contains ``query``, oldest first; ``after``
        a page's ``next_cursor`` for the page that follows it; ``count`` False: the
        server counts nothing (``total`` is then the page's length)."""
        flow = _admin_users.search_users_flow(
            self._client._core, query, limit, offset, include_deleted, self._token, after, count
        )
        return self._client._run(flow)

    def iterate(
        self, query: str | None = None, include_deleted: bool = False, page_size: int = 100
    ) -> Iterator[User]:
        """Every matching user, oldest first, fetched a page at a time by cursor, so
        users added or deleted meanwhile make it neither skip nor repeat anyone."""
        return _walk(lambda after: self.search(query, page_size, 0, include_deleted,
                                              after=after, count=False), page_size)

    def count(self, query: str | None = None, include_deleted: bool = False) -> int:
        flow = _admin_users.count_users_flow(
            self._client._core, query, include_deleted, self._token
        )
        return self._client._run(flow)

    def create(
        self,
        username: str,
        email: str,
        password: str | None = None,
        is_administrator: bool = False,
        email_verified: bool = False,
    ) -> User:
        fields = {
            "username": username,
            "email": email,
            "password": password,
            "is_administrator": is_administrator,
            "email_verified": email_verified,
        }
        return self._client._run(
            _admin_users.create_user_flow(self._client._core, fields, self._token)
        )

    def update(
        self,
        user_id: str,
        *,
        username: str | None = None,
        email: str | None = None,
        password: str | None = None,
        is_administrator: bool | None = None,
        email_verified: bool | None = None,
    ) -> User:
        changes = {
            "username": username,
            "email": email,
            "password": password,
            "is_administrator": is_administrator,
            "email_verified": email_verified,
        }
        flow = _admin_users.update_user_flow(self._client._core, user_id, changes, self._token)
        return self._client._run(flow)

    def delete(self, user_id: str) -> None:
        """Soft delete: no more sign-in, and every token of the user is revoked."""
        self._client._run(_admin_users.delete_user_flow(self._client._core, user_id, self._token))

    def restore(self, user_id: str) -> User:
        return self._client._run(
            _admin_users.restore_user_flow(self._client._core, user_id, self._token)
        )

    def export(self, user_id: str) -> dict[str, Any]:
        """Everything the server keeps about the user, as the JSON document of
        ``GET /api/v1/users/{id}/export`` (administrators only; a user downloads their
        own from the account page)."""
        return self._client._run(
            _admin_users.export_user_flow(self._client._core, user_id, self._token)
        )

    def erase(self, user_id: str) -> User:
        """Erase the user's personal data for good (deleting them first if need be);
        returns the user as left: placeholders for name and address, ``erased_at`` set.
        Cannot be undone."""
        return self._client._run(
            _admin_users.erase_user_flow(self._client._core, user_id, self._token)
        )

    def roles(self, org: OrgRef, user_id: str) -> Page[Role]:
        """The user's roles in ``org``."""
        flow = _admin_users.user_roles_flow(self._client._core, org, user_id, self._token)
        return self._client._run(flow)

    def update_roles(
        self,
        org: OrgRef,
        user_id: str,
        add: RoleRefs = (),
        remove: RoleRefs = (),
        reissue: TokenSet | str | None = None,
    ) -> UserRoles:
        """Attach and remove in one transaction; ``reissue`` the user's tokens."""
        flow = _admin_users.change_user_roles_flow(
            self._client._core, org, user_id, add, remove, reissue, self._token
        )
        return self._client._run(flow)

    def attach_roles(self, org: OrgRef, user_id: str, roles: RoleRefs) -> Page[Role]:
        return self.update_roles(org, user_id, add=roles).roles

    def organizations(self, user_id: str, limit: int = 20, offset: int = 0) -> Page[Organization]:
        """The organizations where the user holds a role, oldest first (a user's own
        token may list theirs: ``with_token``)."""
        flow = _admin_users.user_organizations_flow(
            self._client._core, user_id, limit, offset, self._token
        )
        return self._client._run(flow)

    def remove_roles(self, org: OrgRef, user_id: str, roles: RoleRefs) -> Page[Role]:
        return self.update_roles(org, user_id, remove=roles).roles


class Organizations(Namespace["Client"]):
    def list(self, limit: int = 20, offset: int = 0) -> Page[Organization]:
        flow = _admin_orgs.list_organizations_flow(self._client._core, limit, offset, self._token)
        return self._client._run(flow)

    def create(self, name: str) -> Organization:
        flow = _admin_orgs.create_organization_flow(self._client._core, name, self._token)
        return self._client._run(flow)

    def get(self, org: str) -> Organization:
        """By id or name."""
        flow = _admin_orgs.get_organization_flow(self._client._core, org, self._token)
        return self._client._run(flow)

    def rename(self, org: OrgRef, name: str) -> Organization:
        """A new name (the id, which tokens carry in ``org``, stays); ``Conflict`` if taken."""
        flow = _admin_orgs.rename_organization_flow(self._client._core, org, name, self._token)
        return self._client._run(flow)

    def delete(self, org: OrgRef, *, force: bool = False) -> None:
        """Delete it with its roles, revoking the tokens issued in it; ``Conflict``
        while users hold its roles, unless ``force``."""
        flow = _admin_orgs.delete_organization_flow(self._client._core, org, force, self._token)
        self._client._run(flow)

    def members(
        self, org: OrgRef, limit: int = 20, offset: int = 0, include_deleted: bool = False
    ) -> Page[Member]:
        """The users holding a role in ``org``, oldest first, with those roles' names."""
        flow = _admin_orgs.members_flow(
            self._client._core, org, limit, offset, include_deleted, self._token
        )
        return self._client._run(flow)


class Roles(Namespace["Client"]):
    def list(self, org: OrgRef) -> Page[Role]:
        return self._client._run(_admin_orgs.list_roles_flow(self._client._core, org, self._token))

    def get(self, org: OrgRef, role: str) -> Role:
        """By id or name."""
        flow = _admin_orgs.get_role_flow(self._client._core, org, role, self._token)
        return self._client._run(flow)

    def create(self, org: OrgRef, name: str, permissions: str | Collection[str] = ()) -> Role:
        flow = _admin_orgs.create_role_flow(self._client._core, org, name, permissions, self._token)
        return self._client._run(flow)

    def delete(self, org: OrgRef, role: Role | str, *, force: bool = False) -> None:
        """``Conflict`` while users hold the role, unless ``force``."""
        flow = _admin_orgs.delete_role_flow(self._client._core, org, role, force, self._token)
        self._client._run(flow)

    def add_permissions(
        self, org: OrgRef, role: Role | str, permissions: str | Collection[str]
    ) -> Role:
        flow = _admin_orgs.add_permissions_flow(
            self._client._core, org, role, permissions, self._token
        )
        return self._client._run(flow)

    def remove_permissions(
        self, org: OrgRef, role: Role | str, permissions: str | Collection[str]
    ) -> Role:
        core = self._client._core
        flow = _admin_orgs.remove_permissions_flow(core, org, role, permissions, self._token)
        return self._client._run(flow)


class Events(Namespace["Client"]):
    def list(
        self,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        after: str | None = None,
        count: bool = True,
    ) -> Page[Event]:
        """Audit events matching every filter given, newest first; ``after`` a page's
        ``next_cursor`` for the (older) page that follows it."""
        filters = {
            "action": action,
            "actor": actor,
            "target": target,
            "client_id": client_id,
            "since": since,
            "until": until,
        }
        flow = _admin_events.list_events_flow(
            self._client._core, filters, limit, offset, self._token, after, count
        )
        return self._client._run(flow)

    def iterate(
        self,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[Event]:
        """Every matching event, newest first, a page at a time by cursor: events
        recorded meanwhile make it neither skip nor repeat one (they are newer)."""
        return _walk(lambda after: self.list(action, actor, target, client_id, since, until,
                                            page_size, after=after, count=False), page_size)
