"""SQL injection: hostile strings in every search and filter of the REST API (users
``q``, events ``action``/``actor``/``target``/``client_id``, organization and role
names in paths) get a clean 200/4xx, match only literally, and change no data."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
import sqlalchemy as sa
from security_helpers import Env

from bastion.server.services.clients import create_client
from bastion.server.storage.tables import organizations, users

PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "alice' --",
    "\" OR \"\"=\"",
    "'; DROP TABLE users; --",
    "1; DELETE FROM organizations",
    "' UNION SELECT id, password_hash, email FROM users --",
    "%' AND 1=(SELECT COUNT(*) FROM sqlite_master) --",
    "') OR ('a'='a",
    "\\'; SELECT pg_sleep(5); --",
    "' || (SELECT password_hash FROM users LIMIT 1) || '",
    "admin'/*",
    "\x00' OR 1=1",
    "%",
    "_",
    "%%",
    "a%",
    "[a-z]*",
    "*",
    "\\",
]
IDS = [f"p{i}" for i in range(len(PAYLOADS))]
SEARCH_PAYLOADS = [pytest.param(p, id=i) for p, i in zip(PAYLOADS, IDS, strict=True)]


@pytest.fixture
async def admin(env: Env) -> dict[str, str]:
    """Bearer headers of a client with the bastion:admin scope, and a second user,
    an organization and a role to find."""
    new = await create_client(env.ctx.storage, name="Admin", grant_types=["client_credentials"],
                              scopes=["bastion:admin"])
    r = await env.http.post("/oauth/token", auth=(new.client.client_id, str(new.client_secret)),
                            data={"grant_type": "client_credentials", "scope": "bastion:admin"})
    headers = {"Authorization": "Bearer " + r.json()["access_token"]}
    created = await env.http.post("/api/v1/users", headers=headers, json={
        "username": "bob", "email": "bob@example.com", "password": "a long enough password"})
    assert created.status_code == 201, created.text
    org = await env.http.post("/api/v1/organizations", headers=headers, json={"name": "acme"})
    assert org.status_code == 201, org.text
    role = await env.http.post("/api/v1/organizations/acme/roles", headers=headers,
                               json={"name": "editor", "permissions": ["posts:write"]})
    assert role.status_code == 201, role.text
    return headers


async def snapshot(env: Env) -> tuple[Any, ...]:
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        people = (await conn.execute(sa.select(users.c.id, users.c.username, users.c.email,
                                               users.c.password_hash, users.c.deleted_at)
                                     .order_by(users.c.id))).all()
        orgs = (await conn.execute(sa.select(organizations).order_by(organizations.c.id))).all()
    return tuple(people), tuple(orgs)


def assert_clean(r: httpx2.Response, payload: str = "") -> None:
    """A documented answer that leaks nothing of the database (an echo of the payload
    itself aside)."""
    assert r.status_code in (200, 400, 404, 422), (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(("application/json", "application/problem+json"))
    echo = json.dumps(payload)[1:-1].lower()
    body = json.dumps(r.json()).lower().replace(echo, "") if echo else r.text.lower()
    for leak in ("sqlite", "syntax error", "traceback", "sqlalchemy", "psycopg", "asyncpg",
                 "$argon2"):
        assert leak not in body, r.text[:300]


async def test_control_search_finds_by_substring(env: Env, admin: dict[str, str]) -> None:
    r = await env.http.get("/api/v1/users", params={"q": "bob"}, headers=admin)
    assert r.status_code == 200 and [u["username"] for u in r.json()["items"]] == ["bob"]


@pytest.mark.parametrize("payload", SEARCH_PAYLOADS)
async def test_user_search_matches_hostile_strings_only_literally(env: Env, admin: dict[str, str],
                                                                  payload: str) -> None:
    before = await snapshot(env)
    for path in ("/api/v1/users", "/api/v1/users/count"):
        r = await env.http.get(path, params={"q": payload, "include_deleted": "true"},
                               headers=admin)
        assert_clean(r, payload)
        if r.status_code == 200:  # no username or email contains any of these
            count = r.json()["count"]
            assert count == 0, (payload, r.json())
    assert await snapshot(env) == before


@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
async def test_event_filters_match_hostile_strings_only_literally(env: Env, admin: dict[str, str],
                                                                 payload: str) -> None:
    before = await snapshot(env)
    assert (await env.http.get("/api/v1/events", headers=admin)).json()["count"] > 0  # control
    for field in ("action", "actor", "target", "client_id"):
        r = await env.http.get("/api/v1/events", params={field: payload}, headers=admin)
        assert_clean(r, payload)
        if r.status_code == 200:
            assert r.json()["count"] == 0, (field, payload, r.json()["count"])
    assert await snapshot(env) == before


@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
async def test_hostile_names_in_paths_find_nothing_and_change_nothing(
        env: Env, admin: dict[str, str], payload: str) -> None:
    before = await snapshot(env)
    name = quote(payload, safe="")
    for method, path in (
            ("GET", f"/api/v1/organizations/{name}"),
            ("GET", f"/api/v1/organizations/{name}/roles"),
            ("GET", f"/api/v1/organizations/acme/roles/{name}"),
            ("DELETE", f"/api/v1/organizations/acme/roles/{name}"),
            ("GET", f"/api/v1/users/{name}"),
            ("DELETE", f"/api/v1/users/{name}"),
            ("DELETE", f"/api/v1/users/{name}/sessions"),
            ("GET", f"/api/v1/organizations/acme/users/{name}/roles")):
        r = await env.http.request(method, path, headers=admin)
        assert_clean(r, payload)
        if method == "DELETE":
            assert r.status_code in (404, 422), (method, path, r.status_code)
    assert await snapshot(env) == before


@pytest.mark.parametrize("payload", PAYLOADS[:8], ids=IDS[:8])
async def test_hostile_names_are_stored_verbatim_or_refused(env: Env, admin: dict[str, str],
                                                            payload: str) -> None:
    # Creating with a hostile name: refused by validation, or stored as plain text.
    r = await env.http.post("/api/v1/organizations", headers=admin, json={"name": payload})
    if r.status_code != 201:
        assert_clean(r, payload)
    else:
        assert r.json()["name"] == payload
    r = await env.http.post("/api/v1/users", headers=admin, json={
        "username": payload, "email": "x@example.com", "password": "a long enough password"})
    assert r.status_code in (201, 409, 422), r.text
    if r.status_code == 201:
        assert r.json()["username"] == payload
    assert (await env.http.get("/api/v1/users/count", headers=admin)).json()["count"] >= 2


async def test_hostile_login_names_fail_like_any_wrong_login(env: Env) -> None:
    for payload in PAYLOADS:
        r = await env.password_grant(login=payload, password="' OR '1'='1")
        assert r.status_code == 400, (payload, r.text)
        assert r.json()["error"] in ("invalid_grant", "invalid_request"), (payload, r.text)
