"""Security tests: in-process apps (fast) with their clients and a user.

``make_env(**settings)`` opens an app on a database of its own (or on another env's
database with ``share=``), so a test can pick tiny limits or run two instances.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
from security_helpers import (
    LOGOUT_TARGET,
    OTHER_LOGOUT_TARGET,
    OTHER_REDIRECT,
    PASSWORD,
    REDIRECT,
    REDIRECT_WITH_QUERY,
    SPA_REDIRECT,
    Env,
    Registered,
    make_settings,
)

from bastion.server.app import create_app
from bastion.server.context import Context
from bastion.server.services.clients import create_client
from bastion.server.services.users import create_user
from bastion.server.storage import migrate
from support import ISSUER, create_database

MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(tmp_path: Path) -> AsyncIterator[MakeEnv]:
    async with AsyncExitStack() as outer:

        async def make(share: Env | None = None, ip: str = "127.0.0.1", **overrides: Any) -> Env:
            stack = await outer.enter_async_context(AsyncExitStack())
            if share is not None:  # a second instance on the same database and secret key
                data_dir = share.ctx.settings.data_dir
                overrides.setdefault("secret_key", share.ctx.settings.secret_key)
            else:
                data_dir = tmp_path / uuid.uuid4().hex[:8]
            ctx = Context.open(make_settings(data_dir, **overrides))
            stack.push_async_callback(ctx.close)
            await migrate.upgrade(ctx.storage.engine)  # type: ignore[attr-defined]
            await ctx.start()
            asgi = create_app(ctx.settings, ctx)
            http = await stack.enter_async_context(httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=asgi, client=(ip, 40000)), base_url=ISSUER))
            if share is not None:
                return Env(ctx, asgi, http, share.web, share.spa, share.other, share.user, stack)
            storage = ctx.storage
            web = await create_client(
                storage, name="Web", redirect_uris=[REDIRECT, REDIRECT_WITH_QUERY],
                grant_types=["authorization_code", "refresh_token", "password"],
                scopes=["openid", "profile", "email", "read"],
                post_logout_redirect_uris=[LOGOUT_TARGET])
            spa = await create_client(
                storage, name="SPA", public=True, redirect_uris=[SPA_REDIRECT],
                grant_types=["authorization_code", "refresh_token"], scopes=["openid"])
            other = await create_client(
                storage, name="Other", redirect_uris=[OTHER_REDIRECT],
                grant_types=["authorization_code", "refresh_token"], scopes=["openid"],
                post_logout_redirect_uris=[OTHER_LOGOUT_TARGET])
            user = await create_user(storage, ctx.passwords, username="alice",
                                     email="alice@example.com", password=PASSWORD)
            return Env(ctx, asgi, http,
                       Registered(web.client.client_id, web.client_secret),
                       Registered(spa.client.client_id, None),
                       Registered(other.client.client_id, other.client_secret), user, stack)

        yield make


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env()




@pytest.fixture(params=["sqlite", "postgresql"])
async def on_backend(request: pytest.FixtureRequest, make_env: MakeEnv) -> MakeEnv:
    """``make_env`` on SQLite, then on a database of its own on PostgreSQL."""
    if request.param == "sqlite":
        return make_env
    admin = request.getfixturevalue("pg_admin_url")
    url = await create_database(admin, f"env_{uuid.uuid4().hex[:12]}")
    return functools.partial(make_env, database_url=url)
