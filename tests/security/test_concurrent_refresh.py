"""Of 50 concurrent refreshes of one token exactly one succeeds, on SQLite and on
PostgreSQL.

In process for speed, and against real ``bastion serve`` processes for true
concurrency: two instances on one database (the load-balanced deployment), the
requests split between them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
from security_helpers import Env

from support import ServerProcess, running_server

N = 50
PASSWORD = "concurrent refresh pw 1"


def assert_exactly_one_winner(responses: list[httpx2.Response]) -> None:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (N - 1), statuses
    errors = {r.json()["error"] for r in responses if r.status_code == 400}
    assert errors == {"invalid_grant"}


async def test_concurrent_refreshes_in_process_on_sqlite(env: Env) -> None:
    tokens = (await env.password_grant()).json()
    responses = await asyncio.gather(*(env.refresh(tokens["refresh_token"]) for _ in range(N)))
    assert_exactly_one_winner(list(responses))


@dataclass
class Deployment:
    """Two server processes on one database, a client allowed to refresh, a user."""

    instances: list[ServerProcess]
    client_id: str
    client_secret: str
    username: str


def _deploy(first: ServerProcess, name: str) -> Iterator[Deployment]:
    client = first.create_client("--name", f"security {name}", "--grant-type", "password",
                                 "--grant-type", "refresh_token", "--scope", "openid")
    username = f"sec-refresh-{name}"
    done = first.cli("users", "create", "--username", username, "--email",
                     f"{username}@example.com", "--password-stdin", "--json", stdin=PASSWORD)
    assert done.returncode == 0, done.stderr
    # Same data dir (so the same secret key), same database, same issuer.
    with running_server(first.data_dir, first.database_url or None,
                        issuer=first.url) as second:
        yield Deployment([first, second], str(client["client_id"]),
                         str(client["client_secret"]), username)


@pytest.fixture(scope="module")
def sqlite_deployment(bastion_server: ServerProcess) -> Iterator[Deployment]:
    yield from _deploy(bastion_server, "sqlite")


@pytest.fixture(scope="module")
def postgresql_deployment(bastion_server_pg: ServerProcess) -> Iterator[Deployment]:
    yield from _deploy(bastion_server_pg, "postgresql")


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return request.getfixturevalue(f"{request.param}_deployment")


async def test_fifty_concurrent_refreshes_across_two_instances_have_one_winner(
        deployment: Deployment) -> None:
    auth = (deployment.client_id, deployment.client_secret)
    limits = httpx2.Limits(max_connections=N, max_keepalive_connections=N)
    async with httpx2.AsyncClient(base_url=deployment.instances[0].url, limits=limits,
                                  timeout=60) as a, \
            httpx2.AsyncClient(base_url=deployment.instances[1].url, limits=limits,
                               timeout=60) as b:
        login = await a.post("/oauth/token", auth=auth, data={
            "grant_type": "password", "username": deployment.username, "password": PASSWORD})
        assert login.status_code == 200, login.text
        refresh = login.json()["refresh_token"]
        form = {"grant_type": "refresh_token", "refresh_token": refresh}
        responses = await asyncio.gather(*(
            (a if i % 2 else b).post("/oauth/token", auth=auth, data=form) for i in range(N)))
    assert_exactly_one_winner(list(responses))
    for instance in deployment.instances:
        assert "Traceback" not in instance.log()
    # the winner's successor is revoked as well: the losers were reuses of a spent token
    winner = next(r for r in responses if r.status_code == 200).json()
    async with httpx2.AsyncClient(base_url=deployment.instances[0].url) as a:
        again = await a.post("/oauth/token", auth=auth, data={
            "grant_type": "refresh_token", "refresh_token": winner["refresh_token"]})
    assert json.loads(again.text)["error"] == "invalid_grant"
