"""The refresh token grant (RFC 6749 section 6) with rotation and reuse detection.

Every use returns a new refresh token and retires the old one. Presenting a
retired token again revokes the whole family (RFC 9700 section 4.14.2); of
several concurrent uses of one token exactly one succeeds.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from bastion.oauth.errors import InvalidGrant, InvalidRequest
from bastion.server.checks.scope import narrowed_scope, still_allowed
from bastion.server.context import Context
from bastion.server.grants._issue import (
    access_token,
    allowed_scope,
    grant_claims,
    reuse_event,
    reused,
    user_token_response,
)
from bastion.server.grants._request import TokenRequest
from bastion.server.services import secrets
from bastion.server.services.tokens import new_refresh_token

GRANT_TYPE = "refresh_token"
PARAMETERS = ("refresh_token", "scope")


async def handle(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    client, form = request.client, request.form
    token = form.get("refresh_token")
    if not token:
        raise InvalidRequest("Missing refresh_token.")
    digest = secrets.digest(token)
    family = await ctx.storage.get_refresh_family(digest)
    if family is None or family[0].client_id != client.client_id:
        raise InvalidGrant("The refresh token is invalid.")
    stored, grant, user = family
    now = datetime.now(UTC)
    live = not (stored.used_at or stored.revoked_at or stored.expires_at <= now
                or grant.revoked_at or user.deleted_at)
    # What the grant may still carry: the client's registration and the user's
    # administrator flag may have narrowed it since (security.md, least privilege).
    allowed = await allowed_scope(ctx, client, user, grant.id, stored.scope) if live \
        else still_allowed(stored.scope, client, user)
    scope = allowed
    # RFC 6749 section 6: a narrower scope may be asked for. Not judged for a spent
    # token: whatever it asks, it goes on to be detected as reused.
    if "scope" in form and live:
        scope = narrowed_scope(form["scope"], allowed)
    # Claims that cannot be issued, or a token too long to be accepted, fail the refresh
    # before the token is spent (a reuse still goes on to be detected); a user who left
    # the organization loses the grant.
    access = await access_token(ctx, client, grant, scope,
                                await grant_claims(ctx, grant, user.id)) if live else None
    # The narrower scope asked for is for this access token only: the new refresh
    # token keeps the scope of the one it replaces ("identical", RFC 6749 section 6),
    # less what may no longer be granted, for good (re-promoted, a user signs in again).
    plain, record = new_refresh_token(ctx.settings, grant, allowed)
    result = await ctx.storage.rotate_refresh_token(digest, record, now, functools.partial(
        reuse_event, request, GRANT_TYPE, stored.user_id, grant.id))
    if result == "reused":  # (once per family: "replayed" after it is revoked)
        reused(request, GRANT_TYPE, grant.id)
    if result in ("reused", "replayed"):
        raise InvalidGrant("The refresh token was already used; its whole family is revoked.")
    if result == "invalid" or access is None or grant.revoked_at or user.deleted_at:
        raise InvalidGrant("The refresh token is expired or revoked.")
    return await user_token_response(ctx, client, grant, user, scope, access,
                                     refresh_token=plain)
