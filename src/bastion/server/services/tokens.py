"""Issuing access tokens: JWTs in the RFC 9068 shape, signed with the active key.

RFC 9068: https://www.rfc-editor.org/rfc/rfc9068
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from bastion.server.keys import KeyRing
from bastion.server.settings import Settings


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
    now = int(time.time())
    ttl = settings.access_token_ttl
    claims: dict[str, Any] = {
        "iss": settings.issuer_url,
        "sub": subject,
        "aud": audience or settings.audience,
        "client_id": client_id,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
    }
    if scope:
        claims["scope"] = scope
    if extra:
        claims.update(extra)
    signer = await keys.signer("access")
    return IssuedToken(signer.sign(claims, typ="at+jwt"), ttl, claims)
