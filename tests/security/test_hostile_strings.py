"""Strings no database can store: a NUL (PostgreSQL refuses it) and a lone surrogate
(no driver can encode it), in every kind of input, and a client address longer than
the audit log's column. Each gets the endpoint's ordinary refusal, never a 500, on
SQLite and on PostgreSQL alike."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlencode

import httpx2
import pytest
import sqlalchemy as sa
from security_helpers import (
    PASSWORD,
    REDIRECT,
    Env,
    account_page,
    authorize_url,
    login_form,
    post_login,
)

from bastion.server.services.clients import create_client
from bastion.server.services.errors import InvalidInput
from bastion.server.storage.tables import events
from support import hidden_fields

MakeEnv = Callable[..., Awaitable[Env]]
SURROGATE = '"\\ud800"'  # a lone surrogate, as JSON writes it


async def admin_headers(env: Env) -> dict[str, str]:
    admin = await create_client(env.ctx.storage, name="admin", scopes=["bastion:admin"],
                                grant_types=["client_credentials"])
    assert admin.client_secret
    r = await env.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(admin.client.client_id, admin.client_secret))
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def page_400(response: httpx2.Response) -> None:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("text/html")


async def test_a_nul_in_a_sign_in_form_field_is_the_pages_400(on_backend: MakeEnv) -> None:
    env = await on_backend()
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    page_400(await post_login(env.http, fields, "al\x00ice"))
    page_400(await post_login(env.http, fields, "alice", PASSWORD + "\x00"))
    page_400(await post_login(env.http, {**fields, "continue": fields["continue"] + "\x00"}))
    # Invalid UTF-8 is read as U+FFFD by the form parser: an ordinary failed sign-in.
    body = (f"csrf_token={fields['csrf_token']}&continue={quote(fields['continue'], safe='')}"
            "&login=%ED%A0%80&password=x")
    r = await env.http.post("/login", content=body.encode(),
                            headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401
    assert (await post_login(env.http, fields)).status_code == 303  # the form still works


async def test_a_nul_in_the_sign_in_link_forms_is_the_pages_400(on_backend: MakeEnv) -> None:
    env = await on_backend()
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    for email in ("al\x00ice@example.com", "alice@example.com\x00"):
        page_400(await env.http.post("/login/link/request", data={**fields, "email": email}))
    page_400(await env.http.post("/login/link", data={"csrf_token": fields["csrf_token"],
                                                      "token": "t\x00"}))


async def test_a_nul_in_a_logout_or_account_form_is_the_pages_400(on_backend: MakeEnv) -> None:
    env = await on_backend()
    fields = await account_page(env)
    logout = hidden_fields((await env.http.get("/oauth/logout")).text)
    page_400(await env.http.post("/oauth/logout", data={**logout, "client_id": "a\x00",
                                                         "post_logout_redirect_uri": "x"}))
    csrf = {"csrf_token": fields["csrf_token"]}
    page_400(await env.http.post("/account/sessions/revoke", data={**csrf, "session_id": "a\x00"}))
    page_400(await env.http.post("/account/profile", data={**csrf, "username": "bob\x00"}))
    page_400(await env.http.post("/account/password", data={**csrf,
                                                            "new_password": "a\x00" * 8}))
    page_400(await env.http.post("/account/email/confirm", data={**csrf, "token": "t\x00"}))
    # nothing happened: still signed in, same name
    assert (await env.http.get("/account")).text.count('name="username" value="alice"') == 1


async def test_a_nul_in_the_account_pages_query_is_ignored(on_backend: MakeEnv) -> None:
    """``client_id`` and ``return_to`` come from the URL; unstorable ones count as absent
    (no way back offered), and never reach the client lookup."""
    env = await on_backend()
    back = {"client_id": env.web.client_id, "return_to": REDIRECT}
    signed_out = await env.http.get("/account?" + urlencode({**back, "client_id": "a\x00"}))
    assert signed_out.status_code == 200 and "%00" not in hidden_fields(signed_out.text)["next"]
    await account_page(env)
    for query in ({**back, "client_id": "\x00"}, {**back, "client_id": "a\x00b"},
                  {**back, "return_to": REDIRECT + "\x00"}):
        page = await env.http.get("/account?" + urlencode(query))
        assert page.status_code == 200, (page.status_code, page.text[:300])
        assert 'id="back"' not in page.text and "\x00" not in page.text
    assert 'id="back"' in (await env.http.get("/account?" + urlencode(back))).text


async def test_a_nul_in_an_oauth_parameter_name_is_invalid_request(on_backend: MakeEnv) -> None:
    env = await on_backend()
    r = await env.http.post("/oauth/token", auth=env.web.auth, data={
        "grant_type": "password", "username": "alice", "password": PASSWORD, "x\x00": "1"})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    r = await env.password_grant("al\x00ice")
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


async def test_a_nul_in_basic_client_credentials_is_invalid_client(on_backend: MakeEnv) -> None:
    env = await on_backend()
    for raw in ("a%00b:secret", "a\x00b:secret", f"{env.web.client_id}:x%00"):
        header = "Basic " + base64.b64encode(raw.encode()).decode()
        for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
            r = await env.http.post(path, data={"grant_type": "client_credentials",
                                                "token": "t"},
                                    headers={"Authorization": header})
            assert (r.status_code, r.json()["error"]) == (401, "invalid_client"), path


async def test_a_client_registered_with_undecodable_text_is_refused(on_backend: MakeEnv) -> None:
    # The CLI hands arguments over as str with lone surrogates for undecodable bytes;
    # stored, such a client used to make every listing of clients a 500.
    env = await on_backend()
    for name, uri in (("x", "https://a.example/\udcff"), ("a\udcff", REDIRECT),
                      ("x", "https://a.example/\x00")):
        with pytest.raises(InvalidInput):
            await create_client(env.ctx.storage, name=name, redirect_uris=[uri])


@pytest.mark.parametrize(("body", "field"), [
    ('{"add": ["a\\u0000b"]}', "add.0"),
    ('{"add": [' + SURROGATE + "]}", "add.0"),
    ('{"remove": ["' + "x" * 10_000 + '"]}', "remove.0"),
    ('{"add": [], "reissue": {"refresh_token": "a\\u0000"}}', "reissue.refresh_token"),
])
async def test_rest_role_changes_refuse_unstorable_strings(on_backend: MakeEnv, body: str,
                                                           field: str) -> None:
    env = await on_backend()
    headers = {**await admin_headers(env), "content-type": "application/json"}
    org = (await env.http.post("/api/v1/organizations", json={"name": "acme"},
                               headers=headers)).json()
    r = await env.http.post(f"/api/v1/organizations/{org['id']}/users/{env.user.id}/roles",
                            content=body.encode(), headers=headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]]


@pytest.mark.parametrize("password", ['"a long password\\u0000"', '"a long ' + SURROGATE[1:]])
async def test_rest_users_refuse_unstorable_passwords(on_backend: MakeEnv, password: str) -> None:
    env = await on_backend()
    headers = {**await admin_headers(env), "content-type": "application/json"}
    body = '{"username": "bob", "email": "bob@example.com", "password": ' + password + "}"
    r = await env.http.post("/api/v1/users", content=body.encode(), headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "password"
    r = await env.http.patch(f"/api/v1/users/{env.user.id}",
                             content=('{"password": ' + password + "}").encode(), headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "password"


async def test_an_overlong_client_address_is_stored_cut(on_backend: MakeEnv) -> None:
    """A proxy or server may hand over any string as the client's address; the audit
    log keeps at most 64 characters of it, and the sign-in succeeds."""
    env = await on_backend(ip="spoofed-" + "x" * 70)
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    assert (await post_login(env.http, fields, "alice", "wrong")).status_code == 401
    assert (await post_login(env.http, fields)).status_code == 303
    canonical = await env.browser("2001:DB8:0:0:0:0:0:1")
    fields = await login_form(canonical, authorize_url(env.web.client_id))
    assert (await post_login(canonical, fields)).status_code == 303
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(events.c.action, events.c.ip)
                                     .order_by(events.c.at))).all()
    assert [tuple(row) for row in stored] == [
        ("login.failure", "spoofed-" + "x" * 56), ("login.success", "spoofed-" + "x" * 56),
        ("login.success", "2001:db8::1")]
