"""The resource owner password grant (RFC 6749 section 4.3), for first-party apps only.

Off unless a client is registered with ``--grant-type password``; throttled like
the login form (counters shared through the database), except that a confidential
client's failures count against that client's budget instead of its server's IP.
"""

from __future__ import annotations

import secrets as _secrets
from datetime import UTC, datetime
from typing import Any

from bastion.oauth.errors import AccessDenied, InvalidGrant, InvalidRequest, SlowDown
from bastion.server.checks.scope import for_user, granted_scope
from bastion.server.context import Context
from bastion.server.grants._issue import (
    access_token,
    may_refresh,
    organization_claims,
    user_token_response,
)
from bastion.server.grants._request import TokenRequest
from bastion.server.models import Grant, User
from bastion.server.services import audit, login
from bastion.server.services.authorization import member_organization
from bastion.server.services.tokens import new_refresh_token

GRANT_TYPE = "password"
PARAMETERS = ("username", "password", "scope", "organization")


async def handle(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    client, form = request.client, request.form
    username, password = form.get("username"), form.get("password")
    if not username or not password:
        raise InvalidRequest("username and password are required.")
    scope = granted_scope(form.get("scope"), client)
    who = audit.Actor(None, "anonymous", client.client_id, request.client_ip)
    try:
        # A confidential client's server calls for all its users from one address: the
        # client's own budget stands in for that address's (a public client runs on
        # the user's device, so its address is the user's).
        user = await login.authenticate(
            ctx.storage, ctx.passwords, ctx.settings, username, password, request.client_ip,
            client_id=None if client.is_public else client.client_id)
    except login.TooManyAttempts as exc:
        if login.first_refusal(ctx.storage, exc):
            await audit.record(ctx.storage, who, "login.throttled", login.tried(username))
        raise SlowDown(str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    except login.LoginFailed as exc:
        await audit.record(ctx.storage, who, "login.failure", login.tried(username),
                           method="password")
        raise InvalidGrant(str(exc)) from None
    scope = for_user(scope, user, asked="scope" in form)
    org_id = None
    if "organization" in form:
        org_id = await member_organization(ctx.storage, user.id, form["organization"])
        if org_id is None:
            raise AccessDenied("The user is not a member of that organization.")
    # Before the grant is stored: tokens that could not be issued leave nothing behind.
    claims = await organization_claims(ctx, user.id, org_id) if org_id else {}
    now = datetime.now(UTC)
    grant = Grant(id=_secrets.token_urlsafe(18), client_id=client.client_id, user_id=user.id,
                  session_id=None, scope=scope, auth_time=now, created_at=now,
                  organization_id=org_id)
    access = await access_token(ctx, client, grant, scope, claims)
    refresh, record = new_refresh_token(ctx.settings, grant, scope) if may_refresh(client) \
        else (None, None)
    success = audit.event(audit.Actor(user.id, "user", client.client_id, request.client_ip),
                          "login.success", user.id, method="password")
    if not await ctx.storage.create_grant(grant, record, success,
                                          password_hash=user.password_hash):
        # Deleted, or given a new password, meanwhile: the answer for a wrong password.
        if org_id is None or not await _unchanged(ctx, user):
            raise InvalidGrant(str(login.LoginFailed()))
        raise AccessDenied("The user is not a member of that organization.")  # left it
    return await user_token_response(ctx, client, grant, user, scope, access,
                                     refresh_token=refresh)


async def _unchanged(ctx: Context, user: User) -> bool:
    now = await ctx.storage.get_user(user.id)
    return now is not None and now.deleted_at is None and now.password_hash == user.password_hash
