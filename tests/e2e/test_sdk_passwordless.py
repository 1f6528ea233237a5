"""``start_passwordless`` and ``edit_profile_url`` against the real server, with a
real SMTP server (aiosmtpd) receiving the mail, on SQLite and PostgreSQL, through
``Client`` and ``AsyncClient``: the emailed link, opened over plain HTTP, completes
the authorization request the SDK started, and the SDK finishes it as usual.

These tests run their own server (with SMTP, and a per-IP link limit high enough
for the whole module) so the shared servers' limits are left alone.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import anyio
import httpx2
import pytest

from bastion import AsyncClient, Client, InvalidRequest, RateLimited
from support import (
    Mailbox,
    ServerProcess,
    hidden_fields,
    running_server,
    smtp_server,
    wait_until,
)

App = Account = Any
STATE_KEY = secrets.token_urlsafe(32)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mail_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Mailbox]]:
    database_url = None
    if request.param == "postgresql":
        from support import create_database

        admin_url = request.getfixturevalue("pg_admin_url")
        name = "bastion_sdk_mail_" + secrets.token_hex(4)
        database_url = asyncio.run(create_database(admin_url, name))
    data_dir: Path = tmp_path_factory.mktemp("bastion-sdk-mail")
    with smtp_server() as (host, port, box), running_server(
        data_dir, database_url, smtp_host=host, smtp_port=str(port), smtp_tls="none",
        link_limit_per_ip="1000",
    ) as server:
        yield server, box


@pytest.fixture
def server(mail_server: tuple[ServerProcess, Mailbox]) -> ServerProcess:
    return mail_server[0]


@pytest.fixture
def mailbox(mail_server: tuple[ServerProcess, Mailbox]) -> Mailbox:
    return mail_server[1]


def options(server: ServerProcess, app: App) -> dict[str, Any]:
    return {"url": server.url, "client_id": app.client_id, "client_secret": app.client_secret,
            "redirect_uri": app.redirect_uri, "state_key": STATE_KEY, "retries": 0}


def mail_to(box: Mailbox, address: str) -> Any:
    found = wait_until(lambda: [m for m in box.messages if m["To"] == address],
                       timeout=20, what=f"mail to {address}")
    return found[-1]


def open_link(link: str) -> str:
    """What a browser does with the emailed link: the callback URL it ends up at."""
    with httpx2.Client(follow_redirects=False, timeout=10) as browser:
        page = browser.get(link)
        assert page.status_code == 200 and "<form" in page.text, page.text[:300]
        posted = browser.post(urljoin(link, urlsplit(link).path), data=hidden_fields(page.text))
        assert posted.status_code == 303, (posted.status_code, posted.text[:300])
        authorize = browser.get(urljoin(link, posted.headers["location"]))
        assert authorize.status_code in (302, 303), authorize.text[:300]
        return urljoin(link, authorize.headers["location"])


def test_sign_in_by_link_sync(server: ServerProcess, mailbox: Mailbox,
                              make_app: Callable[..., App],
                              account_on: Callable[..., Account]) -> None:
    app, person = make_app(server), account_on(server)
    with Client(**options(server, app)) as client:
        state = client.start_passwordless(person.email, "openid email")
        link = Mailbox.link(mail_to(mailbox, person.email))
        assert state not in link and app.client_secret not in link
        callback = open_link(link)
        assert callback.startswith(app.redirect_uri)
        assert dict(parse_qsl(urlsplit(callback).query))["state"] == state
        tokens = client.finish_authorization_response(callback, expected_state=state)
        assert tokens.id_token_claims and tokens.id_token_claims["sub"] == person.id
        assert client.userinfo(tokens)["email"] == person.email


def test_sign_in_by_link_async_public_client(
    server: ServerProcess, mailbox: Mailbox, make_app: Callable[..., App],
    account_on: Callable[..., Account],
) -> None:
    app, person = make_app(server, "--public"), account_on(server)

    async def main() -> None:
        async with AsyncClient(**options(server, app)) as client:
            state = await client.start_passwordless(person.email)
            mail = await anyio.to_thread.run_sync(mail_to, mailbox, person.email)
            link = Mailbox.link(mail)
            callback = await anyio.to_thread.run_sync(open_link, link)
            tokens = await client.finish_authorization_response(callback, state)
            assert tokens.id_token_claims and tokens.id_token_claims["sub"] == person.id

    anyio.run(main)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_same_answer_rate_limit_and_bad_address(
    mode: str, server: ServerProcess, mailbox: Mailbox, make_app: Callable[..., App],
    account_on: Callable[..., Account],
) -> None:
    app, person = make_app(server), account_on(server)
    nobody = f"nobody-{secrets.token_hex(5)}@example.com"

    async def run(method: str, *args: Any) -> Any:
        async with AsyncClient(**options(server, app)) as client:
            return await getattr(client, method)(*args)

    def call(method: str, *args: Any) -> Any:
        if mode == "async":
            return anyio.run(run, method, *args)
        with Client(**options(server, app)) as client:
            return getattr(client, method)(*args)

    known = call("start_passwordless", person.email)
    unknown = call("start_passwordless", nobody)
    assert isinstance(known, str) and isinstance(unknown, str) and known != unknown
    mail_to(mailbox, person.email)
    assert all(m["To"] != nobody for m in mailbox.messages)  # no mail, same answer
    for _ in range(4):  # 5 links per address per hour
        call("start_passwordless", nobody)
    with pytest.raises(RateLimited) as caught:
        call("start_passwordless", nobody)
    assert caught.value.error_code == "slow_down" and caught.value.status_code == 429
    assert caught.value.retry_after and caught.value.retry_after > 0
    with pytest.raises(InvalidRequest):
        call("start_passwordless", "not an address")
    url = call("edit_profile_url", app.redirect_uri)
    assert url == (f"{server.url}/account?client_id={app.client_id}&return_to="
                   + "https%3A%2F%2Fapp.example%2Fcallback")
    assert app.client_secret not in url
    assert call("edit_profile_url") == f"{server.url}/account?client_id={app.client_id}"


def test_edit_profile_url_opens_the_account_page(server: ServerProcess,
                                                 make_app: Callable[..., App]) -> None:
    app = make_app(server)
    with Client(**options(server, app)) as client, httpx2.Client(timeout=10) as browser:
        page = browser.get(client.edit_profile_url(return_to=app.redirect_uri))
        assert page.status_code == 200 and "<form" in page.text  # sign in first
