"""Keyset cursors of the REST API: what one names comes back, anything else is a 422
naming the field, never a 500."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from api_helpers import Api

from bastion.server.api import cursors
from bastion.server.services.errors import InvalidInput


def test_a_cursor_names_a_creation_time_and_an_id() -> None:
    at = datetime(2026, 11, 23, 17, 0, 0, 123456, tzinfo=UTC)
    assert cursors.parse(cursors.cursor(at, "5f0c7a4e-3f1b")) == (at, "5f0c7a4e-3f1b")
    paris = base64.urlsafe_b64encode(b"2026-11-23T18:00:00+01:00|u1").decode()
    assert cursors.parse(paris) == (datetime(2026, 11, 23, 17, tzinfo=UTC), "u1")
    assert cursors.parse(None) is None and cursors.parse("") is None


@pytest.mark.parametrize("bad", [
    "not-a-cursor", "%%%", "=", base64.urlsafe_b64encode(b"2026-11-23T17:00:00").decode(),
    base64.urlsafe_b64encode(b"2026-11-23T17:00:00|").decode(),  # no id
    base64.urlsafe_b64encode(b"2026-11-23T17:00:00|u1").decode(),  # no time zone
    base64.urlsafe_b64encode(b"yesterday|u1").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe|u1").decode(),
    # Times a database cannot take once in UTC, and ids Bastion never gives.
    base64.urlsafe_b64encode(b"0001-01-01T00:00:00+01:00|u1").decode(),
    base64.urlsafe_b64encode(b"9999-12-31T23:59:59-01:00|u1").decode(),
    base64.urlsafe_b64encode(b"2026-11-23T17:00:00+00:00|u\x001").decode(),
    base64.urlsafe_b64encode(b"2026-11-23T17:00:00+00:00|" + b"u" * 65).decode(),
])
def test_anything_else_is_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        cursors.parse(bad)
    assert caught.value.field == "after"


async def test_the_api_pages_by_cursor(api: Api) -> None:
    http = api.app.http
    for name in ("pa", "pb", "pc"):
        await http.post("/api/v1/users", json={"username": name, "email": f"{name}@ex.org"})
    first = (await http.get("/api/v1/users", params={"q": "@ex.org", "limit": 2})).json()
    assert [u["username"] for u in first["items"]] == ["pa", "pb"] and first["next"]
    rest = (await http.get("/api/v1/users", params={"q": "@ex.org", "limit": 2,
                                                    "after": first["next"]})).json()
    assert [u["username"] for u in rest["items"]] == ["pc"] and rest["next"] is None
    assert rest["count"] == 3
    uncounted = (await http.get("/api/v1/users", params={
        "q": "@ex.org", "limit": 2, "after": first["next"], "count": "false"})).json()
    assert uncounted["count"] is None and uncounted["items"] == rest["items"]
    bad = await http.get("/api/v1/users", params={"after": "x" * 201})
    assert bad.status_code == 422
    bad = await http.get("/api/v1/users", params={"after": "bm9wZQ"})
    assert bad.status_code == 422 and bad.json()["field"] == "after"


async def test_the_events_api_pages_by_cursor(api: Api) -> None:
    http = api.app.http
    for name in ("qa", "qb", "qc"):
        await http.post("/api/v1/users", json={"username": name, "email": f"{name}@ex.org"})
    query = {"action": "user.create", "limit": 2}
    first = (await http.get("/api/v1/events", params=query)).json()
    assert [e["detail"]["username"] for e in first["items"]] == ["qc", "qb"] and first["next"]
    rest = (await http.get("/api/v1/events", params={**query, "after": first["next"]})).json()
    assert [e["detail"]["username"] for e in rest["items"]] == ["qa"] and rest["next"] is None
    uncounted = (await http.get("/api/v1/events", params={**query, "count": "false"})).json()
    assert uncounted["count"] is None and uncounted["items"] == first["items"]
    bad = await http.get("/api/v1/events", params={"after": "bm9wZQ"})
    assert bad.status_code == 422 and bad.json()["field"] == "after"
