"""``require_token``: a FastAPI dependency that protects a route with Bearer tokens.

::

    from fastapi import Depends, FastAPI
    from bastion.client.integrations.fastapi import Principal, require_token

    @app.get("/orders")
    async def orders(user: Principal = Depends(require_token(scopes=["orders:read"]))):
        ...

The token is verified locally (``bearer.Guard``); a refusal is an
``HTTPException`` carrying RFC 6750's ``WWW-Authenticate`` challenge: 401 without
``error`` when there is no token, 401 ``invalid_token``, 403 ``insufficient_scope``
(a missing scope or permission), or 503 when the provider's keys are out of reach.
On a websocket route a refusal closes the handshake with code 1008 (policy
violation), the reason being the OAuth error code.
Only Starlette is imported (FastAPI handles Starlette's ``HTTPException``), so the
OpenAPI document lists no security scheme for these routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

try:
    from starlette.exceptions import HTTPException, WebSocketException
    from starlette.requests import HTTPConnection
    from starlette.status import WS_1008_POLICY_VIOLATION
except ImportError as exc:  # the plain install has no web framework
    raise ImportError(
        "bastion.client.integrations.fastapi needs FastAPI; install it with: pip install fastapi"
    ) from exc

from .._async_client import AsyncClient
from ..exceptions import OAuthError
from .bearer import DEFAULT_REALM, Guard, MissingToken, Principal, aclose_clients, challenged

__all__ = ["MissingToken", "Principal", "aclose_clients", "http_exception", "require_token"]


def http_exception(guard: Guard, error: OAuthError) -> HTTPException:
    """The ``HTTPException`` answering ``error``, with a challenge (``challenged``)."""
    headers = None
    if challenged(error):
        headers = {"WWW-Authenticate": guard.challenge(error)}
    return HTTPException(error.status_code or 401, error.description, headers=headers)


def require_token(
    scopes: str | Collection[str] = (),
    permissions: str | Collection[str] = (),
    audience: str | None = None,
    *,
    client: AsyncClient | None = None,
    using: str | None = None,
    realm: str | None = DEFAULT_REALM,
    leeway: float | None = None,
) -> Callable[[HTTPConnection], Awaitable[Principal]]:
    """A dependency yielding the ``Principal`` of a valid token with every scope
    and every permission listed (``permissions``: from the token's ``permissions``).

    ``client`` is an ``AsyncClient`` you own (close it at shutdown); without it the
    connection ``using`` made with ``configure`` (``"default"`` when ``None``) is
    opened on the first request in each event loop and shared there by every route
    and model call (``aclose_clients``).
    """
    guard = Guard(
        scopes, permissions, audience, client=client, using=using, realm=realm, leeway=leeway
    )

    # ``HTTPConnection``: FastAPI gives it to HTTP and websocket routes alike (it
    # gives a ``Request`` to HTTP routes only: a websocket route failed with 500).
    async def bearer_principal(connection: HTTPConnection) -> Principal:
        try:
            return await guard.authenticate(connection.headers.getlist("authorization"))
        except OAuthError as error:
            if connection.scope["type"] == "websocket":  # refused before it is accepted
                raise WebSocketException(WS_1008_POLICY_VIOLATION, error.error_code) from None
            raise http_exception(guard, error) from None

    return bearer_principal
