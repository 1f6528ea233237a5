"""The I/O-free flows for organizations (list, get by id or name, create, rename,
delete, members), their roles and the roles' permissions in Bastion's REST API
(list, get, create, delete, add and remove permissions)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import httpx2

from ._admin import Token, api_flow, body, page, page_params, segment
from ._base import BaseClient, Flow
from ._shared import names
from .organizations import Member, Organization, Role
from .paging import Page

__all__ = [
    "add_permissions_flow",
    "create_organization_flow",
    "create_role_flow",
    "delete_organization_flow",
    "delete_role_flow",
    "get_organization_flow",
    "get_role_flow",
    "list_organizations_flow",
    "list_roles_flow",
    "members_flow",
    "remove_permissions_flow",
    "rename_organization_flow",
    "role_path",
    "roles_page",
]

# -- organizations ---------------------------------------------------------------------


def _organization(core: BaseClient, response: httpx2.Response) -> Organization:
    return Organization.from_json(body(response), client=core.owner)


def list_organizations_flow(
    core: BaseClient, limit: int = 20, offset: int = 0, token: Token | None = None
) -> Flow[Page[Organization]]:
    params = page_params(limit, offset)
    response = yield from api_flow(core, "GET", "/organizations", token=token, params=params)
    return page(core, body(response), Organization.from_json)


def create_organization_flow(
    core: BaseClient, name: str, token: Token | None = None
) -> Flow[Organization]:
    response = yield from api_flow(core, "POST", "/organizations", token=token, json={"name": name})
    return _organization(core, response)


def _org_path(org: object) -> str:
    return "/organizations/" + segment(org, "org")


def get_organization_flow(
    core: BaseClient, org: object, token: Token | None = None
) -> Flow[Organization]:
    response = yield from api_flow(core, "GET", _org_path(org), token=token)
    return _organization(core, response)


def rename_organization_flow(
    core: BaseClient, org: object, name: str, token: Token | None = None
) -> Flow[Organization]:
    response = yield from api_flow(core, "PATCH", _org_path(org), token=token, json={"name": name})
    return _organization(core, response)


def delete_organization_flow(
    core: BaseClient, org: object, force: bool = False, token: Token | None = None
) -> Flow[None]:
    params = {"force": "true" if force else "false"}
    yield from api_flow(core, "DELETE", _org_path(org), token=token, params=params, removes=True)


def members_flow(
    core: BaseClient,
    org: object,
    limit: int = 20,
    offset: int = 0,
    include_deleted: bool = False,
    token: Token | None = None,
) -> Flow[Page[Member]]:
    params = page_params(limit, offset, include_deleted=include_deleted)
    response = yield from api_flow(core, "GET", _org_path(org) + "/users", token=token,
                                   params=params)
    return page(core, body(response), Member.from_json)


# -- roles and permissions ---------------------------------------------------------------


def roles_page(core: BaseClient, answer: Mapping[str, Any]) -> Page[Role]:
    return page(core, answer, Role.from_json)


def role_path(org: object, role: object = None) -> str:
    path = _org_path(org) + "/roles"
    return path if role is None else f"{path}/{segment(role, 'role')}"


def role_flow(
    core: BaseClient,
    method: str,
    path: str,
    *,
    token: Token | None = None,
    params: Any = None,
    json: Any = None,
) -> Flow[Role]:
    response = yield from api_flow(core, method, path, token=token, params=params, json=json)
    return Role.from_json(body(response), client=core.owner)


def get_role_flow(
    core: BaseClient, org: object, role: object, token: Token | None = None
) -> Flow[Role]:
    return (yield from role_flow(core, "GET", role_path(org, role), token=token))


def list_roles_flow(core: BaseClient, org: object, token: Token | None = None) -> Flow[Page[Role]]:
    response = yield from api_flow(core, "GET", role_path(org), token=token)
    return roles_page(core, body(response))


def create_role_flow(
    core: BaseClient,
    org: object,
    name: str,
    permissions: str | Collection[str] = (),
    token: Token | None = None,
) -> Flow[Role]:
    role = {"name": name, "permissions": names(permissions, "permissions") if permissions else []}
    return (yield from role_flow(core, "POST", role_path(org), token=token, json=role))


def delete_role_flow(
    core: BaseClient, org: object, role: object, force: bool = False, token: Token | None = None
) -> Flow[None]:
    params = {"force": "true" if force else "false"}
    path = role_path(org, role)
    yield from api_flow(core, "DELETE", path, token=token, params=params, removes=True)


def add_permissions_flow(
    core: BaseClient,
    org: object,
    role: object,
    permissions: str | Collection[str],
    token: Token | None = None,
) -> Flow[Role]:
    added = {"permissions": names(permissions, "permissions")}
    path = role_path(org, role) + "/permissions"
    return (yield from role_flow(core, "POST", path, token=token, json=added))


def remove_permissions_flow(
    core: BaseClient,
    org: object,
    role: object,
    permissions: str | Collection[str],
    token: Token | None = None,
) -> Flow[Role]:
    params = [("permission", p) for p in names(permissions, "permissions")]
    path = role_path(org, role) + "/permissions"
    return (yield from role_flow(core, "DELETE", path, token=token, params=params))
