"""The token response shared by the grants that act for a user."""

from __future__ import annotations

import logging
import secrets as _secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bastion.oauth.errors import InvalidGrant
from bastion.server.checks.scope import still_allowed
from bastion.server.context import Context
from bastion.server.grants._request import TokenRequest
from bastion.server.metrics import TOKEN_REUSE
from bastion.server.models import Client, Event, Grant, RefreshToken, User
from bastion.server.services import audit, rbac, secrets
from bastion.server.services.id_tokens import issue_id_token
from bastion.server.services.tokens import (
    IssuedToken,
    TokenTooLarge,
    issue_access_token,
    new_refresh_token,
)

log = logging.getLogger("bastion.tokens")


class LeftOrganization(InvalidGrant):
    """The user holds no role in the grant's organization any more."""


class TooManyClaims(InvalidGrant):
    """The user's roles there are more than a token can carry (``rbac.CLAIMS_BUDGET``)."""


NO_REFRESH = ("The client is no longer registered for the refresh_token grant type, so its "
              "refresh tokens cannot be reissued.")
NO_SCOPE_LEFT = ("The client is no longer registered for any scope this sign-in granted: "
                 "sign in again.")


def none_left(scope: str, allowed: str) -> bool:
    """A grant of ``scope`` may issue nothing now: its tokens would grant nothing, and
    an empty scope is no scope (RFC 6749 section 3.3)."""
    return bool(scope.split()) and not allowed


async def allowed_scope(ctx: Context, client: Client, user: User, grant_id: str,
                        scope: str) -> str:
    """A stored grant's ``scope`` as it may be refreshed now (``still_allowed``); a
    grant left with none of its scopes is revoked."""
    allowed = still_allowed(scope, client, user)
    if none_left(scope, allowed):
        await ctx.storage.revoke_grant(grant_id, datetime.now(UTC))
        raise InvalidGrant(NO_SCOPE_LEFT)
    return allowed


async def access_token(ctx: Context, client: Client, grant: Grant, scope: str,
                       claims: dict[str, Any]) -> IssuedToken:
    """The access token of ``grant`` with its organization ``claims`` (``grant_claims``).
    Signed before anything is stored for the grant: one too long to be accepted
    (``TokenTooLarge``) leaves no grant or refresh token that would only mint more."""
    return await issue_access_token(
        ctx.keys, ctx.settings, subject=grant.user_id, client_id=client.client_id, scope=scope,
        extra={"gid": grant.id, **claims},
    )


async def user_token_response(
    ctx: Context, client: Client, grant: Grant, user: User, scope: str, access: IssuedToken,
    *, refresh_token: str | None, nonce: str | None = None,
) -> dict[str, Any]:
    """The token response around ``access`` (``access_token``), once it is stored."""
    body: dict[str, Any] = {
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": access.expires_in,
        "scope": scope,
    }
    if refresh_token:
        body["refresh_token"] = refresh_token
    if "openid" in scope.split():
        body["id_token"] = await issue_id_token(
            ctx.keys, ctx.settings, user=user, client_id=client.client_id, scope=scope,
            auth_time=int(grant.auth_time.timestamp()), access_token=access.token,
            nonce=nonce, session_id=grant.session_id,
        )
    return body


async def grant_claims(ctx: Context, grant: Grant, user_id: str) -> dict[str, Any]:
    """The organization claims of ``grant`` (none without an organization), read again
    at every issue so role changes apply on refresh. A grant whose user left the
    organization is revoked: it cannot issue for it any more."""
    if not grant.organization_id:
        return {}
    try:
        return await organization_claims(ctx, user_id, grant.organization_id)
    except LeftOrganization:
        await ctx.storage.revoke_grant(grant.id, datetime.now(UTC))
        raise


async def organization_claims(ctx: Context, user_id: str, org_id: str) -> dict[str, Any]:
    """``org``, ``roles`` and ``permissions`` for a grant in an organization;
    ``LeftOrganization`` if the user is no longer a member (holds no role in it, as
    ``member_organization`` decides when the grant is made); ``TooManyClaims`` if a
    token cannot carry them (a role grew: nothing is revoked, an administrator can
    reduce it)."""
    claims = await rbac.token_claims(ctx.storage, user_id, org_id)
    if not claims["roles"]:
        raise LeftOrganization("The user is no longer a member of the grant's organization.")
    if rbac.claims_size(claims) > rbac.CLAIMS_BUDGET:
        raise TooManyClaims("The user's roles in this organization carry more permissions "
                            "than a token can hold; an administrator must reduce them.")
    return claims


def may_refresh(client: Client) -> bool:
    return "refresh_token" in client.grant_types


async def reissuable(ctx: Context, user: User, refresh_token: str,
                     organization_id: str) -> RefreshToken:
    """The user's valid refresh token, issued in ``organization_id``, to reissue from;
    ``InvalidGrant`` otherwise. Checked before anything changes, so a refused reissue
    changes nothing."""
    stored = await ctx.storage.get_refresh_token(secrets.digest(refresh_token))
    now = datetime.now(UTC)
    if (stored is None or stored.user_id != user.id or stored.used_at or stored.revoked_at
            or stored.expires_at <= now):
        raise InvalidGrant("The refresh token to reissue is not a valid token of this user.")
    old = await ctx.storage.get_grant(stored.grant_id)
    client = await ctx.clients.get(stored.client_id)
    if old is None or old.revoked_at or client is None:
        raise InvalidGrant("The refresh token to reissue is not a valid token of this user.")
    if not may_refresh(client):  # as the token endpoint would refuse it
        raise InvalidGrant(NO_REFRESH)
    if old.organization_id != organization_id:  # its new tokens would not carry the roles
        raise InvalidGrant("The refresh token to reissue was not issued for this organization.")
    if none_left(stored.scope, still_allowed(stored.scope, client, user)):
        raise InvalidGrant(NO_SCOPE_LEFT)
    return stored


async def reissue(ctx: Context, user: User, stored: RefreshToken) -> dict[str, Any] | None:
    """Revoke the family of ``stored`` and issue a new pair from a new grant with the
    same client, scope and organization (so new roles apply at once). ``None`` when
    the user holds no role in that organization any more: they left it, so the family
    is revoked and nothing can be issued for it."""
    now = datetime.now(UTC)
    old = await ctx.storage.get_grant(stored.grant_id)
    client = await ctx.clients.get(stored.client_id)
    if old is None or client is None:
        raise InvalidGrant("The refresh token to reissue is not a valid token of this user.")
    claims: dict[str, Any] = {}
    if old.organization_id:
        try:
            claims = await organization_claims(ctx, user.id, old.organization_id)
        except LeftOrganization:
            await ctx.storage.revoke_grant(old.id, now)
            return None
    grant = replace(old, id=_secrets.token_urlsafe(18), created_at=now, revoked_at=None)
    # ``reissuable`` refused a grant left with no scope or a client that may no longer
    # refresh; the client may have been narrowed since, while the roles changed.
    if not may_refresh(client):
        raise InvalidGrant(f"The roles were changed, but no tokens were issued: {NO_REFRESH}")
    scope = await allowed_scope(ctx, client, user, old.id, stored.scope)
    try:
        access = await access_token(ctx, client, grant, scope, claims)
    except TokenTooLarge as exc:  # the old family is left as it was
        raise InvalidGrant("The roles were changed, but no tokens were issued: "
                           f"{exc.description}") from None
    plain, record = new_refresh_token(ctx.settings, grant, scope)
    if not await ctx.storage.reissue_grant(old.id, grant, record, now):
        raise InvalidGrant("The roles were changed, but no tokens were issued: another "
                           "request reissued or revoked the refresh token meanwhile.")
    return await user_token_response(ctx, client, grant, user, scope, access,
                                     refresh_token=plain)


def reuse_event(request: TokenRequest, token: str, user_id: str, grant_id: str) -> Event:
    """The audit event of a used ``token`` (``refresh_token`` or ``authorization_code``)
    that came back and revoked its family: a sign that it was stolen (never the token
    itself). Stored in the revocation's transaction, once per family: replays after it
    add nothing, so a stolen token cannot flood the audit log."""
    actor = audit.Actor(request.client.client_id, "client", request.client.client_id,
                        request.client_ip)
    return audit.event(actor, "token.reuse", user_id, token=token, grant=grant_id)


def reused(request: TokenRequest, token: str, grant_id: str) -> None:
    """Tell the metrics and the log of a revocation for reuse (``reuse_event``)."""
    TOKEN_REUSE.labels(token).inc()
    log.warning("a used %s was presented again by client %s from %s: token family %s "
                "revoked", token, request.client.client_id, request.client_ip, grant_id)
