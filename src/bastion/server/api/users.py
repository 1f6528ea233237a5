"""Users: get, search, count, create, update, soft delete, restore, erase and export."""

from __future__ import annotations

from fastapi import Query, Request, Response

from bastion.server.api import cursors
from bastion.server.api.auth import Principal, require_self_or_admin
from bastion.server.api.common import (
    Limit,
    Offset,
    Who,
    actor,
    api_router,
    changes,
    context,
    require_admin,
)
from bastion.server.api.export_schemas import UserExportOut, download
from bastion.server.api.problems import ApiError
from bastion.server.api.schemas import (
    Count,
    OrganizationList,
    OrganizationOut,
    UserCreate,
    UserList,
    UserOut,
    UserUpdate,
)
from bastion.server.middleware import acts_on_get
from bastion.server.services import audit
from bastion.server.services import users as service

router = api_router("/api/v1/users", "users")
acts_on_get(router.prefix + "/{user_id}/export")  # records user.export

Q = Query(None, max_length=200, description="Case-insensitive substring of username or email.")
After = Query(None, max_length=200, pattern=cursors.PATTERN,
              description="Start after this cursor (the `next` of the "
              "page before): pages neither skip nor repeat users as others are added or "
              "deleted meanwhile. An `offset` counts from there.")
Counted = Query(True, description="Count the matches over all pages; `false` leaves "
                "`count` null and saves that work on every page of a walk.")


@router.get("", summary="Search users")
async def search_users(request: Request, who: Who, limit: Limit = 20, offset: Offset = 0,
                       q: str | None = Q, include_deleted: bool = False,
                       after: str | None = After, count: bool = Counted) -> UserList:
    """Users whose username or email contains `q`, oldest first, with the total count.
    A full page carries `next`: pass it as `after` for the page that follows."""
    require_admin(who)
    ctx = context(request)
    items = await ctx.storage.search_users(q, limit, offset, include_deleted,
                                           after=cursors.parse(after))
    total = await ctx.storage.count_users(q, include_deleted) if count else None
    last = items[-1] if len(items) == limit else None
    return UserList(items=[UserOut.of(u) for u in items], count=total,
                    next=cursors.cursor(last.created_at, last.id) if last else None)


@router.get("/count", summary="Count users")
async def count_users(request: Request, who: Who, q: str | None = Q,
                      include_deleted: bool = False) -> Count:
    require_admin(who)
    return Count(count=await context(request).storage.count_users(q, include_deleted))


@router.get("/me", summary="The token's own user")
async def me(who: Who) -> UserOut:
    if who.user is None:
        raise ApiError(403, "Forbidden", "This is a client's token; /users/me needs a user's.")
    return UserOut.of(who.user)


@router.get("/{user_id}", summary="Get a user")
async def get_user(user_id: str, request: Request, who: Who) -> UserOut:
    if not (who.is_admin or (who.user and who.user.id == user_id)):
        require_admin(who)
    return UserOut.of(await service.get_user(context(request).storage, user_id))


@router.get("/{user_id}/organizations", summary="The organizations where a user holds a role")
async def user_organizations(user_id: str, request: Request, who: Who, limit: Limit = 20,
                             offset: Offset = 0) -> OrganizationList:
    """Oldest first. A user may list their own (`me`: an app's organization picker)."""
    user_id = require_self_or_admin(who, user_id)
    ctx = context(request)
    await service.get_user(ctx.storage, user_id)
    items, count = await ctx.storage.user_organizations(user_id, limit, offset)
    return OrganizationList(items=[OrganizationOut.of(o) for o in items], count=count)


@router.get("/{user_id}/export", summary="Everything kept about a user",
            response_model=UserExportOut)
async def export_user(user_id: str, request: Request, who: Who) -> Response:
    """The profile, organizations and roles, sessions, the apps' grants and the audit
    events by or about the user, as one JSON document (a download; GDPR articles 15 and
    20). Administrators only: a user downloads their own from the account page, as an
    app holding one of their tokens must not read it all. Recorded as `user.export`."""
    require_admin(who)
    ctx = context(request)
    export = await service.export_user(ctx.storage, user_id)
    await audit.record(ctx.storage, actor(who, request), "user.export", user_id)
    return download(export)


@router.post("", status_code=201, summary="Create a user")
async def create_user(body: UserCreate, request: Request, who: Who) -> UserOut:
    require_admin(who)
    ctx = context(request)
    user = await service.create_user(ctx.storage, ctx.passwords, username=body.username,
                                     email=body.email, password=body.password,
                                     is_administrator=body.is_administrator,
                                     email_verified=body.email_verified)
    await audit.record(ctx.storage, actor(who, request), "user.create", user.id,
                       **service.audited(user))
    return UserOut.of(user)


@router.patch("/{user_id}", summary="Update a user")
async def update_user(user_id: str, body: UserUpdate, request: Request, who: Who) -> UserOut:
    """An administrator user cannot take away their own `is_administrator`."""
    require_admin(who)
    ctx = context(request)
    given = changes(body)
    if not given:  # nothing to change: no write, no event (as for clients)
        user = await service.get_user(ctx.storage, user_id)
        if user.erased_at is not None:  # as a change is refused
            await service.refuse_change(ctx.storage, user_id)
        return UserOut.of(user)
    if given.get("is_administrator") is False:
        _not_oneself(who, user_id, "take away their own administrator flag",
                     "their administrator access")
    user = await service.update_user(ctx.storage, ctx.passwords, user_id, **given)
    if "password" in given:
        ctx.outbox.poke()  # back-channel logouts
    await audit.record(ctx.storage, actor(who, request), "user.update", user.id,
                       fields=sorted(given), **service.audited(user, given))
    return UserOut.of(user)


@router.delete("/{user_id}", status_code=204, summary="Soft-delete a user")
async def delete_user(user_id: str, request: Request, who: Who) -> Response:
    """The user can no longer sign in, and every session and token of theirs is revoked.
    Not one's own account."""
    require_admin(who)
    _not_oneself(who, user_id, "delete their own account", "their access")
    ctx = context(request)
    await service.delete_user(ctx.storage, user_id)
    ctx.outbox.poke()  # back-channel logouts
    await audit.record(ctx.storage, actor(who, request), "user.delete", user_id)
    return Response(status_code=204)


@router.post("/{user_id}/erase", summary="Erase a user's personal data for good")
async def erase_user(user_id: str, request: Request, who: Who) -> UserOut:
    """Deletes the user if not deleted yet (every session and token revoked, the apps
    told), then replaces their username and email by placeholders and removes their
    password, sessions, organization memberships, emailed links, queued and sent
    mail, throttle counts, and their name from the audit trail. The user's id stays,
    in the audit trail too. An erased user cannot be restored, changed or given roles;
    erasing one again changes nothing. Not one's own account."""
    require_admin(who)
    _not_oneself(who, user_id, "erase their own account", "their access")
    ctx = context(request)
    user = await service.erase_user(ctx.storage, user_id)
    ctx.outbox.poke()  # back-channel logouts
    await audit.record(ctx.storage, actor(who, request), "user.erase", user_id)
    return UserOut.of(user)


@router.post("/{user_id}/restore", summary="Restore a soft-deleted user")
async def restore_user(user_id: str, request: Request, who: Who) -> UserOut:
    require_admin(who)
    ctx = context(request)
    user = await service.restore_user(ctx.storage, user_id)
    await audit.record(ctx.storage, actor(who, request), "user.restore", user_id)
    return UserOut.of(user)


def _not_oneself(who: Principal, user_id: str, change: str, ended: str) -> None:
    """403 for an administrator user about to ``change`` their own account, which would
    end ``ended`` at once (and might leave no administrator user): another
    administrator must do it."""
    if who.user is not None and who.user.id == user_id:
        raise ApiError(403, "Forbidden", f"An administrator cannot {change} (it would end "
                       f"{ended} at once); ask another administrator.")
