"""``backchannel_logout_endpoint`` in a Starlette app, with the fake provider's JWKS:
200 after ``on_logout``, 400 with OAuth error JSON for a bad request, 503 when the
keys are out of reach. The real server posts to it in tests/e2e/test_backchannel_logout.py."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from sdk_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, FakeProvider
from starlette.applications import Starlette
from starlette.routing import Route
from test_logout_token import logout_token

from bastion import AsyncClient, ConfigurationError, LogoutToken, MemoryReplayStore
from bastion.client.integrations.starlette import MAX_LOGOUT_BODY, backchannel_logout_endpoint

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def sdk(provider: FakeProvider) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           transport=httpx2.MockTransport(provider), retries=0) as client:
        yield client


@pytest.fixture
def told() -> list[LogoutToken]:
    return []


@pytest.fixture
async def http(sdk: AsyncClient, told: list[LogoutToken]) -> AsyncIterator[httpx2.AsyncClient]:
    async def end_sessions(logout: LogoutToken) -> None:
        told.append(logout)

    def off_the_loop(logout: LogoutToken) -> None:  # may block: it runs in a thread
        assert threading.current_thread() is not threading.main_thread()
        told.append(logout)

    app = Starlette(routes=[
        Route("/bcl", backchannel_logout_endpoint(end_sessions, client=sdk,
                                                  replay_store=MemoryReplayStore()),
              methods=["POST"]),
        Route("/sync", backchannel_logout_endpoint(off_the_loop, client=sdk), methods=["POST"]),
    ])
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="https://app.example") as client:
        yield client


async def test_a_valid_token_calls_on_logout_then_answers_200(
        http: httpx2.AsyncClient, provider: FakeProvider, told: list[LogoutToken]) -> None:
    r = await http.post("/bcl", data={"logout_token": logout_token(provider)})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert [(t.sub, t.sid) for t in told] == [("user-1", "sid-1")]
    r = await http.post("/sync", content=f"logout_token={logout_token(provider, jti='j2')}&",
                        headers=FORM)
    assert r.status_code == 200 and told[-1].jti == "j2"  # a plain function too


async def test_a_bad_request_is_400_with_oauth_error_json(
        http: httpx2.AsyncClient, provider: FakeProvider, told: list[LogoutToken]) -> None:
    token = logout_token(provider)
    assert (await http.post("/bcl", data={"logout_token": token})).status_code == 200
    refused = [
        await http.post("/bcl", data={"logout_token": token}),  # replayed
        await http.post("/bcl", data={"logout_token": logout_token(provider, nonce="n")}),
        await http.post("/bcl", data={"other": "x"}),
        await http.post("/bcl", content=f"logout_token={token}&logout_token={token}",
                        headers=FORM),
        await http.post("/bcl", json={"logout_token": token}),
        await http.post("/bcl", content=b"logout_token=\xff", headers=FORM),
        await http.post("/bcl", content=b"x" * (MAX_LOGOUT_BODY + 1), headers=FORM),
    ]
    for r in refused:
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_request" and r.json()["error_description"]
        assert r.headers["cache-control"] == "no-store"
    assert "used before" in refused[0].json()["error_description"]
    assert len(told) == 1


async def test_keys_out_of_reach_are_503_so_the_provider_retries(
        http: httpx2.AsyncClient, provider: FakeProvider) -> None:
    provider.overrides["/tenant/jwks"] = [httpx2.ConnectError("down"),
                                          httpx2.Response(429, headers={"Retry-After": "5"}),
                                          httpx2.Response(404)]
    for _ in range(3):
        r = await http.post("/bcl", data={"logout_token": logout_token(provider)})
        assert r.status_code == 503, r.text


def test_client_and_using_are_exclusive(sdk: Any) -> None:
    with pytest.raises(ConfigurationError):
        backchannel_logout_endpoint(print, client=sdk, using="default")
