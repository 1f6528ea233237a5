"""High-level models over the configured connections: ``User``.

``User.start_authorization(...)`` / ``User.from_authorization_code(...)`` /
``User.from_token(...)`` sign users in; ``User.get``, ``User.search``,
``User.count``, ``User.create`` and ``user.update()``, ``user.delete()``,
``user.restore()`` and the role calls use the REST API as an administrator
(the connection's client-credentials token with scope ``bastion:admin``). Each
has an ``a``-prefixed async twin. Calls run on the client an object was fetched
with, or the shared client of connection ``using`` (see ``_shared``). The
methods hold no logic beyond choosing the shell: the flows are the clients'.
Organizations and roles are in ``organizations``, audit events in ``events``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._shared import (
    Bound,
    async_client,
    parse_datetime,
    shared_async_client,
    shared_client,
    sync_client,
)
from .state import ReplayStore
from .tokens import TokenSet

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client
    from .organizations import Organization, Role, UserRoles
    from .paging import Page

__all__ = ["User"]

#: Scopes asked for by ``User.start_authorization`` unless told otherwise.
USER_SCOPE = "openid profile email"
#: Re-exported for code that imported them from here.
_ = (shared_client, shared_async_client)


@dataclass(slots=True)
class User(Bound):
    """A Bastion user. Fields the provider did not share are ``None``."""

    identifier: str
    username: str | None = None
    email: str | None = None
    is_administrator: bool = False
    created_at: datetime | None = None
    deleted_at: datetime | None = None
    #: The user's tokens when signed in through the SDK (never shown by ``repr``).
    token: TokenSet | None = field(default=None, repr=False, compare=False)
    updated_at: datetime | None = None
    #: The client this user was fetched with (``update()`` and friends use it).
    client: Client | AsyncClient | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_claims(
        cls,
        claims: Mapping[str, Any],
        token: TokenSet | None = None,
        client: Client | AsyncClient | None = None,
    ) -> User:
        """A user from userinfo or ID token claims, or a REST user object."""
        identifier = claims.get("sub", claims.get("id"))
        username = claims.get("preferred_username", claims.get("username"))
        email = claims.get("email")
        admin = claims.get("is_administrator", claims.get("is_admin"))
        return cls(
            identifier=str(identifier),
            username=username if isinstance(username, str) else None,
            email=email if isinstance(email, str) else None,
            is_administrator=admin is True,
            created_at=parse_datetime(claims.get("created_at")),
            deleted_at=parse_datetime(claims.get("deleted_at")),
            token=token,
            updated_at=parse_datetime(claims.get("updated_at")),
            client=client,
        )

    @property
    def id(self) -> str:
        """The same as ``identifier``."""
        return self.identifier

    @property
    def is_authenticated(self) -> bool:
        return self.token is not None

    # -- sign in ----------------------------------------------------------------

    @staticmethod
    def start_authorization(
        expiration: float = 600,
        nonce: str | None = None,
        using: str | None = None,
        *,
        scope: str | Collection[str] | None = USER_SCOPE,
    ) -> tuple[str, str]:
        """``(state, url)``: send the browser to ``url`` (see ``Client.start_authorization``)."""
        return shared_client(using).start_authorization(scope, expiration, nonce)

    @staticmethod
    async def astart_authorization(
        expiration: float = 600,
        nonce: str | None = None,
        using: str | None = None,
        *,
        scope: str | Collection[str] | None = USER_SCOPE,
    ) -> tuple[str, str]:
        client = shared_async_client(using)
        return await client.start_authorization(scope, expiration, nonce)

    @classmethod
    def from_authorization_code(
        cls,
        code: str,
        callback_state: str,
        expected_state: str | None = None,
        using: str | None = None,
        *,
        replay_store: ReplayStore | None = None,
        iss: str | None = None,
    ) -> User:
        """Finish the login: check the state (and ``iss``), trade the code, read the user."""
        client = shared_client(using)
        tokens = client.finish_authorization(
            code, callback_state, expected_state, iss=iss, replay_store=replay_store
        )
        return cls.from_claims(client.userinfo(tokens), tokens, client)

    @classmethod
    async def afrom_authorization_code(
        cls,
        code: str,
        callback_state: str,
        expected_state: str | None = None,
        using: str | None = None,
        *,
        replay_store: ReplayStore | None = None,
        iss: str | None = None,
    ) -> User:
        client = shared_async_client(using)
        tokens = await client.finish_authorization(
            code, callback_state, expected_state, iss=iss, replay_store=replay_store
        )
        return cls.from_claims(await client.userinfo(tokens), tokens, client)

    @classmethod
    def from_token(cls, token: str | TokenSet, using: str | None = None) -> User:
        """The user an access token belongs to (via userinfo, so revocation shows)."""
        client = shared_client(using)
        tokens = (
            token if isinstance(token, TokenSet) else TokenSet(access_token=token, client=client)
        )
        return cls.from_claims(client.userinfo(tokens), tokens, client)

    @classmethod
    async def afrom_token(cls, token: str | TokenSet, using: str | None = None) -> User:
        client = shared_async_client(using)
        tokens = (
            token if isinstance(token, TokenSet) else TokenSet(access_token=token, client=client)
        )
        return cls.from_claims(await client.userinfo(tokens), tokens, client)

    def logout(self) -> None:
        """Forget the tokens locally (see ``Client.logout_url`` and ``revoke``)."""
        self.token = None

    # -- administration (REST API, as an administrator) -----------------------------

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
    ) -> User:
        """A new user (without ``password`` they sign in by email link)."""
        return shared_client(using).users.create(username, email, password, is_administrator)

    @classmethod
    async def acreate(
        cls,
        username: str,
        email: str,
        password: str | None = None,
        is_administrator: bool = False,
        using: str | None = None,
    ) -> User:
        client = shared_async_client(using)
        return await client.users.create(username, email, password, is_administrator)

    def _take(self, other: User) -> User:
        """Copy the server's answer into this object (the token stays)."""
        for f in fields(self):
            if f.name not in ("token", "client"):
                setattr(self, f.name, getattr(other, f.name))
        return self

    def update(
        self,
        *,
        username: str | None = None,
        email: str | None = None,
        password: str | None = None,
        is_administrator: bool | None = None,
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
        )
        return self._take(changed)

    async def aupdate(
        self,
        *,
        username: str | None = None,
        email: str | None = None,
        password: str | None = None,
        is_administrator: bool | None = None,
        using: str | None = None,
    ) -> User:
        client = async_client(self.client, using, "update")
        changed = await client.users.update(
            self.identifier,
            username=username,
            email=email,
            password=password,
            is_administrator=is_administrator,
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

    def _reissued(self, reissue: TokenSet | None, result: UserRoles) -> UserRoles:
        if reissue is not None and reissue is self.token:
            self.token = result.tokens
        return result
