"""Bearer tokens on your own routes, framework-free: RFC 6750 sections 2.1 and 3.

A ``Guard`` holds one route's requirements. ``authenticate`` takes the raw
``Authorization`` header and returns the ``Principal`` of a valid token, or
raises:

- ``MissingToken`` (an ``InvalidToken``, 401) when there is no Bearer token: the
  challenge then carries no ``error`` (RFC 6750 section 3.1);
- ``InvalidToken`` (401) for a malformed, forged, expired or foreign token;
- ``InsufficientScope`` (403) when a required scope or permission is missing;
- ``TemporarilyUnavailable`` (503) when the keys could not be fetched.

Verification is local (``AsyncClient.verify_token``): the JWKS is fetched once per
client and refetched only for an unknown ``kid``. ``challenge`` builds the
``WWW-Authenticate`` value of a refusal; the framework modules only translate.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from .._async_client import AsyncClient
from .._config import check_leeway
from .._shared import aclose_shared, shared_async_client
from ..exceptions import (
    BastionError,
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    TemporarilyUnavailable,
)

__all__ = [
    "DEFAULT_REALM",
    "Guard",
    "MissingToken",
    "Principal",
    "aclose_clients",
    "bearer_token",
    "challenge",
    "challenged",
]

#: The ``realm`` of the challenges unless a route names its own.
DEFAULT_REALM = "api"
P = TypeVar("P", bound="Principal")
# RFC 7230 quoted-string content we emit as is; anything else becomes "?".
_UNQUOTABLE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def _strings(value: Any) -> tuple[str, ...]:
    """The strings of a list claim; a malformed claim grants nothing."""
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid access token stands for, and what it may do.

    ``subject`` is the ``sub`` claim (a user id, or the client's id for client
    credentials), ``client_id`` the app the token was issued to, ``scopes`` the
    granted scopes. For a token issued for an organization, ``org`` is its id and
    ``roles`` / ``permissions`` the user's there; elsewhere they are empty.
    ``claims`` holds every claim; ``token`` the raw token, to pass on downstream.
    """

    subject: str
    client_id: str | None
    scopes: frozenset[str]
    org: str | None = None
    roles: tuple[str, ...] = ()
    permissions: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    token: str = field(default="", repr=False, compare=False)

    @classmethod
    def from_claims(cls: type[P], claims: Mapping[str, Any], token: str = "") -> P:
        subject, client_id, org = claims.get("sub"), claims.get("client_id"), claims.get("org")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("The token has no sub claim.")
        scope = claims.get("scope")
        return cls(
            subject=subject,
            client_id=client_id if isinstance(client_id, str) else None,
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            org=org if isinstance(org, str) else None,
            roles=_strings(claims.get("roles")),
            permissions=frozenset(_strings(claims.get("permissions"))),
            claims=claims,
            token=token,
        )

    def has_scopes(self, *scopes: str) -> bool:
        return all(scope in self.scopes for scope in scopes)

    def has_permissions(self, *permissions: str) -> bool:
        return all(permission in self.permissions for permission in permissions)


class MissingToken(InvalidToken):
    """The request carries no Bearer token: a challenge without ``error`` (6750 3.1)."""

    default_description = "A Bearer access token is required."


def bearer_token(authorization: str | Sequence[str] | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 2.1), given
    as the header's value or as every value the request has.

    No header, another scheme or an empty token raise ``MissingToken``; several
    headers raise ``InvalidRequest`` (which one a proxy before us read is anyone's
    guess); the token itself is judged by verification. Tokens in the query or body
    are not read (RFC 9700 section 4.3.2 advises against them).
    """
    if not isinstance(authorization, str | None):
        if len(authorization) > 1:
            raise InvalidRequest("Send one Authorization header, not several.")
        authorization = authorization[0] if authorization else None
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MissingToken()
    return token


def _quoted(text: str) -> str:
    return '"' + _UNQUOTABLE.sub("?", text) + '"'


def challenged(error: OAuthError) -> bool:
    """Whether the answer to ``error`` carries a ``WWW-Authenticate`` challenge: the
    errors of RFC 6750 section 3.1 (a malformed request, a bad token, too little scope),
    not an outage."""
    return isinstance(error, InvalidRequest | InvalidToken | InsufficientScope)


def challenge(
    error: OAuthError | None, realm: str | None = DEFAULT_REALM, scopes: Collection[str] = ()
) -> str:
    """The ``WWW-Authenticate`` value answering ``error`` (RFC 6750 section 3).

    ``scope`` (the route's required scopes) is only named with ``insufficient_scope``.
    """
    params = [f"realm={_quoted(realm)}"] if realm else []
    if error is not None and not isinstance(error, MissingToken):
        params.append(f"error={_quoted(error.error_code)}")
        if error.description:
            params.append(f"error_description={_quoted(error.description)}")
        if isinstance(error, InsufficientScope) and scopes:
            params.append(f"scope={_quoted(' '.join(scopes))}")
    return "Bearer " + ", ".join(params) if params else "Bearer"


# -- the clients ``using=`` names: those the models share (``_shared``) -------------


async def aclose_clients() -> None:
    """Close the clients routes opened for ``using=`` in this event loop (e.g. at
    application shutdown): the connections' shared async clients."""
    await aclose_shared()


class Guard:
    """One route's requirements: every scope and every permission listed.

    ``client`` is an ``AsyncClient`` you own; without it, the connection
    ``using`` (``"default"`` when ``None``) made with ``configure``.
    ``audience`` and ``leeway`` default to the client's settings.
    """

    __slots__ = ("_client", "audience", "leeway", "permissions", "realm", "scopes", "using")

    def __init__(
        self,
        scopes: str | Collection[str] = (),
        permissions: str | Collection[str] = (),
        audience: str | None = None,
        *,
        client: AsyncClient | None = None,
        using: str | None = None,
        realm: str | None = DEFAULT_REALM,
        leeway: float | None = None,
    ) -> None:
        if client is not None and using is not None:
            raise ConfigurationError("pass either 'client' or 'using', not both")
        self.scopes = tuple(scopes.split() if isinstance(scopes, str) else scopes)
        self.permissions = tuple(
            permissions.split() if isinstance(permissions, str) else permissions
        )
        self.audience = audience
        self.realm = realm
        self.leeway = None if leeway is None else check_leeway(leeway)
        self.using = using
        self._client = client

    def __repr__(self) -> str:
        return f"Guard(scopes={self.scopes!r}, permissions={self.permissions!r})"

    @property
    def client(self) -> AsyncClient:
        # per event loop: an app (or its tests) may run several, one after another
        return self._client if self._client is not None else shared_async_client(self.using)

    def challenge(self, error: OAuthError | None) -> str:
        return challenge(error, self.realm, self.scopes)

    @overload
    async def authenticate(self, authorization: str | Sequence[str] | None) -> Principal: ...
    @overload
    async def authenticate(
        self, authorization: str | Sequence[str] | None, kind: type[P]
    ) -> P: ...

    async def authenticate(
        self, authorization: str | Sequence[str] | None, kind: type[Principal] = Principal
    ) -> Principal:
        """The principal (a ``kind``) of a valid token that meets every requirement."""
        token = bearer_token(authorization)
        try:
            claims = await self.client.verify_token(token, self.audience, self.scopes, self.leeway)
        except (InvalidToken, InsufficientScope, ConfigurationError):
            raise
        except BastionError:  # the keys are out of reach: not the caller's fault
            raise TemporarilyUnavailable("The token cannot be verified right now.") from None
        principal = kind.from_claims(claims, token)
        missing = [p for p in self.permissions if p not in principal.permissions]
        if missing:
            raise InsufficientScope(f"The token lacks permission: {' '.join(sorted(missing))}.")
        return principal
