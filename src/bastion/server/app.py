"""The application factory.

``create_app`` returns a small ASGI dispatcher: the token endpoint (the hot path)
is served directly; everything else goes to the FastAPI app, which also owns the
lifespan (open storage, ensure keys, close the pool).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.oauth.errors import OAuthError
from bastion.server.context import Context
from bastion.server.endpoints import discovery, jwks
from bastion.server.endpoints.discovery import TOKEN_PATH
from bastion.server.endpoints.token import TokenEndpoint
from bastion.server.errors import oauth_exception_handler
from bastion.server.settings import Settings, load_settings

log = logging.getLogger("bastion")


class BastionApp:
    """Routes the token endpoint around the framework; the rest to FastAPI."""

    def __init__(self, ctx: Context, api: FastAPI) -> None:
        self.ctx, self.api = ctx, api
        self.token = TokenEndpoint(ctx)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == TOKEN_PATH:
            await self.token(scope, receive, send)
        else:
            await self.api(scope, receive, send)


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
    api.add_exception_handler(OAuthError, oauth_exception_handler)
    api.include_router(discovery.router)
    api.include_router(jwks.router)
    return BastionApp(context, api)


def create_app_from_env() -> ASGIApp:
    """Factory for ``uvicorn --factory`` (and for workers): settings from the environment."""
    return create_app(load_settings(issuer=os.environ.get("BASTION_ISSUER")))
