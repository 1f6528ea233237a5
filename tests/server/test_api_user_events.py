"""The audit events of the REST API's changes to users: what was granted, to what
values, never a password."""

from __future__ import annotations

from typing import Any

from api_helpers import PASSWORD, Api


async def _events(api: Api, action: str, target: str) -> list[dict[str, Any]]:
    r = await api.app.http.get("/api/v1/events", params={"action": action, "target": target})
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


async def test_creating_a_user_records_the_privileges_given(api: Api) -> None:
    r = await api.app.http.post("/api/v1/users", json={
        "username": "mallory", "email": "m@example.com", "password": PASSWORD,
        "is_administrator": True, "email_verified": True})
    assert r.status_code == 201, r.text
    (event,) = await _events(api, "user.create", r.json()["id"])
    assert event["detail"] == {"username": "mallory", "email": "m@example.com",
                               "is_administrator": True, "email_verified": True}


async def test_changing_a_user_records_the_new_values_but_not_the_password(api: Api) -> None:
    http = api.app.http
    mallory = (await http.post("/api/v1/users", json={
        "username": "mallory", "email": "m@example.com", "is_administrator": True,
        "email_verified": True})).json()
    path = f"/api/v1/users/{mallory['id']}"
    demoted = await http.patch(path, json={"is_administrator": False, "email": "m2@example.com"})
    assert demoted.status_code == 200, demoted.text
    new_password = "a new password, long enough"
    promoted = await http.patch(path, json={"is_administrator": True, "password": new_password,
                                            "username": "mal"})
    assert promoted.status_code == 200, promoted.text
    events = await _events(api, "user.update", mallory["id"])
    assert [e["detail"] for e in events] == [  # newest first
        {"fields": ["is_administrator", "password", "username"], "username": "mal",
         "is_administrator": True, "email_verified": False},
        # a new address is unverified unless the change says otherwise
        {"fields": ["email", "is_administrator"], "email": "m2@example.com",
         "is_administrator": False, "email_verified": False},
    ]
    stored = await api.app.ctx.storage.get_user(mallory["id"])
    assert stored.password_hash
    for secret in (new_password, stored.password_hash):
        assert secret not in str(events)


async def test_a_change_of_nothing_writes_and_records_nothing(api: Api) -> None:
    """An empty PATCH moved updated_at and recorded a user.update of no fields."""
    http = api.app.http
    ann = (await http.post("/api/v1/users", json={"username": "ann",
                                                  "email": "ann@example.com"})).json()
    r = await http.patch(f"/api/v1/users/{ann['id']}", json={})
    assert r.status_code == 200 and r.json() == ann
    assert await _events(api, "user.update", ann["id"]) == []
    missing = await http.patch("/api/v1/users/no-such-user", json={})
    assert missing.status_code == 404
    assert (await http.post(f"/api/v1/users/{ann['id']}/erase")).status_code == 200
    erased = await http.patch(f"/api/v1/users/{ann['id']}", json={})
    assert erased.status_code == 409  # as any change of an erased user
