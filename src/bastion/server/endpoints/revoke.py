"""Token revocation (RFC 7009).

A refresh token revokes its whole grant (every token of the family); an access
token is remembered as revoked until it expires. A client may only revoke its own
tokens. Unknown or foreign tokens get the same 200 (RFC 7009 section 2.2). Only a
revocation that revokes something is audited: a public client needs no secret, and
repeating one must not fill the audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bastion.oauth.errors import InvalidRequest, InvalidToken
from bastion.server.context import Context
from bastion.server.endpoints._form import FormEndpoint
from bastion.server.grants._request import TokenRequest
from bastion.server.models import Event
from bastion.server.services import audit, secrets
from bastion.server.services.tokens import verify_access_token

REVOKE_PATH = "/oauth/revoke"


async def revoke(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    token = request.form.get("token")
    if not token:
        raise InvalidRequest("Missing token.")
    now = datetime.now(UTC)
    if token.count(".") != 2:  # opaque: a refresh token
        stored = await ctx.storage.get_refresh_token(secrets.digest(token))
        if stored is not None and stored.client_id == request.client.client_id:
            await ctx.storage.revoke_grant(stored.grant_id, now,
                                           _event(request, "refresh_token", stored.user_id))
        return {}
    try:
        claims = await verify_access_token(ctx.keys, ctx.settings, ctx.storage, token,
                                           check_revoked=False)
    except InvalidToken:
        return {}
    if claims.get("client_id") == request.client.client_id:
        await ctx.storage.revoke_access_token(
            str(claims["jti"]), datetime.fromtimestamp(claims["exp"], UTC),
            _event(request, "access_token", str(claims.get("sub"))))
    return {}


def _event(request: TokenRequest, kind: str, subject: str) -> Event:
    """The audit event of a revocation, stored with it (once: not for a token revoked
    before)."""
    client = request.client.client_id
    return audit.event(audit.Actor(client, "client", client, request.client_ip),
                       "token.revoke", subject, token_type=kind)


def endpoint(ctx: Context) -> FormEndpoint:
    return FormEndpoint(ctx, revoke, browser=True)
