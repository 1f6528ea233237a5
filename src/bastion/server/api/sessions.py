"""Revoking every session and token of a user."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request, Response

from bastion.server.api.auth import require_self_or_admin
from bastion.server.api.common import Who, actor, api_router, context
from bastion.server.services import audit
from bastion.server.services.users import get_user

router = api_router("/api/v1", "users")


@router.delete("/users/{user_id}/sessions", status_code=204,
               summary="Sign a user out everywhere: end their sessions, revoke their tokens")
async def revoke_all_sessions(user_id: str, request: Request, who: Who) -> Response:
    """`me` (a user's own token) or a user id (an administrator)."""
    ctx = context(request)
    target = require_self_or_admin(who, user_id)
    await get_user(ctx.storage, target)
    await ctx.storage.revoke_user_sessions(target, datetime.now(UTC))
    ctx.outbox.poke()  # back-channel logouts
    await audit.record(ctx.storage, actor(who, request), "token.revoke_all", target)
    return Response(status_code=204)
