"""The client credentials grant (RFC 6749 section 4.4).

The client acts for itself: ``sub`` is the client id. No refresh token is issued.
"""

from __future__ import annotations

from typing import Any

from bastion.oauth.errors import InvalidScope
from bastion.server.checks.scope import granted_scope
from bastion.server.context import Context
from bastion.server.grants._request import TokenRequest
from bastion.server.services.clients import secret_generation
from bastion.server.services.tokens import TokenTooLarge, issue_access_token

GRANT_TYPE = "client_credentials"
PARAMETERS = ("scope",)


async def handle(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    client, form = request.client, request.form
    scope = granted_scope(form.get("scope"), client)
    # sgen: the token ends with the secret it was got with (see own_token_refused).
    extra = {"sgen": secret_generation(request.secret)} if request.secret else None
    try:
        issued = await issue_access_token(
            ctx.keys, ctx.settings, subject=client.client_id, client_id=client.client_id,
            scope=scope, extra=extra,
        )
    except TokenTooLarge:  # a client registered before scopes were bounded
        raise InvalidScope("The access token would be longer than Bastion and its SDK "
                           "accept: ask for fewer scopes, or register fewer or shorter "
                           "ones for the client.") from None
    body: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }
    if scope or "scope" in form:  # RFC 6749 5.1: said when it differs from the request
        body["scope"] = scope
    return body
