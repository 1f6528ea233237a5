"""The I/O-free flows for Bastion's REST API (``/api/v1``): users, organizations,
roles and permissions, a user's roles, and audit events.

The API takes a bearer token: by default this client's own client-credentials
token with scope ``bastion:admin``, fetched on first use, kept on the core and
fetched again shortly before it expires or once when the API answers 401; or,
with ``token=``, a user's access token (an administrator's, or a user acting on
their own account). Errors are the problem JSON the server sends, mapped to
``BadRequest``, ``Unauthorized``, ``Forbidden``, ``NotFound``, ``Conflict``...

Each function takes the shared core and returns a flow, like ``BaseClient``'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx2

from ._base import BaseClient, Flow
from ._responses import json_object
from ._shared import names
from .events import Event
from .exceptions import ConfigurationError, ProtocolError
from .models import User
from .organizations import Organization, Role, UserRoles
from .paging import Page
from .tokens import TokenSet

__all__ = ["ADMIN_SCOPE", "Token", "api_flow"]

ADMIN_SCOPE = "bastion:admin"
API_PREFIX = "/api/v1"
#: A user's access token (or their ``TokenSet``) to call the API as them.
Token = str | TokenSet


def _segment(value: object, what: str) -> str:
    """One path segment: an id or name (or an object with ``id``), percent-encoded."""
    value = getattr(value, "id", value)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string")
    return quote(value, safe="")


def _authorization(token: Token) -> str:
    if isinstance(token, TokenSet):
        return token.authorization
    if not isinstance(token, str) or not token:
        raise ConfigurationError("token must be an access token (str or TokenSet)")
    return f"Bearer {token}"


def api_flow(
    core: BaseClient,
    method: str,
    path: str,
    *,
    token: Token | None = None,
    params: Any = None,
    json: Any = None,
) -> Flow[httpx2.Response]:
    """Send one API request; raise the mapped error for an error answer."""
    metadata = yield from core.metadata_flow()
    url = metadata.issuer.rstrip("/") + API_PREFIX + path

    def request(authorization: str) -> httpx2.Request:
        headers = {"Accept": "application/json", "Authorization": authorization}
        return httpx2.Request(method, url, params=params, json=json, headers=headers)

    if token is not None:
        response = yield request(_authorization(token))
    else:
        stale: TokenSet | None = None
        while True:
            admin = core.admin_token
            due = admin is None or admin.expires_within(core.settings.refresh_margin, core.clock())
            if admin is None or due or admin is stale:
                admin = yield from core.client_credentials_flow(ADMIN_SCOPE)
                core.admin_token = admin
            response = yield request(admin.authorization)
            if response.status_code != 401 or stale is not None:
                break
            stale = admin  # revoked, or the keys rotated: one more try with a new token
    core.raise_for_response(response)
    return response


def _body(response: httpx2.Response) -> dict[str, Any]:
    return json_object(response.content)


def _items(body: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], int]:
    items, count = body.get("items"), body.get("count")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ProtocolError("The API's answer has no list of items.")
    total = count if isinstance(count, int) and not isinstance(count, bool) else len(items)
    return items, total


def _page_params(limit: int, offset: int, **extra: object) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    for name, value in extra.items():
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            params[name] = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        elif value is not None and value != "":
            params[name] = value
    return params


# -- users ----------------------------------------------------------------------------


def user_flow(
    core: BaseClient, method: str, path: str, *, token: Token | None = None, json: Any = None
) -> Flow[User]:
    response = yield from api_flow(core, method, "/users" + path, token=token, json=json)
    return User.from_claims(_body(response), client=core.owner)


def get_user_flow(core: BaseClient, user_id: object, token: Token | None = None) -> Flow[User]:
    return (yield from user_flow(core, "GET", "/" + _segment(user_id, "user_id"), token=token))


def search_users_flow(
    core: BaseClient,
    query: str | None,
    limit: int,
    offset: int,
    include_deleted: bool = False,
    token: Token | None = None,
) -> Flow[Page[User]]:
    params = _page_params(limit, offset, q=query, include_deleted=include_deleted)
    response = yield from api_flow(core, "GET", "/users", token=token, params=params)
    items, total = _items(_body(response))
    return Page([User.from_claims(item, client=core.owner) for item in items], total)


def count_users_flow(
    core: BaseClient,
    query: str | None = None,
    include_deleted: bool = False,
    token: Token | None = None,
) -> Flow[int]:
    params = _page_params(1, 0, q=query, include_deleted=include_deleted)
    del params["limit"], params["offset"]
    response = yield from api_flow(core, "GET", "/users/count", token=token, params=params)
    count = _body(response).get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        raise ProtocolError("The API's answer has no count.")
    return count


def me_flow(core: BaseClient, token: Token) -> Flow[User]:
    return (yield from user_flow(core, "GET", "/me", token=token))


def create_user_flow(
    core: BaseClient, fields: Mapping[str, object], token: Token | None = None
) -> Flow[User]:
    body = {name: value for name, value in fields.items() if value is not None}
    return (yield from user_flow(core, "POST", "", token=token, json=body))


def update_user_flow(
    core: BaseClient, user_id: object, changes: Mapping[str, object], token: Token | None = None
) -> Flow[User]:
    """Change the fields given; ``None`` means "leave it as it is"."""
    body = {name: value for name, value in changes.items() if value is not None}
    if not body:
        raise ConfigurationError("update needs at least one field to change")
    path = "/" + _segment(user_id, "user_id")
    return (yield from user_flow(core, "PATCH", path, token=token, json=body))


def restore_user_flow(core: BaseClient, user_id: object, token: Token | None = None) -> Flow[User]:
    path = f"/{_segment(user_id, 'user_id')}/restore"
    return (yield from user_flow(core, "POST", path, token=token))


def delete_user_flow(core: BaseClient, user_id: object, token: Token | None = None) -> Flow[None]:
    path = "/users/" + _segment(user_id, "user_id")
    yield from api_flow(core, "DELETE", path, token=token)


def user_roles_flow(
    core: BaseClient, org: object, user_id: object, token: Token | None = None
) -> Flow[Page[Role]]:
    path = f"/organizations/{_segment(org, 'org')}/users/{_segment(user_id, 'user_id')}/roles"
    response = yield from api_flow(core, "GET", path, token=token)
    return _roles(core, _body(response))


def change_user_roles_flow(
    core: BaseClient,
    org: object,
    user_id: object,
    add: object = (),
    remove: object = (),
    reissue: TokenSet | str | None = None,
    token: Token | None = None,
) -> Flow[UserRoles]:
    """Attach ``add`` and remove ``remove`` in one transaction; with ``reissue``
    (the user's tokens, or their refresh token) also revoke them and return new ones."""
    body: dict[str, Any] = {"add": names(add, "roles"), "remove": names(remove, "roles")}
    if reissue is not None:
        refresh = reissue.refresh_token if isinstance(reissue, TokenSet) else reissue
        if not isinstance(refresh, str) or not refresh:
            raise ConfigurationError("reissue needs the user's refresh token")
        body["reissue"] = {"refresh_token": refresh}
    path = f"/organizations/{_segment(org, 'org')}/users/{_segment(user_id, 'user_id')}/roles"
    response = yield from api_flow(core, "POST", path, token=token, json=body)
    answer = _body(response)
    tokens = None
    if reissue is not None:
        if not isinstance(answer.get("tokens"), dict):
            raise ProtocolError("The API did not return the reissued tokens.")
        tokens = TokenSet.from_response(answer["tokens"], core.clock())
        # The new tokens belong to the user's client, as the old ones did.
        bound = reissue.client if isinstance(reissue, TokenSet) else None
        tokens = dataclasses.replace(tokens, client=bound)
    return UserRoles(_roles(core, answer), tokens)


# -- organizations ---------------------------------------------------------------------


def _organization(core: BaseClient, response: httpx2.Response) -> Organization:
    return Organization.from_json(_body(response), client=core.owner)


def list_organizations_flow(
    core: BaseClient, limit: int = 20, offset: int = 0, token: Token | None = None
) -> Flow[Page[Organization]]:
    params = _page_params(limit, offset)
    response = yield from api_flow(core, "GET", "/organizations", token=token, params=params)
    items, total = _items(_body(response))
    return Page([Organization.from_json(item, client=core.owner) for item in items], total)


def create_organization_flow(
    core: BaseClient, name: str, token: Token | None = None
) -> Flow[Organization]:
    response = yield from api_flow(core, "POST", "/organizations", token=token, json={"name": name})
    return _organization(core, response)


def get_organization_flow(
    core: BaseClient, org: object, token: Token | None = None
) -> Flow[Organization]:
    path = "/organizations/" + _segment(org, "org")
    response = yield from api_flow(core, "GET", path, token=token)
    return _organization(core, response)


# -- roles and permissions ---------------------------------------------------------------


def _roles(core: BaseClient, body: Mapping[str, Any]) -> Page[Role]:
    items, total = _items(body)
    return Page([Role.from_json(item, client=core.owner) for item in items], total)


def role_path(org: object, role: object = None) -> str:
    path = f"/organizations/{_segment(org, 'org')}/roles"
    return path if role is None else f"{path}/{_segment(role, 'role')}"


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
    return Role.from_json(_body(response), client=core.owner)


def get_role_flow(
    core: BaseClient, org: object, role: object, token: Token | None = None
) -> Flow[Role]:
    return (yield from role_flow(core, "GET", role_path(org, role), token=token))


def list_roles_flow(core: BaseClient, org: object, token: Token | None = None) -> Flow[Page[Role]]:
    response = yield from api_flow(core, "GET", role_path(org), token=token)
    return _roles(core, _body(response))


def create_role_flow(
    core: BaseClient,
    org: object,
    name: str,
    permissions: str | Collection[str] = (),
    token: Token | None = None,
) -> Flow[Role]:
    body = {"name": name, "permissions": names(permissions, "permissions") if permissions else []}
    return (yield from role_flow(core, "POST", role_path(org), token=token, json=body))


def delete_role_flow(
    core: BaseClient, org: object, role: object, force: bool = False, token: Token | None = None
) -> Flow[None]:
    params = {"force": "true" if force else "false"}
    yield from api_flow(core, "DELETE", role_path(org, role), token=token, params=params)


def add_permissions_flow(
    core: BaseClient,
    org: object,
    role: object,
    permissions: str | Collection[str],
    token: Token | None = None,
) -> Flow[Role]:
    body = {"permissions": names(permissions, "permissions")}
    path = role_path(org, role) + "/permissions"
    return (yield from role_flow(core, "POST", path, token=token, json=body))


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


# -- audit events ------------------------------------------------------------------------


def list_events_flow(
    core: BaseClient,
    filters: Mapping[str, str | datetime | None],
    limit: int = 50,
    offset: int = 0,
    token: Token | None = None,
) -> Flow[Page[Event]]:
    """Events newest first; ``filters``: action, actor, target, client_id, since, until."""
    params = _page_params(limit, offset, **filters)
    response = yield from api_flow(core, "GET", "/events", token=token, params=params)
    items, total = _items(_body(response))
    return Page([Event.from_json(item, client=core.owner) for item in items], total)
