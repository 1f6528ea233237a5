"""The I/O-free flows for OAuth clients and signing keys in Bastion's REST API
(list, get, create, update, rotate a secret, delete; list and rotate keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._admin import Token, api_flow, body, page, page_params, segment
from ._base import BaseClient, Flow
from ._shared import names
from .paging import Page
from .registry import RegisteredClient, SigningKey

__all__ = [
    "create_client_flow",
    "delete_client_flow",
    "get_client_flow",
    "list_clients_flow",
    "list_keys_flow",
    "rotate_keys_flow",
    "rotate_secret_flow",
    "update_client_flow",
    "withdraw_key_flow",
]

_LISTS = ("redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes")


def _fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body: ``None`` left out, a lone string taken as a list of one."""
    return {name: names(value, name) if name in _LISTS else value
            for name, value in fields.items() if value is not None}


def _path(client_id: object) -> str:
    """``/clients/<id>`` for a client id or a ``RegisteredClient``."""
    client_id = getattr(client_id, "client_id", client_id)
    return "/clients/" + segment(client_id, "client_id")


def list_clients_flow(
    core: BaseClient, limit: int = 20, offset: int = 0, token: Token | None = None
) -> Flow[Page[RegisteredClient]]:
    params = page_params(limit, offset)
    response = yield from api_flow(core, "GET", "/clients", token=token, params=params)
    return page(core, body(response), RegisteredClient.from_json)


def get_client_flow(
    core: BaseClient, client_id: object, token: Token | None = None
) -> Flow[RegisteredClient]:
    path = _path(client_id)
    response = yield from api_flow(core, "GET", path, token=token)
    return RegisteredClient.from_json(body(response))


def create_client_flow(
    core: BaseClient, fields: Mapping[str, Any], token: Token | None = None
) -> Flow[RegisteredClient]:
    response = yield from api_flow(core, "POST", "/clients", token=token, json=_fields(fields))
    return RegisteredClient.from_json(body(response))


def update_client_flow(
    core: BaseClient, client_id: object, fields: Mapping[str, Any], token: Token | None = None
) -> Flow[RegisteredClient]:
    path = _path(client_id)
    response = yield from api_flow(core, "PATCH", path, token=token, json=_fields(fields))
    return RegisteredClient.from_json(body(response))


def rotate_secret_flow(
    core: BaseClient, client_id: object, keep_old_for: int = 0, token: Token | None = None
) -> Flow[RegisteredClient]:
    path = _path(client_id) + "/secret"
    json = {"keep_old_for": keep_old_for}
    response = yield from api_flow(core, "POST", path, token=token, json=json)
    return RegisteredClient.from_json(body(response))


def delete_client_flow(
    core: BaseClient, client_id: object, token: Token | None = None
) -> Flow[None]:
    path = _path(client_id)
    yield from api_flow(core, "DELETE", path, token=token, removes=True)


def list_keys_flow(core: BaseClient, token: Token | None = None) -> Flow[Page[SigningKey]]:
    response = yield from api_flow(core, "GET", "/keys", token=token)
    return page(core, body(response), SigningKey.from_json)


def rotate_keys_flow(core: BaseClient, token: Token | None = None) -> Flow[Page[SigningKey]]:
    response = yield from api_flow(core, "POST", "/keys/rotate", token=token)
    return page(core, body(response), SigningKey.from_json)


def withdraw_key_flow(core: BaseClient, kid: str, token: Token | None = None
                      ) -> Flow[Page[SigningKey]]:
    path = "/keys/" + segment(kid, "kid") + "/withdraw"
    response = yield from api_flow(core, "POST", path, token=token)
    return page(core, body(response), SigningKey.from_json)
