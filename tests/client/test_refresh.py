"""Refreshing: one request per refresh token (a single flight) across threads and
tasks, the memory of traded tokens, and the ID token that comes with a refresh.

The concurrent tests never sleep: the provider holds the leader's token request
until the followers are seen waiting for it (``Flight.event``), then answers.
Each wait has a generous timeout only so that a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
from sdk_fakes import (
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    FakeProvider,
    Gate,
    run_in_thread,
    watch_followers,
)

from bastion import (
    AsyncClient,
    BastionError,
    Client,
    ConfigurationError,
    InvalidGrant,
    InvalidToken,
    TokenSet,
    TransportError,
)
from bastion.oauth.jose import PrivateKey, b64url_encode

TOKEN_PATH = "/tenant/oauth/token"
#: Only a safety net against hanging on a regression; no test waits this long.
PATIENCE = 10


def user_tokens(expires_in: float = 0, refresh: str = "r-0") -> TokenSet:
    return TokenSet.from_response(
        {"access_token": "at-0", "expires_in": expires_in, "refresh_token": refresh},
        time.time(),
    )


def sync_client(handler: Any) -> Client:
    return Client(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  transport=httpx2.MockTransport(handler))


def assert_a_copy(follower: BaseException, leader: BaseException) -> None:
    """A follower's own copy of the leader's error (see ``_flight._own_copy``)."""
    assert follower is not leader and type(follower) is type(leader)
    assert str(follower) == str(leader) and follower.__cause__ is leader.__cause__


# -- threads ------------------------------------------------------------------------


def test_two_token_auths_of_one_session_send_the_refresh_token_once(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
):
    """Two requests of one browser session, each with its own ``token_auth``."""
    gate = Gate(provider, TOKEN_PATH)
    watch_followers(monkeypatch, gate.follow)
    seen: list[TokenSet] = []
    with sync_client(gate) as client:
        auths = [client.token_auth(user_tokens(), on_refresh=seen.append) for _ in range(2)]
        first, first_out = run_in_thread(lambda: client.request("GET", "api/thing", auth=auths[0]))
        assert gate.leader_in.wait(PATIENCE)
        second, second_out = run_in_thread(
            lambda: client.request("GET", "api/thing", auth=auths[1])
        )
        first.join()
        second.join()
    assert [out.status_code for out in first_out + second_out] == [200, 200]
    assert provider.calls[TOKEN_PATH] == 1
    assert auths[0].tokens == auths[1].tokens
    assert auths[0].tokens.refresh_token == "rotated-refresh-1"
    assert len(seen) == 2  # each auth tells its app about the new tokens


def test_token_auth_and_validate_token_set_share_one_refresh(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
):
    gate = Gate(provider, TOKEN_PATH)
    watch_followers(monkeypatch, gate.follow)
    with sync_client(gate) as client:
        client.verify_token(provider.sign())  # keys loaded: the check itself sends nothing
        auth = client.token_auth(user_tokens())
        first, first_out = run_in_thread(lambda: client.request("GET", "api/thing", auth=auth))
        assert gate.leader_in.wait(PATIENCE)
        expired = provider.sign(exp=1000, iat=900)
        second, second_out = run_in_thread(lambda: client.validate_token_set(expired, "r-0"))
        first.join()
        second.join()
    check = second_out[0]
    assert first_out[0].status_code == 200
    assert check.state == "refreshed" and check.tokens == auth.tokens
    assert provider.calls[TOKEN_PATH] == 1


def test_followers_get_the_leaders_exception(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
):
    provider.overrides[TOKEN_PATH] = [httpx2.Response(400, json={"error": "invalid_grant"})]
    gate = Gate(provider, TOKEN_PATH)
    watch_followers(monkeypatch, gate.follow)
    with sync_client(gate) as client:
        client.discover()
        first, first_out = run_in_thread(lambda: client.refresh("r-0"))
        assert gate.leader_in.wait(PATIENCE)
        second, second_out = run_in_thread(lambda: client.refresh("r-0"))
        first.join()
        second.join()
    assert isinstance(first_out[0], InvalidGrant)
    assert_a_copy(second_out[0], first_out[0])
    assert provider.calls[TOKEN_PATH] == 1


def test_one_users_slow_refresh_does_not_hold_up_another(provider: FakeProvider):
    """No client-wide lock: user B's refresh finishes while A's is still in flight."""
    release = threading.Event()
    a_in = threading.Event()
    finished: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == TOKEN_PATH and provider.form(request)["refresh_token"] == "r-a":
            a_in.set()
            release.wait(PATIENCE)
            finished.append("a")
        return provider(request)

    with sync_client(handler) as client:
        client.discover()
        slow, _ = run_in_thread(lambda: client.refresh("r-a"))
        assert a_in.wait(PATIENCE)
        client.refresh("r-b")
        finished.append("b")
        release.set()
        slow.join()
    assert finished == ["b", "a"]


# -- tasks --------------------------------------------------------------------------


class AsyncGate:
    """``Gate`` for tasks: the leader's token request waits on an anyio event."""

    def __init__(self, provider: FakeProvider, followers: int = 1) -> None:
        self.provider = provider
        self.needed = followers
        self.count = 0
        self.leader_in = anyio.Event()
        self.followed = anyio.Event()

    def follow(self) -> None:
        self.count += 1
        if self.count >= self.needed:
            self.followed.set()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == TOKEN_PATH:
            self.leader_in.set()
            with anyio.fail_after(PATIENCE):
                await self.followed.wait()
        return self.provider(request)


def async_client(handler: Any) -> AsyncClient:
    return AsyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                       transport=httpx2.MockTransport(handler))


async def test_two_token_auths_send_the_refresh_token_once_across_tasks(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
):
    gate = AsyncGate(provider)
    watch_followers(monkeypatch, gate.follow)
    seen: list[TokenSet] = []
    statuses: list[int] = []
    async with async_client(gate) as client:
        auths = [client.token_auth(user_tokens(), on_refresh=seen.append) for _ in range(2)]

        async def call(auth: Any) -> None:
            statuses.append((await client.request("GET", "api/thing", auth=auth)).status_code)

        async with anyio.create_task_group() as group:
            group.start_soon(call, auths[0])
            await gate.leader_in.wait()
            group.start_soon(call, auths[1])
    assert statuses == [200, 200]
    assert provider.calls[TOKEN_PATH] == 1
    assert auths[0].tokens == auths[1].tokens and len(seen) == 2


async def test_client_refresh_and_token_auth_share_one_refresh_across_tasks(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
):
    gate = AsyncGate(provider)
    watch_followers(monkeypatch, gate.follow)
    refreshed: list[TokenSet] = []
    async with async_client(gate) as client:
        await client.discover()
        auth = client.token_auth(user_tokens())

        async def refresh() -> None:
            refreshed.append(await client.refresh("r-0"))

        async with anyio.create_task_group() as group:
            group.start_soon(refresh)
            await gate.leader_in.wait()
            response = await client.request("GET", "api/thing", auth=auth)
    assert response.status_code == 200
    assert refreshed == [auth.tokens]
    assert provider.calls[TOKEN_PATH] == 1


async def test_followers_get_the_leaders_exception_across_tasks(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
):
    provider.overrides[TOKEN_PATH] = [httpx2.Response(400, json={"error": "invalid_grant"})]
    gate = AsyncGate(provider)
    watch_followers(monkeypatch, gate.follow)
    errors: list[Exception] = []
    async with async_client(gate) as client:
        await client.discover()

        async def refresh() -> None:
            try:
                await client.refresh("r-0")
            except InvalidGrant as exc:
                errors.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(refresh)
            await gate.leader_in.wait()
            group.start_soon(refresh)
    assert len(errors) == 2
    assert_a_copy(errors[1], errors[0])
    assert provider.calls[TOKEN_PATH] == 1


async def test_a_cancelled_leader_wakes_its_followers(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
):
    """The request may or may not have reached the provider: the follower is told,
    rather than sending the token a second time or waiting forever."""
    leader_in, followed = anyio.Event(), anyio.Event()
    watch_followers(monkeypatch, followed.set)
    sent: list[str] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == TOKEN_PATH:
            sent.append(provider.form(request)["refresh_token"])
            leader_in.set()
            await anyio.sleep_forever()
        return provider(request)

    async with async_client(handler) as client:
        await client.discover()
        errors: list[Exception] = []

        async def follow() -> None:
            try:
                await client.refresh("r-0")
            except TransportError as exc:
                errors.append(exc)

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as group:
                leader = anyio.CancelScope()

                async def lead() -> None:
                    with leader:
                        await client.refresh("r-0")

                group.start_soon(lead)
                await leader_in.wait()
                group.start_soon(follow)
                await followed.wait()
                leader.cancel()
    assert len(errors) == 1 and "interrupted" in str(errors[0])
    assert sent == ["r-0"]
    assert len(client._core.flights) == 0


async def test_one_users_slow_refresh_does_not_hold_up_another_task(provider: FakeProvider):
    release, a_in = anyio.Event(), anyio.Event()
    finished: list[str] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == TOKEN_PATH and provider.form(request)["refresh_token"] == "r-a":
            a_in.set()
            await release.wait()
            finished.append("a")
        return provider(request)

    async with async_client(handler) as client:
        await client.discover()
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as group:
                group.start_soon(client.refresh, "r-a")
                await a_in.wait()
                await client.refresh("r-b")
                finished.append("b")
                release.set()
    assert finished == ["b", "a"]


def test_a_task_that_gave_up_following_a_threads_refresh_is_not_woken(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
):
    """A sync client's auth serving threads and, in a short-lived loop, an async httpx2
    client whose request is cancelled while it follows a thread's refresh. Its event
    stayed registered: once its loop had closed, waking it raised RuntimeError in the
    leader's thread (whose request failed, its rotated tokens lost), and the thread
    following next was never woken."""
    gate = Gate(provider, TOKEN_PATH, followers=2)
    task_follows: list[asyncio.Event] = []  # the task's loop runs in this thread

    def follow() -> None:
        gate.follow()
        if threading.current_thread() is threading.main_thread():
            task_follows[0].set()

    watch_followers(monkeypatch, follow)
    with sync_client(gate) as client:
        auths = [client.token_auth(user_tokens()) for _ in range(3)]
        leader, leader_out = run_in_thread(
            lambda: client.request("GET", "api/thing", auth=auths[0]))
        assert gate.leader_in.wait(PATIENCE)

        async def give_up() -> None:
            task_follows.append(asyncio.Event())
            async with httpx2.AsyncClient(transport=httpx2.MockTransport(gate)) as http:
                task = asyncio.ensure_future(http.get(ISSUER + "/api/thing", auth=auths[1]))
                await asyncio.wait_for(task_follows[0].wait(), PATIENCE)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        asyncio.run(give_up())  # its loop closes before the refresh lands
        follower_out: list[Any] = []
        follower = threading.Thread(  # a daemon: a regression fails, without hanging
            target=lambda: follower_out.append(
                client.request("GET", "api/thing", auth=auths[2])), daemon=True)
        follower.start()
        leader.join(PATIENCE)
        follower.join(PATIENCE)
        assert [out.status_code for out in leader_out + follower_out] == [200, 200]
    assert auths[0].tokens == auths[2].tokens and provider.calls[TOKEN_PATH] == 1


# -- what is remembered (both shells) ----------------------------------------------


def test_tokens_without_expires_in_are_remembered(make_client: Any, provider: FakeProvider):
    provider.overrides[TOKEN_PATH] = [
        httpx2.Response(200, json={"access_token": "at-1", "refresh_token": "r-1"})
    ]
    client = make_client()
    first = client.refresh("r-0")
    assert first.expires_at is None
    assert client.refresh("r-0") == first  # late, but the spent token is not sent again
    assert provider.calls[TOKEN_PATH] == 1


def test_remembered_tokens_about_to_expire_are_handed_back(
    make_client: Any, provider: FakeProvider
):
    provider.expires_in = 10
    client = make_client(refresh_margin=30)
    first = client.refresh("r-0")
    assert first.expires_within(30)
    again = client.refresh("r-0")
    assert again == first and provider.calls[TOKEN_PATH] == 1
    client.refresh(again)  # its own refresh token is the one to use next
    assert provider.form(provider.requests[-1])["refresh_token"] == "rotated-refresh-1"


def test_a_refresh_token_that_was_not_rotated_is_sent_again_when_due(
    make_client: Any, provider: FakeProvider
):
    provider.overrides[TOKEN_PATH] = [
        httpx2.Response(200, json={"access_token": f"at-{n}", "expires_in": 10})
        for n in range(2)
    ]
    client = make_client(refresh_margin=30)
    assert client.refresh("r-0").refresh_token == "r-0"  # still valid: not spent
    assert client.refresh("r-0").access_token == "at-0"  # its tokens are fresh: shared
    later = time.time() + 6  # past half the 10 s lifetime (the margin, capped)
    client._core.clock = lambda: later
    assert client.refresh("r-0").access_token == "at-1"
    assert provider.calls[TOKEN_PATH] == 2


DISCOVERY = "/tenant/.well-known/openid-configuration"


def test_a_failed_discovery_is_not_a_lost_refresh(make_client: Any, provider: FakeProvider):
    provider.overrides[DISCOVERY] = [httpx2.Response(502), httpx2.Response(502),
                                     httpx2.Response(502)]
    client = make_client()
    with pytest.raises(BastionError):
        client.refresh("r-0")
    assert client.refresh("r-0").refresh_token == "rotated-refresh-1"  # sent now
    assert provider.calls[TOKEN_PATH] == 1


def test_a_lost_refresh_answer_is_remembered_and_each_caller_gets_its_own_error(
    make_client: Any, provider: FakeProvider
):
    provider.overrides[TOKEN_PATH] = [httpx2.ReadTimeout("lost")]
    client = make_client()
    with pytest.raises(TransportError):
        client.refresh("r-0")
    errors = []
    for _ in range(2):
        with pytest.raises(TransportError, match="not sent again") as later:
            client.refresh("r-0")
        errors.append(later.value)
    assert errors[0] is not errors[1] and provider.calls[TOKEN_PATH] == 1


def test_revoking_a_spent_refresh_token_forgets_what_it_was_traded_for(
    make_client: Any, provider: FakeProvider
):
    client = make_client()
    client.refresh("r-0")
    client.revoke("at-x", "access_token")  # an access token alone: the trade stands
    assert client.refresh("r-0").refresh_token == "rotated-refresh-1"
    assert provider.calls[TOKEN_PATH] == 1
    client.revoke("r-0")  # the family: the provider judges r-0 from now on
    client.refresh("r-0")
    assert provider.calls[TOKEN_PATH] == 2


# -- the ID token of a refresh (OIDC Core 12.2) -------------------------------------


def signed_in(client: Any, provider: FakeProvider) -> TokenSet:
    tokens: TokenSet = client.login_password("ann", "pw", scope="openid")
    assert tokens.id_token_claims and tokens.id_token_claims["sub"] == "user-1"
    provider.refresh_id_token = True
    return tokens


def test_remembered_tokens_are_not_validated_again(make_client: Any, provider: FakeProvider):
    # Their ID token was checked when they came; by the time a late caller gets them
    # it may have expired, and that must not fail the caller (nor say "invalid").
    client = make_client(leeway=0)
    tokens = signed_in(client, provider)
    provider.id_claims = {"exp": int(time.time()) + 2}
    renewed = client.refresh(tokens)
    later = time.time() + 10
    client._core.clock = lambda: later
    assert client.refresh(tokens) == renewed
    check = client.validate_token_set("not.a.token", tokens.refresh_token)
    assert check.state == "refreshed" and check.tokens == renewed
    assert provider.calls[TOKEN_PATH] == 2  # the login and one refresh


def test_a_refreshed_id_token_is_validated(make_client: Any, provider: FakeProvider):
    client = make_client()
    tokens = signed_in(client, provider)
    renewed = client.refresh(tokens)
    assert renewed.id_token != tokens.id_token
    assert renewed.id_token_claims and renewed.id_token_claims["sub"] == "user-1"
    assert "nonce" not in renewed.id_token_claims


def test_a_refreshed_id_token_that_cannot_be_checked_yet_keeps_the_traded_tokens(
    make_client: Any, provider: FakeProvider
):
    # The provider rotated its ID-token key moments after the JWKS was read: the new
    # kid cannot be checked until the next refetch. The refresh fails, but the tokens
    # it was traded for are remembered; trying again sends no spent refresh token.
    client = make_client()
    tokens = signed_in(client, provider)
    new_key = PrivateKey.generate("id-2", "ES256")
    provider.id_claims = {"_key": new_key}
    provider.jwks_keys = [provider.key, provider.id_key, new_key]
    with pytest.raises(InvalidToken):
        client.refresh(tokens)
    client._core.keys.fetched_at -= 3600  # the refetch interval has passed
    renewed = client.refresh(tokens)
    assert renewed.id_token_claims and renewed.id_token_claims["sub"] == "user-1"
    sent = [provider.form(r)["refresh_token"] for r in provider.requests
            if r.url.path == TOKEN_PATH and provider.form(r).get("grant_type") == "refresh_token"]
    assert sent == [tokens.refresh_token]


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"aud": "another-client"}, "not meant for this client"),
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"exp": 1000}, "expired"),
        ({"sub": "user-2"}, "another user"),
    ],
)
def test_a_bad_refreshed_id_token_is_refused(
    make_client: Any, provider: FakeProvider, claims: dict[str, Any], message: str
):
    client = make_client()
    tokens = signed_in(client, provider)
    provider.id_claims = claims
    with pytest.raises(InvalidToken, match=message):
        client.refresh(tokens)


def test_an_unsigned_refreshed_id_token_is_refused(make_client: Any, provider: FakeProvider):
    def part(value: dict[str, Any]) -> str:
        return b64url_encode(json.dumps(value).encode())

    forged = part({"alg": "none"}) + "." + part({"iss": ISSUER, "sub": "user-1"}) + "."
    provider.overrides[TOKEN_PATH] = [
        httpx2.Response(200, json={"access_token": "at", "expires_in": 300,
                                   "refresh_token": "r-1", "id_token": forged})
    ]
    with pytest.raises(InvalidToken):
        make_client().refresh("r-0")


def test_token_auth_refuses_an_id_token_about_another_user(
    make_client: Any, provider: FakeProvider
):
    provider.expires_in = 0  # the login's access token is due at once
    client = make_client()
    auth = client.token_auth(signed_in(client, provider))
    provider.id_claims = {"sub": "user-2"}
    with pytest.raises(InvalidToken, match="another user"):
        client.request("GET", "api/thing", auth=auth)
    assert auth.tokens.id_token_claims and auth.tokens.id_token_claims["sub"] == "user-1"


def test_a_refresh_without_id_token_keeps_the_validated_one(
    make_client: Any, provider: FakeProvider
):
    client = make_client()
    tokens = client.login_password("ann", "pw", scope="openid")
    renewed = client.refresh(tokens)
    assert renewed.id_token == tokens.id_token
    assert renewed.id_token_claims == tokens.id_token_claims


class StoreDown(Exception):
    pass


def failing_once(seen: list[TokenSet]) -> Any:
    def on_refresh(tokens: TokenSet) -> None:
        seen.append(tokens)
        if len(seen) == 1:
            raise StoreDown("the session store is briefly down")
    return on_refresh


def test_tokens_are_kept_when_on_refresh_fails(provider: FakeProvider) -> None:
    """The new tokens were dropped: after the memory of traded tokens (30 s), the spent
    refresh token was sent again, a reuse that revokes the whole family."""
    seen: list[TokenSet] = []
    with sync_client(provider) as client:
        auth = client.token_auth(user_tokens(), on_refresh=failing_once(seen))
        with pytest.raises(StoreDown):
            client.request("GET", "api/thing", auth=auth)
        assert auth.tokens is seen[0] and auth.tokens.refresh_token == "rotated-refresh-1"
        assert client.request("GET", "api/thing", auth=auth).status_code == 200
    assert provider.calls[TOKEN_PATH] == 1


async def test_tokens_are_kept_when_on_refresh_fails_async(provider: FakeProvider) -> None:
    seen: list[TokenSet] = []
    async with async_client(provider) as client:
        auth = client.token_auth(user_tokens(), on_refresh=failing_once(seen))
        with pytest.raises(StoreDown):
            await client.request("GET", "api/thing", auth=auth)
        assert auth.tokens is seen[0] and auth.tokens.refresh_token == "rotated-refresh-1"
        assert (await client.request("GET", "api/thing", auth=auth)).status_code == 200
    assert provider.calls[TOKEN_PATH] == 1


async def test_an_async_on_refresh_is_awaited_by_async_requests(provider: FakeProvider) -> None:
    """It was called and never awaited: the rotated tokens never reached the app's
    store, whose spent refresh token then revoked the whole family."""
    saved: list[TokenSet] = []

    async def save(tokens: TokenSet) -> None:
        await anyio.lowlevel.checkpoint()  # suspends, as a store's I/O would
        saved.append(tokens)

    async with async_client(provider) as client:
        auth = client.token_auth(user_tokens(), on_refresh=save)
        assert (await client.request("GET", "api/thing", auth=auth)).status_code == 200
    assert saved == [auth.tokens] and auth.tokens.refresh_token == "rotated-refresh-1"


async def test_a_sync_clients_token_auth_awaits_it_in_an_async_httpx2_client(
    provider: FakeProvider,
) -> None:
    """The async path awaits it whichever client made the auth."""
    saved: list[TokenSet] = []

    async def save(tokens: TokenSet) -> None:
        saved.append(tokens)

    with sync_client(provider) as client:
        auth = client.token_auth(user_tokens(), on_refresh=save)
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(provider)) as http:
            assert (await http.get(ISSUER + "/api/thing", auth=auth)).status_code == 200
    assert saved == [auth.tokens] and provider.calls[TOKEN_PATH] == 1


def test_a_sync_client_refuses_an_async_on_refresh_and_keeps_the_tokens(
    provider: FakeProvider,
) -> None:
    """It cannot be awaited there: refused, closed (no "never awaited" warning), and
    the new tokens kept all the same, so the spent refresh token is not sent again."""
    async def save(tokens: TokenSet) -> None:
        raise AssertionError("never runs")

    with sync_client(provider) as client:
        auth = client.token_auth(user_tokens(), on_refresh=save)
        with pytest.raises(ConfigurationError, match="on_refresh returned an awaitable"):
            client.request("GET", "api/thing", auth=auth)
        assert auth.tokens.refresh_token == "rotated-refresh-1"
    assert provider.calls[TOKEN_PATH] == 1


async def test_tokens_are_kept_when_an_async_on_refresh_fails(provider: FakeProvider) -> None:
    seen: list[TokenSet] = []
    failing = failing_once(seen)

    async def save(tokens: TokenSet) -> None:
        failing(tokens)

    async with async_client(provider) as client:
        auth = client.token_auth(user_tokens(), on_refresh=save)
        with pytest.raises(StoreDown):
            await client.request("GET", "api/thing", auth=auth)
        assert auth.tokens is seen[0] and auth.tokens.refresh_token == "rotated-refresh-1"
        assert (await client.request("GET", "api/thing", auth=auth)).status_code == 200
    assert provider.calls[TOKEN_PATH] == 1
