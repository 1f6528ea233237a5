"""High-level models over the configured connections: ``User``.

``User.start_authorization(...)`` / ``User.from_authorization_code(...)`` /
``User.from_token(...)`` sign users in; ``User.get``, ``User.search``,
``User.count``, ``User.create`` and ``user.update()``, ``user.delete()``,
``user.restore()``, ``user.erase()`` and the role calls use the REST API as an
administrator (the connection's client-credentials token with scope ``bastion:admin``; they
are in ``_user_admin``). Each has an ``a``-prefixed async twin. Calls run on
the client an object was fetched with, or the shared client of connection
``using`` (see ``_shared``). The methods hold no logic beyond choosing the
shell: the flows are the clients'.
Organizations and roles are in ``organizations``, audit events in ``events``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._shared import Bound, parse_datetime, shared_async_client, shared_client
from ._user_admin import UserAdministration
from .exceptions import ProtocolError
from .state import ReplayStore
from .tokens import TokenSet

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client
    from .organizations import UserRoles

__all__ = ["User"]

#: Scopes asked for by ``User.start_authorization`` unless told otherwise.
USER_SCOPE = "openid profile email"
#: The fields that are this object's, not the server's record of the user.
_OWN = ("token", "client")
#: Re-exported for code that imported them from here.
_ = (shared_client, shared_async_client)


@dataclass(slots=True)
class User(UserAdministration, Bound):
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
    #: Whether the user proved the address theirs (``None``: not shared).
    email_verified: bool | None = None
    #: When the user's personal data was erased (``erase()``); then for good.
    erased_at: datetime | None = None

    @classmethod
    def from_claims(
        cls,
        claims: Mapping[str, Any],
        token: TokenSet | None = None,
        client: Client | AsyncClient | None = None,
    ) -> User:
        """A user from userinfo or ID token claims, or a REST user object."""
        identifier = claims.get("sub", claims.get("id"))
        if isinstance(identifier, bool) or not isinstance(identifier, str | int) or (
                identifier == ""):
            raise ProtocolError("The answer names no user: no sub or id.")
        username = claims.get("preferred_username", claims.get("username"))
        email = claims.get("email")
        admin = claims.get("is_administrator", claims.get("is_admin"))
        verified = claims.get("email_verified")
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
            email_verified=verified if isinstance(verified, bool) else None,
            erased_at=parse_datetime(claims.get("erased_at")),
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
        """Finish the login: check the state (and ``iss``), trade the code, read the user
        from userinfo, or from the ID token when userinfo fails without refusing the
        tokens; otherwise the new tokens are revoked before the error is raised (see
        ``_login.signed_in_claims_flow``)."""
        client = shared_client(using)
        tokens = client.finish_authorization(
            code, callback_state, expected_state, iss=iss, replay_store=replay_store
        )
        return cls.from_claims(client._signed_in_claims(tokens), tokens, client)

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
        return cls.from_claims(await client._signed_in_claims(tokens), tokens, client)

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

    def to_dict(self) -> dict[str, Any]:
        """The user as JSON values (times in ISO 8601), without the tokens and the
        client: what a route answers with (``return user.to_dict()``). Not the ``User``
        itself: FastAPI encodes a dataclass with ``dataclasses.asdict``, which takes
        every field, the tokens too."""
        return {f.name: _json(getattr(self, f.name))
                for f in fields(self) if f.name not in _OWN}

    def _take(self, other: User) -> User:
        """Copy the server's answer into this object (the token stays)."""
        for f in fields(self):
            if f.name not in _OWN:
                setattr(self, f.name, getattr(other, f.name))
        return self

    def _reissued(self, reissue: TokenSet | None, result: UserRoles) -> UserRoles:
        if reissue is not None and reissue is self.token:
            self.token = result.tokens
        return result


def _json(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value
