"""The token response shared by the grants that act for a user."""

from __future__ import annotations

from typing import Any

from bastion.server.context import Context
from bastion.server.models import Client, Grant, User
from bastion.server.services.id_tokens import issue_id_token
from bastion.server.services.tokens import issue_access_token


async def user_token_response(
    ctx: Context, client: Client, grant: Grant, user: User, scope: str, *,
    refresh_token: str | None, nonce: str | None = None,
) -> dict[str, Any]:
    access = await issue_access_token(
        ctx.keys, ctx.settings, subject=user.id, client_id=client.client_id, scope=scope,
        extra={"gid": grant.id},
    )
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


def may_refresh(client: Client) -> bool:
    return "refresh_token" in client.grant_types
