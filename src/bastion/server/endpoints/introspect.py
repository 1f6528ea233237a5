"""Token introspection (RFC 7662), for resource servers that must see revocation.

Any authenticated confidential client may introspect. Access tokens answer with
their claims while valid and unrevoked; refresh tokens only for their own client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bastion.oauth.errors import InvalidClient, InvalidRequest, InvalidToken
from bastion.server.checks.client_auth import BASIC_CHALLENGE
from bastion.server.context import Context
from bastion.server.endpoints._form import FormEndpoint
from bastion.server.grants._request import TokenRequest
from bastion.server.services import secrets
from bastion.server.services.tokens import verify_access_token

INTROSPECT_PATH = "/oauth/introspect"
_INACTIVE: dict[str, Any] = {"active": False}


async def introspect(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    if request.client.is_public:
        # RFC 6749 5.2: a 401 says how to authenticate (a secret, which it lacks).
        raise InvalidClient("Public clients cannot introspect tokens.", headers=BASIC_CHALLENGE)
    token = request.form.get("token")
    if not token:
        raise InvalidRequest("Missing token.")
    if token.count(".") != 2:
        return await _refresh_token(ctx, request, token)
    try:
        claims = await verify_access_token(ctx.keys, ctx.settings, ctx.storage, token,
                                           clients=ctx.clients)
    except InvalidToken:
        return _INACTIVE
    if claims.get("gid"):
        user = await ctx.storage.get_user(str(claims["sub"]))
        if user is None or user.deleted_at is not None:
            return _INACTIVE
    return {"active": True, "token_type": "Bearer", **claims}


async def _refresh_token(ctx: Context, request: TokenRequest, token: str) -> dict[str, Any]:
    family = await ctx.storage.get_refresh_family(secrets.digest(token))
    if family is None:
        return _INACTIVE
    # The grant too: a replayed code revokes it while its first exchange may still be
    # storing the refresh token it issued.
    stored, grant, user = family
    if (stored.client_id != request.client.client_id or stored.used_at or stored.revoked_at
            or grant.revoked_at or stored.expires_at <= datetime.now(UTC)
            or user.deleted_at is not None):
        return _INACTIVE
    # No token_type: RFC 7662 section 2.2 takes it from RFC 6749's access token types.
    return {"active": True, "client_id": stored.client_id,
            "sub": stored.user_id, "scope": stored.scope, "iss": ctx.settings.issuer_url,
            "iat": int(stored.created_at.timestamp()), "exp": int(stored.expires_at.timestamp())}


def endpoint(ctx: Context) -> FormEndpoint:
    return FormEndpoint(ctx, introspect)
