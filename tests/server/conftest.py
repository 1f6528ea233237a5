from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from api_helpers import Api
from cli_helpers import Invoke, cli_runner

import bastion.cli
from bastion.server.app import create_app
from bastion.server.context import Context
from bastion.server.services.clients import create_client
from bastion.server.settings import Settings
from bastion.server.storage import migrate
from support import ISSUER, App


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, issuer=ISSUER,
                    secret_key="test-key-" + tmp_path.name.ljust(32, "k"),
                    password_hash_memory_kib=8192, password_hash_time_cost=1,
                    housekeeping_interval=0)  # no purge at a random moment of a test


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[Context]:
    context = Context.open(settings)
    await migrate.upgrade(context.storage.engine)  # type: ignore[attr-defined]
    await context.start()
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def app(ctx: Context) -> AsyncIterator[App]:
    new = await create_client(ctx.storage, name="Test app", grant_types=["client_credentials"],
                              scopes=["read", "write"])
    assert new.client_secret
    transport = httpx2.ASGITransport(app=create_app(ctx.settings, ctx))
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield App(http, ctx, new.client.client_id, new.client_secret)


@pytest.fixture
async def api(app: App) -> Api:
    admin = await create_client(app.ctx.storage, name="admin", grant_types=["client_credentials"],
                                scopes=["bastion:admin"])
    web = await create_client(app.ctx.storage, name="web", grant_types=["password",
                                                                          "refresh_token"],
                              scopes=["openid"])
    assert admin.client_secret and web.client_secret
    r = await app.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(admin.client.client_id, admin.client_secret))
    token = r.json()
    app.http.headers["Authorization"] = "Bearer " + token["access_token"]
    return Api(app, token, web.client.client_id, web.client_secret)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Invoke:
    """Runs ``bastion`` in this process (``cli_helpers.cli_runner``)."""
    return cli_runner(monkeypatch, capsys)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The settings ``bastion serve`` would have started uvicorn with, instead of
    starting it; the variables it sets for its workers are undone after the test."""
    started: list[Any] = []
    monkeypatch.setattr(bastion.cli, "_uvicorn",
                        lambda args, settings, issuer: started.append(settings))
    for name in ("BASTION_ISSUER", "BASTION_DATABASE_URL", "BASTION_DATA_DIR"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return started
