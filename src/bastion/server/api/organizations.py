"""Organizations, their roles and the roles' permissions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from bastion.server.api.common import (
    ERRORS,
    Limit,
    Offset,
    Who,
    actor,
    context,
    no_nul_in_path,
    require_admin,
)
from bastion.server.api.schemas import (
    OrganizationCreate,
    OrganizationList,
    OrganizationOut,
    Permissions,
    RoleCreate,
    RoleList,
    RoleOut,
)
from bastion.server.services import audit, rbac

router = APIRouter(prefix="/api/v1/organizations", tags=["organizations"], responses=ERRORS,
                   dependencies=[Depends(no_nul_in_path)])


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
                       permissions=body.permissions)
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
    updated = await rbac.change_permissions(ctx.storage, found.id, role, remove=permission)
    await audit.record(ctx.storage, actor(who, request), "role.permissions.remove", updated.id,
                       permissions=permission)
    return RoleOut.of(updated)
