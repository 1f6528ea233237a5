"""High-level ``Organization``, ``Role``, ``Permission`` and ``Member``, and ``UserRoles``.

Roles belong to an organization and hold a set of permission strings; a user
gets roles per organization (``User.attach_roles`` and friends), and an access
token asked for with ``organization=`` carries ``org``, ``roles`` and
``permissions``. Calls run as an administrator, on the client an object was
fetched with or the shared client of connection ``using`` (see ``_shared``);
each has an ``a``-prefixed async twin.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ._shared import (
    Bound,
    async_client,
    parse_datetime,
    required_text,
    shared_async_client,
    shared_client,
)
from ._shared import sync_client as _sync
from .exceptions import ProtocolError
from .models import User
from .tokens import TokenSet

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client
    from .paging import Page

__all__ = ["Member", "Organization", "Permission", "Role", "UserRoles"]


class Permission(str):
    """A permission string such as ``"posts:write"`` (what tokens carry in
    ``permissions``); any ``str`` is accepted wherever a permission is."""

    __slots__ = ()


@dataclass(slots=True)
class Organization(Bound):
    """An organization: roles and users' role assignments are per organization."""

    id: str
    name: str
    created_at: datetime | None = None
    client: Client | AsyncClient | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(
        cls, body: Mapping[str, Any], client: Client | AsyncClient | None = None
    ) -> Organization:
        return cls(
            required_text(body, "id"),
            required_text(body, "name"),
            parse_datetime(body.get("created_at")),
            client,
        )

    @classmethod
    def create(cls, name: str, using: str | None = None) -> Organization:
        """A new organization; ``Conflict`` if the name is taken."""
        return shared_client(using).organizations.create(name)

    @classmethod
    async def acreate(cls, name: str, using: str | None = None) -> Organization:
        return await shared_async_client(using).organizations.create(name)

    @classmethod
    def get(cls, org: str, using: str | None = None) -> Organization:
        """The organization with this id or name; ``NotFound`` if there is none."""
        return shared_client(using).organizations.get(org)

    @classmethod
    async def aget(cls, org: str, using: str | None = None) -> Organization:
        return await shared_async_client(using).organizations.get(org)

    @classmethod
    def list(cls, limit: int = 20, offset: int = 0, using: str | None = None) -> Page[Organization]:
        """Organizations, oldest first; ``.total`` counts them all."""
        return shared_client(using).organizations.list(limit, offset)

    @classmethod
    async def alist(
        cls, limit: int = 20, offset: int = 0, using: str | None = None
    ) -> Page[Organization]:
        return await shared_async_client(using).organizations.list(limit, offset)

    def roles(self, using: str | None = None) -> Page[Role]:
        """This organization's roles, with their permissions."""
        return _sync(self.client, using, "roles").roles.list(self.id)

    async def aroles(self, using: str | None = None) -> Page[Role]:
        return await async_client(self.client, using, "roles").roles.list(self.id)

    def members(
        self,
        limit: int = 20,
        offset: int = 0,
        using: str | None = None,
        *,
        include_deleted: bool = False,
    ) -> Page[Member]:
        """The users holding a role here, oldest first, each with those roles' names;
        ``.total`` counts them all. Soft-deleted users only with ``include_deleted``."""
        client = _sync(self.client, using, "members")
        return client.organizations.members(self.id, limit, offset, include_deleted)

    async def amembers(
        self,
        limit: int = 20,
        offset: int = 0,
        using: str | None = None,
        *,
        include_deleted: bool = False,
    ) -> Page[Member]:
        client = async_client(self.client, using, "members")
        return await client.organizations.members(self.id, limit, offset, include_deleted)

    def rename(self, name: str, using: str | None = None) -> Organization:
        """Give it a new name (``Conflict`` if taken); this object takes it. The id,
        which tokens carry in ``org``, stays."""
        self.name = _sync(self.client, using, "rename").organizations.rename(self.id, name).name
        return self

    async def arename(self, name: str, using: str | None = None) -> Organization:
        client = async_client(self.client, using, "rename")
        self.name = (await client.organizations.rename(self.id, name)).name
        return self

    def delete(self, *, force: bool = False, using: str | None = None) -> None:
        """Delete it with its roles; the tokens issued in it are revoked. ``Conflict``
        while users hold its roles, unless ``force`` (which takes the roles from them)."""
        _sync(self.client, using, "delete").organizations.delete(self.id, force=force)

    async def adelete(self, *, force: bool = False, using: str | None = None) -> None:
        client = async_client(self.client, using, "delete")
        await client.organizations.delete(self.id, force=force)


@dataclass(slots=True)
class Member:
    """A user holding roles in an organization (membership is holding a role), and
    the names of those roles, sorted."""

    user: User
    roles: tuple[str, ...] = ()

    @classmethod
    def from_json(
        cls, body: Mapping[str, Any], client: Client | AsyncClient | None = None
    ) -> Member:
        user, roles = body.get("user"), body.get("roles")
        if not isinstance(user, dict) or not isinstance(user.get("id"), str):
            raise ProtocolError("The API's answer has no user.")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ProtocolError("The API's answer has no list of roles.")
        return cls(User.from_claims(user, client=client), tuple(sorted(roles)))


@dataclass(slots=True)
class Role(Bound):
    """A role of an organization and its permissions (sorted)."""

    id: str
    organization_id: str
    name: str
    permissions: tuple[Permission, ...] = ()
    created_at: datetime | None = None
    client: Client | AsyncClient | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any], client: Client | AsyncClient | None = None) -> Role:
        permissions = body.get("permissions", [])
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise ProtocolError("The API's answer has no list of permissions.")
        return cls(
            required_text(body, "id"),
            required_text(body, "organization_id"),
            required_text(body, "name"),
            tuple(sorted(Permission(p) for p in permissions)),
            parse_datetime(body.get("created_at")),
            client,
        )

    @classmethod
    def list(cls, org: Organization | str, using: str | None = None) -> Page[Role]:
        """The roles of ``org`` (an organization, its id or name)."""
        return shared_client(using).roles.list(org)

    @classmethod
    async def alist(cls, org: Organization | str, using: str | None = None) -> Page[Role]:
        return await shared_async_client(using).roles.list(org)

    @classmethod
    def get(cls, org: Organization | str, role: str, using: str | None = None) -> Role:
        """The role of ``org`` with this id or name; ``NotFound`` if there is none."""
        return shared_client(using).roles.get(org, role)

    @classmethod
    async def aget(cls, org: Organization | str, role: str, using: str | None = None) -> Role:
        return await shared_async_client(using).roles.get(org, role)

    @classmethod
    def create(
        cls,
        org: Organization | str,
        name: str,
        permissions: str | Collection[str] = (),
        using: str | None = None,
    ) -> Role:
        """A new role; ``Conflict`` if ``org`` has a role of that name."""
        return shared_client(using).roles.create(org, name, permissions)

    @classmethod
    async def acreate(
        cls,
        org: Organization | str,
        name: str,
        permissions: str | Collection[str] = (),
        using: str | None = None,
    ) -> Role:
        return await shared_async_client(using).roles.create(org, name, permissions)

    def _take(self, other: Role) -> Role:
        self.name, self.permissions = other.name, other.permissions
        return self

    def delete(self, *, force: bool = False, using: str | None = None) -> None:
        """Delete the role; ``Conflict`` while users hold it, unless ``force``."""
        _sync(self.client, using, "delete").roles.delete(self.organization_id, self.id, force=force)

    async def adelete(self, *, force: bool = False, using: str | None = None) -> None:
        client = async_client(self.client, using, "delete")
        await client.roles.delete(self.organization_id, self.id, force=force)

    def add_permissions(self, permissions: str | Collection[str], using: str | None = None) -> Role:
        """Add one or several permissions; this object takes the new set."""
        client = _sync(self.client, using, "add_permissions")
        return self._take(client.roles.add_permissions(self.organization_id, self.id, permissions))

    async def aadd_permissions(
        self, permissions: str | Collection[str], using: str | None = None
    ) -> Role:
        client = async_client(self.client, using, "add_permissions")
        changed = await client.roles.add_permissions(self.organization_id, self.id, permissions)
        return self._take(changed)

    def remove_permissions(
        self, permissions: str | Collection[str], using: str | None = None
    ) -> Role:
        """Remove one or several permissions; this object takes the new set."""
        client = _sync(self.client, using, "remove_permissions")
        changed = client.roles.remove_permissions(self.organization_id, self.id, permissions)
        return self._take(changed)

    async def aremove_permissions(
        self, permissions: str | Collection[str], using: str | None = None
    ) -> Role:
        client = async_client(self.client, using, "remove_permissions")
        changed = await client.roles.remove_permissions(self.organization_id, self.id, permissions)
        return self._take(changed)


class UserRoles(NamedTuple):
    """What changing a user's roles returns: their roles in the organization now,
    and the new tokens when ``reissue`` was asked for (else ``None``; ``None`` too when
    the change removed the user's last role there: the old tokens are revoked, and a
    user who left an organization gets no tokens for it)."""

    roles: Page[Role]
    tokens: TokenSet | None = None
