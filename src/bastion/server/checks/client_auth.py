"""Client authentication at the token endpoint (RFC 6749 section 2.3.1).

``client_secret_basic`` (HTTP Basic, id and secret form-urlencoded first) and
``client_secret_post`` (in the body); using both at once is an error. A public
client identifies itself with ``client_id`` alone.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import unquote_plus

from bastion.oauth.errors import InvalidClient, InvalidRequest
from bastion.server.models import Client
from bastion.server.services import secrets
from bastion.server.services.clients import ClientCache, matching_secret

METHODS = ("client_secret_basic", "client_secret_post")
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="bastion", charset="UTF-8"'}


def _basic(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        client_id, sep, secret = decoded.partition(":")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input
        sep = ""
    if not sep:
        raise InvalidClient("Malformed Basic credentials.", headers=BASIC_CHALLENGE)
    # An id no database can store (a NUL) is unknown: ``ClientCache.get`` says so.
    return unquote_plus(client_id), unquote_plus(secret)


async def authenticate_client(
    clients: ClientCache, authorization: str | None, form: Mapping[str, str]
) -> tuple[Client, bytes | None]:
    """The client, and the digest of the secret it used (``None`` for a public one)."""
    if authorization and authorization[:6].lower() != "basic ":
        # Bearer, DPoP, ...: not a method here, and with credentials in the body it
        # would be two (RFC 6749 section 2.3); silently ignored, it would hide a mistake.
        raise InvalidClient("Authenticate the client with HTTP Basic or in the body "
                            "(client_secret_basic or client_secret_post), not another "
                            "Authorization scheme.", headers=BASIC_CHALLENGE)
    if authorization:
        if "client_secret" in form:
            raise InvalidRequest("Use one client authentication method, not two.")
        client_id, secret = _basic(authorization)
        if form.get("client_id", client_id) != client_id:
            raise InvalidRequest("client_id in the body differs from the Basic credentials.")
    else:
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
        if not client_id:
            raise InvalidClient("Client authentication is required.", headers=BASIC_CHALLENGE)
    client = await clients.get(client_id)
    if client is None:
        secrets.matches(secret, None)  # same work as a wrong secret
        raise InvalidClient(headers=BASIC_CHALLENGE)
    if client.is_public:
        if secret:
            raise InvalidClient("A public client has no secret.", headers=BASIC_CHALLENGE)
        return client, None
    used = matching_secret(client, secret)
    if used is None:
        raise InvalidClient(headers=BASIC_CHALLENGE)
    return client, used
