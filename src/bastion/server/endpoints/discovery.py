"""Discovery: OpenID Connect Discovery 1.0 and RFC 8414 metadata.

Only what is implemented is advertised; later features add their entries here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from bastion.server.checks.authorization import PROMPTS, RESPONSE_MODES
from bastion.server.checks.client_auth import METHODS
from bastion.server.context import Context
from bastion.server.endpoints.account import ACCOUNT_PATH
from bastion.server.endpoints.authorize import AUTHORIZE_PATH
from bastion.server.endpoints.introspect import INTROSPECT_PATH
from bastion.server.endpoints.logout import LOGOUT_PATH
from bastion.server.endpoints.passwordless import PASSWORDLESS_PATH
from bastion.server.endpoints.revoke import REVOKE_PATH
from bastion.server.endpoints.token import TOKEN_PATH
from bastion.server.endpoints.userinfo import USERINFO_PATH
from bastion.server.grants import GRANTS

router = APIRouter(tags=["discovery"])

JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


async def metadata(ctx: Context) -> dict[str, Any]:
    issuer = ctx.settings.issuer_url
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "userinfo_endpoint": issuer + USERINFO_PATH,
        "revocation_endpoint": issuer + REVOKE_PATH,
        "introspection_endpoint": issuer + INTROSPECT_PATH,
        "end_session_endpoint": issuer + LOGOUT_PATH,
        # Bastion extensions: emailed sign-in links, and the hosted account page.
        "passwordless_endpoint": issuer + PASSWORDLESS_PATH,
        "account_endpoint": issuer + ACCOUNT_PATH,
        "grant_types_supported": sorted(GRANTS),
        "response_types_supported": ["code"],
        "response_modes_supported": list(RESPONSE_MODES),
        # OpenID Connect Discovery: request_uri support is assumed unless denied.
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": sorted(PROMPTS),
        "authorization_response_iss_parameter_supported": True,
        # Back-Channel Logout 1.0: a logout token carries sid when the grants had one.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        # "none": public clients send only their client_id (RFC 8414 section 2).
        "token_endpoint_auth_methods_supported": [*METHODS, "none"],
        "revocation_endpoint_auth_methods_supported": [*METHODS, "none"],
        "introspection_endpoint_auth_methods_supported": list(METHODS),
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid",
                             "at_hash", "azp", "preferred_username", "email", "email_verified",
                             "updated_at"],
        "subject_types_supported": ["public"],
        # What the published keys sign with: after a change of the setting, the old
        # algorithm and the new one, until the old keys' tokens have expired.
        "id_token_signing_alg_values_supported": list(await ctx.keys.algorithms("id")),
        "access_token_signing_alg_values_supported": list(await ctx.keys.algorithms("access")),
    }


@router.get(METADATA_PATHS[0], summary="OpenID Connect discovery")
async def openid_configuration(request: Request) -> dict[str, Any]:
    return await metadata(request.app.state.ctx)


@router.get(METADATA_PATHS[1], summary="RFC 8414 metadata")
async def oauth_authorization_server(request: Request) -> dict[str, Any]:
    return await metadata(request.app.state.ctx)
