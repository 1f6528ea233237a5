"""The REST API in process: admin access, users, organizations, roles, events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import sqlalchemy as sa
from api_helpers import PASSWORD, Api

from bastion.server.services import secrets
from bastion.server.services.clients import create_client
from bastion.server.services.users import create_user


async def test_requests_without_an_admin_token(api: Api) -> None:
    http = api.app.http
    anonymous = await http.get("/api/v1/users", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert "Bearer" in anonymous.headers["www-authenticate"]
    assert anonymous.json()["detail"]
    bad = await http.get("/api/v1/users", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    plain = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(api.app.client_id, api.app.client_secret))
    forbidden = await http.get("/api/v1/users", headers=api.bearer(plain.json()))
    assert forbidden.status_code == 403
    assert "administrator" in forbidden.json()["detail"]


async def test_user_lifecycle(api: Api) -> None:
    http = api.app.http
    r = await http.post("/api/v1/users", json={"username": "alice", "email": "a@example.com",
                                               "password": PASSWORD})
    assert r.status_code == 201, r.text
    alice = r.json()
    assert set(alice) == {"id", "username", "email", "email_verified", "is_administrator",
                          "created_at", "updated_at", "deleted_at", "erased_at"}
    assert alice["email_verified"] is False
    assert (await http.get(f"/api/v1/users/{alice['id']}")).json() == alice
    r = await http.patch(f"/api/v1/users/{alice['id']}", json={"email": "alice@example.com"})
    assert r.json()["email"] == "alice@example.com"
    r = await http.patch(f"/api/v1/users/{alice['id']}", json={"email_verified": True})
    assert r.json()["email_verified"] is True
    for flag in ("email_verified", "is_administrator"):
        for value in ("yes", "on", 1):
            r = await http.patch(f"/api/v1/users/{alice['id']}", json={flag: value})
            assert r.status_code == 422, (flag, value)  # a JSON boolean, not one coerced
    r = await http.post("/api/v1/users", json={"username": "mallory", "is_administrator": 1,
                                               "email": "mallory@example.com"})
    assert r.status_code == 422 and "is_administrator" in r.json()["detail"]
    # null would read as "no change", yet be audited as one (a password change!)
    before = (await http.get(f"/api/v1/users/{alice['id']}")).json()
    r = await http.patch(f"/api/v1/users/{alice['id']}", json={"password": None, "email": None})
    assert r.status_code == 422 and "email, password: must not be null" in r.json()["detail"]
    assert (await http.get(f"/api/v1/users/{alice['id']}")).json() == before
    listing = (await http.get("/api/v1/users", params={"q": "ALICE@"})).json()
    assert listing["count"] == 1 and listing["items"][0]["id"] == alice["id"]
    assert (await http.get("/api/v1/users/count")).json() == {"count": 1}
    # the user's own view
    token = await api.user_token("alice")
    me = await http.get("/api/v1/users/me", headers=api.bearer(token))
    assert me.json()["id"] == alice["id"]
    assert (await http.get("/api/v1/users", headers=api.bearer(token))).status_code == 403
    # soft delete: no login, tokens revoked, restore brings login back
    assert (await http.delete(f"/api/v1/users/{alice['id']}")).status_code == 204
    assert (await http.get("/api/v1/users/me", headers=api.bearer(token))).status_code == 401
    refresh = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    assert (await http.get("/api/v1/users/count")).json() == {"count": 0}
    assert (await http.get("/api/v1/users/count", params={"include_deleted": True})
            ).json() == {"count": 1}
    failed = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "password", "username": "alice", "password": PASSWORD})
    assert failed.json()["error"] == "invalid_grant"
    restored = await http.post(f"/api/v1/users/{alice['id']}/restore")
    assert restored.json()["deleted_at"] is None
    await api.user_token("alice")


async def test_an_administrator_user_may_use_the_api_with_the_admin_scope(api: Api) -> None:
    http, storage = api.app.http, api.app.ctx.storage
    for name, admin in (("root", True), ("pat", False)):
        await create_user(storage, api.app.ctx.passwords, username=name,
                          email=f"{name}@example.com", password=PASSWORD, is_administrator=admin)
    console = await create_client(storage, name="console",
                                  grant_types=["password", "refresh_token"],
                                  scopes=["openid", "bastion:admin"])

    async def sign_in(username: str, client=console, **extra: str) -> dict[str, str]:
        r = await http.post("/oauth/token", auth=(client.client.client_id, client.client_secret),
                            data={"grant_type": "password", "username": username,
                                  "password": PASSWORD, **extra})
        assert r.status_code == 200, r.text
        return r.json()

    # An administrator's token from an app that did not ask for the scope (any app they
    # sign in to) does not run the API as them; their own account, yes.
    plain = await api.user_token("root")
    r = await http.get("/api/v1/users", headers=api.bearer(plain))
    assert r.status_code == 403 and "bastion:admin" in r.json()["detail"], r.text
    root_id = (await http.get("/api/v1/users/me", headers=api.bearer(plain))).json()["id"]
    for path in (f"/api/v1/users/{root_id}/organizations", "/api/v1/users/me/organizations",
                 f"/api/v1/users/{root_id}"):
        r = await http.get(path, headers=api.bearer(plain))
        assert r.status_code == 200, (path, r.text)
    narrow = await sign_in("root", scope="openid")
    r = await http.get("/api/v1/users", headers=api.bearer(narrow))
    assert r.status_code == 403, r.text
    # Asked for, through a client registered with it: an administrator's token.
    root = await sign_in("root", scope="openid bastion:admin")
    assert root["scope"] == "openid bastion:admin"
    r = await http.get("/api/v1/users", headers=api.bearer(root))
    assert r.status_code == 200 and r.json()["count"] == 2, r.text
    assert (await sign_in("root"))["scope"] == "openid"  # asked for, not by default
    # Anyone else is not given the scope (it would grant nothing): the answer says so.
    pat = await sign_in("pat", scope="openid bastion:admin")
    assert pat["scope"] == "openid"
    assert "bastion:admin" not in jwt.decode(
        pat["access_token"], options={"verify_signature": False})["scope"]
    assert (await http.get("/api/v1/users", headers=api.bearer(pat))).status_code == 403
    # An administrator no more: the token's scope grants nothing, and a refresh does
    # not issue it again; their own account stays theirs.
    r = await http.patch(f"/api/v1/users/{root_id}", json={"is_administrator": False})
    assert r.status_code == 200, r.text
    assert (await http.get("/api/v1/users", headers=api.bearer(root))).status_code == 403
    r = await http.post("/oauth/token", auth=(console.client.client_id, console.client_secret),
                        data={"grant_type": "refresh_token",
                              "refresh_token": root["refresh_token"]})
    assert r.status_code == 200 and r.json()["scope"] == "openid", r.text
    assert (await http.get("/api/v1/users/me", headers=api.bearer(r.json()))).status_code == 200
    demoted = r.json()

    async def refresh(tokens: dict[str, str], **extra: str) -> dict[str, str]:
        r = await http.post("/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **extra},
            auth=(console.client.client_id, console.client_secret))
        assert r.status_code == 200, r.text
        return r.json()

    # Made an administrator again: the demoted family stays without the scope.
    await http.patch(f"/api/v1/users/{root_id}", json={"is_administrator": True})
    demoted = await refresh(demoted)
    assert demoted["scope"] == "openid"
    assert (await refresh(demoted, scope="openid bastion:admin"))["scope"] == "openid"
    # Taking the scope from the client ends the admin rights of its tokens, and a
    # refresh issues it no more, even asked for again.
    root = await sign_in("root", scope="openid bastion:admin")
    assert (await http.get("/api/v1/users", headers=api.bearer(root))).status_code == 200
    r = await http.patch(f"/api/v1/clients/{console.client.client_id}",
                         json={"scopes": ["openid"]})
    assert r.status_code == 200, r.text
    r = await http.get("/api/v1/users", headers=api.bearer(root))
    assert r.status_code == 403, r.text
    again = await refresh(root, scope="openid bastion:admin")
    assert again["scope"] == "openid"
    assert (await refresh(again))["scope"] == "openid"


async def test_the_admin_scope_through_the_authorization_endpoint(api: Api) -> None:
    from bastion.oauth import pkce
    from support import callback_params, sign_in

    http, storage = api.app.http, api.app.ctx.storage
    spa = await create_client(storage, name="spa", public=True,
                              redirect_uris=["https://spa.example/cb"],
                              scopes=["openid", "bastion:admin"])
    for name, admin in (("ada", True), ("bo", False)):
        await create_user(storage, api.app.ctx.passwords, username=name,
                          email=f"{name}@example.com", password=PASSWORD, is_administrator=admin)
    del http.headers["Authorization"]
    granted = {}
    for name in ("ada", "bo"):
        http.cookies.clear()
        verifier = pkce.new_verifier()
        url = "/oauth/authorize?" + "&".join([
            "response_type=code", f"client_id={spa.client.client_id}",
            "scope=openid%20bastion:admin", "redirect_uri=https://spa.example/cb",
            f"code_challenge={pkce.challenge(verifier)}", "code_challenge_method=S256"])
        code = callback_params(await sign_in(http, url, name, PASSWORD))["code"]
        r = await http.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code,
            "client_id": spa.client.client_id, "redirect_uri": "https://spa.example/cb",
            "code_verifier": verifier})
        assert r.status_code == 200, r.text
        granted[name] = r.json()
        status = (await http.get("/api/v1/users", headers=api.bearer(r.json()))).status_code
        assert status == (200 if name == "ada" else 403), (name, status)
    assert granted["ada"]["scope"] == "openid bastion:admin"
    assert granted["bo"]["scope"] == "openid"


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "needle"), [
    ("get", "/api/v1/users", {"params": {"limit": 0}}, 422, "limit"),
    ("get", "/api/v1/users", {"params": {"limit": 10_000}}, 422, "limit"),
    ("get", "/api/v1/users", {"params": {"offset": -1}}, 422, "offset"),
    ("get", "/api/v1/users/nope", {}, 404, "nope"),
    ("post", "/api/v1/users", {"content": b"{not json", "headers": {
        "content-type": "application/json"}}, 422, ""),
    ("post", "/api/v1/users", {"json": {"username": "x", "email": "x@example.com",
                                        "admin": True}}, 422, "admin"),
    ("post", "/api/v1/users", {"json": {"username": "bad name", "email": "x@example.com"}},
     422, "username"),
    ("post", "/api/v1/users", {"json": {"username": "x", "email": "nope"}}, 422, "email"),
    ("post", "/api/v1/organizations", {"json": {"name": ""}}, 422, "name"),
    ("get", "/api/v1/organizations/missing/roles", {}, 404, "organization"),
    ("get", "/api/v1/events", {"params": {"since": "yesterday"}}, 422, "since"),
])
async def test_bad_input_gets_a_clear_4xx(api: Api, method, path, kwargs, status, needle):
    r = await api.app.http.request(method.upper(), path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert needle in r.json()["detail"]


async def test_duplicates_are_conflicts(api: Api) -> None:
    http = api.app.http
    body = {"username": "dup", "email": "dup@example.com"}
    assert (await http.post("/api/v1/users", json=body)).status_code == 201
    r = await http.post("/api/v1/users", json={**body, "email": "other@example.com"})
    assert r.status_code == 409 and r.json()["field"] == "username"
    assert (await http.post("/api/v1/organizations", json={"name": "acme"})).status_code == 201
    r = await http.post("/api/v1/organizations", json={"name": "ACME"})
    assert r.status_code == 409
    await http.post("/api/v1/organizations/acme/roles", json={"name": "editor"})
    r = await http.post("/api/v1/organizations/acme/roles", json={"name": "Editor"})
    assert r.status_code == 409
    # A name spelled like an id would shadow that record in the lookups by id or name.
    org_id = (await http.get("/api/v1/organizations/acme")).json()["id"]
    for url in ("/api/v1/organizations", "/api/v1/organizations/acme/roles"):
        r = await http.post(url, json={"name": org_id.upper()})
        assert r.status_code == 422 and "form of an id" in r.json()["detail"], r.text


async def test_roles_permissions_and_tokens(api: Api) -> None:
    http = api.app.http
    user = (await http.post("/api/v1/users", json={"username": "erin", "email": "e@example.com",
                                                   "password": PASSWORD})).json()
    org = (await http.post("/api/v1/organizations", json={"name": "acme"})).json()
    editor = (await http.post(f"/api/v1/organizations/{org['id']}/roles", json={
        "name": "editor", "permissions": ["posts:read", "posts:write"]})).json()
    await http.post("/api/v1/organizations/acme/roles", json={"name": "viewer",
                                                              "permissions": ["posts:read"]})
    r = await http.post(f"/api/v1/organizations/acme/roles/{editor['id']}/permissions",
                        json={"permissions": ["posts:delete", "posts:publish"]})
    assert r.json()["permissions"] == ["posts:delete", "posts:publish", "posts:read",
                                       "posts:write"]
    r = await http.delete("/api/v1/organizations/acme/roles/editor/permissions",
                          params=[("permission", "posts:publish"), ("permission", "posts:write")])
    assert r.json()["permissions"] == ["posts:delete", "posts:read"]
    listed = (await http.get("/api/v1/organizations/acme/roles")).json()
    assert [(r["name"], r["permissions"]) for r in listed["items"]] == [
        ("editor", ["posts:delete", "posts:read"]), ("viewer", ["posts:read"])]
    # not a member yet: a token for the organization is refused
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "password", "username": "erin", "password": PASSWORD,
        "organization": "acme"})
    assert r.json()["error"] == "access_denied"
    roles_url = f"/api/v1/organizations/acme/users/{user['id']}/roles"
    r = await http.post(roles_url, json={"add": ["viewer"]})
    assert [x["name"] for x in r.json()["items"]] == ["viewer"]
    tokens = await api.user_token("erin", organization="acme")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert (claims["org"], claims["roles"], claims["permissions"]) == (
        org["id"], ["viewer"], ["posts:read"])
    introspected = (await http.post("/oauth/introspect", auth=(api.web_id, api.web_secret),
                                    data={"token": tokens["access_token"]})).json()
    assert introspected["roles"] == ["viewer"] and introspected["org"] == org["id"]
    # update in one call, reissuing the user's tokens so the roles apply at once
    r = await http.post(roles_url, json={"add": ["editor"], "remove": ["viewer"],
                                         "reissue": {"refresh_token": tokens["refresh_token"]}})
    body = r.json()
    assert [x["name"] for x in body["items"]] == ["editor"]
    fresh = jwt.decode(body["tokens"]["access_token"], options={"verify_signature": False})
    assert fresh["roles"] == ["editor"] and fresh["permissions"] == ["posts:delete", "posts:read"]
    old = await http.post("/oauth/introspect", auth=(api.web_id, api.web_secret),
                          data={"token": tokens["access_token"]})
    assert old.json() == {"active": False}
    # unknown roles change nothing
    r = await http.post(roles_url, json={"add": ["viewer", "ghost"]})
    assert r.status_code == 404 and "ghost" in r.json()["detail"]
    assert [x["name"] for x in (await http.get(roles_url)).json()["items"]] == ["editor"]
    # a role in use is not deleted without force
    r = await http.delete("/api/v1/organizations/acme/roles/editor")
    assert r.status_code == 409 and "force" in r.json()["detail"]
    assert (await http.delete("/api/v1/organizations/acme/roles/editor",
                              params={"force": True})).status_code == 204
    assert (await http.get(roles_url)).json()["count"] == 0


async def test_roles_in_tokens_through_the_authorization_endpoint(api: Api) -> None:
    from bastion.oauth import pkce
    from support import callback_params, sign_in

    http = api.app.http
    web = await create_client(api.app.ctx.storage, name="spa", public=True,
                              redirect_uris=["https://spa.example/cb"], scopes=["openid"])
    user = (await http.post("/api/v1/users", json={"username": "fay", "email": "f@example.com",
                                                   "password": PASSWORD})).json()
    await http.post("/api/v1/organizations", json={"name": "acme"})
    await http.post("/api/v1/organizations/acme/roles", json={"name": "owner",
                                                              "permissions": ["*"]})
    await http.post(f"/api/v1/organizations/acme/users/{user['id']}/roles",
                    json={"add": ["owner"]})
    verifier = pkce.new_verifier()
    url = "/oauth/authorize?" + "&".join([
        "response_type=code", f"client_id={web.client.client_id}", "scope=openid",
        "redirect_uri=https://spa.example/cb", "organization=acme",
        f"code_challenge={pkce.challenge(verifier)}", "code_challenge_method=S256"])
    del http.headers["Authorization"]
    code = callback_params(await sign_in(http, url, "fay", PASSWORD))["code"]
    r = await http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": web.client.client_id,
        "redirect_uri": "https://spa.example/cb", "code_verifier": verifier})
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["owner"] and claims["permissions"] == ["*"]


async def authorization_code_over_budget(api: Api) -> None:
    """Max (over the claims budget in acme) exchanges a code for acme: refused, and no
    refresh token is left behind for the grant."""
    from bastion.oauth import pkce
    from bastion.server.storage.tables import refresh_tokens
    from support import callback_params, sign_in

    http = api.app.http
    web = await create_client(api.app.ctx.storage, name="spa2", public=True,
                              grant_types=["authorization_code", "refresh_token"],
                              redirect_uris=["https://spa.example/cb"], scopes=["openid"])
    verifier = pkce.new_verifier()
    url = "/oauth/authorize?" + "&".join([
        "response_type=code", f"client_id={web.client.client_id}", "scope=openid",
        "redirect_uri=https://spa.example/cb", "organization=acme",
        f"code_challenge={pkce.challenge(verifier)}", "code_challenge_method=S256"])
    admin = http.headers.pop("Authorization")
    try:
        code = callback_params(await sign_in(http, url, "max", PASSWORD))["code"]
        r = await http.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "client_id": web.client.client_id,
            "redirect_uri": "https://spa.example/cb", "code_verifier": verifier})
    finally:
        http.headers["Authorization"] = admin
    assert r.status_code == 400 and "can hold" in r.json()["error_description"], r.text
    async with api.app.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
        left = (await conn.execute(sa.select(sa.func.count()).select_from(refresh_tokens)
                                   .where(refresh_tokens.c.client_id == web.client.client_id))
                ).scalar_one()
    assert left == 0


async def _member(api: Api, name: str, roles: list[str]) -> tuple[dict[str, str], str]:
    """A user ``name`` holding ``roles`` (created) in organization acme; the user and
    the roles URL."""
    http = api.app.http
    user = (await http.post("/api/v1/users", json={
        "username": name, "email": f"{name}@example.com", "password": PASSWORD})).json()
    await http.post("/api/v1/organizations", json={"name": "acme"})
    for role in roles:
        await http.post("/api/v1/organizations/acme/roles", json={
            "name": role, "permissions": [f"{role}:x"]})
    url = f"/api/v1/organizations/acme/users/{user['id']}/roles"
    assert (await http.post(url, json={"add": roles[:1]})).status_code == 200
    return user, url


async def test_concurrent_adds_of_one_role_or_permission_all_succeed(api: Api) -> None:
    import asyncio

    http = api.app.http
    _, url = await _member(api, "gil", ["editor", "viewer"])
    added = await asyncio.gather(*[http.post(url, json={"add": ["viewer"]}) for _ in range(8)])
    assert [r.status_code for r in added] == [200] * 8
    assert [x["name"] for x in added[-1].json()["items"]] == ["editor", "viewer"]
    permitted = await asyncio.gather(*[http.post(
        "/api/v1/organizations/acme/roles/viewer/permissions",
        json={"permissions": ["posts:read"]}) for _ in range(8)])
    assert [r.status_code for r in permitted] == [200] * 8
    assert permitted[-1].json()["permissions"] == ["posts:read", "viewer:x"]


async def test_adding_a_role_deleted_meanwhile_is_not_found(api: Api, monkeypatch) -> None:
    """The role is force-deleted between its lookup and the write: a clean 404."""
    http, storage = api.app.http, api.app.ctx.storage
    _, url = await _member(api, "hal", ["editor", "viewer", "tester"])
    org = (await http.get("/api/v1/organizations/acme")).json()

    def deleting_first(method):  # runs the concurrent force delete, then the write
        async def hooked(*args, **kwargs):
            for name in ("viewer", "tester"):
                role = await storage.get_role(org["id"], name)
                if role is not None:
                    assert await storage.delete_role(org["id"], role.id, True) == "deleted"
            return await method(*args, **kwargs)
        return hooked

    monkeypatch.setattr(storage, "change_user_roles", deleting_first(storage.change_user_roles))
    monkeypatch.setattr(storage, "change_permissions", deleting_first(storage.change_permissions))
    r = await http.post(url, json={"add": ["viewer"], "remove": ["editor"]})
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "viewer" in r.json()["detail"]
    monkeypatch.undo()
    assert [x["name"] for x in (await http.get(url)).json()["items"]] == ["editor"]
    await _member(api, "ida", ["viewer", "tester"])
    monkeypatch.setattr(storage, "change_permissions", deleting_first(storage.change_permissions))
    r = await http.post("/api/v1/organizations/acme/roles/tester/permissions",
                        json={"permissions": ["posts:read"]})
    assert r.status_code == 404 and "tester" in r.json()["detail"]


async def test_a_reissue_drops_the_scopes_the_client_is_no_longer_registered_for(
        api: Api) -> None:
    http = api.app.http
    _, url = await _member(api, "lou", ["viewer", "editor"])
    client_url = f"/api/v1/clients/{api.web_id}"
    assert (await http.patch(client_url, json={"scopes": ["openid", "profile"]})).is_success
    tokens = await api.user_token("lou", organization="acme", scope="openid profile")
    assert tokens["scope"] == "openid profile"
    assert (await http.patch(client_url, json={"scopes": ["openid"]})).is_success
    r = await http.post(url, json={"add": ["editor"],
                                   "reissue": {"refresh_token": tokens["refresh_token"]}})
    assert r.status_code == 200, r.text
    assert r.json()["tokens"]["scope"] == "openid"
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": r.json()["tokens"]["refresh_token"]})
    assert r.status_code == 200 and r.json()["scope"] == "openid", r.text


async def test_a_reissue_of_a_grant_left_with_no_scope_is_refused_first(api: Api) -> None:
    http = api.app.http
    _, url = await _member(api, "max", ["viewer", "editor"])
    tokens = await api.user_token("max", organization="acme")  # scope openid
    client_url = f"/api/v1/clients/{api.web_id}"
    assert (await http.patch(client_url, json={"scopes": ["profile"]})).is_success
    r = await http.post(url, json={"add": ["editor"],
                                   "reissue": {"refresh_token": tokens["refresh_token"]}})
    assert r.status_code == 400 and "sign in again" in r.json()["detail"], r.text
    assert [x["name"] for x in (await http.get(url)).json()["items"]] == ["viewer"]
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert r.json()["error"] == "invalid_grant", r.text  # and revoked by that refresh
    introspected = await http.post("/oauth/introspect", auth=(api.web_id, api.web_secret),
                                   data={"token": tokens["access_token"]})
    assert introspected.json() == {"active": False}


def _changed_while_the_roles_change(api: Api, monkeypatch: pytest.MonkeyPatch,
                                    **changes: list[str]) -> None:
    """The web client is changed (``update_client``) as a user's roles are written: an
    administrator's PATCH racing a role change with a reissue."""
    from bastion.server.services.clients import update_client

    ctx = api.app.ctx
    change = ctx.storage.change_user_roles

    async def changed_meanwhile(*args, **kwargs):
        await update_client(ctx.storage, api.web_id, **changes)
        ctx.clients.forget(api.web_id)
        return await change(*args, **kwargs)

    monkeypatch.setattr(ctx.storage, "change_user_roles", changed_meanwhile)


async def test_a_client_narrowed_while_the_roles_change_gets_no_empty_reissue(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    http = api.app.http
    _, url = await _member(api, "ned", ["viewer", "editor"])
    tokens = await api.user_token("ned", organization="acme")  # scope openid
    _changed_while_the_roles_change(api, monkeypatch, scopes=["profile"])
    r = await http.post(url, json={"add": ["editor"],
                                   "reissue": {"refresh_token": tokens["refresh_token"]}})
    assert r.status_code == 400 and "sign in again" in r.json()["detail"], r.text
    introspected = await http.post("/oauth/introspect", auth=(api.web_id, api.web_secret),
                                   data={"token": tokens["access_token"]})
    assert introspected.json() == {"active": False}  # the grant is revoked


async def test_a_reissue_is_refused_once_the_client_may_no_longer_refresh(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the token endpoint refuses the refresh tokens of a client no longer registered
    for the refresh_token grant, a reissue does not turn one into a new pair."""
    http = api.app.http
    _, url = await _member(api, "ora", ["viewer", "editor"])
    tokens = await api.user_token("ora", organization="acme")
    client_url = f"/api/v1/clients/{api.web_id}"
    assert (await http.patch(client_url, json={"grant_types": ["password"]})).is_success
    reissue = {"add": ["editor"], "reissue": {"refresh_token": tokens["refresh_token"]}}
    r = await http.post(url, json=reissue)
    assert r.status_code == 400, r.text
    assert "no longer registered for the refresh_token grant type" in r.json()["detail"]
    assert [x["name"] for x in (await http.get(url)).json()["items"]] == ["viewer"]
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert r.json()["error"] == "unauthorized_client", r.text
    # Taken away while the roles change: the roles change, no tokens are issued.
    assert (await http.patch(client_url, json={
        "grant_types": ["password", "refresh_token"]})).is_success
    _changed_while_the_roles_change(api, monkeypatch, grant_types=["password"])
    r = await http.post(url, json=reissue)
    assert r.status_code == 400, r.text
    assert "no tokens were issued" in r.json()["detail"]
    assert "refresh_token grant type" in r.json()["detail"]


async def test_concurrent_reissues_of_one_refresh_token_leave_one_family(api: Api) -> None:
    http = api.app.http
    _, url = await _member(api, "kim", ["viewer", "editor"])
    tokens = await api.user_token("kim", organization="acme")
    answers = await asyncio.gather(*(http.post(url, json={
        "add": ["editor"], "reissue": {"refresh_token": tokens["refresh_token"]}})
        for _ in range(5)))
    issued = [r.json()["tokens"] for r in answers if r.status_code == 200]
    assert len(issued) == 1, [r.text for r in answers]
    for refused in (r for r in answers if r.status_code != 200):  # before or after the winner
        assert refused.status_code == 400, refused.text
        assert any(said in refused.json()["detail"] for said in (
            "no tokens were issued", "not a valid token of this user")), refused.text
    live = [await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
        for pair in issued]
    assert [r.status_code for r in live] == [200]
    # A token of no organization (or another one) would not carry the new roles.
    plain = await api.user_token("kim")
    r = await http.post(url, json={"remove": ["editor"],
                                   "reissue": {"refresh_token": plain["refresh_token"]}})
    assert r.status_code == 400 and "not issued for this organization" in r.json()["detail"]
    assert sorted(x["name"] for x in (await http.get(url)).json()["items"]) == [
        "editor", "viewer"]  # refused before anything changed


async def test_roles_a_token_cannot_carry_are_refused(api: Api) -> None:
    # Tokens over 16 KiB are refused by Bastion and the SDK: never sign one.
    http = api.app.http
    _, url = await _member(api, "max", ["small"])
    roles = "/api/v1/organizations/acme/roles"
    many = [f"shop:{'x' * 90}:{i}" for i in range(100)]  # about 10 KB of JSON
    r = await http.post(roles, json={"name": "huge", "permissions": many})
    assert r.status_code == 422 and "over the 8192" in r.json()["detail"], r.text
    for name in ("left", "right"):  # each fits alone
        r = await http.post(roles, json={"name": name, "permissions": many[:60] if name ==
                                         "left" else many[40:]})
        assert r.status_code == 201, r.text
    r = await http.post(f"{roles}/small/permissions", json={"permissions": many})
    assert r.status_code == 422 and "over the 8192" in r.json()["detail"]
    assert (await http.post(url, json={"add": ["left"]})).status_code == 200
    r = await http.post(url, json={"add": ["right"]})  # together they do not fit
    assert r.status_code == 422 and "over the 8192" in r.json()["detail"]
    r = await http.post(url, json={"add": ["right"], "remove": ["left"]})
    assert r.status_code == 200, r.text
    assert (await http.post(roles, json={"name": "tiny"})).status_code == 201
    assert (await http.post(url, json={"add": ["tiny"]})).status_code == 200
    before = await api.user_token("max", organization="acme")
    stale = await api.user_token("max", organization="acme")  # expires below
    # A role that grows past what its holders' other roles leave: no token, a clear error,
    # and nothing spent or revoked, so it works again once an administrator trims it.
    assert (await http.post(f"{roles}/small/permissions",
                            json={"permissions": many[:45]})).status_code == 200
    too_big = "more permissions than a token can hold"
    for grant in ({"grant_type": "password", "username": "max", "password": PASSWORD,
                   "organization": "acme"},
                  {"grant_type": "refresh_token", "refresh_token": before["refresh_token"]}):
        r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data=grant)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        assert too_big in r.json()["error_description"]
    from bastion.server.storage.tables import refresh_tokens
    async with api.app.ctx.storage.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(refresh_tokens.update().where(
            refresh_tokens.c.digest == secrets.digest(stale["refresh_token"])).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": stale["refresh_token"]})
    assert r.status_code == 400 and "expired or revoked" in r.json()["error_description"]
    # A reissue must be able to issue: refused before the roles change, not after.
    r = await http.post(url, json={"remove": ["tiny"],  # without it, still too many
                                   "reissue": {"refresh_token": before["refresh_token"]}})
    assert r.status_code == 422 and "over the 8192" in r.json()["detail"], r.text
    assert sorted(x["name"] for x in (await http.get(url)).json()["items"]) == [
        "right", "small", "tiny"]
    # An authorization code meets the same refusal before a refresh token is stored.
    await authorization_code_over_budget(api)
    r = await http.delete(f"{roles}/small/permissions",
                          params=[("permission", p) for p in many[:45]])
    assert r.status_code == 200, r.text
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": before["refresh_token"]})
    assert r.status_code == 200, r.text


async def test_a_user_who_left_the_organization_cannot_refresh_into_it(
        api: Api, monkeypatch) -> None:
    http, storage = api.app.http, api.app.ctx.storage
    _, url = await _member(api, "jo", ["viewer"])
    in_org = await api.user_token("jo", organization="acme")
    plain = await api.user_token("jo")
    reissue = await api.user_token("jo", organization="acme")
    assert (await http.post(url, json={"remove": ["viewer"]})).json()["count"] == 0
    # an admin reissue of a token of the organization revokes it and issues none
    r = await http.post(url, json={"reissue": {"refresh_token": reissue["refresh_token"]}})
    assert r.status_code == 200 and r.json()["tokens"] is None, r.text
    r = await http.post("/oauth/introspect", auth=(api.web_id, api.web_secret),
                        data={"token": reissue["access_token"]})
    assert r.json() == {"active": False}
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": reissue["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": in_org["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    assert "member" in r.json()["error_description"]
    r = await http.post("/oauth/introspect", auth=(api.web_id, api.web_secret),
                        data={"token": in_org["access_token"]})
    assert r.json() == {"active": False}  # the grant is revoked
    # a grant without an organization refreshes, without reading roles
    reads: list[object] = []
    read_roles = storage.user_roles

    async def counted(*args, **kwargs):
        reads.append(args)
        return await read_roles(*args, **kwargs)
    monkeypatch.setattr(storage, "user_roles", counted)
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": plain["refresh_token"]})
    assert r.status_code == 200 and "org" not in jwt.decode(
        r.json()["access_token"], options={"verify_signature": False})
    assert reads == []
    # back in the organization, a new sign-in works again
    monkeypatch.undo()
    await http.post(url, json={"add": ["viewer"]})
    assert "refresh_token" in await api.user_token("jo", organization="acme")


async def test_audit_events_record_admin_changes_and_logins(api: Api) -> None:
    http = api.app.http
    created = (await http.post("/api/v1/users", json={"username": "gus", "email": "g@example.com",
                                                      "password": PASSWORD})).json()
    await api.user_token("gus")
    await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "password", "username": "gus", "password": "wrong password"})
    events = (await http.get("/api/v1/events")).json()
    actions = [e["action"] for e in events["items"]]
    assert actions[:3] == ["login.failure", "login.success", "user.create"]
    create = events["items"][2]
    assert create["target"] == created["id"] and create["actor_type"] == "client"
    assert create["ip"] and create["client_id"]
    failures = (await http.get("/api/v1/events", params={"action": "login.failure"})).json()
    assert failures["count"] == 1 and failures["items"][0]["target"] == "gus"
    page = (await http.get("/api/v1/events", params={"limit": 1, "offset": 1})).json()
    assert page["count"] == events["count"] and page["items"][0]["action"] == "login.success"


async def test_revoke_all_self_and_admin(api: Api) -> None:
    http = api.app.http
    user = (await http.post("/api/v1/users", json={"username": "hal", "email": "h@example.com",
                                                   "password": PASSWORD})).json()
    first, second = await api.user_token("hal"), await api.user_token("hal")
    r = await http.delete("/api/v1/users/me/sessions", headers=api.bearer(first))
    assert r.status_code == 204
    for token in (first, second):
        r = await http.post("/oauth/introspect", auth=(api.web_id, api.web_secret),
                            data={"token": token["access_token"]})
        assert r.json() == {"active": False}
    third = await api.user_token("hal")
    assert (await http.delete(f"/api/v1/users/{user['id']}/sessions")).status_code == 204
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": third["refresh_token"]})
    assert r.json()["error"] == "invalid_grant"
    other = (await http.post("/api/v1/users", json={"username": "ivy", "email": "i@example.com",
                                                    "password": PASSWORD})).json()
    ivy = await api.user_token("ivy")
    r = await http.delete(f"/api/v1/users/{user['id']}/sessions", headers=api.bearer(ivy))
    assert r.status_code == 403
    assert other["id"]


async def test_openapi_documents_every_operation_with_errors(tmp_path) -> None:
    from bastion.server.app import create_app
    from bastion.server.settings import Settings

    # (its own data dir: the default, ./bastion-data, was left in the checkout)
    app = create_app(Settings(issuer="https://x.example", secret_key="k" * 32,
                              data_dir=tmp_path))
    schema = app.api.openapi()  # type: ignore[attr-defined]
    ops = [(path, method, op) for path, item in schema["paths"].items()
           for method, op in item.items() if path.startswith("/api/")]
    assert len(ops) >= 15
    for path, method, op in ops:
        assert op.get("summary"), (path, method)
        assert {"401", "403", "422"} <= set(op["responses"]), (path, method)


async def test_a_new_password_through_the_api_ends_every_session_and_token(api: Api) -> None:
    http = api.app.http
    user = (await http.post("/api/v1/users", json={"username": "joe", "email": "j@example.com",
                                                   "password": PASSWORD})).json()
    token = await api.user_token("joe")
    r = await http.patch(f"/api/v1/users/{user['id']}", json={"password": "another password"})
    assert r.status_code == 200
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert r.json()["error"] == "invalid_grant"
    assert (await http.get("/api/v1/users/me", headers=api.bearer(token))).status_code == 401
    # other changes leave the tokens alone
    fresh = await api.user_token("joe", password="another password")
    await http.patch(f"/api/v1/users/{user['id']}", json={"email": "joe@example.com"})
    assert (await http.get("/api/v1/users/me", headers=api.bearer(fresh))).status_code == 200


async def test_api_bodies_over_the_limit_are_refused_before_authentication(api: Api) -> None:
    """413 problem JSON whether the size is declared (Content-Length) or only streamed,
    and the stream is not read to its end."""
    http, limit = api.app.http, api.app.ctx.settings.max_api_body_bytes
    anonymous = {"Authorization": "", "content-type": "application/json"}
    r = await http.post("/api/v1/users", content=b" " * (limit + 1), headers=anonymous)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert str(limit) in r.json()["detail"]
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b" " * (limit // 4)

    r = await http.post("/api/v1/users", content=stream(), headers=anonymous)
    assert r.status_code == 413 and r.json()["status"] == 413
    assert sent < 10  # refused once past the limit, not after reading everything
    # At the limit the body goes on to authentication, and to the route with a token.
    body = b'{"username": "kim", "email": "k@example.com"}'
    r = await http.post("/api/v1/users", content=body.ljust(limit), headers=anonymous)
    assert r.status_code == 401
    r = await http.post("/api/v1/users", content=body.ljust(limit),
                        headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    # Only the API is limited this way: the OAuth endpoints keep their own limit.
    r = await http.post("/oauth/token", content=b"a" * (limit + 1),
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.json()["error"] == "invalid_request"


async def test_malformed_json_is_said_so_not_named_as_a_field(api: Api) -> None:
    r = await api.app.http.post("/api/v1/users", content=b'{"username": "x",}',
                                headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "body", "message": "not valid JSON (Expecting "
                                   "property name enclosed in double quotes)"}]


async def test_a_refused_pattern_is_said_as_a_rule_a_person_can_follow(api: Api) -> None:
    http = api.app.http
    r = await http.post("/api/v1/users", json={"username": "-bob", "email": "bob@example.com"})
    assert r.status_code == 422 and r.json()["errors"] == [{
        "field": "username",
        "message": "1 to 150 letters, digits or '_.+-', starting with a letter or digit"}]
    r = await http.post("/api/v1/organizations", json={"name": "acme "})
    assert r.json()["errors"][0]["message"].startswith("1 to 100 letters, digits, spaces")
    r = await http.post("/api/v1/users", json={"username": "bob", "email": "bob at example"})
    assert "one plain email address" in r.json()["detail"]
