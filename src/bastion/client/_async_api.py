"""The awaited twin of ``_api``: ``AsyncClient.users``, ``.organizations``,
``.roles`` and ``.events``, each call one flow of ``_admin_users``,
``_admin_orgs`` or ``_admin_events``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _admin_events, _admin_orgs, _admin_users
from ._admin import Token
from ._api import Namespace
from .events import Event
from .models import User
from .organizations import Member, Organization, Role, UserRoles
from .paging import Page, _awalk
from .tokens import TokenSet

if TYPE_CHECKING:  # a cycle at run time: the shells import this module
    from ._async_client import AsyncClient  # noqa: F401 - named in quotes below

__all__ = ["AsyncEvents", "AsyncOrganizations", "AsyncRoles", "AsyncUsers"]

RoleRefs = Role | str | Iterable[Role | str]
OrgRef = Organization | str


class AsyncUsers(Namespace["AsyncClient"]):
    async def get(self, user_id: str) -> User:
        return await self._client._run(
            _admin_users.get_user_flow(self._client._core, user_id, self._token)
        )

    async def me(self, token: Token) -> User:
        return await self._client._run(_admin_users.me_flow(self._client._core, token))

    async def search(
        self,
        query: str | None = None,
        limit: int = 20,
        offset: int = 0,
        include_deleted: bool = False,
        *,
        after: str | None = None,
        count: bool = True,
    ) -> Page[User]:
        flow = _admin_users.search_users_flow(
            self._client._core, query, limit, offset, include_deleted, self._token, after, count
        )
        return await self._client._run(flow)

    def iterate(
        self, query: str | None = None, include_deleted: bool = False, page_size: int = 100
    ) -> AsyncIterator[User]:
        return _awalk(lambda after: self.search(query, page_size, 0, include_deleted,
                                               after=after, count=False), page_size)

    async def count(self, query: str | None = None, include_deleted: bool = False) -> int:
        flow = _admin_users.count_users_flow(
            self._client._core, query, include_deleted, self._token
        )
        return await self._client._run(flow)

    async def create(
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
        return await self._client._run(
            _admin_users.create_user_flow(self._client._core, fields, self._token)
        )

    async def update(
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
        return await self._client._run(flow)

    async def delete(self, user_id: str) -> None:
        await self._client._run(
            _admin_users.delete_user_flow(self._client._core, user_id, self._token)
        )

    async def restore(self, user_id: str) -> User:
        return await self._client._run(
            _admin_users.restore_user_flow(self._client._core, user_id, self._token)
        )

    async def export(self, user_id: str) -> dict[str, Any]:
        return await self._client._run(
            _admin_users.export_user_flow(self._client._core, user_id, self._token)
        )

    async def erase(self, user_id: str) -> User:
        return await self._client._run(
            _admin_users.erase_user_flow(self._client._core, user_id, self._token)
        )

    async def roles(self, org: OrgRef, user_id: str) -> Page[Role]:
        flow = _admin_users.user_roles_flow(self._client._core, org, user_id, self._token)
        return await self._client._run(flow)

    async def update_roles(
        self,
        org: OrgRef,
        user_id: str,
        add: RoleRefs = (),
        remove: RoleRefs = (),
        reissue: TokenSet | str | None = None,
    ) -> UserRoles:
        flow = _admin_users.change_user_roles_flow(
            self._client._core, org, user_id, add, remove, reissue, self._token
        )
        return await self._client._run(flow)

    async def attach_roles(self, org: OrgRef, user_id: str, roles: RoleRefs) -> Page[Role]:
        return (await self.update_roles(org, user_id, add=roles)).roles

    async def organizations(
        self, user_id: str, limit: int = 20, offset: int = 0
    ) -> Page[Organization]:
        flow = _admin_users.user_organizations_flow(
            self._client._core, user_id, limit, offset, self._token
        )
        return await self._client._run(flow)

    async def remove_roles(self, org: OrgRef, user_id: str, roles: RoleRefs) -> Page[Role]:
        return (await self.update_roles(org, user_id, remove=roles)).roles


class AsyncOrganizations(Namespace["AsyncClient"]):
    async def list(self, limit: int = 20, offset: int = 0) -> Page[Organization]:
        flow = _admin_orgs.list_organizations_flow(self._client._core, limit, offset, self._token)
        return await self._client._run(flow)

    async def create(self, name: str) -> Organization:
        flow = _admin_orgs.create_organization_flow(self._client._core, name, self._token)
        return await self._client._run(flow)

    async def get(self, org: str) -> Organization:
        flow = _admin_orgs.get_organization_flow(self._client._core, org, self._token)
        return await self._client._run(flow)

    async def rename(self, org: OrgRef, name: str) -> Organization:
        flow = _admin_orgs.rename_organization_flow(self._client._core, org, name, self._token)
        return await self._client._run(flow)

    async def delete(self, org: OrgRef, *, force: bool = False) -> None:
        flow = _admin_orgs.delete_organization_flow(self._client._core, org, force, self._token)
        await self._client._run(flow)

    async def members(
        self, org: OrgRef, limit: int = 20, offset: int = 0, include_deleted: bool = False
    ) -> Page[Member]:
        flow = _admin_orgs.members_flow(
            self._client._core, org, limit, offset, include_deleted, self._token
        )
        return await self._client._run(flow)


class AsyncRoles(Namespace["AsyncClient"]):
    async def list(self, org: OrgRef) -> Page[Role]:
        return await self._client._run(
            _admin_orgs.list_roles_flow(self._client._core, org, self._token)
        )

    async def get(self, org: OrgRef, role: str) -> Role:
        flow = _admin_orgs.get_role_flow(self._client._core, org, role, self._token)
        return await self._client._run(flow)

    async def create(self, org: OrgRef, name: str, permissions: str | Collection[str] = ()) -> Role:
        flow = _admin_orgs.create_role_flow(self._client._core, org, name, permissions, self._token)
        return await self._client._run(flow)

    async def delete(self, org: OrgRef, role: Role | str, *, force: bool = False) -> None:
        flow = _admin_orgs.delete_role_flow(self._client._core, org, role, force, self._token)
        await self._client._run(flow)

    async def add_permissions(
        self, org: OrgRef, role: Role | str, permissions: str | Collection[str]
    ) -> Role:
        flow = _admin_orgs.add_permissions_flow(
            self._client._core, org, role, permissions, self._token
        )
        return await self._client._run(flow)

    async def remove_permissions(
        self, org: OrgRef, role: Role | str, permissions: str | Collection[str]
    ) -> Role:
        core = self._client._core
        flow = _admin_orgs.remove_permissions_flow(core, org, role, permissions, self._token)
        return await self._client._run(flow)


class AsyncEvents(Namespace["AsyncClient"]):
    async def list(
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
        return await self._client._run(flow)

    def iterate(
        self,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Event]:
        return _awalk(lambda after: self.list(action, actor, target, client_id, since, until,
                                             page_size, after=after, count=False), page_size)
