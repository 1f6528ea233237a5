"""The authorization code grant (RFC 6749 section 4.1.3, with PKCE per RFC 7636).

A code is single use, short-lived and bound to its client, redirect URI and PKCE
challenge. A replayed code fails and revokes every token the first use issued
(RFC 6749 section 4.1.2; RFC 9700 section 4.5).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bastion.oauth import pkce
from bastion.oauth.errors import InvalidGrant, InvalidRequest
from bastion.server.context import Context
from bastion.server.grants._issue import (
    access_token,
    grant_claims,
    may_refresh,
    reuse_event,
    reused,
    user_token_response,
)
from bastion.server.grants._request import TokenRequest
from bastion.server.services import secrets
from bastion.server.services.tokens import TokenTooLarge, new_refresh_token

GRANT_TYPE = "authorization_code"
PARAMETERS = ("code", "redirect_uri", "code_verifier")


async def handle(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    client, form = request.client, request.form
    code = form.get("code")
    if not code:
        raise InvalidRequest("Missing code.")
    now = datetime.now(UTC)
    # Another client's code, or an unused expired one, is refused without using it up:
    # only a used code presented again by its own client is a replay (however late).
    stored, first_use = await ctx.storage.consume_code(secrets.digest(code), now,
                                                       client.client_id)
    if stored is None or stored.client_id != client.client_id:
        raise InvalidGrant("The code is invalid.")
    if not first_use:
        if stored.consumed_at is None:
            raise InvalidGrant("The code has expired.")
        event = reuse_event(request, GRANT_TYPE, stored.user_id, stored.grant_id)
        if await ctx.storage.revoke_grant(stored.grant_id, now, event):  # once per family
            reused(request, GRANT_TYPE, stored.grant_id)
        raise InvalidGrant("The code was already used; the tokens it issued are revoked.")
    given = form.get("redirect_uri")
    if (given is not None or stored.redirect_uri_sent) and given != stored.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the authorization request.")
    verifier = form.get("code_verifier")
    if stored.code_challenge is None:
        if verifier is not None:  # PKCE downgrade (RFC 9700 section 2.1.1)
            raise InvalidGrant("code_verifier sent, but the authorization had no challenge.")
    elif verifier is None or not pkce.verify(verifier, stored.code_challenge):
        raise InvalidGrant("code_verifier does not match the code challenge.")
    grant = await ctx.storage.get_grant(stored.grant_id)
    user = await ctx.storage.get_user(stored.user_id)
    if grant is None or grant.revoked_at or user is None or user.deleted_at:
        raise InvalidGrant("The authorization is no longer valid.")
    claims = await grant_claims(ctx, grant, user.id)  # before a refresh token is stored
    try:
        access = await access_token(ctx, client, grant, stored.scope, claims)
    except TokenTooLarge:  # the code is spent: the grant could issue nothing more
        await ctx.storage.revoke_grant(grant.id, now)
        raise
    refresh = None
    if may_refresh(client):
        refresh, record = new_refresh_token(ctx.settings, grant, stored.scope)
        if not await ctx.storage.create_refresh_token(record):  # a replay revoked it meanwhile
            raise InvalidGrant("The authorization is no longer valid.")
    return await user_token_response(
        ctx, client, grant, user, stored.scope, access, refresh_token=refresh,
        nonce=stored.nonce,
    )
