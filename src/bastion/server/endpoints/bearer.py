"""Bearer tokens on Bastion's own resources (userinfo, the REST API): RFC 6750."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from bastion.oauth.errors import InvalidToken
from bastion.server.context import Context
from bastion.server.services.tokens import verify_access_token


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("A Bearer access token is required.",
                           headers={"WWW-Authenticate": 'Bearer realm="bastion"'})
    return token.strip()


async def verified_claims(request: Request) -> dict[str, Any]:
    ctx: Context = request.app.state.ctx
    try:
        return await verify_access_token(ctx.keys, ctx.settings, ctx.storage,
                                         bearer_token(request), clients=ctx.clients)
    except InvalidToken as exc:
        exc.headers.setdefault(
            "WWW-Authenticate", f'Bearer realm="bastion", error="invalid_token", '
            f'error_description="{exc.description}"')
        raise
