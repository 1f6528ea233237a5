"""An administrator user cannot end their own administration through the REST API:
not by deleting, erasing or demoting their own account; another administrator can."""

from __future__ import annotations

from api_helpers import PASSWORD, Api

from bastion.server.services.clients import create_client
from bastion.server.services.users import create_user


async def _administrators(api: Api, *names: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Administrator users ``names``: each one's id and admin token's headers."""
    http, ctx = api.app.http, api.app.ctx
    console = await create_client(ctx.storage, name="console", grant_types=["password"],
                                  scopes=["openid", "bastion:admin"])
    assert console.client_secret
    out = {}
    for name in names:
        user = await create_user(ctx.storage, ctx.passwords, username=name,
                                 email=f"{name}@example.com", password=PASSWORD,
                                 is_administrator=True)
        r = await http.post("/oauth/token",
                            auth=(console.client.client_id, console.client_secret),
                            data={"grant_type": "password", "username": name,
                                  "password": PASSWORD, "scope": "openid bastion:admin"})
        assert r.status_code == 200, r.text
        out[name] = (user.id, api.bearer(r.json()))
    return out


async def test_an_administrator_cannot_delete_or_demote_their_own_account(api: Api) -> None:
    http = api.app.http
    admins = await _administrators(api, "root", "ruth")
    root_id, root = admins["root"]
    r = await http.delete(f"/api/v1/users/{root_id}", headers=root)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == ("An administrator cannot delete their own account (it would "
                                  "end their access at once); ask another administrator.")
    r = await http.patch(f"/api/v1/users/{root_id}", headers=root,
                         json={"is_administrator": False, "email": "new@example.com"})
    assert r.status_code == 403, r.text
    assert "cannot take away their own administrator flag" in r.json()["detail"]
    assert "ask another administrator" in r.json()["detail"]
    r = await http.post(f"/api/v1/users/{root_id}/erase", headers=root)
    assert r.status_code == 403 and "cannot erase their own account" in r.json()["detail"]
    me = (await http.get(f"/api/v1/users/{root_id}", headers=root)).json()
    assert me["is_administrator"] and me["deleted_at"] is None
    assert me["email"] == "root@example.com"  # nothing of the refused change applied
    # Other changes of one's own account, and the flag left as it is, are fine.
    r = await http.patch(f"/api/v1/users/{root_id}", headers=root,
                         json={"is_administrator": True, "email": "root2@example.com"})
    assert r.status_code == 200 and r.json()["email"] == "root2@example.com", r.text


async def test_another_administrator_may_demote_or_delete_one(api: Api) -> None:
    http = api.app.http
    admins = await _administrators(api, "root", "ruth")
    (root_id, root), (ruth_id, ruth) = admins["root"], admins["ruth"]
    r = await http.patch(f"/api/v1/users/{root_id}", headers=ruth,
                         json={"is_administrator": False})
    assert r.status_code == 200 and not r.json()["is_administrator"], r.text
    assert (await http.delete(f"/api/v1/users/{root_id}", headers=ruth)).status_code == 204
    # and an admin client's token (no user of its own) may change any user
    r = await http.patch(f"/api/v1/users/{ruth_id}", json={"is_administrator": False})
    assert r.status_code == 200, r.text
    assert (await http.delete(f"/api/v1/users/{ruth_id}")).status_code == 204
    assert (await http.get("/api/v1/users", headers=ruth)).status_code == 401  # deleted
    assert (await http.get("/api/v1/users", headers=root)).status_code == 401
