"""Back-channel logout end to end: the real server (SQLite, PostgreSQL) POSTs logout
tokens to an app's endpoint (a real HTTP server on 127.0.0.1) when sessions end, and
the SDK (sync and async) verifies them with the server's JWKS."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from bastion import (
    AsyncClient,
    Client,
    InvalidToken,
    LogoutToken,
    MemoryReplayStore,
    TokenSet,
    configure,
)
from bastion.client.integrations.starlette import aclose_clients, backchannel_logout_endpoint
from support import LogoutReceiver, ServerProcess, free_port, logout_receiver, wait_until

Account = Any  # tests/e2e/conftest.py's
REDIRECT_URI = "https://shop.example/callback"  # never followed: the test reads the code


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as r:
        yield r


def admin(server: ServerProcess) -> Client:
    return Client(url=server.url, client_id=server.admin_client_id,
                  client_secret=server.admin_client_secret)


def app_options(server: ServerProcess, receiver: LogoutReceiver) -> dict[str, Any]:
    """A new app told at ``receiver``; the options to open SDK clients as it."""
    with admin(server) as api:
        app = api.clients.create(
            "shop " + secrets.token_hex(3), redirect_uris=[REDIRECT_URI], scopes=["openid"],
            grant_types=["authorization_code", "refresh_token", "password"],
            backchannel_logout_uri=receiver.uri)
    assert app.backchannel_logout_uri == receiver.uri
    return {"url": server.url, "client_id": app.client_id, "client_secret": app.client_secret,
            "redirect_uri": REDIRECT_URI, "state_key": secrets.token_urlsafe(32)}


def signed_in(app: Client, account: Account, browser: httpx2.Client,
              sign_in: Callable[..., str]) -> tuple[TokenSet, str]:
    """Sign in in ``browser``: the tokens, and the session id (``sid``) of the ID token."""
    state, url = app.start_authorization("openid")
    tokens = app.finish_authorization_response(sign_in(url, account, browser), state)
    assert tokens.id_token_claims is not None
    return tokens, str(tokens.id_token_claims["sid"])


def test_ending_sessions_tells_the_app_and_the_sdk_verifies_the_tokens(
        any_server: ServerProcess, account_on: Callable[..., Account],
        receiver: LogoutReceiver, sign_in: Callable[..., str]) -> None:
    options = app_options(any_server, receiver)
    account = account_on(any_server)
    replays = MemoryReplayStore()
    with (Client(**options) as app, httpx2.Client(follow_redirects=False, timeout=10) as one,
          httpx2.Client(follow_redirects=False, timeout=10) as two):
        tokens_one, sid_one = signed_in(app, account, one, sign_in)
        _, sid_two = signed_in(app, account, two, sign_in)
        password_tokens = app.login_password(account.username, account.password, scope="openid")

        # The user signs out in the first browser: only that session is told.
        ended = one.get(app.logout_url(tokens_one))
        assert ended.status_code == 200 and "<form" not in ended.text, ended.text[:300]
        first = receiver.next()
        logout = app.verify_logout_token(first, replay_store=replays)
        assert (logout.sub, logout.sid) == (account.id, sid_one)
        with pytest.raises(InvalidToken, match="used before"):
            app.verify_logout_token(first, replay_store=replays)

        # Signed out everywhere: the other session, and the session-less password grant.
        app.revoke_all(password_tokens)
        tokens = [receiver.next(), receiver.next()]

        # An administrator deletes the user: the grant made since is told too.
        app.login_password(account.username, account.password, scope="openid")
        with admin(any_server) as api:
            api.users.delete(account.id)
        deleted = app.verify_logout_token(receiver.next())
        assert (deleted.sub, deleted.sid) == (account.id, None)

    async def verify(token: str) -> tuple[str | None, str | None]:
        async with AsyncClient(**options) as async_app:
            told = await async_app.verify_logout_token(token, replay_store=replays)
            return told.sub, told.sid

    told = sorted((asyncio.run(verify(t)) for t in tokens), key=lambda t: t[1] or "")
    assert told == [(account.id, None), (account.id, sid_two)]


@contextlib.contextmanager
def relying_party(told: queue.Queue[LogoutToken], using: str) -> Iterator[str]:
    """A Starlette app served by uvicorn on 127.0.0.1, with the SDK's back-channel
    logout endpoint; its URI."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await aclose_clients()  # the connection's client, opened in this loop

    app = Starlette(routes=[Route("/backchannel-logout", backchannel_logout_endpoint(
        told.put, using=using), methods=["POST"])], lifespan=lifespan)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="the app")
        yield f"http://127.0.0.1:{port}/backchannel-logout"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_the_sdk_endpoint_of_an_app_is_told(
        bastion_server: ServerProcess, account_on: Callable[..., Account]) -> None:
    told: queue.Queue[LogoutToken] = queue.Queue()
    with admin(bastion_server) as api:
        app = api.clients.create("shop " + secrets.token_hex(3), grant_types=["password"],
                                 scopes=["openid"])
    options = {"url": bastion_server.url, "client_id": app.client_id,
               "client_secret": app.client_secret}
    configure(bcl=options)
    try:
        with relying_party(told, "bcl") as uri, admin(bastion_server) as api:
            api.clients.update(app, backchannel_logout_uri=uri)
            account = account_on(bastion_server)
            with Client(**options) as client:
                tokens = client.login_password(account.username, account.password,
                                               scope="openid")
                client.revoke_all(tokens)
            logout = told.get(timeout=30)
            assert (logout.sub, logout.sid) == (account.id, None)
    finally:
        configure()


def test_the_uri_is_set_and_removed_with_the_sdk(
        bastion_server: ServerProcess, receiver: LogoutReceiver) -> None:
    options = app_options(bastion_server, receiver)
    with admin(bastion_server) as api:
        assert api.clients.get(options["client_id"]).backchannel_logout_uri == receiver.uri
        removed = api.clients.update(options["client_id"], backchannel_logout_uri="")
        assert removed.backchannel_logout_uri is None
        changed = api.clients.update(options["client_id"],
                                     backchannel_logout_uri="https://shop.example/bcl")
        assert changed.backchannel_logout_uri == "https://shop.example/bcl"
    meta = httpx2.get(bastion_server.url + "/.well-known/openid-configuration").json()
    assert meta["backchannel_logout_supported"] is True
