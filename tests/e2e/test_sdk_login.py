"""The SDK's login and user-token calls against the real ``bastion serve`` (SQLite).

The browser is replaced by plain HTTP following the hosted login form (see
``conftest.sign_in_over_http``); tests/browser does the same with Chromium.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

from bastion import (
    AsyncClient,
    Client,
    InsufficientScope,
    InvalidGrant,
    InvalidStateError,
    InvalidToken,
    MemoryReplayStore,
    TokenSet,
    UnauthorizedClient,
    User,
    configure,
)
from support import ServerProcess

App = Account = Any  # the dataclasses of tests/e2e/conftest.py

STATE_KEY = secrets.token_urlsafe(32)


def options(server: ServerProcess, app: App, **extra: Any) -> dict[str, Any]:
    return {
        "url": server.url,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "redirect_uri": app.redirect_uri,
        "state_key": STATE_KEY,
        **extra,
    }


@pytest.fixture
def client(bastion_server: ServerProcess, web_app: App) -> Iterator[Client]:
    with Client(**options(bastion_server, web_app)) as c:
        yield c


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def login(client: Client, account: Account, sign_in: Callable[..., str], **kw: Any) -> TokenSet:
    state, url = client.start_authorization("openid profile email", **kw)
    return client.finish_authorization_response(sign_in(url, account), expected_state=state)


def test_code_flow_with_pkce_and_id_token(
    bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any
) -> None:
    with Client(**options(bastion_server, web_app)) as starter:
        state, url = starter.start_authorization("openid profile email")
    sent = query(url)
    assert sent["code_challenge_method"] == "S256" and sent["nonce"] and sent["state"] == state
    assert "code_verifier" not in url and len(url) < 2048
    callback = sign_in(url, account)
    params = query(callback)
    assert params["iss"] == bastion_server.url and params["state"] == state
    # Another worker (a new client, same state_key) finishes the flow.
    with Client(**options(bastion_server, web_app)) as finisher:
        tokens = finisher.finish_authorization(
            params["code"], params["state"], expected_state=state, iss=params["iss"]
        )
        assert tokens.refresh_token and tokens.id_token and tokens.client is finisher
        assert tokens.id_token_claims is not None
        assert tokens.id_token_claims["sub"] == account.id
        assert tokens.id_token_claims["nonce"] == sent["nonce"]
        info = finisher.userinfo(tokens)
        assert info == {"sub": account.id, "preferred_username": account.username,
                        "email": account.email} | {k: v for k, v in info.items()
                                                   if k not in {"sub", "preferred_username",
                                                                "email"}}
        claims = finisher.verify_token(tokens.access_token)
        assert claims["sub"] == account.id


def test_public_client_async(
    bastion_server: ServerProcess, public_app: App, account: Account, asign_in: Any
) -> None:
    import anyio

    async def main() -> None:
        async with AsyncClient(**options(bastion_server, public_app)) as client:
            state, url = await client.start_authorization(["openid", "email"])
            callback = await asign_in(url, account)
            tokens = await client.finish_authorization_response(callback, state)
            assert tokens.id_token_claims and tokens.id_token_claims["sub"] == account.id
            info = await client.userinfo(tokens.access_token)
            assert info["email"] == account.email and "preferred_username" not in info
            renewed = await tokens.arefresh()
            assert renewed.refresh_token != tokens.refresh_token
            await renewed.arevoke()  # a public client may revoke (RFC 7009), not introspect
            check = await client.validate_token_set("not-a-token", renewed.refresh_token)
            assert check.state == "invalid" and isinstance(check.error, InvalidGrant)

    anyio.run(main)


def test_state_checks_at_the_callback(
    client: Client, bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any
) -> None:
    state, url = client.start_authorization()
    callback = sign_in(url, account)
    params = query(callback)
    with pytest.raises(InvalidStateError):  # another session's state
        client.finish_authorization_response(callback, expected_state=state[:-2] + "AA")
    with pytest.raises(InvalidStateError):  # another issuer in the response (RFC 9207)
        client.finish_authorization(params["code"], state, iss="https://evil.example")
    other_key = options(bastion_server, web_app, state_key=secrets.token_urlsafe(32))
    with Client(**other_key) as other, pytest.raises(InvalidStateError):
        other.finish_authorization_response(callback)
    store = MemoryReplayStore()
    tokens = client.finish_authorization_response(callback, replay_store=store)
    assert tokens.access_token
    with pytest.raises(InvalidStateError, match="already used"):
        client.finish_authorization_response(callback, replay_store=store)
    with pytest.raises(InvalidGrant):  # without a store, the server refuses the used code
        client.finish_authorization_response(callback)


def test_max_age_makes_the_user_sign_in_again(
    client: Client, account: Account, sign_in: Any
) -> None:
    with httpx2.Client(follow_redirects=False, timeout=10) as browser:
        state, url = client.start_authorization("openid")
        first = client.finish_authorization_response(sign_in(url, account, browser), state)
        state, url = client.start_authorization("openid")  # the session signs in at once
        again = browser.get(url)
        assert again.status_code in (302, 303), again.text[:300]
        assert client.finish_authorization_response(again.headers["location"], state)
        state, url = client.start_authorization("openid", max_age=0)
        assert query(url)["max_age"] == "0"
        assert "<form" in browser.get(url).text  # too old a sign-in: the form again
        tokens = client.finish_authorization_response(sign_in(url, account, browser), state)
    assert first.id_token_claims and tokens.id_token_claims
    assert tokens.id_token_claims["auth_time"] >= first.id_token_claims["auth_time"]


def test_callback_error_is_raised_after_the_state_is_checked(
    client: Client, bastion_server: ServerProcess
) -> None:
    state, url = client.start_authorization(prompt="none")
    with httpx2.Client(follow_redirects=False) as http:
        answer = http.get(url)
    assert answer.status_code in (302, 303)
    from bastion import LoginRequired

    with pytest.raises(LoginRequired):
        client.finish_authorization_response(answer.headers["location"], state)


def test_refresh_rotation_and_reuse(
    client: Client, bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any
) -> None:
    tokens = login(client, account, sign_in)
    renewed = tokens.refresh()
    assert renewed.refresh_token and renewed.refresh_token != tokens.refresh_token
    assert renewed.access_token != tokens.access_token
    # The same client asked again with the spent token answers from memory, so two
    # requests of one session racing to refresh do not trip reuse detection.
    assert client.refresh(str(tokens.refresh_token)) == renewed
    with Client(**options(bastion_server, web_app)) as elsewhere:
        with pytest.raises(InvalidGrant):  # a real reuse: the whole family is revoked
            elsewhere.refresh(str(tokens.refresh_token))
        with pytest.raises(InvalidGrant):
            elsewhere.refresh(str(renewed.refresh_token))


def test_revoke_and_validate_token_set(client: Client, account: Account, sign_in: Any) -> None:
    tokens = login(client, account, sign_in)
    valid = client.validate_token_set(tokens.access_token, tokens.refresh_token)
    assert valid.state == "valid" and valid.tokens is not None
    assert valid.tokens.refresh_token == tokens.refresh_token
    assert valid.claims is not None and valid.claims["sub"] == account.id
    # The access token alone revoked: only introspection sees it, and refreshes.
    client.revoke(tokens.access_token, "access_token")
    assert client.validate_token_set(tokens.access_token).state == "valid"  # local check
    refreshed = client.validate_token_set(
        tokens.access_token, tokens.refresh_token, introspect=True
    )
    assert refreshed.state == "refreshed" and refreshed.tokens is not None
    assert refreshed.tokens.refresh_token != tokens.refresh_token
    new = refreshed.tokens
    new.revoke()
    assert client.introspect(new.access_token)["active"] is False
    gone = client.validate_token_set(new.access_token, new.refresh_token, introspect=True)
    assert gone.state == "invalid" and isinstance(gone.error, InvalidGrant)
    bad = client.validate_token_set("not-a-token", None)
    assert bad.state == "invalid" and isinstance(bad.error, InvalidToken)


def test_login_password(
    bastion_server: ServerProcess, web_app: App, public_app: App, account: Account
) -> None:
    with Client(**options(bastion_server, web_app)) as client:
        tokens = client.login_password(account.email, account.password, scope="openid profile")
        assert tokens.id_token_claims and tokens.id_token_claims["sub"] == account.id
        assert client.userinfo(tokens)["preferred_username"] == account.username
        with pytest.raises(InvalidGrant):
            client.login_password(account.username, account.password + "x")
    with (
        Client(**options(bastion_server, public_app)) as public,
        pytest.raises(UnauthorizedClient),
    ):
        public.login_password(account.username, account.password)


def test_revoke_all_self_and_admin(
    bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any
) -> None:
    with Client(**options(bastion_server, web_app)) as client:
        first = login(client, account, sign_in)
        second = client.login_password(account.username, account.password)
        client.revoke_all(first)
        for tokens in (first, second):
            assert client.introspect(tokens.access_token)["active"] is False
            with pytest.raises(InvalidGrant):
                client.refresh(str(tokens.refresh_token))
        third = client.login_password(account.username, account.password)
    with Client(url=bastion_server.url, client_id=bastion_server.admin_client_id,
                client_secret=bastion_server.admin_client_secret) as admin:
        admin.revoke_all(user_id=account.id)
        assert admin.introspect(third.access_token)["active"] is False


def test_logout_url_ends_the_session(
    client: Client, bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any
) -> None:
    with httpx2.Client(follow_redirects=False, timeout=10) as browser:
        state, url = client.start_authorization()
        tokens = client.finish_authorization_response(sign_in(url, account, browser), state)
        logout = client.logout_url(tokens, web_app.post_logout_uri, state="bye-1")
        assert logout.startswith(bastion_server.url)
        answer = browser.get(logout)
        if answer.status_code == 200 and "<form" in answer.text:  # a confirmation page
            pytest.fail("logout with a valid id_token_hint should not need confirmation")
        assert answer.status_code in (302, 303), answer.text[:300]
        assert answer.headers["location"] == web_app.post_logout_uri + "?state=bye-1"
        # The session is gone: a new authorization shows the login form again.
        _, again = client.start_authorization()
        assert "<form" in browser.get(again).text


def test_token_auth_refreshes_once_for_concurrent_callers(
    bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A margin longer than the token's life, not capped at half of it: every request
    # finds it due for refresh, so the 8 threads refresh one after another, each with
    # the newest token.
    monkeypatch.setattr("bastion.client._auth.renewal_margin", lambda _t, _now, margin: margin)
    with Client(**options(bastion_server, web_app, refresh_margin=10**6)) as client:
        tokens = login(client, account, sign_in)
        seen: list[TokenSet] = []
        auth = client.token_auth(tokens, on_refresh=seen.append)
        userinfo = client.discover().userinfo_endpoint
        assert userinfo
        start = threading.Barrier(8)
        statuses: list[int] = []

        def call() -> None:
            start.wait()
            statuses.append(client.request("GET", userinfo, auth=auth).status_code)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 8
        assert len(seen) == 8 and auth.tokens is seen[-1]
        assert len({t.refresh_token for t in seen}) == 8
        assert auth.tokens.refresh() is not None  # the newest refresh token still works


def test_an_async_on_refresh_stores_the_rotated_tokens(
    bastion_server: ServerProcess, web_app: App, account: Account, asign_in: Any
) -> None:
    """``async def on_refresh`` is awaited: it was called and never awaited, so the
    session kept the spent refresh token, and the next worker's refresh with it
    revoked the whole family."""
    import anyio.lowlevel

    session: dict[str, TokenSet] = {}

    async def save(tokens: TokenSet) -> None:
        await anyio.lowlevel.checkpoint()  # suspends, as a session store's I/O would
        session["tokens"] = tokens

    async def main() -> None:
        async with AsyncClient(**options(bastion_server, web_app)) as client:
            state, url = await client.start_authorization("openid profile")
            tokens = await client.finish_authorization_response(
                await asign_in(url, account), state)
            due = dataclasses.replace(tokens, expires_at=datetime.now(UTC))
            auth = client.token_auth(due, on_refresh=save)
            userinfo = (await client.discover()).userinfo_endpoint
            assert userinfo and (await client.request("GET", userinfo, auth=auth)).is_success
            assert session["tokens"] is auth.tokens
            assert auth.tokens.refresh_token != tokens.refresh_token
        async with AsyncClient(**options(bastion_server, web_app)) as next_worker:
            assert (await next_worker.refresh(session["tokens"])).access_token

    anyio.run(main)


def test_user_model_sync_and_async(
    bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any, asign_in: Any
) -> None:
    import anyio

    configure(default=options(bastion_server, web_app))
    try:
        state, url = User.start_authorization(expiration=120)
        params = query(sign_in(url, account))
        user = User.from_authorization_code(params["code"], params["state"], state)
        assert (user.identifier, user.username, user.email) == (
            account.id, account.username, account.email)
        assert user.is_authenticated and user.token is not None
        assert "token" not in repr(user).lower().replace("tokens", "")
        assert user.token.refresh().access_token
        again = User.from_token(user.token.access_token)
        assert again.identifier == account.id

        async def main() -> None:
            state, url = await User.astart_authorization()
            params = query(await asign_in(url, account))
            user = await User.afrom_authorization_code(params["code"], params["state"], state)
            assert user.username == account.username and user.token is not None
            assert (await user.token.arefresh()).access_token
            assert (await User.afrom_token(user.token)).email == account.email

        anyio.run(main)
    finally:
        configure()


def _without_userinfo(client: Client | AsyncClient) -> None:
    """As if the provider did not advertise userinfo (discovered already)."""
    core = client._core
    assert core.metadata is not None
    raw = {k: v for k, v in core.metadata.raw.items() if k != "userinfo_endpoint"}
    core.metadata = dataclasses.replace(core.metadata, userinfo_endpoint=None, raw=raw)


def test_a_sign_in_without_userinfo_stands_on_the_id_token(
    bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any, asign_in: Any
) -> None:
    """The code is spent: the user comes from the validated ID token instead."""
    import anyio

    from bastion.client._shared import shared_async_client, shared_client

    configure(default=options(bastion_server, web_app))
    try:
        shared_client().discover()
        _without_userinfo(shared_client())
        state, url = User.start_authorization()
        params = query(sign_in(url, account))
        user = User.from_authorization_code(params["code"], params["state"], state)
        with Client(**options(bastion_server, web_app)) as client:
            assert user == User.from_claims(client.userinfo(user.token))  # the same fields
        assert (user.identifier, user.username, user.email) == (
            account.id, account.username, account.email)
        assert user.token is not None and user.token.refresh().access_token

        async def main() -> None:
            await shared_async_client().discover()
            _without_userinfo(shared_async_client())
            state, url = await User.astart_authorization()
            params = query(await asign_in(url, account))
            user = await User.afrom_authorization_code(params["code"], params["state"], state)
            assert user.username == account.username and user.token is not None
            assert (await user.token.arefresh()).access_token

        anyio.run(main)
    finally:
        configure()


def test_a_sign_in_with_a_misrouted_userinfo_stands_on_the_id_token(
    bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any
) -> None:
    """Userinfo at a URL the server does not serve: its 404 (an ``invalid_request``,
    "no OAuth endpoint at this address") says nothing against the tokens, so the user
    comes from the ID token and the tokens stay live."""
    from bastion.client._shared import shared_client

    configure(default=options(bastion_server, web_app))
    try:
        core = shared_client()._core
        metadata = shared_client().discover()
        assert metadata.userinfo_endpoint
        wrong = metadata.userinfo_endpoint + "/misrouted"
        core.metadata = dataclasses.replace(
            metadata, userinfo_endpoint=wrong, raw={**metadata.raw, "userinfo_endpoint": wrong})
        state, url = User.start_authorization()
        params = query(sign_in(url, account))
        user = User.from_authorization_code(params["code"], params["state"], state)
        assert (user.identifier, user.username) == (account.id, account.username)
        assert user.token is not None and user.token.refresh().access_token
    finally:
        configure()


def test_a_sign_in_whose_user_cannot_be_read_revokes_its_tokens(
    bastion_server: ServerProcess, web_app: App, account: Account, sign_in: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No openid: no ID token, and userinfo refuses the token. The error is raised,
    and the refresh token nobody holds is revoked rather than left live."""
    traded: list[TokenSet] = []
    finish = Client.finish_authorization

    def keep(self: Client, *args: Any, **kwargs: Any) -> TokenSet:
        traded.append(finish(self, *args, **kwargs))
        return traded[-1]

    monkeypatch.setattr(Client, "finish_authorization", keep)
    configure(default=options(bastion_server, web_app))
    try:
        state, url = User.start_authorization(scope="profile")
        params = query(sign_in(url, account))
        with pytest.raises(InsufficientScope):
            User.from_authorization_code(params["code"], params["state"], state)
        [tokens] = traded
        assert tokens.id_token is None and tokens.refresh_token
        with Client(**options(bastion_server, web_app)) as client, \
                pytest.raises(InvalidGrant):
            client.refresh(tokens.refresh_token)
    finally:
        configure()
