"""Fuzzing: every operation of the served OpenAPI document (schemathesis), and the
endpoints that document does not describe (the OAuth form endpoints served outside
FastAPI, the authorization query, the hosted forms) with Hypothesis.

What must hold for any input: no 5xx, no crash, and answers that match what is
documented (the OpenAPI schema for the REST API; RFC 6749 section 5.2 error JSON
for the OAuth form endpoints).

Bounded for CI: few examples per operation, derandomized (the same inputs on every
run), no example database.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from security_helpers import (
    PASSWORD,
    REDIRECT,
    Env,
    authorize_url,
    get_code,
    hidden_fields,
    make_settings,
)

from bastion.server.app import create_app
from bastion.server.context import Context
from bastion.server.services.clients import create_client
from bastion.server.services.sessions import COOKIE as SESSION_COOKIE
from bastion.server.services.users import create_user
from bastion.server.storage import migrate
from support import ISSUER

# -- the REST API: schemathesis against /openapi.json, in process ----------------------

_DATA_DIR = Path(tempfile.mkdtemp(prefix="bastion-fuzz-"))
atexit.register(shutil.rmtree, _DATA_DIR, True)
_SETTINGS = make_settings(_DATA_DIR)


async def _provision() -> str:
    """Migrate the fuzzed app's database, add an admin client and a user, and return
    an admin access token (client credentials, scope bastion:admin)."""
    ctx = Context.open(_SETTINGS)
    try:
        await migrate.upgrade(ctx.storage.engine)  # type: ignore[attr-defined]
        await ctx.start()
        admin = await create_client(ctx.storage, name="Fuzz admin",
                                    grant_types=["client_credentials"], scopes=["bastion:admin"])
        await create_user(ctx.storage, ctx.passwords, username="alice",
                          email="alice@example.com", password=PASSWORD)
        transport = httpx2.ASGITransport(app=create_app(ctx.settings, ctx))
        async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as http:
            r = await http.post("/oauth/token", auth=(admin.client.client_id,
                                                      str(admin.client_secret)),
                                data={"grant_type": "client_credentials",
                                      "scope": "bastion:admin"})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])
    finally:
        await ctx.close()


ADMIN_TOKEN = asyncio.run(_provision())
# The app opens its own context in its lifespan, on schemathesis' event loop.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_SETTINGS))
AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN}
API_FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

# Operations where a check once failed (all fixed); the focused tests below keep them
# honest. Some operations refuse schema-valid requests by design, so that one check is
# left out there: the authorization endpoint, by GET or POST (a random client_id is a
# 400 error page), the logout confirmation (with a CSRF token not of its form it is a
# 400 page), and client registration and change, whose rules span fields and URI parts
# (https or loopback, authorization_code needs a redirect URI, no client_credentials
# for a public client: tests/server/test_api_clients.py).
BY_DESIGN_REFUSED = ["GET /oauth/authorize", "POST /oauth/authorize", "POST /oauth/logout",
                     "POST /api/v1/clients", "PATCH /api/v1/clients/{client_id}"]
POSITIVE_DATA_REFUSED = ["POST /api/v1/users", "PATCH /api/v1/users/{user_id}",
                         "POST /api/v1/organizations", "POST /api/v1/organizations/{org}/roles",
                         "GET /api/v1/users/me"]
NEGATIVE_DATA_ACCEPTED = ["GET /api/v1/events"]
# The unsupported-method probe runs once per path, on its first operation.
ALLOW_HEADER_WRONG = ["GET /oauth/userinfo", "GET /api/v1/users", "GET /api/v1/users/{user_id}",
                      "GET /api/v1/organizations", "GET /api/v1/organizations/{org}/roles",
                      "GET /api/v1/organizations/{org}/roles/{role}",
                      "POST /api/v1/organizations/{org}/roles/{role}/permissions",
                      "GET /api/v1/organizations/{org}/users/{user_id}/roles"]
UNDECLARED_METHOD_SERVED = ["GET /oauth/logout"]
UNDOCUMENTED_STATUS = ["GET /oauth/userinfo", "POST /oauth/userinfo"]


def _known_failures(case: schemathesis.Case) -> list[Any]:
    name = f"{case.operation.method.upper()} {case.operation.path}"
    # A listing's `after` is only ever a listing's own `next` (any other string is a
    # 422 naming it: tests/server/test_cursors.py); without one, the rest of the
    # listings' input is held to the schema.
    cursor = bool(case.query and case.query.get("after"))
    return [checks.positive_data_acceptance] if name in BY_DESIGN_REFUSED or cursor else []


@schema.parametrize()
@API_FUZZ
def test_api_operation_answers_as_documented(case: schemathesis.Case) -> None:
    """Every operation, every default check: no 5xx; status codes, content types,
    headers and bodies as documented; schema-valid input accepted and invalid input
    refused; unsupported methods answered 405."""
    case.call_and_validate(headers=AUTH, excluded_checks=_known_failures(case))


@schema.include(name=POSITIVE_DATA_REFUSED).parametrize()
@API_FUZZ
def test_schema_valid_input_is_accepted(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=[checks.positive_data_acceptance])


@schema.include(name=NEGATIVE_DATA_ACCEPTED).parametrize()
@API_FUZZ
def test_schema_invalid_input_is_refused(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=[checks.negative_data_rejection])


@schema.include(name=ALLOW_HEADER_WRONG).parametrize()
@API_FUZZ
def test_405_allow_header_lists_every_documented_method(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=[checks.allow_header_conformance])


@schema.include(name=UNDECLARED_METHOD_SERVED).parametrize()
@API_FUZZ
def test_undocumented_methods_are_405(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=[checks.unsupported_method])


@schema.include(name=UNDOCUMENTED_STATUS).parametrize()
@API_FUZZ
def test_userinfo_status_codes_are_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=[checks.status_code_conformance])


# -- the OAuth form endpoints (not in the OpenAPI document) ---------------------------

FORM_ENDPOINTS = ["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/oauth/passwordless"]
PARAM_NAMES = ["grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
               "username", "password", "client_id", "client_secret", "token",
               "token_type_hint", "email", "response_type", "state", "nonce",
               "code_challenge", "code_challenge_method", "prompt", "resource"]
GRANTS = ["authorization_code", "refresh_token", "password", "client_credentials",
          "urn:ietf:params:oauth:grant-type:device_code", "implicit", ""]
CONTENT_TYPES = ["application/x-www-form-urlencoded",
                 "application/x-www-form-urlencoded; charset=utf-8",
                 "APPLICATION/X-WWW-FORM-URLENCODED", "application/json",
                 "multipart/form-data; boundary=xyz", "text/plain", "", None]
# Text that survives being sent (no lone surrogates), including controls and NULs.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
huge = st.sampled_from(["x" * 70_000, "%" * 5000, "&" * 5000, "é" * 20_000])
value = st.one_of(text, st.sampled_from(GRANTS), huge)
key = st.one_of(st.sampled_from(PARAM_NAMES), text)
pairs = st.lists(st.tuples(key, value), max_size=8)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def auth_headers(env: Env) -> st.SearchStrategy[str | None]:
    assert env.web.secret
    return st.one_of(
        st.none(),
        st.just(_basic(env.web.client_id, env.web.secret)),  # a real client
        st.builds(_basic, text.map(lambda t: t.replace(":", "")), text),
        text.map(lambda t: "Basic " + t),
        text.map(lambda t: "Bearer " + t),
        st.sampled_from(["Basic", "Basic =", "Basic " + "A" * 10_000, "Digest x", "Basic ::::"]))


@st.composite
def form_requests(draw: st.DrawFn, env: Env) -> dict[str, Any]:
    """A request for a form endpoint: random pairs (repeats included), sometimes raw
    bytes, a random content type and authorization header, mostly POST."""
    items = draw(pairs)
    if draw(st.booleans()):  # mostly the parameters a grant expects
        items = [("grant_type", draw(st.sampled_from(GRANTS))), *items]
    body: bytes = draw(st.one_of(st.just(urlencode(items).encode()), st.binary(max_size=200)))
    headers: dict[str, str | bytes] = {}
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type is not None:
        headers["content-type"] = content_type
    authorization = draw(auth_headers(env))
    if authorization is not None:  # any bytes a client may send, UTF-8 included
        headers["authorization"] = authorization.encode()
    method = draw(st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "HEAD"]))
    return {"method": method, "content": body, "headers": headers}


def assert_oauth_answer(r: httpx2.Response, method: str) -> None:
    assert r.status_code in {200, 400, 401, 405, 429}, (r.status_code, r.text[:300])
    if method == "HEAD":
        return
    body = r.json()
    assert isinstance(body, dict)
    if r.status_code >= 400:
        assert isinstance(body.get("error"), str) and body["error"], body


FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("path", FORM_ENDPOINTS)
@FUZZ
@given(data=st.data())
async def test_oauth_form_endpoint_answers_any_request_with_an_oauth_response(
        env: Env, path: str, data: st.DataObject) -> None:
    request = data.draw(form_requests(env))
    r = await env.http.request(url=path, **request)
    assert_oauth_answer(r, request["method"])


async def test_oauth_form_endpoint_refuses_an_oversized_body(env: Env) -> None:
    limit = env.ctx.settings.max_body_bytes
    for path in FORM_ENDPOINTS:
        r = await env.http.post(path, content=b"a=" + b"x" * (limit + 1),
                                headers={"content-type": "application/x-www-form-urlencoded"},
                                auth=env.web.auth)
        assert_oauth_answer(r, "POST")
        assert r.status_code == 400 and "too large" in r.json()["error_description"]


async def raw_asgi_post(app: Any, path: str, headers: list[tuple[bytes, bytes]],
                        chunks: list[bytes], complete: bool = True) -> tuple[int, bytes]:
    """POST straight to the ASGI app: headers exactly as given (no client fixes
    Content-Length), the body in ``chunks``."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "https", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 40000), "server": ("id.example.test", 443)}
    messages = [{"type": "http.request", "body": chunk,
                 "more_body": not complete or i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize("declared", [b"abc", b"1" + b"0" * 30, b"", b"1e3"])
async def test_oauth_form_endpoint_answers_a_lying_content_length(env: Env,
                                                                  declared: bytes) -> None:
    headers = [(b"content-type", b"application/x-www-form-urlencoded"),
               (b"content-length", declared)]
    status, body = await raw_asgi_post(env.asgi, "/oauth/token", headers,
                                       [b"grant_type=password"])
    assert status == 400 and json.loads(body)["error"] == "invalid_request"


async def test_oauth_form_endpoint_answers_a_chunked_body_over_the_limit(env: Env) -> None:
    # No Content-Length: the limit is enforced while reading.
    limit = env.ctx.settings.max_body_bytes
    status, body = await raw_asgi_post(
        env.asgi, "/oauth/token", [(b"content-type", b"application/x-www-form-urlencoded")],
        [b"grant_type=password&x="] + [b"y" * 4096] * (limit // 4096 + 2))
    assert status == 400 and "too large" in json.loads(body)["error_description"]


async def test_oauth_form_endpoint_answers_a_client_that_disconnects(env: Env) -> None:
    status, _body = await raw_asgi_post(
        env.asgi, "/oauth/token", [(b"content-type", b"application/x-www-form-urlencoded")],
        [b"grant_type=pass"] * 2, complete=False)  # then a disconnect
    assert status == 400


# -- the authorization endpoint's query string -----------------------------------------

AUTHORIZE_NAMES = ["response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                   "code_challenge", "code_challenge_method", "prompt", "max_age",
                   "login_hint", "response_mode", "request", "request_uri", "claims",
                   "id_token_hint", "ui_locales", "acr_values", "display"]


@st.composite
def authorize_queries(draw: st.DrawFn, env: Env) -> str:
    base: list[tuple[str, str]] = []
    if draw(st.booleans()):  # a valid client and redirect URI: reach the later checks
        base = [("client_id", env.web.client_id), ("redirect_uri", REDIRECT),
                ("response_type", "code")]
    long = st.sampled_from(["x" * 4000, "%" * 2000, "é" * 1000])  # URLs stay under 64 KiB
    extra = draw(st.lists(st.tuples(st.one_of(st.sampled_from(AUTHORIZE_NAMES), text),
                                    st.one_of(text, long)), max_size=6))
    query = urlencode(base + extra)
    if draw(st.booleans()):  # raw bytes, broken escapes
        query += "&" + draw(st.sampled_from(["%", "%zz", "%ff%fe", "a=%00", "=", "&&&",
                                             "client_id=%C0%80", ";;"]))
    return query


@FUZZ
@given(data=st.data())
async def test_authorize_query_never_causes_a_5xx(env: Env, data: st.DataObject) -> None:
    if env.http.cookies.get(SESSION_COOKIE) is None:  # signed in: some go as far as a code
        await get_code(env)
    r = await env.http.get("/oauth/authorize?" + data.draw(authorize_queries(env)))
    assert r.status_code in {200, 303, 400}, (r.status_code, r.text[:300])


# -- the hosted forms -------------------------------------------------------------------

HOSTED_FORMS = {
    "/login": ["login", "password", "continue", "next"],
    "/login/link/request": ["email", "continue"],
    "/login/link": ["token"],
    "/oauth/logout": ["post_logout_redirect_uri", "id_token_hint", "client_id", "state"],
    "/account/profile": ["username", "email", "client_id", "return_to"],
    "/account/password": ["current_password", "new_password", "client_id", "return_to"],
    "/account/sessions/revoke": ["session_id", "client_id", "return_to"],
    "/account/email": ["token"],
}


@st.composite
def hosted_form_bodies(draw: st.DrawFn, names: list[str], valid: dict[str, str]
                       ) -> dict[str, Any]:
    items = draw(st.lists(st.tuples(st.one_of(st.sampled_from(names), text),
                                    st.one_of(text, huge)), max_size=6))
    if draw(st.booleans()):  # a valid CSRF token and continue: past the first checks
        items = [*valid.items(), *items]
    if draw(st.integers(0, 4)) == 0:
        return {"content": draw(st.binary(max_size=300)),
                "headers": {"content-type": draw(st.sampled_from(
                    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=b",
                     "multipart/form-data", "application/json", "text/plain"]))}}
    return {"data": items}


@pytest.mark.parametrize("path", HOSTED_FORMS)
@FUZZ
@given(data=st.data())
async def test_hosted_form_post_never_causes_a_5xx(env: Env, path: str,
                                                   data: st.DataObject) -> None:
    if env.http.cookies.get(SESSION_COOKIE) is None:  # the account forms need a session
        await get_code(env)
    page = await env.http.get(authorize_url(env.web.client_id, prompt="login"))
    valid = {k: v for k, v in hidden_fields(page.text).items() if k in ("csrf_token", "continue")}
    request = data.draw(hosted_form_bodies(HOSTED_FORMS[path], valid))
    items = request.pop("data", None)
    if items is not None:  # repeated keys are kept, in order
        request = {"content": urlencode(items).encode(),
                   "headers": {"content-type": "application/x-www-form-urlencoded"}}
    r = await env.http.post(path, **request)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert r.status_code in {200, 303, 400, 401, 404, 405, 413, 422, 429}, r.status_code
