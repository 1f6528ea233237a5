"""Organizations, their roles and the roles' permissions."""

from __future__ import annotations

from fastapi import Query, Request, Response

from bastion.server.api.common import (
    Limit,
    Offset,
    Who,
    actor,
    api_router,
    context,
    require_admin,
)
from bastion.server.api.schemas import (
    MemberList,
    MemberOut,
    OrganizationCreate,
    OrganizationList,
    OrganizationOut,
    OrganizationUpdate,
    Permissions,
    RoleCreate,
    RoleList,
    RoleOut,
    UserOut,
)
from bastion.server.services import audit, rbac
from bastion.server.services.errors import InvalidInput

router = api_router("/api/v1/organizations", "organizations")


@router.get("", summary="List organizations")
async def list_organizations(request: Request, who: Who, limit: Limit = 20,
                             offset: Offset = 0) -> OrganizationList:
    require_admin(who)
    items, count = await context(request).storage.list_organizations(limit, offset)
    return OrganizationList(items=[OrganizationOut.of(o) for o in items], count=count)


@router.post("", status_code=201, summary="Create an organization")
async def create_organization(body: OrganizationCreate, request: Request,
                              who: Who) -> OrganizationOut:
    require_admin(who)
    ctx = context(request)
    org = await rbac.create_organization(ctx.storage, body.name)
    await audit.record(ctx.storage, actor(who, request), "organization.create", org.id,
                       name=org.name)
    return OrganizationOut.of(org)


@router.get("/{org}", summary="Get an organization (by id or name)")
async def get_organization(org: str, request: Request, who: Who) -> OrganizationOut:
    require_admin(who)
    return OrganizationOut.of(await rbac.organization(context(request).storage, org))


@router.patch("/{org}", summary="Rename an organization")
async def rename_organization(org: str, body: OrganizationUpdate, request: Request,
                              who: Who) -> OrganizationOut:
    require_admin(who)
    ctx = context(request)
    before, renamed = await rbac.rename_organization(ctx.storage, org, body.name)
    await audit.record(ctx.storage, actor(who, request), "organization.update", renamed.id,
                       name=renamed.name, previous=before.name)
    return OrganizationOut.of(renamed)


@router.delete("/{org}", status_code=204, summary="Delete an organization",
               responses={409: {"description": "Users hold its roles (use force)"}})
async def delete_organization(org: str, request: Request, who: Who,
                              force: bool = Query(False, description="Also take its roles "
                                                  "from their users.")) -> Response:
    """Its roles and their assignments go with it, and every grant issued in it is
    revoked: its users' refresh tokens for it, and their access tokens as seen by
    introspection."""
    require_admin(who)
    ctx = context(request)
    deleted = await rbac.delete_organization(ctx.storage, org, force)
    await audit.record(ctx.storage, actor(who, request), "organization.delete", deleted.id,
                       name=deleted.name, force=force)
    return Response(status_code=204)


@router.get("/{org}/users", summary="List the users holding a role in an organization")
async def list_members(org: str, request: Request, who: Who, limit: Limit = 20,
                       offset: Offset = 0, include_deleted: bool = False) -> MemberList:
    """Oldest first, each with the names of the roles it holds there."""
    require_admin(who)
    ctx = context(request)
    found = await rbac.organization(ctx.storage, org)
    items, count = await ctx.storage.list_members(found.id, limit, offset, include_deleted)
    return MemberList(items=[MemberOut(user=UserOut.of(m.user), roles=list(m.roles))
                             for m in items], count=count)


@router.get("/{org}/roles", summary="List the roles of an organization, with permissions")
async def list_roles(org: str, request: Request, who: Who) -> RoleList:
    require_admin(who)
    ctx = context(request)
    found = await rbac.organization(ctx.storage, org)
    roles = await ctx.storage.list_roles(found.id)
    return RoleList(items=[RoleOut.of(r) for r in roles], count=len(roles))


@router.post("/{org}/roles", status_code=201, summary="Create a role")
async def create_role(org: str, body: RoleCreate, request: Request, who: Who) -> RoleOut:
    require_admin(who)
    ctx = context(request)
    found = await rbac.organization(ctx.storage, org)
    role = await rbac.create_role(ctx.storage, found.id, body.name, body.permissions)
    await audit.record(ctx.storage, actor(who, request), "role.create", role.id,
                       organization=found.id, name=role.name, permissions=list(role.permissions))
    return RoleOut.of(role)


@router.get("/{org}/roles/{role}", summary="Get a role (by id or name)")
async def get_role(org: str, role: str, request: Request, who: Who) -> RoleOut:
    require_admin(who)
    ctx = context(request)
    found = await rbac.organization(ctx.storage, org)
    return RoleOut.of(await rbac.role(ctx.storage, found.id, role))


@router.delete("/{org}/roles/{role}", status_code=204, summary="Delete a role",
               responses={409: {"description": "The role is assigned to users (use force)"}})
async def delete_role(org: str, role: str, request: Request, who: Who,
                      force: bool = Query(False, description="Also remove it from its users.")
                      ) -> Response:
    require_admin(who)
    ctx = context(request)
    found = await rbac.organization(ctx.storage, org)
    deleted = await rbac.delete_role(ctx.storage, found.id, role, force)
    await audit.record(ctx.storage, actor(who, request), "role.delete", deleted.id,
                       organization=found.id, name=deleted.name, force=force)
    return Response(status_code=204)


@router.post("/{org}/roles/{role}/permissions", summary="Add permissions to a role")
async def add_permissions(org: str, role: str, body: Permissions, request: Request,
                          who: Who) -> RoleOut:
    require_admin(who)
    ctx = context(request)
    found = await rbac.organization(ctx.storage, org)
    updated = await rbac.change_permissions(ctx.storage, found.id, role, add=body.permissions)
    await audit.record(ctx.storage, actor(who, request), "role.permissions.add", updated.id,
                       organization=found.id, permissions=body.permissions)
    return RoleOut.of(updated)


@router.delete("/{org}/roles/{role}/permissions", summary="Remove permissions from a role")
async def remove_permissions(
    org: str, role: str, request: Request, who: Who,
    permission: list[str] = Query(..., min_length=1, max_length=500,
                                  description="A permission to remove; repeat for several."),
) -> RoleOut:
    require_admin(who)
    ctx = context(request)
    found = await rbac.organization(ctx.storage, org)
    try:
        updated = await rbac.change_permissions(ctx.storage, found.id, role, remove=permission)
    except InvalidInput as exc:  # the query parameter is named in the singular
        raise exc.named("permission") from None
    await audit.record(ctx.storage, actor(who, request), "role.permissions.remove", updated.id,
                       organization=found.id, permissions=permission)
    return RoleOut.of(updated)
