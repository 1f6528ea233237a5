"""Revoking every session and token of a user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from bastion.server.api.auth import Principal, principal, require_self_or_admin
from bastion.server.api.problems import ApiError
from bastion.server.context import Context

router = APIRouter(prefix="/api/v1", tags=["users"])

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"},
           403: {"description": "Neither the user nor an administrator"},
           404: {"description": "No such user"}}


@router.delete("/users/{user_id}/sessions", status_code=204, responses=_ERRORS,
               summary="Sign a user out everywhere: end their sessions, revoke their tokens")
async def revoke_all_sessions(
    user_id: str, request: Request, who: Annotated[Principal, Depends(principal)]
) -> Response:
    ctx: Context = request.app.state.ctx
    target = require_self_or_admin(who, user_id)
    if await ctx.storage.get_user(target) is None:
        raise ApiError(404, "Not Found", f"No user with id {target!r}.")
    await ctx.storage.revoke_user_sessions(target, datetime.now(UTC))
    return Response(status_code=204)
