"""``TokenSet``: a token endpoint response (RFC 6749 section 5.1), and ``TokenCheck``.

Unknown fields are kept in ``extra``, never rejected; ``repr`` never shows a
token. ``expires_at`` is computed once, from the local clock at receipt; an
``expires_in`` that is not a number of seconds between 0 and ten years (NaN,
Infinity, 1e20, a negative or 40-digit one) is treated as absent.

A ``TokenSet`` obtained through a ``Client`` or ``AsyncClient`` is bound to it:
``tokens.refresh()`` / ``tokens.revoke()`` use that client (``arefresh`` /
``arevoke`` for an ``AsyncClient``); an unbound one (unpickled, or read with
``from_dict`` from a JSON session) uses the ``"default"`` connection, or ``using=``,
as the models do. A refresh returns a *new* ``TokenSet``: with rotating refresh
tokens the old one is spent, so always keep the new one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal

from ._arguments import expect
from ._bound import BoundCopy
from ._shared import async_client, sync_client
from .exceptions import ConfigurationError, InvalidToken, ProtocolError

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client

__all__ = ["TokenCheck", "TokenSet", "authorization_header"]

_KNOWN = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "scope", "id_token"}
)
#: Visible ASCII: all a header value can carry (RFC 6750 section 2.1 allows less).
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
#: What a token may be made of (RFC 6749 appendix A: VSCHAR).
_VSCHARS = re.compile(r"[\x20-\x7e]+")
#: The longest ``expires_in`` taken at its word (ten years, in seconds).
MAX_EXPIRES_IN = 10 * 365 * 86400


#: The JSON type of each field in ``to_dict`` (all but the client), and its name.
_STORED: dict[str, tuple[type | UnionType, str]] = {
    "access_token": (str, "a string"),
    "token_type": (str, "a string"),
    "expires_at": (str | None, "an ISO 8601 time or null"),
    "refresh_token": (str | None, "a string or null"),
    "scope": (str | None, "a string or null"),
    "id_token": (str | None, "a string or null"),
    "extra": (Mapping, "an object"),
    "id_token_claims": (Mapping | None, "an object or null"),
}


def _expiry(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError("TokenSet.from_dict: expires_at is no ISO 8601 time") from None
    # without an offset: UTC, as to_dict writes it (a naive time cannot be compared)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def authorization_header(token: str, scheme: str = "Bearer") -> str:
    """``"<scheme> <token>"``; ``InvalidToken`` (which never names the token) when
    the token, say one taken from a request header, has characters no token has."""
    if _HEADER_SAFE.fullmatch(token) is None or _HEADER_SAFE.fullmatch(scheme) is None:
        raise InvalidToken("The access token has characters no token can have.")
    return f"{scheme} {token}"


def _lifetime(value: Any) -> float | None:
    """``expires_in`` as seconds, or ``None`` when absent or not a sane number."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)  # a string of digits is seen in the wild
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value) or not 0 <= value <= MAX_EXPIRES_IN:
        return None
    return float(value)


def renewal_margin(tokens: TokenSet, now: float, margin: float) -> float:
    """Seconds before its expiry to replace a token just obtained: ``margin``, but at
    most half its lifetime, or a token living less than ``margin`` (a 20 s one, with
    30) would be due at once and fetched again for every request."""
    if tokens.expires_at is None:
        return margin
    return min(margin, max(0.0, tokens.expires_at.timestamp() - now) / 2)


@dataclass(frozen=True, slots=True, repr=False)
class TokenSet(BoundCopy):
    access_token: str
    token_type: str = "Bearer"
    #: When the access token expires (UTC), or ``None`` if the server did not say.
    expires_at: datetime | None = None
    refresh_token: str | None = None
    #: Granted scopes, space separated, when the server reported them.
    scope: str | None = None
    id_token: str | None = None
    #: The response's other members (compared, not hashed: a dict has no hash).
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: The ID token's claims, once the SDK has validated it.
    id_token_claims: Mapping[str, Any] | None = field(default=None, compare=False)
    #: The client that obtained these tokens (used by ``refresh`` and ``revoke``).
    client: Client | AsyncClient | None = field(default=None, compare=False)

    @classmethod
    def from_response(cls, body: Mapping[str, Any], now: float, *,
                      issued: bool = False) -> TokenSet:
        """Read a successful token response received at ``now`` (epoch seconds).
        ``issued``: it is a token endpoint's answer, whose tokens must be visible
        ASCII (RFC 6749 appendix A): no header could carry others."""
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ProtocolError("The token response has no access_token.")
        for name in ("access_token", "refresh_token") if issued else ():
            token = body.get(name)
            if isinstance(token, str) and token and not _VSCHARS.fullmatch(token):
                raise ProtocolError(f"The token response's {name} is not printable ASCII.")
        token_type = body.get("token_type", "Bearer")
        expires_in = _lifetime(body.get("expires_in"))
        expires_at = None if expires_in is None else datetime.fromtimestamp(now + expires_in, UTC)

        def text(name: str) -> str | None:
            value = body.get(name)
            return value if isinstance(value, str) else None

        return cls(
            access_token=access_token,
            token_type=token_type if isinstance(token_type, str) else "Bearer",
            expires_at=expires_at,
            refresh_token=text("refresh_token"),
            scope=text("scope"),
            id_token=text("id_token"),
            extra={k: v for k, v in body.items() if k not in _KNOWN},
        )

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split()) if self.scope else frozenset()

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        """True if the access token expires in ``seconds`` or less (never, if unknown)."""
        if self.expires_at is None:
            return False
        current = datetime.now(UTC).timestamp() if now is None else now
        return self.expires_at.timestamp() - current <= seconds

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value for this token."""
        scheme = "Bearer" if self.token_type.lower() == "bearer" else self.token_type
        return authorization_header(self.access_token, scheme)

    # (a frozen dataclass with slots would get its own, with the client)
    __getstate__ = BoundCopy.__getstate__
    __setstate__ = BoundCopy.__setstate__

    # -- JSON sessions ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field but the client, as JSON values (``expires_at`` in ISO 8601), for
        a session that stores JSON (Flask's, Starlette's); ``from_dict`` reads it back.
        It holds the tokens: keep it where you would keep them."""
        data = self.__getstate__()
        data["expires_at"] = None if self.expires_at is None else self.expires_at.isoformat()
        data["extra"] = dict(self.extra)
        if self.id_token_claims is not None:
            data["id_token_claims"] = dict(self.id_token_claims)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        """The tokens ``to_dict`` gave, unbound: ``refresh()`` and ``revoke()`` use the
        ``"default"`` connection (or ``using=``). Names it does not know are ignored (a
        later release's); a value of the wrong type is a ``ConfigurationError``."""
        expect(data, Mapping, "TokenSet.from_dict needs the mapping to_dict gave")
        values = {name: expect(data[name], kinds, f"TokenSet.from_dict: {name} must be {what}")
                  for name, (kinds, what) in _STORED.items() if name in data}
        if not values.get("access_token"):
            raise ConfigurationError("TokenSet.from_dict: the access_token is missing")
        if values.get("expires_at") is not None:
            values["expires_at"] = _expiry(values["expires_at"])
        return cls(**values)

    # -- bound operations -----------------------------------------------------
    # Run on the client that obtained the tokens, or, once that is gone (the tokens
    # were unpickled or read ``from_dict``), on connection ``using``'s shared client,
    # ``"default"`` unless named: the models' way (``_shared``).

    def _refreshable(self) -> TokenSet:
        if not self.refresh_token:
            raise ConfigurationError("These tokens have no refresh_token to refresh with.")
        return self

    def refresh(self, using: str | None = None) -> TokenSet:
        """New tokens from the refresh token; the old refresh token is spent.

        A new ID token must be about the same user; without one, this one is kept.
        """
        return sync_client(self.client, using, "refresh").refresh(self._refreshable())

    async def arefresh(self, using: str | None = None) -> TokenSet:
        client = async_client(self.client, using, "refresh")
        return await client.refresh(self._refreshable())

    def revoke(self, using: str | None = None) -> None:
        """Revoke the refresh token (its whole family) and the access token (RFC 7009)."""
        sync_client(self.client, using, "revoke").revoke(self)

    async def arevoke(self, using: str | None = None) -> None:
        await async_client(self.client, using, "revoke").revoke(self)

    def __repr__(self) -> str:
        expires = self.expires_at.isoformat() if self.expires_at else None
        refresh = "'***'" if self.refresh_token else "None"
        return (
            f"TokenSet(access_token='***', token_type={self.token_type!r}, "
            f"expires_at={expires!r}, refresh_token={refresh}, scope={self.scope!r})"
        )


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """The outcome of ``validate_token_set(access_token, refresh_token)``.

    - ``"valid"``: the access token is good; ``tokens`` holds the pair as given
      and ``claims`` the access token's claims.
    - ``"refreshed"``: the access token was not, the refresh token was; ``tokens``
      are the *new* tokens, which the caller must store (the old refresh token
      is spent).
    - ``"invalid"``: neither can be used; ``tokens`` is ``None`` and ``error``
      says why. The user must sign in again.
    """

    state: Literal["valid", "refreshed", "invalid"]
    tokens: TokenSet | None = None
    claims: Mapping[str, Any] | None = None
    error: Exception | None = field(default=None, repr=False)

    @property
    def is_valid(self) -> bool:
        return self.state != "invalid"
