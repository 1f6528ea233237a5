"""High-level models over the configured connections: ``User``.

``User.start_authorization(...)`` / ``User.from_authorization_code(...)`` /
``User.from_token(...)`` use a client for the connection named by ``using``
(``configure(...)``); the ``a``-prefixed twins use an ``AsyncClient``. Those
clients are shared (one per connection, and per event loop for async ones) so
discovery and keys are fetched once and ``user.token.refresh()`` keeps working;
``configure()`` starts afresh. The class methods hold no logic beyond choosing
the shell: the flows are the clients'.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ._async_client import AsyncClient
from ._client import Client
from ._config import Settings
from .connections import DEFAULT, get_settings
from .state import ReplayStore
from .tokens import TokenSet

__all__ = ["User"]

#: Scopes asked for by ``User.start_authorization`` unless told otherwise.
USER_SCOPE = "openid profile email"


_lock = threading.Lock()
_sync_clients: dict[str, tuple[Settings, Client]] = {}
_async_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, tuple[Settings, AsyncClient]]
] = weakref.WeakKeyDictionary()


def shared_client(using: str | None = None) -> Client:
    """The ``Client`` the models use for connection ``using``."""
    name, settings = using or DEFAULT, get_settings(using)
    with _lock:
        known = _sync_clients.get(name)
        if known is not None and known[0] is settings:
            return known[1]
        client = Client(using=name)
        _sync_clients[name] = (settings, client)
    if known is not None:
        known[1].close()
    return client


def shared_async_client(using: str | None = None) -> AsyncClient:
    """The ``AsyncClient`` the models use for ``using`` in the running event loop."""
    name, settings = using or DEFAULT, get_settings(using)
    loop = asyncio.get_running_loop()
    with _lock:
        clients = _async_clients.setdefault(loop, {})
        known = clients.get(name)
        if known is not None and known[0] is settings:
            return known[1]
        client = AsyncClient(using=name)
        clients[name] = (settings, client)
    return client


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@dataclass(slots=True)
class User:
    """A Bastion user. Fields the provider did not share are ``None``."""

    identifier: str
    username: str | None = None
    email: str | None = None
    is_administrator: bool = False
    created_at: datetime | None = None
    deleted_at: datetime | None = None
    #: The user's tokens when signed in through the SDK (never shown by ``repr``).
    token: TokenSet | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], token: TokenSet | None = None) -> User:
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
            created_at=_datetime(claims.get("created_at")),
            deleted_at=_datetime(claims.get("deleted_at")),
            token=token,
        )

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
        return cls.from_claims(client.userinfo(tokens), tokens)

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
        return cls.from_claims(await client.userinfo(tokens), tokens)

    @classmethod
    def from_token(cls, token: str | TokenSet, using: str | None = None) -> User:
        """The user an access token belongs to (via userinfo, so revocation shows)."""
        client = shared_client(using)
        tokens = (
            token if isinstance(token, TokenSet) else TokenSet(access_token=token, client=client)
        )
        return cls.from_claims(client.userinfo(tokens), tokens)

    @classmethod
    async def afrom_token(cls, token: str | TokenSet, using: str | None = None) -> User:
        client = shared_async_client(using)
        tokens = (
            token if isinstance(token, TokenSet) else TokenSet(access_token=token, client=client)
        )
        return cls.from_claims(await client.userinfo(tokens), tokens)

    def logout(self) -> None:
        """Forget the tokens locally (see ``Client.logout_url`` and ``revoke``)."""
        self.token = None
