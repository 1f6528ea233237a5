"""``GET /api/v1/users/{id}/export`` in process: an administrator's download of
everything kept about a user, audited; never read with an app's token of the user's."""

from __future__ import annotations

from api_helpers import PASSWORD, Api


async def create(api: Api, username: str) -> dict[str, object]:
    r = await api.app.http.post("/api/v1/users", json={
        "username": username, "email": f"{username}@example.com", "password": PASSWORD})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_an_administrator_exports_a_user(api: Api) -> None:
    http = api.app.http
    eve = await create(api, "eve")
    await api.user_token("eve")
    org = (await http.post("/api/v1/organizations", json={"name": "acme"})).json()
    await http.post(f"/api/v1/organizations/{org['id']}/roles",
                    json={"name": "editor", "permissions": ["posts:write"]})
    r = await http.post(f"/api/v1/organizations/{org['id']}/users/{eve['id']}/roles",
                       json={"add": ["editor"]})
    assert r.status_code == 200, r.text

    r = await http.get(f"/api/v1/users/{eve['id']}/export")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-disposition"] == f'attachment; filename="user-{eve["id"]}.json"'
    export = r.json()
    assert export["user"] == eve and export["exported_at"]
    assert [(m["organization"]["name"], m["roles"]) for m in export["organizations"]] == [
        ("acme", ["editor"])]
    assert export["sessions"] == []  # the password grant makes none
    (grant,) = export["grants"]
    assert grant["client_id"] == api.web_id and grant["scope"] == "openid"
    assert grant["revoked_at"] is None and grant["client_name"] == "web"
    assert [e["action"] for e in export["events"]] == [
        "user.roles.update", "login.success", "user.create"]
    assert export["events_total"] == 3

    events = (await http.get("/api/v1/events", params={"action": "user.export"})).json()
    assert [e["target"] for e in events["items"]] == [eve["id"]]


async def test_an_apps_token_of_the_user_reads_no_export(api: Api) -> None:
    """An app the user signed in to holds their token: it must not learn which other
    apps they use, or their audit trail (the account page offers the download)."""
    http = api.app.http
    fay, gil = await create(api, "fay"), await create(api, "gil")
    own = api.bearer(await api.user_token("fay"))
    for target in ("me", fay["id"], gil["id"]):
        r = await http.get(f"/api/v1/users/{target}/export", headers=own)
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    missing = await http.get("/api/v1/users/no-such-user/export")
    assert missing.status_code == 404


async def test_an_export_holds_no_secret(api: Api) -> None:
    http = api.app.http
    hal = await create(api, "hal")
    tokens = await api.user_token("hal")
    text = (await http.get(f"/api/v1/users/{hal['id']}/export")).text
    stored = await api.app.ctx.storage.get_user(str(hal["id"]))
    assert stored is not None and stored.password_hash
    for secret in (tokens["access_token"], tokens["refresh_token"], tokens["id_token"],
                   PASSWORD, stored.password_hash):
        assert secret not in text
