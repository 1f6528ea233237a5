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

``backchannel_logout_endpoint``: the endpoint at a client's ``backchannel_logout_uri``
(Starlette or FastAPI), which verifies the logout token Bastion POSTs there and calls
you with it::

    async def end_sessions(logout: LogoutToken) -> None: ...  # by logout.sid or .sub

    Route("/backchannel-logout", backchannel_logout_endpoint(end_sessions),
          methods=["POST"])  # FastAPI: app.add_route(path, endpoint, methods=["POST"])
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import parse_qsl

try:
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        AuthenticationError,
        BaseUser,
    )
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
except ImportError as exc:  # the plain install has no web framework
    raise ImportError(
        "bastion.client.integrations.starlette needs Starlette; install it with: "
        "pip install starlette"
    ) from exc

from .._async_client import AsyncClient
from .._callbacks import awaited
from .._shared import shared_async_client
from ..exceptions import (
    BastionError,
    ConfigurationError,
    InvalidToken,
    OAuthError,
)
from ..logout_token import LogoutToken
from ..state import ReplayStore
from .bearer import DEFAULT_REALM, Guard, MissingToken, Principal, aclose_clients, challenged

__all__ = [
    "BearerBackend",
    "BearerError",
    "BearerPrincipal",
    "Principal",
    "aclose_clients",
    "backchannel_logout_endpoint",
]

#: The largest logout request read: a form with one token (Bastion's are ~1 KB).
MAX_LOGOUT_BODY = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


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
        if challenged(error):
            headers = {"WWW-Authenticate": self.guard.challenge(error)}
        return JSONResponse(
            {"detail": error.description}, status_code=error.status_code or 401, headers=headers
        )


async def _logout_token(request: Request) -> str | None:
    """The form's one ``logout_token``, or ``None`` for anything else."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGOUT_BODY:
            return None
    try:
        fields = parse_qsl(body.decode("utf-8"), max_num_fields=10)
    except ValueError:  # (UnicodeDecodeError too)
        return None
    tokens = [value for name, value in fields if name == "logout_token"]
    return tokens[0] if len(tokens) == 1 else None


def _refused(description: str, status_code: int = 400) -> Response:
    return JSONResponse({"error": "invalid_request", "error_description": description},
                        status_code=status_code, headers=_NO_STORE)


def backchannel_logout_endpoint(
    on_logout: Callable[[LogoutToken], Awaitable[object] | object],
    *,
    client: AsyncClient | None = None,
    using: str | None = None,
    replay_store: ReplayStore | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint for the client's ``backchannel_logout_uri`` (Back-Channel Logout 1.0
    section 2.8): it verifies the POSTed ``logout_token`` (``verify_logout_token``),
    awaits ``on_logout(token)`` (a plain function runs in Starlette's thread pool),
    then answers 200. A missing or invalid token is a 400 with OAuth error JSON; keys
    out of reach a 503, which Bastion retries, as it retries when ``on_logout`` raises
    (a 500): each attempt brings a new token, so the replay store, which takes a token
    before ``on_logout`` runs, does not refuse the retry.

    ``client`` is an ``AsyncClient`` you own; without it the connection ``using``
    made with ``configure`` (``"default"`` when ``None``), shared per event loop
    (``aclose_clients``). ``replay_store``, shared by your workers, takes each token
    once.
    """
    if client is not None and using is not None:
        raise ConfigurationError("pass either 'client' or 'using', not both")

    async def backchannel_logout(request: Request) -> Response:
        token = await _logout_token(request)
        if token is None:
            return _refused("Expected a form with one logout_token field.")
        sdk = client if client is not None else shared_async_client(using)
        try:
            logout = await sdk.verify_logout_token(token, replay_store)
        except InvalidToken as error:
            return _refused(error.description)
        except ConfigurationError:
            raise  # the app's own mistake: a 500 and a traceback in its log
        except BastionError:  # the provider's keys are out of reach: Bastion tries again
            return _refused("The provider's keys cannot be fetched now.", 503)
        if inspect.iscoroutinefunction(on_logout):
            await on_logout(logout)
        else:  # a plain function may block (a database call): not on the event loop
            await awaited(await run_in_threadpool(on_logout, logout))
        return Response(status_code=200, headers=_NO_STORE)

    return backchannel_logout
