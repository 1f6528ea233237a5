"""Discovery: OpenID Connect Discovery 1.0 and RFC 8414 metadata.

Only what is implemented is advertised; later features add their entries here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from bastion.server.checks.client_auth import METHODS
from bastion.server.context import Context
from bastion.server.grants import GRANTS

router = APIRouter(tags=["discovery"])

TOKEN_PATH = "/oauth/token"
JWKS_PATH = "/.well-known/jwks.json"


def metadata(ctx: Context) -> dict[str, Any]:
    issuer = ctx.settings.issuer_url
    return {
        "issuer": issuer,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "grant_types_supported": sorted(GRANTS),
        "token_endpoint_auth_methods_supported": list(METHODS),
        "response_types_supported": [],
        "scopes_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ctx.settings.id_token_alg],
        "access_token_signing_alg_values_supported": [ctx.settings.access_token_alg],
    }


@router.get("/.well-known/openid-configuration", summary="OpenID Connect discovery")
async def openid_configuration(request: Request) -> dict[str, Any]:
    return metadata(request.app.state.ctx)


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
async def oauth_authorization_server(request: Request) -> dict[str, Any]:
    return metadata(request.app.state.ctx)
