"""``BearerBackend``: Bearer tokens for Starlette's ``AuthenticationMiddleware``.

::

    backend = BearerBackend(scopes=["orders:read"])
    app = Starlette(routes=..., middleware=[
        Middleware(AuthenticationMiddleware, backend=backend, on_error=backend.on_error)])

Every request through the middleware needs a valid token meeting the backend's
requirements (``allow_anonymous=True`` lets requests without a token through as
Starlette's ``UnauthenticatedUser``). ``request.user`` is then a
``BearerPrincipal`` (a ``Principal`` and a Starlette ``BaseUser``) and
``request.auth.scopes`` the token's scopes, so Starlette's ``@requires(...)``
can ask for more per route. ``on_error`` answers with RFC 6750 challenges.
"""

from __future__ import annotations

from collections.abc import Collection

try:
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        AuthenticationError,
        BaseUser,
    )
    from starlette.requests import HTTPConnection
    from starlette.responses import JSONResponse, PlainTextResponse, Response
except ImportError as exc:  # the plain install has no web framework
    raise ImportError(
        "bastion.client.integrations.starlette needs Starlette; install it with: "
        "pip install starlette"
    ) from exc

from .._async_client import AsyncClient
from ..exceptions import InsufficientScope, InvalidToken, OAuthError
from .bearer import DEFAULT_REALM, Guard, MissingToken, Principal, aclose_clients

__all__ = ["BearerBackend", "BearerError", "BearerPrincipal", "Principal", "aclose_clients"]


class BearerPrincipal(Principal, BaseUser):
    """A ``Principal`` as Starlette's ``request.user``."""

    __slots__ = ()

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.subject

    @property
    def identity(self) -> str:
        return self.subject


class BearerError(AuthenticationError):
    """A refused token, carried to ``on_error``: ``error`` is the SDK's error."""

    def __init__(self, error: OAuthError) -> None:
        super().__init__(error.description)
        self.error = error


class BearerBackend(AuthenticationBackend):
    """Authenticates each request by its Bearer token (see ``bearer.Guard``)."""

    def __init__(
        self,
        scopes: str | Collection[str] = (),
        permissions: str | Collection[str] = (),
        audience: str | None = None,
        *,
        client: AsyncClient | None = None,
        using: str | None = None,
        realm: str | None = DEFAULT_REALM,
        leeway: float | None = None,
        allow_anonymous: bool = False,
    ) -> None:
        self.guard = Guard(
            scopes, permissions, audience, client=client, using=using, realm=realm, leeway=leeway
        )
        self.allow_anonymous = allow_anonymous

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        try:
            principal = await self.guard.authenticate(
                conn.headers.getlist("authorization"), BearerPrincipal
            )
        except MissingToken as error:
            if self.allow_anonymous:
                return None
            raise BearerError(error) from None
        except OAuthError as error:
            raise BearerError(error) from None
        return AuthCredentials(sorted(principal.scopes)), principal

    def on_error(self, conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """The middleware's ``on_error``: 401/403 with a challenge, 503, or 400."""
        if not isinstance(exc, BearerError):
            return PlainTextResponse(str(exc), status_code=400)
        error = exc.error
        headers = None
        if isinstance(error, InvalidToken | InsufficientScope):
            headers = {"WWW-Authenticate": self.guard.challenge(error)}
        return JSONResponse(
            {"detail": error.description}, status_code=error.status_code or 401, headers=headers
        )
