"""``User``'s administration calls: Bastion's REST API as an administrator.

``User.get``, ``User.search``, ``User.count``, ``User.create`` and
``user.update()``, ``user.delete()``, ``user.restore()``, ``user.erase()``,
``user.export()``, ``user.organizations()`` and the role calls (``roles``, ``attach_roles``,
``remove_roles``, ``update_roles``), each with an ``a``-prefixed async twin. They
use the connection's client-credentials token with scope ``bastion:admin`` and run
on the client a user was fetched with, or the shared client of connection ``using``
(see ``_shared``); the flows are the clients'.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._shared import async_client, shared_async_client, shared_client, sync_client

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client
    from .models import User
    from .organizations import Organization, Role, UserRoles
    from .paging import Page
    from .tokens import TokenSet

__all__ = ["UserAdministration"]


class UserAdministration:
    """Mixed into ``User``, which provides its fields, ``_take`` and ``_reissued``."""

    __slots__ = ()

    if TYPE_CHECKING:
        identifier: str
        token: TokenSet | None
        client: Client | AsyncClient | None

        @property
        def id(self) -> str: ...

        def _take(self, other: User) -> User: ...

        def _reissued(self, reissue: TokenSet | None, result: UserRoles) -> UserRoles: ...

    @classmethod
    def get(cls, user_id: str, using: str | None = None) -> User:
        """The user with this id; ``NotFound`` if there is none."""
        return shared_client(using).users.get(user_id)

    @classmethod
    async def aget(cls, user_id: str, using: str | None = None) -> User:
        return await shared_async_client(using).users.get(user_id)

    @classmethod
    def search(
        cls,
        query: str | None = None,
        limit: int = 20,
        offset: int = 0,
        using: str | None = None,
        *,
        include_deleted: bool = False,
    ) -> Page[User]:
        """Users whose username or email contains ``query`` (any case), oldest first;
        ``limit`` 1 to 100. The page is a list; ``.total`` counts every match."""
        return shared_client(using).users.search(query, limit, offset, include_deleted)

    @classmethod
    async def asearch(
        cls,
        query: str | None = None,
        limit: int = 20,
        offset: int = 0,
        using: str | None = None,
        *,
        include_deleted: bool = False,
    ) -> Page[User]:
        client = shared_async_client(using)
        return await client.users.search(query, limit, offset, include_deleted)

    @classmethod
    def iterate(
        cls, query: str | None = None, using: str | None = None, *,
        include_deleted: bool = False, page_size: int = 100,
    ) -> Iterator[User]:
        """Every user matching ``query``, oldest first, a page at a time (by cursor:
        users added or deleted meanwhile make it neither skip nor repeat anyone)."""
        return shared_client(using).users.iterate(query, include_deleted, page_size)

    @classmethod
    def aiterate(
        cls, query: str | None = None, using: str | None = None, *,
        include_deleted: bool = False, page_size: int = 100,
    ) -> AsyncIterator[User]:
        """``async for user in User.aiterate(...)``."""
        return shared_async_client(using).users.iterate(query, include_deleted, page_size)

    @classmethod
    def count(
        cls, query: str | None = None, using: str | None = None, *, include_deleted: bool = False
    ) -> int:
        """How many users match ``query`` (all users when ``None``)."""
        return shared_client(using).users.count(query, include_deleted)

    @classmethod
    async def acount(
        cls, query: str | None = None, using: str | None = None, *, include_deleted: bool = False
    ) -> int:
        return await shared_async_client(using).users.count(query, include_deleted)

    @classmethod
    def create(
        cls,
        username: str,
        email: str,
        password: str | None = None,
        is_administrator: bool = False,
        using: str | None = None,
        *,
        email_verified: bool = False,
    ) -> User:
        """A new user (without ``password`` they sign in by email link). Their email
        counts as verified once they use a link mailed to it, or at once with
        ``email_verified=True``."""
        return shared_client(using).users.create(username, email, password, is_administrator,
                                                 email_verified)

    @classmethod
    async def acreate(
        cls,
        username: str,
        email: str,
        password: str | None = None,
        is_administrator: bool = False,
        using: str | None = None,
        *,
        email_verified: bool = False,
    ) -> User:
        client = shared_async_client(using)
        return await client.users.create(username, email, password, is_administrator,
                                         email_verified)

    def update(
        self,
        *,
        username: str | None = None,
        email: str | None = None,
        password: str | None = None,
        is_administrator: bool | None = None,
        email_verified: bool | None = None,
        using: str | None = None,
    ) -> User:
        """Change the fields given (``None`` leaves one as it is); this object
        takes the new values."""
        client = sync_client(self.client, using, "update")
        changed = client.users.update(
            self.identifier,
            username=username,
            email=email,
            password=password,
            is_administrator=is_administrator,
            email_verified=email_verified,
        )
        return self._take(changed)

    async def aupdate(
        self,
        *,
        username: str | None = None,
        email: str | None = None,
        password: str | None = None,
        is_administrator: bool | None = None,
        email_verified: bool | None = None,
        using: str | None = None,
    ) -> User:
        client = async_client(self.client, using, "update")
        changed = await client.users.update(
            self.identifier,
            username=username,
            email=email,
            password=password,
            is_administrator=is_administrator,
            email_verified=email_verified,
        )
        return self._take(changed)

    def delete(self, using: str | None = None) -> None:
        """Soft delete: the user cannot sign in and every token of theirs is revoked."""
        sync_client(self.client, using, "delete").users.delete(self.identifier)

    async def adelete(self, using: str | None = None) -> None:
        await async_client(self.client, using, "delete").users.delete(self.identifier)

    def restore(self, using: str | None = None) -> User:
        """Undo ``delete`` (the old tokens stay revoked)."""
        return self._take(sync_client(self.client, using, "restore").users.restore(self.id))

    async def arestore(self, using: str | None = None) -> User:
        client = async_client(self.client, using, "restore")
        return self._take(await client.users.restore(self.id))

    def export(self, using: str | None = None) -> dict[str, Any]:
        """Everything the server keeps about this user (``client.users.export``)."""
        return sync_client(self.client, using, "export").users.export(self.id)

    async def aexport(self, using: str | None = None) -> dict[str, Any]:
        return await async_client(self.client, using, "export").users.export(self.id)

    def erase(self, using: str | None = None) -> User:
        """Erase this user's personal data for good (``client.users.erase``)."""
        return self._take(sync_client(self.client, using, "erase").users.erase(self.id))

    async def aerase(self, using: str | None = None) -> User:
        client = async_client(self.client, using, "erase")
        return self._take(await client.users.erase(self.id))

    def organizations(
        self, limit: int = 20, offset: int = 0, using: str | None = None
    ) -> Page[Organization]:
        """The organizations where this user holds a role, oldest first."""
        client = sync_client(self.client, using, "organizations")
        return client.users.organizations(self.identifier, limit, offset)

    async def aorganizations(
        self, limit: int = 20, offset: int = 0, using: str | None = None
    ) -> Page[Organization]:
        client = async_client(self.client, using, "organizations")
        return await client.users.organizations(self.identifier, limit, offset)

    def roles(self, org: Organization | str, using: str | None = None) -> Page[Role]:
        """This user's roles in ``org`` (an organization, its id or name)."""
        return sync_client(self.client, using, "roles").users.roles(org, self.identifier)

    async def aroles(self, org: Organization | str, using: str | None = None) -> Page[Role]:
        return await async_client(self.client, using, "roles").users.roles(org, self.identifier)

    def attach_roles(
        self,
        org: Organization | str,
        roles: Role | str | Iterable[Role | str],
        using: str | None = None,
    ) -> Page[Role]:
        """Give roles (objects, ids or names) in ``org``; returns all the user's roles there."""
        return self.update_roles(org, add=roles, using=using).roles

    async def aattach_roles(
        self,
        org: Organization | str,
        roles: Role | str | Iterable[Role | str],
        using: str | None = None,
    ) -> Page[Role]:
        return (await self.aupdate_roles(org, add=roles, using=using)).roles

    def remove_roles(
        self,
        org: Organization | str,
        roles: Role | str | Iterable[Role | str],
        using: str | None = None,
    ) -> Page[Role]:
        """Take roles away in ``org``; returns the roles the user keeps there."""
        return self.update_roles(org, remove=roles, using=using).roles

    async def aremove_roles(
        self,
        org: Organization | str,
        roles: Role | str | Iterable[Role | str],
        using: str | None = None,
    ) -> Page[Role]:
        return (await self.aupdate_roles(org, remove=roles, using=using)).roles

    def update_roles(
        self,
        org: Organization | str,
        add: Role | str | Iterable[Role | str] = (),
        remove: Role | str | Iterable[Role | str] = (),
        reissue: TokenSet | None = None,
        using: str | None = None,
    ) -> UserRoles:
        """Attach ``add`` and remove ``remove`` in one transaction: ``(roles, tokens)``.

        With ``reissue`` (the user's current ``TokenSet``) those tokens are revoked
        and ``tokens`` is a new pair whose claims carry the new roles at once;
        if ``reissue`` is this user's ``token``, ``token`` becomes the new pair.
        """
        client = sync_client(self.client, using, "update_roles")
        result = client.users.update_roles(org, self.identifier, add, remove, reissue)
        return self._reissued(reissue, result)

    async def aupdate_roles(
        self,
        org: Organization | str,
        add: Role | str | Iterable[Role | str] = (),
        remove: Role | str | Iterable[Role | str] = (),
        reissue: TokenSet | None = None,
        using: str | None = None,
    ) -> UserRoles:
        client = async_client(self.client, using, "update_roles")
        result = await client.users.update_roles(org, self.identifier, add, remove, reissue)
        return self._reissued(reissue, result)
