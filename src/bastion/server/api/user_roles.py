"""A user's roles in an organization: list, attach, remove, update at once, and
optionally re-issue the user's tokens so the new roles apply immediately."""

from __future__ import annotations

from fastapi import Request

from bastion.server.api.auth import require_self_or_admin
from bastion.server.api.common import (
    Who,
    actor,
    api_router,
    context,
    require_admin,
)
from bastion.server.api.schemas import RoleOut, TokenPair, UserRoles, UserRolesChange
from bastion.server.grants._issue import reissuable, reissue
from bastion.server.services import audit, rbac
from bastion.server.services.errors import NotFound
from bastion.server.services.users import get_user

router = api_router("/api/v1/organizations/{org}/users/{user_id}/roles", "organizations")


@router.get("", summary="A user's roles in an organization")
async def list_user_roles(org: str, user_id: str, request: Request, who: Who) -> UserRoles:
    """``user_id`` may be ``me``, the caller."""
    user_id = require_self_or_admin(who, user_id)
    ctx = context(request)
    found = await ctx.storage.get_organization(org)
    if found is None and who.is_admin:
        raise NotFound("organization", org)
    # A user learns their own roles, not which organizations exist: the same answer and
    # the same reads for one that does not as for one they are not in.
    await get_user(ctx.storage, user_id)
    roles = await ctx.storage.user_roles(user_id, found.id if found else "")
    return UserRoles(items=[RoleOut.of(r) for r in roles], count=len(roles))


@router.post("", summary="Attach and/or remove roles of a user (one transaction)")
async def change_user_roles(org: str, user_id: str, body: UserRolesChange, request: Request,
                            who: Who) -> UserRoles:
    """`add` and `remove` take role ids or names. With `reissue`, the user's token family
    is revoked and a new token pair carrying the new roles is returned; none when the
    change left the user without a role in the organization (they left it). `user_id`
    may be `me`, the administrator user calling."""
    require_admin(who)
    user_id = require_self_or_admin(who, user_id)
    ctx = context(request)
    found = await rbac.organization(ctx.storage, org)
    user = await get_user(ctx.storage, user_id)
    stored = await reissuable(ctx, user, body.reissue.refresh_token, found.id) \
        if body.reissue else None
    change = await rbac.change_user_roles(ctx.storage, user.id, found.id, body.add,
                                          body.remove, must_fit=body.reissue is not None)
    roles = change.roles
    if change.added or change.removed:  # (a call only to reissue changes no role)
        await audit.record(ctx.storage, actor(who, request), "user.roles.update", user.id,
                           organization=found.id, add=change.added, remove=change.removed)
    tokens = None
    if stored is not None:
        issued = await reissue(ctx, user, stored)
        tokens = TokenPair(**issued) if issued is not None else None
        await audit.record(ctx.storage, actor(who, request), "token.reissue", user.id,
                           issued=issued is not None)
    return UserRoles(items=[RoleOut.of(r) for r in roles], count=len(roles), tokens=tokens)
