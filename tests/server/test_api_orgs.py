"""The REST API of an organization's life in process: rename, members, a user's
organizations, delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from api_helpers import PASSWORD, Api

from bastion.oauth import pkce
from bastion.server.services import rbac
from bastion.server.services.clients import create_client
from bastion.server.services.errors import InvalidInput
from support import callback_params, sign_in


async def _user(api: Api, name: str) -> dict[str, Any]:
    r = await api.app.http.post("/api/v1/users", json={
        "username": name, "email": f"{name}@example.com", "password": PASSWORD})
    assert r.status_code == 201, r.text
    return r.json()


async def _org(api: Api, name: str, *roles: str) -> dict[str, Any]:
    http = api.app.http
    org = (await http.post("/api/v1/organizations", json={"name": name})).json()
    for role in roles:
        r = await http.post(f"/api/v1/organizations/{name}/roles",
                            json={"name": role, "permissions": [f"{role}:x"]})
        assert r.status_code == 201, r.text
    return org


async def _attach(api: Api, org: str, user_id: str, *roles: str) -> None:
    r = await api.app.http.post(f"/api/v1/organizations/{org}/users/{user_id}/roles",
                                json={"add": list(roles)})
    assert r.status_code == 200, r.text


async def _introspect(api: Api, token: str) -> dict[str, Any]:
    r = await api.app.http.post("/oauth/introspect", auth=(api.web_id, api.web_secret),
                                data={"token": token})
    return r.json()  # type: ignore[no-any-return]


async def test_rename_an_organization(api: Api) -> None:
    http = api.app.http
    acme = await _org(api, "acme")
    await _org(api, "globex")
    r = await http.patch("/api/v1/organizations/acme", json={"name": "Acme Corp"})
    assert r.status_code == 200, r.text
    assert r.json() == {**acme, "name": "Acme Corp"}
    assert (await http.get("/api/v1/organizations/acme corp")).json()["id"] == acme["id"]
    assert (await http.get("/api/v1/organizations/acme")).status_code == 404
    r = await http.patch(f"/api/v1/organizations/{acme['id']}", json={"name": "GLOBEX"})
    assert r.status_code == 409 and "already taken" in r.json()["detail"], r.text
    for bad in ({"name": " padded"}, {"name": acme["id"]}, {}, {"name": "x", "id": "y"}):
        r = await http.patch("/api/v1/organizations/globex", json=bad)
        assert r.status_code == 422, (bad, r.text)
    r = await http.patch("/api/v1/organizations/nowhere", json={"name": "x"})
    assert r.status_code == 404 and "nowhere" in r.json()["detail"]
    events = (await http.get("/api/v1/events", params={"action": "organization.update"})).json()
    assert [(e["target"], e["detail"]) for e in events["items"]] == [
        (acme["id"], {"name": "Acme Corp", "previous": "acme"})]


async def test_members_of_an_organization_and_a_users_organizations(api: Api) -> None:
    http = api.app.http
    ann, ben, cid = [await _user(api, n) for n in ("ann", "ben", "cid")]
    acme = await _org(api, "acme", "editor", "viewer")
    globex = await _org(api, "globex", "viewer")
    await _attach(api, "acme", cid["id"], "viewer", "editor")
    await _attach(api, "acme", ann["id"], "viewer")
    await _attach(api, "globex", ann["id"], "viewer")

    r = await http.get("/api/v1/organizations/acme/users")
    assert r.status_code == 200, r.text
    assert r.json() == {"count": 2, "items": [
        {"user": ann, "roles": ["viewer"]}, {"user": cid, "roles": ["editor", "viewer"]}]}
    r = await http.get(f"/api/v1/organizations/{acme['id']}/users",
                       params={"limit": 1, "offset": 1})
    assert [m["user"]["username"] for m in r.json()["items"]] == ["cid"]
    assert r.json()["count"] == 2
    assert (await http.get("/api/v1/organizations/nowhere/users")).status_code == 404
    # a deleted user is listed only when asked for
    assert (await http.delete(f"/api/v1/users/{cid['id']}")).status_code == 204
    r = await http.get("/api/v1/organizations/acme/users")
    assert [m["user"]["username"] for m in r.json()["items"]] == ["ann"]
    r = await http.get("/api/v1/organizations/acme/users", params={"include_deleted": True})
    assert [m["user"]["username"] for m in r.json()["items"]] == ["ann", "cid"]

    r = await http.get(f"/api/v1/users/{ann['id']}/organizations")
    assert r.json() == {"count": 2, "items": [acme, globex]}
    r = await http.get(f"/api/v1/users/{ann['id']}/organizations", params={"limit": 1})
    assert r.json() == {"count": 2, "items": [acme]}
    assert (await http.get(f"/api/v1/users/{ben['id']}/organizations")).json() == {
        "count": 0, "items": []}
    assert (await http.get("/api/v1/users/nobody/organizations")).status_code == 404

    # a user lists their own organizations (an app's organization picker), no one else's
    own = api.bearer(await api.user_token("ann"))
    r = await http.get(f"/api/v1/users/{ann['id']}/organizations", headers=own)
    assert r.status_code == 200 and r.json()["count"] == 2, r.text
    for path in (f"/api/v1/users/{ben['id']}/organizations", "/api/v1/organizations/acme/users"):
        r = await http.get(path, headers=own)
        assert r.status_code == 403, (path, r.text)


async def test_delete_an_organization(api: Api) -> None:
    http = api.app.http
    dee = await _user(api, "dee")
    acme = await _org(api, "acme", "editor")
    await _org(api, "globex", "viewer")
    await _attach(api, "acme", dee["id"], "editor")
    await _attach(api, "globex", dee["id"], "viewer")
    in_acme = await api.user_token("dee", organization="acme")
    in_globex = await api.user_token("dee", organization="globex")
    plain = await api.user_token("dee")

    # a code issued for it before the deletion, exchanged after
    web = await create_client(api.app.ctx.storage, name="spa", public=True,
                              redirect_uris=["https://spa.example/cb"], scopes=["openid"])
    verifier = pkce.new_verifier()
    url = "/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": web.client.client_id, "scope": "openid",
        "redirect_uri": "https://spa.example/cb", "organization": "acme",
        "code_challenge": pkce.challenge(verifier), "code_challenge_method": "S256"})
    admin = http.headers.pop("Authorization")
    code = callback_params(await sign_in(http, url, "dee", PASSWORD))["code"]
    http.headers["Authorization"] = admin

    r = await http.delete("/api/v1/organizations/acme")
    assert r.status_code == 409 and "force" in r.json()["detail"], r.text
    assert (await _introspect(api, in_acme["access_token"]))["active"] is True

    r = await http.delete("/api/v1/organizations/acme", params={"force": True})
    assert r.status_code == 204, r.text
    assert (await http.get("/api/v1/organizations/acme")).status_code == 404
    assert (await http.delete(f"/api/v1/organizations/{acme['id']}")).status_code == 404
    # the tokens issued in it are revoked; the user's others are not
    assert await _introspect(api, in_acme["access_token"]) == {"active": False}
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": in_acme["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    r = await http.get("/oauth/userinfo", headers=api.bearer(in_acme))
    assert r.status_code == 401, r.text
    r = await http.post("/oauth/token", headers={"Authorization": ""}, data={
        "grant_type": "authorization_code", "code": code, "client_id": web.client.client_id,
        "redirect_uri": "https://spa.example/cb", "code_verifier": verifier})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    for kept in (in_globex, plain):
        assert (await _introspect(api, kept["access_token"]))["active"] is True
    r = await http.get(f"/api/v1/users/{dee['id']}/organizations")
    assert [o["name"] for o in r.json()["items"]] == ["globex"]
    r = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "password", "username": "dee", "password": PASSWORD,
        "organization": "acme"})
    assert r.status_code == 403 and r.json()["error"] == "access_denied", r.text
    # the name can be used again, for a new organization with nothing of the old one
    fresh = await _org(api, "acme")
    assert fresh["id"] != acme["id"]
    assert (await http.get("/api/v1/organizations/acme/roles")).json()["count"] == 0
    assert (await http.get("/api/v1/organizations/acme/users")).json()["count"] == 0
    events = (await http.get("/api/v1/events", params={"action": "organization.delete"})).json()
    assert [(e["target"], e["detail"]) for e in events["items"]] == [
        (acme["id"], {"name": "acme", "force": True})]


async def test_organization_changes_need_an_administrator(api: Api) -> None:
    http = api.app.http
    eve = await _user(api, "eve")
    await _org(api, "acme")
    own = api.bearer(await api.user_token("eve"))
    r = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(api.app.client_id, api.app.client_secret))
    plain_client = api.bearer(r.json())  # a client token without bastion:admin
    for token in (own, plain_client):
        for method, path, kwargs in (
            ("PATCH", "/api/v1/organizations/acme", {"json": {"name": "mine"}}),
            ("DELETE", "/api/v1/organizations/acme", {"params": {"force": True}}),
            ("GET", "/api/v1/organizations/acme/users", {}),
        ):
            r = await http.request(method, path, headers=token, **kwargs)
            assert r.status_code == 403, (method, path, r.text)
    r = await http.get(f"/api/v1/users/{eve['id']}/organizations", headers=plain_client)
    assert r.status_code == 403, r.text
    r = await http.get("/api/v1/users/me/organizations", headers=own)
    assert r.status_code == 200 and r.json()["count"] == 0, r.text
    assert (await http.get("/api/v1/organizations/acme")).json()["name"] == "acme"


async def test_a_change_may_not_both_add_and_remove_one_thing(api: Api) -> None:
    """Which would it be? The storage removes, then adds: the role stayed held, past
    the check of what a token can carry, which left it out as removed."""
    http = api.app.http
    bob = await _user(api, "bob")
    await _org(api, "acme", "editor", "viewer")
    r = await http.post(f"/api/v1/organizations/acme/users/{bob['id']}/roles",
                        json={"add": ["editor", "viewer"], "remove": ["viewer"]})
    assert r.status_code == 422 and "'viewer': both added and removed" in r.json()["detail"]
    held = await http.get(f"/api/v1/organizations/acme/users/{bob['id']}/roles")
    assert held.json()["items"] == []  # nothing applied
    role = (await http.get("/api/v1/organizations/acme/roles/editor")).json()
    r = await http.post(f"/api/v1/organizations/acme/users/{bob['id']}/roles",
                        json={"add": [role["id"]], "remove": ["editor"]})  # by id and name
    assert r.status_code == 422 and "both added and removed" in r.json()["detail"]
    # the REST API adds and removes permissions apart; the service refuses both too
    with pytest.raises(InvalidInput, match="'editor:x': both added and removed"):
        await rbac.change_permissions(api.app.ctx.storage, role["organization_id"], "editor",
                                      add=["a:b", "editor:x"], remove=["editor:x"])
    assert (await http.get("/api/v1/organizations/acme/roles/editor")).json()[
        "permissions"] == ["editor:x"]


async def test_me_names_the_caller_in_a_users_roles_and_clashes_name_the_field(api: Api):
    http = api.app.http
    bob = await _user(api, "bob")
    await _org(api, "acme", "editor")
    await _attach(api, "acme", bob["id"], "editor")
    token = await api.user_token("bob")
    mine = await http.get("/api/v1/organizations/acme/users/me/roles", headers=api.bearer(token))
    assert mine.status_code == 200 and [r["name"] for r in mine.json()["items"]] == ["editor"]
    r = await http.get("/api/v1/organizations/acme/users/me/roles")  # a client's admin token
    assert r.status_code == 400 and "'me' needs a user's token" in r.json()["detail"]
    r = await http.post("/api/v1/organizations", json={"name": "ACME"})
    assert r.status_code == 409 and r.json()["field"] == "name"
    assert r.json()["detail"] == "organization name 'ACME' is already taken"
    r = await http.post("/api/v1/organizations/acme/roles", json={"name": "editor"})
    assert r.status_code == 409 and r.json()["field"] == "name"


async def test_me_names_the_administrator_user_changing_roles_too(api: Api) -> None:
    """``me`` means the caller for every method on a user's roles, not only GET."""
    from bastion.server.services.users import create_user

    http, ctx = api.app.http, api.app.ctx
    await create_user(ctx.storage, ctx.passwords, username="root", email="root@example.com",
                      password=PASSWORD, is_administrator=True)
    console = await create_client(ctx.storage, name="console", grant_types=["password"],
                                  scopes=["openid", "bastion:admin"])
    assert console.client_secret
    r = await http.post("/oauth/token", auth=(console.client.client_id, console.client_secret),
                        data={"grant_type": "password", "username": "root",
                              "password": PASSWORD, "scope": "openid bastion:admin"})
    root = api.bearer(r.json())
    await _org(api, "acme", "editor")
    url = "/api/v1/organizations/acme/users/me/roles"
    r = await http.post(url, json={"add": ["editor"]}, headers=root)
    assert r.status_code == 200, r.text
    assert [x["name"] for x in r.json()["items"]] == ["editor"]
    mine = await http.get(url, headers=root)
    assert [x["name"] for x in mine.json()["items"]] == ["editor"]
    r = await http.post(url, json={"remove": ["editor"]})  # a client's admin token
    assert r.status_code == 400 and "'me' needs a user's token" in r.json()["detail"]
    assert (await http.get(url, headers=root)).json()["count"] == 1



async def test_role_changes_are_audited_by_role_id_in_their_organization(api: Api) -> None:
    """As sent, a role was recorded by whatever name or id named it (in any case), a
    call that changed nothing recorded a change, and the permission events did not say
    in which organization their role is."""
    http = api.app.http
    acme = await _org(api, "acme", "editor", "viewer")
    roles = {r["name"]: r["id"] for r in
             (await http.get("/api/v1/organizations/acme/roles")).json()["items"]}
    ann = await _user(api, "ann")
    path = f"/api/v1/organizations/acme/users/{ann['id']}/roles"
    assert (await http.post(path, json={"add": ["EDITOR", roles["viewer"]]})).status_code == 200
    assert (await http.post(path, json={"remove": ["Viewer"]})).status_code == 200
    assert (await http.post(path, json={"add": [], "remove": []})).status_code == 200
    events = (await http.get("/api/v1/events", params={"action": "user.roles.update"})).json()
    assert [e["detail"] for e in events["items"]] == [  # newest first
        {"organization": acme["id"], "add": [], "remove": [roles["viewer"]]},
        {"organization": acme["id"], "add": [roles["editor"], roles["viewer"]], "remove": []}]
    assert (await http.post("/api/v1/organizations/acme/roles/editor/permissions",
                            json={"permissions": ["posts:read"]})).status_code == 200
    assert (await http.delete("/api/v1/organizations/acme/roles/editor/permissions",
                              params={"permission": "posts:read"})).status_code == 200
    for action in ("role.permissions.add", "role.permissions.remove"):
        (event,) = (await http.get("/api/v1/events", params={"action": action})).json()["items"]
        assert event["target"] == roles["editor"]
        assert event["detail"]["organization"] == acme["id"]
