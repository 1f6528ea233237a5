"""OpenID Connect ID tokens (Core 1.0 section 2), signed with the ID-token key.

https://openid.net/specs/openid-connect-core-1_0.html#IDToken
"""

from __future__ import annotations

import time
from typing import Any

from bastion.oauth.jose import JoseError, UnknownKey, parse_compact, token_hash, verify_signature
from bastion.server.keys import KeyRing
from bastion.server.models import User
from bastion.server.services.sessions import public_sid
from bastion.server.settings import Settings


def user_claims(user: User, scope: str) -> dict[str, Any]:
    """The standard claims the scope allows (Core 5.4)."""
    scopes = set(scope.split())
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims["preferred_username"] = user.username
        claims["updated_at"] = int(user.updated_at.timestamp())
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified_at is not None
    return claims


async def issue_id_token(
    keys: KeyRing, settings: Settings, *, user: User, client_id: str, scope: str,
    auth_time: int, access_token: str, nonce: str | None, session_id: str | None,
) -> str:
    now = int(time.time())
    signer = await keys.signer("id")
    claims: dict[str, Any] = {
        "iss": settings.issuer_url,
        "sub": user.id,
        "aud": client_id,
        "azp": client_id,
        "iat": now,
        "exp": now + settings.id_token_ttl,
        "auth_time": auth_time,
        "at_hash": token_hash(access_token, signer.alg),
        **user_claims(user, scope),
    }
    if nonce:
        claims["nonce"] = nonce
    if session_id:
        claims["sid"] = public_sid(session_id)
    return signer.sign(claims, typ="JWT")


async def hint_claims(keys: KeyRing, settings: Settings, hint: str | None) -> dict[str, Any] | None:
    """The claims of an ``id_token_hint`` if it is an ID token we issued (an expired one
    too: the hint names a user, it grants nothing), else ``None``."""
    return (await check_hint(keys, settings, hint))[0]


async def check_hint(keys: KeyRing, settings: Settings, hint: str | None
                     ) -> tuple[dict[str, Any] | None, bool]:
    """``(claims, failed)``: the claims as ``hint_claims``; ``failed`` when the hint
    fails validation (malformed, forged, not an ID token of ours), not when it is just
    signed by a key no longer published (an ID token kept since before a rotation)."""
    if not hint:
        return None, False
    try:
        compact = parse_compact(hint)
        if compact.header.get("typ") != "JWT":  # an ID token's; not a logout or access token
            return None, True
        kid = compact.header.get("kid")
        verify_signature(compact, await keys.verifiers(kid if isinstance(kid, str) else None),
                         await keys.algorithms("id"))
        claims = compact.claims()
    except UnknownKey:  # a kid we no longer publish; none at all is no ID token of ours
        return None, not isinstance(compact.header.get("kid"), str)
    except JoseError:
        return None, True
    if (not isinstance(claims.get("aud"), str) or not isinstance(claims.get("sub"), str)
            or claims.get("iss") != settings.issuer_url):
        return None, True
    return claims, False
