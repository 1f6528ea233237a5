"""The application factory.

``create_app`` returns a small ASGI dispatcher: the token endpoint (the hot path)
is served directly; everything else goes to the FastAPI app, which also owns the
lifespan (open storage, ensure keys, close the pool). In front of both: the request's
id for its log lines (``logs``), metrics, the client address as stored, the REST API's
body limit (``middleware``) and the answers to browser apps on other origins (``cors``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.oauth.errors import InvalidRequest, OAuthError, ServerError
from bastion.server.api import clients as api_clients
from bastion.server.api import events as api_events
from bastion.server.api import keys as api_keys
from bastion.server.api import organizations as api_organizations
from bastion.server.api import sessions as api_sessions
from bastion.server.api import user_roles as api_user_roles
from bastion.server.api import users as api_users
from bastion.server.api.problems import (
    ApiError,
    allowed_methods,
    api_error_handler,
    http_error_handler,
    oauth_problem,
    service_error_handler,
    validation_handler,
)
from bastion.server.context import Context
from bastion.server.cors import Cors
from bastion.server.endpoints import (
    account,
    authorize,
    discovery,
    health,
    introspect,
    jwks,
    login,
    logout,
    passwordless,
    revoke,
    token,
    userinfo,
)
from bastion.server.errors import oauth_error_parts, oauth_error_response, problem
from bastion.server.logs import RequestId
from bastion.server.metrics import MetricsMiddleware
from bastion.server.middleware import ApiBodyLimit, ClientAddress, HeadAsGet, IssuerPath
from bastion.server.pages import render
from bastion.server.services.errors import ServiceError
from bastion.server.settings import Settings, load_settings

log = logging.getLogger("bastion")


class BastionApp:
    """Routes the client-authenticated form endpoints around the framework; the rest
    to FastAPI."""

    def __init__(self, ctx: Context, api: FastAPI) -> None:
        self.ctx, self.api = ctx, api
        self.lean: dict[str, ASGIApp] = {
            token.TOKEN_PATH: token.endpoint(ctx),
            revoke.REVOKE_PATH: revoke.endpoint(ctx),
            introspect.INTROSPECT_PATH: introspect.endpoint(ctx),
            passwordless.PASSWORDLESS_PATH: passwordless.endpoint(ctx),
        }
        engine = getattr(ctx.storage, "engine", None)
        public = {userinfo.USERINFO_PATH: b"GET, POST", discovery.JWKS_PATH: b"GET",
                  **dict.fromkeys(discovery.METADATA_PATHS, b"GET")}
        browsers = Cors(self._route, {token.TOKEN_PATH: b"POST", revoke.REVOKE_PATH: b"POST",
                                      **public}, public=frozenset(public))
        routes = HeadAsGet(ClientAddress(ApiBodyLimit(browsers,
                                                      ctx.settings.max_api_body_bytes)))
        self._handle: ASGIApp = RequestId(MetricsMiddleware(
            routes, frozenset(self.lean), engine.pool if engine is not None else None))
        if ctx.settings.issuer and ctx.settings.issuer_path:
            self._handle = IssuerPath(self._handle, ctx.settings.issuer_path,
                                      discovery.METADATA_PATHS)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        lean = self.lean.get(scope["path"]) if scope["type"] == "http" else None
        await (lean or self.api)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handle(scope, receive, send)


async def _oauth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    if request.url.path.startswith("/api/"):
        return oauth_problem(exc)
    return oauth_error_response(exc)


def _browser(request: Request) -> bool:
    """Whether the caller reads HTML: a browser (on a hosted page, outside the REST API)."""
    return "text/html" in request.headers.get("accept", "")


def _page_text(request: Request, exc: HTTPException) -> dict[str, str]:
    """The title and message of a browser's page for ``exc``."""
    if exc.status_code == 404:
        return {"title": "Page not found", "message": "There is no page at this address. "
                "Check the link, or go back to the app you came from."}
    if exc.status_code == 405 and request.method == "GET":
        # A POST-only address opened, say by Enter in the address bar after a failed sign-in.
        return {"title": "This page cannot be opened directly", "message": "This address "
                "takes a form sent from one of Bastion's pages. Go back to the page you came "
                "from and try again."}
    return {"title": "This request cannot be answered", "message": (
        "This address does not take that kind of request." if exc.status_code == 405
        else str(exc.detail)) + " Go back to the page you came from and try again."}


def _oauth_text(exc: HTTPException, allow: str) -> str:
    """The ``error_description`` of ``exc`` on an OAuth endpoint."""
    if exc.status_code == 405:  # as the lean endpoints say it
        return "Use " + " or ".join(m for m in allow.split(", ") if m != "HEAD") + "."
    if exc.status_code == 404:
        return "There is no OAuth endpoint at this address."
    return str(exc.detail)


async def _http_error(request: Request, exc: Exception) -> Response:
    """A 404, a 405 (or another ``HTTPException``) in the form the caller reads, as
    ``_server_error`` picks it: problem JSON on the REST API, a page for a browser,
    RFC 6749 JSON on an OAuth endpoint, problem JSON for anything else."""
    assert isinstance(exc, HTTPException)
    path, browser = request.url.path, _browser(request)
    if path.startswith("/api/") or not (browser or path.startswith("/oauth/")):
        return await http_error_handler(request, exc)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    if not browser:
        return oauth_error_response(InvalidRequest(
            _oauth_text(exc, headers.get("Allow", "")), status_code=exc.status_code,
            headers=headers))
    response = render(request.app.state.ctx, "message.html", exc.status_code, error=True,
                      **_page_text(request, exc))
    response.headers.update(headers)
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure (a database gone away, a bug): in the form the caller
    reads, never a plain-text 500. Starlette raises it on after this answers, and
    ``logs.RequestId`` logs it with the request's id."""
    if request.url.path.startswith("/api/"):
        return problem(500, "Internal Server Error", "The server could not complete the "
                       "request; the cause is in its log. Try again shortly.")
    if _browser(request):  # a browser on a hosted page
        ctx: Context = request.app.state.ctx
        return render(ctx, "message.html", 500, title="Something went wrong", error=True,
                      message="Bastion could not complete this request. Please try again "
                              "in a moment.")
    status, headers, body = oauth_error_parts(ServerError())
    return Response(body, status_code=status, headers=headers)


def create_app(settings: Settings, ctx: Context | None = None) -> ASGIApp:
    context = ctx or Context.open(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await context.start()
        try:
            yield
        finally:
            await context.close()

    api = FastAPI(
        title="Bastion",
        summary="A self-hosted identity service: OAuth 2.1 and OpenID Connect.",
        version="0.1.0",
        lifespan=lifespan,
        responses={400: {"description": "Malformed request"}},
    )
    api.state.ctx = context
    api.add_exception_handler(OAuthError, _oauth_error)
    api.add_exception_handler(ApiError, api_error_handler)
    api.add_exception_handler(RequestValidationError, validation_handler)
    api.add_exception_handler(HTTPException, _http_error)
    api.add_exception_handler(ServiceError, service_error_handler)
    api.add_exception_handler(Exception, _server_error)
    routers = [module.router for module in (
        health, discovery, jwks, authorize, login, passwordless, account, userinfo, logout,
        api_users, api_sessions, api_organizations, api_user_roles, api_events, api_clients,
        api_keys)]
    for router in routers:
        api.include_router(router)
    # For a 405's Allow header: FastAPI keeps included routers as opaque entries of
    # its own route list, so the routes themselves are listed here.
    api.state.routes = [route for route in (*api.router.routes, *(
        r for router in routers for r in router.routes)) if getattr(route, "methods", None)]
    return BastionApp(context, api)


def create_app_from_env() -> ASGIApp:
    """Factory for ``uvicorn --factory`` (and for workers): settings from the environment."""
    return create_app(load_settings(issuer=os.environ.get("BASTION_ISSUER")))
