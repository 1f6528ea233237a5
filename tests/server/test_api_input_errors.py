"""What the REST API says of input it cannot take: a 422 problem with a message a person
can act on, never FastAPI's bare 400 nor a regular expression."""

from __future__ import annotations

import pytest
from api_helpers import Api

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"name": "caf\xe9"}', "not UTF-8: byte 0xe9 at offset 13"),
    (b"[" * 5000 + b"]" * 5000, "arrays and objects nested too deeply to read"),
    (b'{"name": ' + b"1" * 4301 + b"}", "a number of more than 4300 digits"),
])
async def test_a_json_body_that_cannot_be_read_is_a_422_saying_why(
        api: Api, body: bytes, reason: str) -> None:
    r = await api.app.http.post("/api/v1/organizations", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [{"field": "body", "message": f"not valid JSON ({reason})"}]
    assert r.json()["detail"] == f"body: not valid JSON ({reason})"


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
async def test_a_json_body_sent_as_another_type_is_told_its_content_type(
        api: Api, content_type: str | None) -> None:
    http = api.app.http
    headers = {"content-type": content_type} if content_type else {}
    for method, path in (("POST", "/api/v1/organizations"),
                         ("PATCH", f"/api/v1/clients/{api.app.client_id}")):
        r = await http.request(method, path, content=b'{"name": "acme"}', headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"field": "body", "message": "must be JSON, sent with "
                                       "Content-Type: application/json"}]
