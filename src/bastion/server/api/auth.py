"""Who is calling the REST API: an admin client (scope ``bastion:admin``), an
administrator user (scope ``bastion:admin`` too), or a user acting on their own
account (any token of theirs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from bastion.server.api.problems import ApiError
from bastion.server.checks.scope import ADMIN_SCOPE
from bastion.server.context import Context
from bastion.server.endpoints.bearer import verified_claims
from bastion.server.models import User


@dataclass(frozen=True, slots=True)
class Principal:
    claims: dict[str, Any]
    user: User | None  # None for a client acting for itself
    is_admin: bool

    @property
    def client_id(self) -> str:
        return str(self.claims.get("client_id", ""))


async def principal(request: Request) -> Principal:
    ctx: Context = request.app.state.ctx
    claims = await verified_claims(request)
    user = None
    if claims.get("gid"):  # issued for a user
        user = await ctx.storage.get_user(str(claims["sub"]))
        if user is None or user.deleted_at is not None:
            raise ApiError(401, "Unauthorized", "The token's user no longer exists.")
    if user is not None:  # an administrator's token, if asked for as one
        return Principal(claims, user, user.is_administrator and await _admin_scope(ctx, claims))
    return Principal(claims, user, await _admin_scope(ctx, claims))


async def _admin_scope(ctx: Context, claims: dict[str, Any]) -> bool:
    """Whether the token carries ``bastion:admin`` and its client holds it still: a
    change that takes it away applies to the tokens issued before. For a user's token
    too: any other app an administrator signs in to gets a token that cannot run the
    API as them."""
    if ADMIN_SCOPE not in str(claims.get("scope", "")).split():
        return False
    client = await ctx.clients.get(str(claims.get("client_id")))
    return client is not None and ADMIN_SCOPE in client.scopes


def require_self_or_admin(who: Principal, user_id: str) -> str:
    """The user id to act on (``me`` is the caller); 403 unless allowed."""
    if user_id == "me":
        if who.user is None:
            raise ApiError(400, "Bad Request", "'me' needs a user's token, not a client's.")
        return who.user.id
    if who.is_admin or (who.user is not None and who.user.id == user_id):
        return user_id
    raise ApiError(403, "Forbidden", "This needs the user themselves or an administrator "
                   "token with the bastion:admin scope.")
