"""The UserInfo endpoint (OpenID Connect Core 1.0 section 5.3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from bastion.oauth.errors import InsufficientScope, InvalidToken
from bastion.server.context import Context
from bastion.server.endpoints.bearer import verified_claims
from bastion.server.services.id_tokens import user_claims

router = APIRouter(tags=["oauth"])
USERINFO_PATH = "/oauth/userinfo"


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid, expired or revoked access token"},
    403: {"description": "The token lacks the openid scope, or is not a user's"},
}


@router.get(USERINFO_PATH, summary="Claims about the signed-in user", responses=_ERRORS)
async def userinfo(request: Request, response: Response) -> dict[str, Any]:
    ctx: Context = request.app.state.ctx
    response.headers["Cache-Control"] = "no-store"  # personal data, as the errors are
    claims = await verified_claims(request)
    scope = str(claims.get("scope", ""))
    if "openid" not in scope.split() or not claims.get("gid"):
        raise InsufficientScope("The token must carry the openid scope of a user.",
                                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", '
                                         'scope="openid"'})
    user = await ctx.storage.get_user(str(claims["sub"]))
    if user is None or user.deleted_at is not None:
        raise InvalidToken(headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return {"sub": user.id, **user_claims(user, scope)}


@router.post(USERINFO_PATH, summary="Claims about the signed-in user (POST)", responses=_ERRORS)
async def userinfo_post(request: Request, response: Response) -> dict[str, Any]:
    return await userinfo(request, response)
