"""What the REST API says of input it cannot take: a 422 problem with a message a person
can act on, never FastAPI's bare 400 nor a regular expression."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import Api

from bastion.server.api.schemas import PATTERN_RULES

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"name": "caf\xe9"}', "not UTF-8: byte 0xe9 at offset 13"),
    (b"[" * 5000 + b"]" * 5000, "arrays and objects nested too deeply to read"),
    (b'{"name": ' + b"1" * 4301 + b"}", "a number of more than 4300 digits"),
    (b'{"name": "a\x01b"}', "Invalid control character at character 11"),  # ended at "at"
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


@pytest.mark.parametrize("body", [b"[]", b'"acme"', b"1", b"true"])
async def test_a_json_body_that_is_no_object_is_told_so(api: Api, body: bytes) -> None:
    http = api.app.http
    for method, path in (("POST", "/api/v1/organizations"),
                         ("PATCH", f"/api/v1/clients/{api.app.client_id}")):
        r = await http.request(method, path, content=body,
                               headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"field": "body", "message": "must be a JSON object"}]


def _patterns(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _patterns(item)


async def test_every_pattern_the_api_states_has_a_rule(api: Api) -> None:
    """A 422 names the rule of a field or parameter that did not match its pattern, so
    a pattern the API starts to use without a rule fails here."""
    schema = (await api.app.http.get("/openapi.json")).json()
    used = set(_patterns(schema))
    assert len(used) >= 8  # the walk finds them (in bodies and in query parameters)
    assert used - PATTERN_RULES.keys() == set()


CURSOR = "not a cursor this API gave: pass the `next` of a listing"


@pytest.mark.parametrize(("method", "path", "kwargs", "field", "message"), [
    ("GET", "/api/v1/events", {"params": {"since": "yesterday"}}, "since",
     "an RFC 3339 date and time, such as 2026-11-22T06:00:00Z"),
    ("GET", "/api/v1/events", {"params": {"until": "2026-11-22"}}, "until",
     "an RFC 3339 date and time, such as 2026-11-22T06:00:00Z"),
    ("GET", "/api/v1/users", {"params": {"after": "a.b"}}, "after", CURSOR),
    ("GET", "/api/v1/events", {"params": {"after": "a.b"}}, "after", CURSOR),
    ("POST", "/api/v1/clients", {"json": {"name": "x", "scopes": ["a b"]}}, "scopes.0",
     "printable ASCII characters other than space, '\"' and '\\' (one scope token)"),
    ("PATCH", "/api/v1/clients/{client}", {"json": {"scopes": ["ok", "a\"b"]}}, "scopes.1",
     "printable ASCII characters other than space, '\"' and '\\' (one scope token)"),
])
async def test_a_value_that_breaks_a_pattern_is_told_the_rule(
        api: Api, method: str, path: str, kwargs: dict[str, Any], field: str,
        message: str) -> None:
    r = await api.app.http.request(method, path.format(client=api.app.client_id), **kwargs)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f"{field}: {message}"


@pytest.mark.parametrize(("method", "path", "kwargs", "field"), [
    ("POST", "/api/v1/clients", {"json": {"name": "x", "redirect_uris": ["not a uri"]}},
     "redirect_uris"),
    ("POST", "/api/v1/clients", {"json": {"name": "x", "redirect_uris": ["https://a.example/"],
                                          "post_logout_redirect_uris": ["ftp:x"]}},
     "post_logout_redirect_uris"),  # was redirect_uri
    ("PATCH", "/api/v1/clients/{client}",
     {"json": {"grant_types": ["authorization_code"], "redirect_uris": []}}, "redirect_uris"),
    ("POST", "/api/v1/clients", {"json": {"name": "x", "is_public": True,
                                          "grant_types": ["client_credentials"]}},
     "grant_types"),
    ("PATCH", "/api/v1/clients/{client}",
     {"json": {"scopes": [f"s{n}-" + "x" * 60 for n in range(40)]}}, "scopes"),
    ("DELETE", "/api/v1/organizations/acme/roles/editor/permissions",
     {"params": {"permission": "a b"}}, "permission"),
    ("PATCH", "/api/v1/clients/{client}", {"json": {"name": None}}, "name"),
])
async def test_a_refused_value_is_named_as_the_request_names_it(
        api: Api, method: str, path: str, kwargs: dict[str, Any], field: str) -> None:
    """A service's own names were given (``redirect_uri`` for ``redirect_uris``,
    ``permissions`` for the query parameter ``permission``), and only as ``field``: a
    client mapping ``errors`` back to its form fields found none, or the wrong one."""
    http = api.app.http
    r = await http.post("/api/v1/organizations", json={"name": "acme"})
    assert r.status_code == 201, r.text
    r = await http.post("/api/v1/organizations/acme/roles", json={"name": "editor"})
    assert r.status_code == 201, r.text
    r = await http.request(method, path.format(client=api.app.client_id), **kwargs)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == field and r.json()["detail"] == f"{field}: {error['message']}"
    assert r.json().get("field", field) == field
