"""The token endpoint (RFC 6749 section 3.2): dispatch to the grant from the registry."""

from __future__ import annotations

from typing import Any

from bastion.oauth.errors import InvalidRequest, UnauthorizedClient, UnsupportedGrantType
from bastion.server.context import Context
from bastion.server.endpoints._form import FormEndpoint
from bastion.server.grants import GRANTS
from bastion.server.grants._request import TokenRequest
from bastion.server.metrics import TOKENS

TOKEN_PATH = "/oauth/token"


def check_grant_type(form: dict[str, str]) -> None:
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise InvalidRequest("Missing grant_type.")
    if grant_type not in GRANTS:
        raise UnsupportedGrantType(f"Unsupported grant_type {grant_type[:40]!r}.")


async def token(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    grant_type = request.form["grant_type"]
    if grant_type not in request.client.grant_types:
        raise UnauthorizedClient(f"This client may not use {grant_type}.")
    body = await GRANTS[grant_type].handle(ctx, request)
    TOKENS.labels(grant_type).inc()
    return body


def endpoint(ctx: Context) -> FormEndpoint:
    return FormEndpoint(ctx, token, precheck=check_grant_type, browser=True)
