"""Fixtures for the SDK's login tests against the real server: clients, users, and
the hosted login form driven over plain HTTP (no browser).

``sign_in`` / ``asign_in`` follow the login form like a browser would: GET the
authorization URL (keeping cookies), read the hidden ``csrf_token`` and
``continue`` fields, POST ``/login``, follow the 303 back to the authorization
endpoint, and return the ``Location`` of its 303 to the redirect URI (which is
never followed: the "app" is the test).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import httpx2
import pytest

from support import ServerProcess, create_database

REDIRECT_URI = "https://app.example/callback"
POST_LOGOUT_URI = "https://app.example/bye"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]*)"')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """For a server of its own: ``None`` (the default SQLite file, bastion.db in the data
    dir) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    admin = request.getfixturevalue("pg_admin_url")
    return asyncio.run(create_database(admin, f"db_{uuid.uuid4().hex[:8]}"))


@dataclass(frozen=True)
class App:
    """An OAuth client registered on the test server."""

    client_id: str
    client_secret: str | None
    redirect_uri: str = REDIRECT_URI
    post_logout_uri: str = POST_LOGOUT_URI


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    email: str
    password: str


def new_account(server: ServerProcess, admin: bool = False) -> Account:
    username = "u" + secrets.token_hex(6)
    password = secrets.token_urlsafe(18)
    args = ["users", "create", "--username", username, "--email", f"{username}@example.com",
            "--password-stdin", "--json"]
    if admin:
        args.append("--admin")
    done = server.cli(*args, stdin=password)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    return Account(str(created["id"]), username, f"{username}@example.com", password)


def new_app(server: ServerProcess, *extra: str, redirect_uri: str = REDIRECT_URI) -> App:
    created = server.create_client(
        "--name", "sdk login " + secrets.token_hex(3), "--redirect-uri", redirect_uri,
        "--post-logout-redirect-uri", POST_LOGOUT_URI,
        "--grant-type", "authorization_code", "--grant-type", "refresh_token",
        "--scope", "openid", "--scope", "profile", "--scope", "email", *extra,
    )
    secret = created.get("client_secret")
    return App(str(created["client_id"]), str(secret) if secret else None, redirect_uri)


@pytest.fixture(scope="session")
def web_app(bastion_server: ServerProcess) -> App:
    """A confidential client with authorization_code, refresh_token and password."""
    return new_app(bastion_server, "--grant-type", "password")


@pytest.fixture(scope="session")
def public_app(bastion_server: ServerProcess) -> App:
    return new_app(bastion_server, "--public")


@pytest.fixture
def account(bastion_server: ServerProcess) -> Account:
    """A fresh user per test (so revoke-all in one test never affects another)."""
    return new_account(bastion_server)


def _hidden(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in _HIDDEN.findall(html)}


def _login_post(page: httpx2.Response, account: Account) -> tuple[str, dict[str, str]]:
    assert page.status_code == 200 and "<form" in page.text, (page.status_code, page.text[:300])
    # The page may hold other forms (a sign-in link by email): use the password one.
    form_html = next(f for f in page.text.split("</form>") if 'id="password"' in f)
    fields = _hidden(form_html)
    assert {"csrf_token", "continue"} <= set(fields), fields
    action = _FORM_ACTION.search(form_html)
    url = urljoin(str(page.url), unescape(action.group(1)) if action else "/login")
    return url, {**fields, "login": account.username, "password": account.password}


def _redirect(response: httpx2.Response) -> str:
    assert response.status_code in (302, 303), (response.status_code, response.text[:300])
    return urljoin(str(response.url), response.headers["location"])


def sign_in_over_http(url: str, account: Account, http: httpx2.Client | None = None) -> str:
    """The callback URL (with ``code``, ``state``, ``iss``) after signing in at ``url``."""
    own = http is None
    http = http or httpx2.Client(follow_redirects=False, timeout=10)
    try:
        post_url, form = _login_post(http.get(url), account)
        back_to_authorize = _redirect(http.post(post_url, data=form))
        return _redirect(http.get(back_to_authorize))
    finally:
        if own:
            http.close()


async def asign_in_over_http(url: str, account: Account) -> str:
    async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as http:
        post_url, form = _login_post(await http.get(url), account)
        back_to_authorize = _redirect(await http.post(post_url, data=form))
        return _redirect(await http.get(back_to_authorize))


@pytest.fixture
def sign_in() -> Callable[..., str]:
    """``sign_in(authorize_url, account)`` -> the callback URL (sync)."""
    return sign_in_over_http


@pytest.fixture
def asign_in() -> Callable[..., Awaitable[str]]:
    """``await asign_in(authorize_url, account)`` -> the callback URL."""
    return asign_in_over_http


@pytest.fixture
def make_account(bastion_server: ServerProcess) -> Callable[..., Account]:
    return lambda admin=False: new_account(bastion_server, admin)


# -- the SDK's admin and passwordless tests: both databases, both shells ----------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_server(request: pytest.FixtureRequest) -> ServerProcess:
    """The real server on SQLite, then on PostgreSQL."""
    name = "bastion_server" if request.param == "sqlite" else "bastion_server_pg"
    server: ServerProcess = request.getfixturevalue(name)
    return server


@pytest.fixture
def make_app() -> Callable[..., App]:
    """``make_app(server, *extra_cli_args)`` -> a new login client on ``server``."""
    return new_app


@pytest.fixture
def account_on() -> Callable[..., Account]:
    """``account_on(server, admin=False)`` -> a new user on ``server``."""
    return new_account
