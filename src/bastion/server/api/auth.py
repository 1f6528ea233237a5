"""Who is calling the REST API: an admin client (scope ``bastion:admin``), an
administrator user, or a user acting on their own account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from bastion.server.api.problems import ApiError
from bastion.server.context import Context
from bastion.server.endpoints.bearer import verified_claims
from bastion.server.models import User

ADMIN_SCOPE = "bastion:admin"


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
    if user is not None:  # a user's token: an administrator
        return Principal(claims, user, user.is_administrator)
    # A client's own token needs the admin scope, and the client must hold it still: a
    # change that takes it away applies to the tokens issued before.
    scopes = str(claims.get("scope", "")).split()
    client = await ctx.clients.get(str(claims.get("client_id")))
    is_admin = ADMIN_SCOPE in scopes and client is not None and ADMIN_SCOPE in client.scopes
    return Principal(claims, user, is_admin)


def require_self_or_admin(who: Principal, user_id: str) -> str:
    """The user id to act on (``me`` is the caller); 403 unless allowed."""
    if user_id == "me":
        if who.user is None:
            raise ApiError(400, "Bad Request", "'me' needs a user's token, not a client's.")
        return who.user.id
    if who.is_admin or (who.user is not None and who.user.id == user_id):
        return user_id
    raise ApiError(403, "Forbidden", "This needs an administrator or the user themselves.")
