"""``POST /api/v1/users/{id}/erase`` in process: who may erase, what goes, what the
audit trail and the throttle keep, and that an erased user stays erased."""

from __future__ import annotations

from api_helpers import PASSWORD, Api

from bastion.server.services import throttle
from bastion.server.services.clients import create_client
from bastion.server.services.users import create_user


async def create(api: Api, username: str, email: str) -> dict[str, object]:
    r = await api.app.http.post("/api/v1/users", json={
        "username": username, "email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_an_administrator_erases_a_user(api: Api) -> None:
    http, storage = api.app.http, api.app.ctx.storage
    gus = await create(api, "Gus", "gus@example.com")
    tokens = await api.user_token("gus")
    failed = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "password", "username": "  GUS@Example.com ", "password": "wrong!!!!"})
    assert failed.status_code == 400
    throttled = throttle.keys_naming(str(gus["id"]), ["Gus", "gus@example.com"])
    assert {t.key for t in await storage.get_throttles(throttled)} == {
        "acct:gus@example.com", f"user:{gus['id']}"}

    r = await http.post(f"/api/v1/users/{gus['id']}/erase")
    assert r.status_code == 200, r.text
    erased = r.json()
    assert erased["erased_at"] and erased["deleted_at"] and not erased["email_verified"]
    assert (erased["username"], erased["email"]) == (f"erased:{gus['id']}",
                                                     f"{gus['id']}@erased.invalid")
    assert (await http.get(f"/api/v1/users/{gus['id']}")).json() == erased
    assert await storage.get_throttles(throttled) == []

    # Signed out everywhere, and not found by their name.
    assert (await http.get("/api/v1/users/me", headers=api.bearer(tokens))).status_code == 401
    refresh = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"
    found = await http.get("/api/v1/users", params={"q": "gus", "include_deleted": "true"})
    assert found.json()["count"] == 0, found.json()

    # The audit trail names them by id only, and records the erasure.
    events = (await http.get("/api/v1/events", params={"limit": 100})).json()["items"]
    assert [e["action"] for e in events[:3]] == ["user.erase", "login.failure", "login.success"]
    assert events[0]["target"] == gus["id"]
    failure = next(e for e in events if e["action"] == "login.failure")
    assert failure["target"] == gus["id"]
    create_event = next(e for e in events if e["action"] == "user.create")
    assert create_event["target"] == gus["id"] and "username" not in create_event["detail"]
    assert "gus@example.com" not in str(events).lower()
    assert not any(str(e["target"]).lower() == "gus" for e in events)


async def test_the_names_a_change_recorded_go_with_the_user(api: Api) -> None:
    http = api.app.http
    hal = await create(api, "hal", "hal@example.com")
    r = await http.patch(f"/api/v1/users/{hal['id']}", json={"username": "hal9000",
                                                              "email": "hal@9000.example"})
    assert r.status_code == 200, r.text
    changed = {"action": "user.update", "target": hal["id"]}
    (event,) = (await http.get("/api/v1/events", params=changed)).json()["items"]
    assert (event["detail"]["username"], event["detail"]["email"]) == ("hal9000",
                                                                       "hal@9000.example")
    assert (await http.post(f"/api/v1/users/{hal['id']}/erase")).status_code == 200
    (event,) = (await http.get("/api/v1/events", params=changed)).json()["items"]
    assert event["detail"] == {"fields": ["email", "username"], "is_administrator": False,
                               "email_verified": False}


async def test_failed_sign_ins_are_audited_under_the_folded_login(api: Api) -> None:
    http = api.app.http
    await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "password", "username": "  Somebody@Example.COM ", "password": "nope!!!!"})
    events = (await http.get("/api/v1/events", params={"action": "login.failure"})).json()
    assert [e["target"] for e in events["items"]] == ["somebody@example.com"]


async def test_an_erased_user_stays_erased(api: Api) -> None:
    http = api.app.http
    ida = await create(api, "ida", "ida@example.com")
    first = (await http.post(f"/api/v1/users/{ida['id']}/erase")).json()
    again = await http.post(f"/api/v1/users/{ida['id']}/erase")
    assert again.status_code == 200 and again.json() == first
    for method, path, body in (("POST", "/restore", None), ("PATCH", "", {"username": "ida"}),
                               ("PATCH", "", {"password": PASSWORD + "!"})):
        r = await http.request(method, f"/api/v1/users/{ida['id']}{path}", json=body)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "was erased" in r.json()["detail"] and "new user" in r.json()["detail"]
    # The name and the address are free for a new account.
    again_ida = await create(api, "Ida", "IDA@example.com")
    assert again_ida["id"] != ida["id"]
    missing = await http.post("/api/v1/users/no-such-user/erase")
    assert missing.status_code == 404 and missing.json()["detail"] == "No user 'no-such-user'."


async def test_only_an_administrator_may_erase(api: Api) -> None:
    http = api.app.http
    jo = await create(api, "jo", "jo@example.com")
    own = await api.user_token("jo")
    for target in ("me", jo["id"]):
        r = await http.post(f"/api/v1/users/{target}/erase", headers=api.bearer(own))
        assert r.status_code == 403, r.text
    assert (await http.get(f"/api/v1/users/{jo['id']}")).json()["erased_at"] is None


async def test_an_erased_user_is_given_no_roles(api: Api) -> None:
    http = api.app.http
    kay = await create(api, "kay", "kay@example.com")
    org = (await http.post("/api/v1/organizations", json={"name": "acme"})).json()
    await http.post(f"/api/v1/organizations/{org['id']}/roles", json={"name": "editor"})
    await http.post(f"/api/v1/users/{kay['id']}/erase")
    r = await http.post(f"/api/v1/organizations/{org['id']}/users/{kay['id']}/roles",
                        json={"add": ["editor"]})
    assert r.status_code == 409 and "was erased" in r.json()["detail"], r.text
    members = (await http.get(f"/api/v1/organizations/{org['id']}/users")).json()
    assert members["count"] == 0


async def test_an_administrator_does_not_erase_their_own_account(api: Api) -> None:
    http, ctx = api.app.http, api.app.ctx
    root = await create_user(ctx.storage, ctx.passwords, username="root",
                             email="root@example.com", password=PASSWORD, is_administrator=True)
    console = await create_client(ctx.storage, name="console", grant_types=["password"],
                                  scopes=["openid", "bastion:admin"])
    r = await http.post("/oauth/token", auth=(console.client.client_id, console.client_secret),
                        data={"grant_type": "password", "username": "root",
                              "password": PASSWORD, "scope": "openid bastion:admin"})
    own = api.bearer(r.json())
    r = await http.post(f"/api/v1/users/{root.id}/erase", headers=own)
    assert r.status_code == 403 and "another administrator" in r.json()["detail"], r.text
    assert (await ctx.storage.get_user(root.id)).erased_at is None  # type: ignore[union-attr]
    other = await create(api, "lou", "lou@example.com")
    assert (await http.post(f"/api/v1/users/{other['id']}/erase", headers=own)).status_code == 200


async def test_placeholder_addresses_cannot_be_claimed(api: Api) -> None:
    r = await api.app.http.post("/api/v1/users", json={
        "username": "kim", "email": "kim@Erased.INVALID", "password": PASSWORD})
    assert r.status_code == 422 and r.json()["field"] == "email"
    assert "reserved domain .invalid" in r.json()["detail"]
    r = await api.app.http.post("/api/v1/users", json={
        "username": "erased:kim", "email": "kim@example.com", "password": PASSWORD})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "username", r.text
