"""Two `bastion serve` processes on one PostgreSQL database behave as one.

They share only their settings: database URL, issuer and secret key.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack

import httpx2
import pytest

from bastion.oauth import pkce
from bastion.oauth.jose import b64url_decode
from support import (
    ServerProcess,
    callback_params,
    create_database,
    free_port,
    hidden_fields,
    running_server,
    wait_until,
)

REDIRECT = "http://127.0.0.1:5999/cb"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str
         ) -> Iterator[tuple[ServerProcess, ServerProcess, dict[str, str]]]:
    url = asyncio.run(create_database(pg_admin_url, "scale_out"))
    shared = {"issuer": f"http://127.0.0.1:{free_port()}", "secret_key": secrets.token_urlsafe(32),
              "cache_ttl": "1", "login_lock_after": "3", "login_delay_after": "2",
              "password_hash_memory_kib": "8192", "password_hash_time_cost": "1"}
    with ExitStack() as stack:
        a = stack.enter_context(running_server(tmp_path_factory.mktemp("a"), url, **shared))
        b = stack.enter_context(running_server(tmp_path_factory.mktemp("b"), url, **shared))
        web = a.create_client("--name", "web", "--redirect-uri", REDIRECT, "--grant-type",
                              "authorization_code", "--grant-type", "refresh_token",
                              "--grant-type", "password", "--scope", "openid")
        password = secrets.token_urlsafe(16)
        done = a.cli("users", "create", "--username", "sam", "--email", "sam@example.com",
                     "--password-stdin", stdin=password)
        assert done.returncode == 0, done.stderr
        yield a, b, {"client_id": str(web["client_id"]), "secret": str(web["client_secret"]),
                     "password": password}


def password_grant(server: ServerProcess, env: dict[str, str], password: str | None = None
                   ) -> httpx2.Response:
    return httpx2.post(server.url + "/oauth/token", auth=(env["client_id"], env["secret"]), data={
        "grant_type": "password", "username": "sam", "password": password or env["password"],
        "scope": "openid"})


def test_a_token_from_one_instance_works_on_the_other(pair) -> None:
    a, b, env = pair
    tokens = password_grant(a, env).json()
    bearer = {"Authorization": "Bearer " + tokens["access_token"]}
    assert httpx2.get(b.url + "/oauth/userinfo", headers=bearer).status_code == 200
    auth = (env["client_id"], env["secret"])
    assert httpx2.post(b.url + "/oauth/introspect", auth=auth,
                       data={"token": tokens["access_token"]}).json()["active"] is True
    assert httpx2.post(b.url + "/oauth/revoke", auth=auth,
                       data={"token": tokens["access_token"]}).status_code == 200
    assert httpx2.post(a.url + "/oauth/introspect", auth=auth,
                       data={"token": tokens["access_token"]}).json() == {"active": False}
    assert httpx2.get(a.url + "/oauth/userinfo", headers=bearer).status_code == 401


def test_refresh_on_both_at_once_has_one_winner_and_reuse_revokes(pair) -> None:
    a, b, env = pair
    tokens = password_grant(a, env).json()

    async def race() -> list[int]:
        async with httpx2.AsyncClient(timeout=30) as http:
            calls = [http.post(server.url + "/oauth/token", auth=(env["client_id"], env["secret"]),
                               data={"grant_type": "refresh_token",
                                     "refresh_token": tokens["refresh_token"]})
                     for server in (a, b) * 10]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert sorted(asyncio.run(race())) == [200] + [400] * 19


def test_a_rotation_is_used_by_both_and_signs_with_a_key_published_before(pair) -> None:
    a, b, env = pair

    def kid_of(server: ServerProcess) -> str:
        header = password_grant(server, env).json()["access_token"].split(".")[0]
        return str(json.loads(b64url_decode(header))["kid"])

    old_kid = kid_of(a)
    before = {k["kid"] for k in httpx2.get(b.url + "/.well-known/jwks.json").json()["keys"]}
    done = a.cli("keys", "rotate")
    assert done.returncode == 0, done.stderr
    after = {k["kid"] for k in httpx2.get(b.url + "/.well-known/jwks.json").json()["keys"]}
    assert before < after  # new next keys published at once, old ones kept

    def signs_with_new(server: ServerProcess) -> bool:
        kid = kid_of(server)
        return kid != old_kid and kid in before  # the key that was waiting its turn

    for server in (a, b):  # within cache_ttl (1 s here), polled
        wait_until(lambda s=server: signs_with_new(s), timeout=20, interval=0.2,
                   what="the new key to sign")


def test_brute_force_counters_are_shared(pair) -> None:
    a, b, env = pair
    done = a.cli("users", "create", "--username", "victim", "--email", "v@example.com",
                 "--password-stdin", stdin=secrets.token_urlsafe(16))
    assert done.returncode == 0
    for server in (a, b, a):
        r = httpx2.post(server.url + "/oauth/token", auth=(env["client_id"], env["secret"]),
                        data={"grant_type": "password", "username": "victim",
                              "password": "wrong password"})
        assert r.status_code in (400, 429)
    r = httpx2.post(b.url + "/oauth/token", auth=(env["client_id"], env["secret"]), data={
        "grant_type": "password", "username": "victim", "password": "wrong password"})
    assert r.status_code == 429 and r.json()["error"] == "slow_down"
    assert int(r.headers["retry-after"]) > 0


def test_a_login_started_on_one_instance_finishes_on_the_other(pair) -> None:
    a, b, env = pair
    verifier = pkce.new_verifier()
    query = {"response_type": "code", "client_id": env["client_id"], "redirect_uri": REDIRECT,
             "scope": "openid", "state": "xyz", "code_challenge": pkce.challenge(verifier),
             "code_challenge_method": "S256"}
    with httpx2.Client() as browser:
        page = browser.get(a.url + "/oauth/authorize", params=query)
        fields = hidden_fields(page.text)
        posted = browser.post(b.url + "/login", data={**fields, "login": "sam",
                                                      "password": env["password"]})
        assert posted.status_code == 303
        back = browser.get(a.url + posted.headers["location"])
        params = callback_params(back)
    assert params["state"] == "xyz"
    r = httpx2.post(b.url + "/oauth/token", auth=(env["client_id"], env["secret"]), data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
        "code_verifier": verifier})
    assert r.status_code == 200 and r.json()["id_token"]
