"""The I/O-free flows for users in Bastion's REST API: get, search, count,
create, update, soft delete, restore, erase and export, ``/users/me``, and a user's roles in
an organization (read, or changed in one transaction, optionally reissuing the
user's tokens so their claims carry the new roles at once)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._admin import Token, api_flow, body, page, page_params, segment
from ._admin_orgs import roles_page
from ._base import BaseClient, Flow
from ._shared import names
from .exceptions import ConfigurationError, ProtocolError
from .models import User
from .organizations import Organization, Role, UserRoles
from .paging import Page
from .tokens import TokenSet

__all__ = [
    "change_user_roles_flow",
    "count_users_flow",
    "create_user_flow",
    "delete_user_flow",
    "erase_user_flow",
    "export_user_flow",
    "get_user_flow",
    "me_flow",
    "restore_user_flow",
    "search_users_flow",
    "update_user_flow",
    "user_organizations_flow",
    "user_roles_flow",
]


def user_flow(
    core: BaseClient, method: str, path: str, *, token: Token | None = None, json: Any = None
) -> Flow[User]:
    response = yield from api_flow(core, method, "/users" + path, token=token, json=json)
    return User.from_claims(body(response), client=core.owner)


def get_user_flow(core: BaseClient, user_id: object, token: Token | None = None) -> Flow[User]:
    return (yield from user_flow(core, "GET", "/" + segment(user_id, "user_id"), token=token))


def search_users_flow(
    core: BaseClient,
    query: str | None,
    limit: int,
    offset: int,
    include_deleted: bool = False,
    token: Token | None = None,
    after: str | None = None,
    count: bool = True,
) -> Flow[Page[User]]:
    params = page_params(limit, offset, q=query, include_deleted=include_deleted, after=after,
                         count=None if count else False)
    response = yield from api_flow(core, "GET", "/users", token=token, params=params)
    return page(core, body(response), User.from_claims)


def count_users_flow(
    core: BaseClient,
    query: str | None = None,
    include_deleted: bool = False,
    token: Token | None = None,
) -> Flow[int]:
    params = page_params(1, 0, q=query, include_deleted=include_deleted)
    del params["limit"], params["offset"]
    response = yield from api_flow(core, "GET", "/users/count", token=token, params=params)
    count = body(response).get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        raise ProtocolError("The API's answer has no count.")
    return count


def me_flow(core: BaseClient, token: Token) -> Flow[User]:
    return (yield from user_flow(core, "GET", "/me", token=token))


def create_user_flow(
    core: BaseClient, fields: Mapping[str, object], token: Token | None = None
) -> Flow[User]:
    given = {name: value for name, value in fields.items() if value is not None}
    return (yield from user_flow(core, "POST", "", token=token, json=given))


def update_user_flow(
    core: BaseClient, user_id: object, changes: Mapping[str, object], token: Token | None = None
) -> Flow[User]:
    """Change the fields given; ``None`` means "leave it as it is"."""
    given = {name: value for name, value in changes.items() if value is not None}
    if not given:
        raise ConfigurationError("update needs at least one field to change")
    path = "/" + segment(user_id, "user_id")
    return (yield from user_flow(core, "PATCH", path, token=token, json=given))


def restore_user_flow(core: BaseClient, user_id: object, token: Token | None = None) -> Flow[User]:
    path = f"/{segment(user_id, 'user_id')}/restore"
    return (yield from user_flow(core, "POST", path, token=token))


def erase_user_flow(core: BaseClient, user_id: object, token: Token | None = None) -> Flow[User]:
    path = f"/{segment(user_id, 'user_id')}/erase"
    return (yield from user_flow(core, "POST", path, token=token))


def export_user_flow(
    core: BaseClient, user_id: object, token: Token | None = None
) -> Flow[dict[str, Any]]:
    path = f"/users/{segment(user_id, 'user_id')}/export"
    response = yield from api_flow(core, "GET", path, token=token)
    return body(response)


def delete_user_flow(core: BaseClient, user_id: object, token: Token | None = None) -> Flow[None]:
    path = "/users/" + segment(user_id, "user_id")
    yield from api_flow(core, "DELETE", path, token=token, removes=True)


def user_organizations_flow(
    core: BaseClient, user_id: object, limit: int = 20, offset: int = 0,
    token: Token | None = None,
) -> Flow[Page[Organization]]:
    path = f"/users/{segment(user_id, 'user_id')}/organizations"
    response = yield from api_flow(core, "GET", path, token=token,
                                   params=page_params(limit, offset))
    return page(core, body(response), Organization.from_json)


def _user_roles_path(org: object, user_id: object) -> str:
    return f"/organizations/{segment(org, 'org')}/users/{segment(user_id, 'user_id')}/roles"


def user_roles_flow(
    core: BaseClient, org: object, user_id: object, token: Token | None = None
) -> Flow[Page[Role]]:
    response = yield from api_flow(core, "GET", _user_roles_path(org, user_id), token=token)
    return roles_page(core, body(response))


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
    (the user's tokens, or their refresh token) also revoke them and return new ones,
    or ``None`` when the change left the user without a role in the organization."""
    change: dict[str, Any] = {"add": names(add, "roles"), "remove": names(remove, "roles")}
    path = _user_roles_path(org, user_id)
    if reissue is None:
        response = yield from api_flow(core, "POST", path, token=token, json=change)
        return UserRoles(roles_page(core, body(response)), None)
    refresh = reissue.refresh_token if isinstance(reissue, TokenSet) else reissue
    if not isinstance(refresh, str) or not refresh:
        raise ConfigurationError("reissue needs the user's refresh token")
    # The new tokens belong to the user's client, as the old ones did.
    bound = reissue.client if isinstance(reissue, TokenSet) else None

    def send(refresh: str) -> Flow[UserRoles]:
        change["reissue"] = {"refresh_token": refresh}
        response = yield from api_flow(core, "POST", path, token=token, json=change)
        answer = body(response)
        tokens = None
        if answer.get("tokens", ...) is not None:
            # null: the user has left the organization, so none were issued
            if not isinstance(answer.get("tokens"), dict):
                raise ProtocolError("The API did not return the reissued tokens.")
            tokens = TokenSet.from_response(answer["tokens"], core.clock(), issued=True)
            tokens = dataclasses.replace(tokens, client=bound)
        return UserRoles(roles_page(core, answer), tokens)

    # The tokens' own client is where their refreshes run as single flights; when it
    # is driven otherwise (sync, async) than this call, a thread could block an event
    # loop while waiting for it, so this client's own flights serve instead.
    holder = core
    if bound is not None and _is_async(bound) == _is_async(core.owner):
        holder = bound._core
    return (yield from holder.reissue_flow(refresh, send, lambda result: result.tokens))


def _is_async(client: object) -> bool:
    from ._async_client import AsyncClient

    return isinstance(client, AsyncClient)
