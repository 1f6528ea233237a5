"""Issuing and checking tokens.

Access tokens are JWTs in the RFC 9068 shape signed with the active access key;
tokens issued for a user carry ``gid``, the grant (token family) they belong to,
so revoking the grant revokes them. Refresh tokens are opaque, stored as SHA-256
digests, and rotated on every use.

RFC 9068: https://www.rfc-editor.org/rfc/rfc9068
"""

from __future__ import annotations

import secrets as _secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bastion.oauth.claims import check_access_token_claims
from bastion.oauth.errors import InvalidGrant, InvalidToken
from bastion.oauth.jose import MAX_TOKEN_LENGTH, JoseError, parse_compact, verify_signature
from bastion.server.keys import KeyRing
from bastion.server.models import Grant, RefreshToken
from bastion.server.services import secrets
from bastion.server.services.clients import ClientCache, own_token_refused
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage

ACCESS_TOKEN_TYP = "at+jwt"


class TokenTooLarge(InvalidGrant):
    """The token would be longer than Bastion and the SDK accept (``MAX_TOKEN_LENGTH``):
    it is not handed out. Raised before anything is stored for it."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    claims: dict[str, Any]


async def issue_access_token(
    keys: KeyRing,
    settings: Settings,
    *,
    subject: str,
    client_id: str,
    scope: str,
    audience: str | None = None,
    extra: dict[str, Any] | None = None,
) -> IssuedToken:
    """Sign an access token; ``TokenTooLarge`` instead of one that Bastion and the SDK
    would refuse, so sign it before storing what it stands for (a grant, a refresh
    token): a refusal then leaves nothing behind."""
    now = int(time.time())
    ttl = settings.access_token_ttl
    claims: dict[str, Any] = {
        "iss": settings.issuer_url,
        "sub": subject,
        "aud": audience or settings.audience,
        "client_id": client_id,
        "iat": now,
        "exp": now + ttl,
        "jti": _secrets.token_urlsafe(16),
    }
    if scope:
        claims["scope"] = scope
    if extra:
        claims.update(extra)
    signer = await keys.signer("access")
    token = signer.sign(claims, typ=ACCESS_TOKEN_TYP)
    if len(token) > MAX_TOKEN_LENGTH:  # Bastion and the SDK would refuse it
        raise TokenTooLarge(
            f"The access token would be {len(token)} characters, over the "
            f"{MAX_TOKEN_LENGTH} that Bastion and its SDK accept: ask for fewer scopes, or "
            "an administrator must register fewer scopes for the client or reduce the "
            "user's roles in the organization.")
    return IssuedToken(token, ttl, claims)


def new_refresh_token(settings: Settings, grant: Grant, scope: str) -> tuple[str, RefreshToken]:
    plain = secrets.new_secret()
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=settings.refresh_token_ttl)
    if settings.refresh_token_max_lifetime is not None:  # the family's absolute end
        expires_at = min(expires_at, grant.auth_time
                         + timedelta(seconds=settings.refresh_token_max_lifetime))
    record = RefreshToken(
        digest=secrets.digest(plain),
        grant_id=grant.id,
        client_id=grant.client_id,
        user_id=grant.user_id,
        scope=scope,
        created_at=now,
        expires_at=expires_at,
    )
    return plain, record


async def verify_access_token(
    keys: KeyRing, settings: Settings, storage: Storage, token: str, *,
    clients: ClientCache | None = None, check_revoked: bool = True,
) -> dict[str, Any]:
    """The claims of one of our access tokens that is valid now; ``InvalidToken`` else.
    With ``clients``, a token of a deleted client is invalid too (a client's own
    tokens belong to no grant that its deletion could revoke), and so is a client's
    own token older than a rotation that ended its old secret at once."""
    try:
        compact = parse_compact(token)
        if compact.header.get("typ") != ACCESS_TOKEN_TYP:
            raise JoseError("not an access token")
        kid = compact.header.get("kid")
        verifiers = await keys.verifiers(kid if isinstance(kid, str) else None)
        verify_signature(compact, verifiers, await keys.algorithms("access"))
        claims = compact.claims()
    except JoseError as exc:
        raise InvalidToken() from exc
    # iss, aud, exp, nbf, iat: the same checks the SDK makes (a little leeway for
    # clocks of several instances).
    check_access_token_claims(claims, issuer=settings.issuer_url, audience=settings.audience,
                              now=time.time(), leeway=5.0)
    jti, gid = claims.get("jti"), claims.get("gid")
    if check_revoked and (
        not isinstance(jti, str)
        or await storage.is_revoked(jti, gid if isinstance(gid, str) else None)
    ):
        raise InvalidToken()
    if clients is not None:
        client_id = str(claims.get("client_id"))
        client = await clients.get(client_id)
        if client is not None and own_token_refused(client, claims):
            # This instance's copy may predate a rotation made elsewhere: read it anew.
            client = await clients.get(client_id, fresh=True)
        if client is None or own_token_refused(client, claims):
            raise InvalidToken()
    return claims
