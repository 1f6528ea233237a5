"""Helpers of the security tests: the in-process ``Env`` (an app, its clients, a user,
a browser) and the steps of the authorization-code flow."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
from prometheus_client import REGISTRY

from bastion.oauth import pkce
from bastion.server.context import Context
from bastion.server.models import User
from bastion.server.settings import Settings
from bastion.server.storage.tables import users
from support import ISSUER, hidden_fields

PASSWORD = "correct horse battery staple"
REDIRECT = "https://app.example/callback"
REDIRECT_WITH_QUERY = "https://app.example/other?x=1"
LOGOUT_TARGET = "https://app.example/bye"
SPA_REDIRECT = "https://spa.example/cb"
OTHER_REDIRECT = "https://other.example/cb"
OTHER_LOGOUT_TARGET = "https://other.example/bye"


@dataclass
class Registered:
    client_id: str
    secret: str | None

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.client_id, self.secret) if self.secret else None


@dataclass
class Env:
    """One in-process server: its context, an HTTP client (a browser with a cookie
    jar) and what was provisioned on its database."""

    ctx: Context
    asgi: Any
    http: httpx2.AsyncClient
    web: Registered  # confidential: authorization_code, refresh_token, password
    spa: Registered  # public: authorization_code (PKCE required), refresh_token
    other: Registered  # a second confidential client
    user: User
    stack: AsyncExitStack

    async def browser(self, ip: str = "127.0.0.1") -> httpx2.AsyncClient:
        """Another browser (its own cookie jar), optionally from another client IP."""
        transport = httpx2.ASGITransport(app=self.asgi, client=(ip, 40000))
        return await self.stack.enter_async_context(
            httpx2.AsyncClient(transport=transport, base_url=ISSUER))

    async def token(self, client: Registered, **data: str) -> httpx2.Response:
        if client.secret is None:
            data = {"client_id": client.client_id, **data}
        return await self.http.post("/oauth/token", data=data, auth=client.auth)

    async def password_grant(self, login: str = "alice", password: str = PASSWORD,
                             **extra: str) -> httpx2.Response:
        return await self.token(self.web, grant_type="password", username=login,
                                password=password, **extra)

    async def refresh(self, refresh_token: str, client: Registered | None = None
                      ) -> httpx2.Response:
        return await self.token(client or self.web, grant_type="refresh_token",
                                refresh_token=refresh_token)

    async def introspect(self, token: str) -> dict[str, Any]:
        r = await self.http.post("/oauth/introspect", data={"token": token}, auth=self.web.auth)
        assert r.status_code == 200, r.text
        return r.json()

    async def userinfo(self, access_token: str) -> httpx2.Response:
        return await self.http.get("/oauth/userinfo",
                                   headers={"Authorization": "Bearer " + access_token})

    async def delete_user(self, user_id: str) -> None:
        """Soft-delete a user (set ``deleted_at``) in the shared database."""
        engine = self.ctx.storage.engine  # type: ignore[attr-defined]
        async with engine.begin() as conn:
            await conn.execute(users.update().where(users.c.id == user_id)
                               .values(deleted_at=datetime.now(UTC)))


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        data_dir=data_dir, issuer=ISSUER, secret_key="test-key-" + data_dir.name.ljust(32, "k"),
        password_hash_memory_kib=8192, password_hash_time_cost=1, cache_ttl=0,
        housekeeping_interval=0)  # no purge at a random moment of a test
    return Settings(**(values | overrides))


# -- the authorization code flow -------------------------------------------------


def authorize_url(client_id: str, *, redirect_uri: str | None = REDIRECT,
                  verifier: str | None = None, **extra: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "scope": "openid",
              "state": "st-1", "nonce": "n-1"}
    if redirect_uri is not None:
        params["redirect_uri"] = redirect_uri
    if verifier:
        params |= {"code_challenge": pkce.challenge(verifier), "code_challenge_method": "S256"}
    params.update(extra)
    return "/oauth/authorize?" + urlencode(params)


def location_params(response: httpx2.Response) -> dict[str, str]:
    """The query of a redirect back to the client."""
    assert response.status_code == 303, (response.status_code, response.text[:300])
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


async def login_form(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    """GET an authorization URL that shows the login form; its hidden fields."""
    page = await http.get(url)
    assert page.status_code == 200 and "<form" in page.text, (page.status_code, page.text[:300])
    return hidden_fields(page.text)


async def post_login(http: httpx2.AsyncClient, fields: dict[str, str], login: str = "alice",
                     password: str = PASSWORD) -> httpx2.Response:
    return await http.post("/login", data={**fields, "login": login, "password": password})


async def account_page(env: Env) -> dict[str, str]:
    """Sign in to the account page; its form's hidden fields."""
    fields = hidden_fields((await env.http.get("/account")).text)
    assert (await post_login(env.http, fields)).status_code == 303
    return hidden_fields((await env.http.get("/account")).text)


async def get_code(env: Env, client_id: str | None = None, *, redirect_uri: str = REDIRECT,
                   verifier: str | None = None, http: httpx2.AsyncClient | None = None,
                   send_redirect_uri: bool = True, **extra: str) -> str:
    """Sign in (or reuse the session) and return the code sent to ``redirect_uri``."""
    http = http or env.http
    url = authorize_url(client_id or env.web.client_id,
                        redirect_uri=redirect_uri if send_redirect_uri else None,
                        verifier=verifier, **extra)
    answer = await http.get(url)
    if answer.status_code == 200:  # the login form
        posted = await post_login(http, hidden_fields(answer.text))
        assert posted.status_code == 303, (posted.status_code, posted.text[:300])
        answer = await http.get(posted.headers["location"])
    assert answer.headers["location"].startswith(redirect_uri)
    params = location_params(answer)
    assert "code" in params, params
    return params["code"]


async def exchange(env: Env, code: str, *, client: Registered | None = None,
                   redirect_uri: str | None = REDIRECT, verifier: str | None = None
                   ) -> httpx2.Response:
    data = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if verifier is not None:
        data["code_verifier"] = verifier
    return await env.token(client or env.web, **data)


async def assert_reuse_recorded(env: Env, token: str, plain: str, logged: str,
                                reuses_before: float) -> None:
    """A used ``token`` (the kind: refresh_token, authorization_code) whose value is
    ``plain`` came back (once or more): one ``token.reuse`` audit event, one more in
    ``bastion_token_reuse_total``, one warning in the log ``logged``; never the value."""
    (event,), _ = await env.ctx.storage.list_events({"action": "token.reuse"}, 10, 0)
    assert (event.actor, event.actor_type, event.target) == (
        env.web.client_id, "client", env.user.id)
    assert event.detail["token"] == token and event.detail["grant"]
    assert reuse_count(token) == reuses_before + 1
    assert logged.count(f"a used {token} was presented again") == 1
    assert plain not in logged and plain not in str(event)


def reuse_count(token: str) -> float:
    return REGISTRY.get_sample_value("bastion_token_reuse_total", {"token": token}) or 0.0


def oauth_error(response: httpx2.Response, status: int = 400) -> str:
    """The RFC 6749 ``error`` of a JSON error answer with the given status."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    return str(response.json()["error"])
