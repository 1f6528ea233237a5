"""Browser apps on other origins (``server/cors.py``), in process: which answers a
page on another origin may read, and that no cookie-bearing page is one of them."""

from __future__ import annotations

import pytest

from bastion.oauth import pkce
from bastion.server.services.clients import create_client
from support import App, callback_params, sign_in

SPA = "https://spa.example"
PASSWORD = "a long enough password"


@pytest.fixture
async def spa(app: App) -> str:
    new = await create_client(app.ctx.storage, name="SPA", public=True,
                              redirect_uris=[SPA + "/callback", "https://SPA-Two.example:443/cb",
                                             "http://[::1]:8080/cb", "com.example.spa:/cb"],
                              post_logout_redirect_uris=["https://spa-home.example:8443/"],
                              scopes=["openid"])
    return new.client.client_id


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization"}


@pytest.mark.parametrize(("path", "methods"), [
    ("/oauth/token", "POST"), ("/oauth/revoke", "POST"), ("/oauth/userinfo", "GET, POST"),
    ("/.well-known/jwks.json", "GET"), ("/.well-known/openid-configuration", "GET"),
])
async def test_preflights_are_answered_without_credentials(app: App, path, methods) -> None:
    r = await app.http.options(path, headers=preflight("https://any.example"))
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://any.example"
    assert r.headers["access-control-allow-methods"] == methods
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in r.headers
    assert r.headers["vary"] == "Origin"


@pytest.mark.parametrize("path", ["/oauth/authorize", "/login", "/account", "/oauth/logout",
                                  "/api/v1/users", "/oauth/introspect"])
async def test_pages_with_cookies_and_the_rest_api_send_no_cors_headers(app: App, path) -> None:
    r = await app.http.options(path, headers=preflight(SPA))
    assert "access-control-allow-origin" not in r.headers
    r = await app.http.get(path, headers={"Origin": SPA})
    assert "access-control-allow-origin" not in r.headers


async def test_public_documents_are_readable_from_any_origin(app: App) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server",
                 "/.well-known/jwks.json"):
        r = await app.http.get(path, headers={"Origin": "https://any.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        # also without an Origin: a shared cache may give this answer to a page
        assert (await app.http.get(path)).headers["access-control-allow-origin"] == "*"


async def test_the_token_endpoint_answers_only_the_clients_own_origins(app: App,
                                                                       spa: str) -> None:
    from bastion.server.services.users import create_user

    await create_user(app.ctx.storage, app.ctx.passwords, username="sue",
                      email="sue@example.com", password=PASSWORD)
    verifier = pkce.new_verifier()
    url = "/oauth/authorize?" + "&".join([
        "response_type=code", f"client_id={spa}", "scope=openid",
        f"redirect_uri={SPA}/callback", f"code_challenge={pkce.challenge(verifier)}",
        "code_challenge_method=S256"])
    code = callback_params(await sign_in(app.http, url, "sue", PASSWORD))["code"]
    exchange = {"grant_type": "authorization_code", "code": code, "client_id": spa,
                "redirect_uri": f"{SPA}/callback", "code_verifier": verifier}

    other = await app.http.post("/oauth/token", data={**exchange, "code": "nope"},
                                headers={"Origin": "https://evil.example"})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert other.headers["vary"] == "Origin"
    r = await app.http.post("/oauth/token", data=exchange, headers={"Origin": SPA})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == SPA and r.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in r.headers
    tokens = r.json()
    # an error once the client is known is readable too (the app must see invalid_grant)
    again = await app.http.post("/oauth/token", data=exchange, headers={"Origin": SPA})
    assert again.json()["error"] == "invalid_grant"
    assert again.headers["access-control-allow-origin"] == SPA
    # origins as a browser sends them: no default port, lower case, IPv6 in brackets;
    # a post-logout page, a private-use scheme or an opaque origin ("null") is none
    revoke = {"token": tokens["refresh_token"], "client_id": spa}
    for origin, allowed in [("https://spa-two.example", True), ("http://[::1]:8080", True),
                            ("https://spa-two.example:443", False),
                            ("https://spa-home.example:8443", False),
                            ("com.example.spa://", False), ("null", False)]:
        r = await app.http.post("/oauth/revoke", data=revoke, headers={"Origin": origin})
        assert r.status_code == 200
        assert (r.headers.get("access-control-allow-origin") == origin) is allowed, origin
    # no Origin (not a browser): no CORS headers at all
    r = await app.http.post("/oauth/token", data={**exchange, "code": "nope"})
    assert "vary" not in r.headers and "access-control-allow-origin" not in r.headers
    # an unknown client: nothing to read
    r = await app.http.post("/oauth/token", data={**exchange, "client_id": "nobody"},
                            headers={"Origin": SPA})
    assert r.status_code == 401 and "access-control-allow-origin" not in r.headers


async def test_userinfo_is_readable_from_any_origin_with_a_bearer_token(app: App) -> None:
    r = await app.http.get("/oauth/userinfo", headers={"Origin": "https://any.example"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-expose-headers"] == "WWW-Authenticate"
    assert "Bearer" in r.headers["www-authenticate"]
