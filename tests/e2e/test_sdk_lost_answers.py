"""The SDK against the real server when an answer is lost on the way back: the
server did the work, the SDK saw a read timeout. A transport wrapper lets the
request through and then raises, as a dropped connection would.

A refresh whose answer was lost may have spent its token, so no caller of the
same client presents it again while its outcome is remembered; a DELETE resent
after such a loss that finds nothing has done its work. Remembered refreshes
are forgotten when their tokens are revoked, and after ``REMEMBER_FOR`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx2
import pytest

from bastion import AsyncClient, Client, InvalidGrant, InvalidToken, NotFound, TransportError
from bastion.client._base import REMEMBER_FOR
from support import ServerProcess

App = Account = Any  # the dataclasses of tests/e2e/conftest.py


def _grant(request: httpx2.Request) -> dict[str, str]:
    if request.method != "POST" or not request.url.path.endswith("/oauth/token"):
        return {}
    return dict(parse_qsl(request.content.decode()))


class Losing:
    """Counts what is sent; ``lose(request)`` decides which answers to drop."""

    def __init__(self, lose: Callable[[httpx2.Request], bool]) -> None:
        self.lose = lose
        self.presented: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()

    def sent(self, request: httpx2.Request) -> None:
        self.paths[f"{request.method} {request.url.path}"] += 1
        if token := _grant(request).get("refresh_token"):
            self.presented[token] += 1

    def check(self, request: httpx2.Request) -> None:
        if self.lose(request):
            raise httpx2.ReadTimeout("the answer was lost", request=request)


class LosingTransport(httpx2.HTTPTransport):
    def __init__(self, losing: Losing) -> None:
        super().__init__()
        self.losing = losing

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.losing.sent(request)
        response = super().handle_request(request)
        response.read()
        self.losing.check(request)
        return response


class AsyncLosingTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, losing: Losing) -> None:
        super().__init__()
        self.losing = losing

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        self.losing.sent(request)
        response = await super().handle_async_request(request)
        await response.aread()
        self.losing.check(request)
        return response


def first(predicate: Callable[[httpx2.Request], bool]) -> Callable[[httpx2.Request], bool]:
    """Lose the answer to the first request ``predicate`` picks, only that one."""
    done: list[bool] = []

    def lose(request: httpx2.Request) -> bool:
        if done or not predicate(request):
            return False
        done.append(True)
        return True

    return lose


def is_refresh(request: httpx2.Request) -> bool:
    return _grant(request).get("grant_type") == "refresh_token"


def web_client(server: ServerProcess, app: App, transport: httpx2.BaseTransport, **extra: Any
               ) -> Client:
    return Client(url=server.url, client_id=app.client_id, client_secret=app.client_secret,
                  transport=transport, **extra)


def test_a_shared_token_auth_never_resends_a_refresh_whose_answer_was_lost(
        bastion_server: ServerProcess, web_app: App, account: Account) -> None:
    losing = Losing(first(is_refresh))
    # refresh_margin beyond the token's life: every use of the auth refreshes first.
    with web_client(bastion_server, web_app, LosingTransport(losing),
                    refresh_margin=10**7) as client:
        tokens = client.login_password(account.username, account.password, "openid")
        auth = client.token_auth(tokens)
        userinfo = client.discover().userinfo_endpoint
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.request("GET", userinfo, auth=auth)
            except TransportError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        call()  # and once more, after all of them
        assert len(errors) == 5
        assert losing.presented[str(tokens.refresh_token)] == 1
        assert auth.tokens is tokens


async def test_an_async_token_auth_never_resends_a_refresh_whose_answer_was_lost(
        bastion_server: ServerProcess, web_app: App, account: Account) -> None:
    losing = Losing(first(is_refresh))
    async with AsyncClient(url=bastion_server.url, client_id=web_app.client_id,
                           client_secret=web_app.client_secret, refresh_margin=10**7,
                           transport=AsyncLosingTransport(losing)) as client:
        tokens = await client.login_password(account.username, account.password, "openid")
        auth = client.token_auth(tokens)
        userinfo = (await client.discover()).userinfo_endpoint
        outcomes: list[BaseException | int] = []

        async def call() -> None:
            try:
                outcomes.append((await client.request("GET", userinfo, auth=auth)).status_code)
            except TransportError as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(call)
        await call()
        assert all(isinstance(outcome, TransportError) for outcome in outcomes)
        assert len(outcomes) == 5
        assert losing.presented[str(tokens.refresh_token)] == 1


def test_a_refresh_that_never_left_is_sent_by_the_next_try(
        bastion_server: ServerProcess, web_app: App, account: Account) -> None:
    refused: list[bool] = []

    class Refusing(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            if is_refresh(request) and not refused:
                refused.append(True)
                raise httpx2.ConnectError("connection refused", request=request)
            return super().handle_request(request)

    with web_client(bastion_server, web_app, Refusing(), refresh_margin=10**7,
                    retries=0) as client:
        tokens = client.login_password(account.username, account.password, "openid")
        auth = client.token_auth(tokens)
        userinfo = client.discover().userinfo_endpoint
        with pytest.raises(Exception, match="reach the provider") as failed:
            client.request("GET", userinfo, auth=auth)
        assert not getattr(failed.value, "sent", True)
        assert client.request("GET", userinfo, auth=auth).json()["sub"] == account.id
        assert auth.tokens.refresh_token != tokens.refresh_token


def test_a_refresh_is_remembered_only_until_its_tokens_are_revoked(
        bastion_server: ServerProcess, web_app: App, account: Account) -> None:
    losing = Losing(lambda request: False)
    with web_client(bastion_server, web_app, LosingTransport(losing)) as client:
        tokens = client.login_password(account.username, account.password, "openid")
        renewed = client.refresh(tokens)
        assert client.refresh(tokens).refresh_token == renewed.refresh_token  # remembered
        assert losing.presented[str(tokens.refresh_token)] == 1

        renewed.revoke()
        with pytest.raises(InvalidGrant):  # sent, and the provider says what it is
            client.refresh(tokens)
        assert losing.presented[str(tokens.refresh_token)] == 2
        check = client.validate_token_set("not.a.token", tokens.refresh_token)
        assert check.state == "invalid"


def test_revoke_all_forgets_the_users_remembered_refreshes(
        bastion_server: ServerProcess, web_app: App, account: Account,
        make_account: Callable[..., Account]) -> None:
    other = make_account()
    with web_client(bastion_server, web_app, LosingTransport(Losing(lambda r: False))) as client:
        tokens = client.login_password(account.username, account.password, "openid")
        others = client.login_password(other.username, other.password, "openid")
        renewed, others_renewed = client.refresh(tokens), client.refresh(others)
        client.revoke_all(renewed)
        with pytest.raises(InvalidGrant):
            client.refresh(tokens)
        # Another user's refresh is still remembered.
        assert client.refresh(others).refresh_token == others_renewed.refresh_token


def test_a_revoke_all_whose_answer_was_lost_is_done(
        bastion_server: ServerProcess, web_app: App, account: Account) -> None:
    # The first DELETE revoked the very token its resend carries: that 401 is success.
    losing = Losing(first(lambda request: request.method == "DELETE"))
    with web_client(bastion_server, web_app, LosingTransport(losing)) as client:
        tokens = client.login_password(account.username, account.password, "openid")
        client.revoke_all(tokens)
        assert losing.paths["DELETE /api/v1/users/me/sessions"] == 2
        with pytest.raises(InvalidGrant):
            client.refresh(tokens)
        with pytest.raises(InvalidToken):  # with no answer lost, a revoked token is a 401
            client.revoke_all(tokens)


def test_a_spent_refresh_token_reaches_the_provider_once_the_moment_is_over(
        bastion_server: ServerProcess, web_app: App, account: Account) -> None:
    losing = Losing(lambda request: False)
    with web_client(bastion_server, web_app, LosingTransport(losing)) as client:
        tokens = client.login_password(account.username, account.password, "openid")
        renewed = client.refresh(tokens)
        later = time.time() + REMEMBER_FOR + 1
        client._core.clock = lambda: later
        with pytest.raises(InvalidGrant, match="family"):  # reuse detected: family revoked
            client.refresh(tokens)
        with pytest.raises(InvalidGrant):
            client.refresh(renewed)


@pytest.mark.parametrize("what", ["role", "organization", "client", "user"])
def test_a_delete_whose_answer_was_lost_is_done(
        bastion_server: ServerProcess, make_account: Callable[..., Account], what: str) -> None:
    def is_delete(request: httpx2.Request) -> bool:
        return request.method == "DELETE"

    losing = Losing(first(is_delete))
    with Client(url=bastion_server.url, client_id=bastion_server.admin_client_id,
                client_secret=bastion_server.admin_client_secret,
                transport=LosingTransport(losing)) as admin:
        org = admin.organizations.create("Lost " + what)
        if what == "role":
            admin.roles.create(org, "editor")
            admin.roles.delete(org, "editor")
            with pytest.raises(NotFound):
                admin.roles.get(org, "editor")
        elif what == "organization":
            admin.organizations.delete(org)
            with pytest.raises(NotFound):
                admin.organizations.get(org)
        elif what == "client":
            created = admin.clients.create("lost", grant_types=["client_credentials"])
            admin.clients.delete(created.client_id)
            with pytest.raises(NotFound):
                admin.clients.get(created.client_id)
        else:
            user = make_account()
            admin.users.delete(user.id)
        deletes = [path for path in losing.paths if path.startswith("DELETE")]
        assert [losing.paths[path] for path in deletes] == [2]  # sent again once
        # A DELETE of something that is not there, with no answer lost, is a 404.
        with pytest.raises(NotFound):
            admin.roles.delete(org if what != "organization" else "no-such-org", "nobody")


def test_concurrent_admin_calls_fetch_one_admin_token(
        bastion_server: ServerProcess, account: Account) -> None:
    losing = Losing(lambda request: False)
    with Client(url=bastion_server.url, client_id=bastion_server.admin_client_id,
                client_secret=bastion_server.admin_client_secret,
                transport=LosingTransport(losing)) as admin:
        admin.discover()
        barrier = threading.Barrier(6)

        def get() -> None:
            barrier.wait()
            assert admin.users.get(account.id).id == account.id

        threads = [threading.Thread(target=get) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert losing.paths["POST /oauth/token"] == 1
        assert losing.paths[f"GET /api/v1/users/{account.id}"] == 6


def test_a_token_with_characters_no_token_has_is_an_invalid_token(
        bastion_server: ServerProcess, web_app: App) -> None:
    token = "eyJsecret-part\u00e9"  # as Starlette decodes a header: latin-1
    with web_client(bastion_server, web_app, httpx2.HTTPTransport()) as client:
        calls: list[Callable[[], object]] = [
            lambda: client.userinfo(token),
            lambda: client.revoke_all(token),
            lambda: client.users.me(token),
            lambda: client.users.with_token(token).get("someone"),
        ]
        for call in calls:
            with pytest.raises(InvalidToken) as refused:
                call()
            assert "secret-part" not in str(refused.value) + repr(refused.value)
            assert refused.value.__context__ is None and refused.value.__cause__ is None
