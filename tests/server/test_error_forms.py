"""A 404 or 405 comes in the form its caller reads (a page for a browser, RFC 6749
JSON on an OAuth endpoint, problem JSON on the REST API), and HEAD is served
wherever GET is (RFC 9110 section 9.3.2)."""

from __future__ import annotations

import pytest

from support import App

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.mark.parametrize("path", ["/login", "/account/profile", "/account/password",
                                  "/login/link/request", "/account/sessions/revoke"])
async def test_a_browser_opening_a_post_only_page_gets_a_page(app: App, path: str) -> None:
    r = await app.http.get(path, headers=BROWSER)
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    assert r.headers["content-type"].startswith("text/html")
    assert "This page cannot be opened directly" in r.text
    assert "Go back to the page you came from" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_browser_gets_a_page_for_an_unknown_address(app: App) -> None:
    r = await app.http.get("/no-such-page", headers=BROWSER)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "Page not found" in r.text
    posted = await app.http.post("/account", headers=BROWSER)  # a GET-only page
    assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")
    assert "does not take that kind of request" in posted.text


async def test_an_oauth_endpoint_answers_oauth_json(app: App) -> None:
    r = await app.http.delete("/oauth/userinfo")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD, POST")
    assert r.json() == {"error": "invalid_request", "error_description": "Use GET or POST."}
    r = await app.http.get("/oauth/no-such-endpoint")
    assert r.status_code == 404 and r.json()["error"] == "invalid_request"
    r = await app.http.get("/oauth/token")  # the lean endpoints said so already
    assert (r.status_code, r.json()["error"]) == (405, "invalid_request")


@pytest.mark.parametrize("headers", [{}, BROWSER], ids=["api-client", "browser"])
async def test_the_rest_api_and_other_callers_get_problem_json(app: App,
                                                              headers: dict[str, str]) -> None:
    for method, path, status in (("GET", "/api/v1/no-such-thing", 404),
                                 ("PUT", "/api/v1/users", 405)):
        r = await app.http.request(method, path, headers=headers)
        assert r.status_code == status
        assert r.headers["content-type"] == "application/problem+json"
    r = await app.http.get("/no-such-page")  # not a browser, not OAuth: problem JSON
    assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server",
                                  "/.well-known/jwks.json", "/account", "/api/v1/users",
                                  "/openapi.json"])
async def test_head_is_answered_where_get_is(app: App, path: str) -> None:
    got = await app.http.get(path, headers=BROWSER)
    head = await app.http.head(path, headers=BROWSER)
    assert head.status_code == got.status_code != 405
    assert head.content == b""
    for name in ("content-type", "content-length", "cache-control"):
        assert head.headers.get(name) == got.headers.get(name), name


@pytest.mark.parametrize("path", ["/oauth/token", "/login"])
async def test_head_on_a_post_only_address_is_405(app: App, path: str) -> None:
    r = await app.http.head(path)
    assert (r.status_code, r.headers["allow"], r.content) == (405, "POST", b"")


@pytest.mark.parametrize(("path", "allow"), [
    ("/oauth/authorize", "GET, POST"), ("/oauth/logout", "GET, POST"),
    ("/account/export", "GET"), ("/api/v1/users/u-1/export", "GET")])
async def test_head_is_405_where_a_get_acts(app: App, path: str, allow: str) -> None:
    # A link checker's HEAD must not issue a code, end a session or record an export.
    r = await app.http.head(path, headers=BROWSER)
    assert (r.status_code, r.headers["allow"], r.content) == (405, allow, b"")


async def test_a_head_is_counted_under_its_route(app: App) -> None:
    from prometheus_client import REGISTRY

    labels = {"endpoint": "/.well-known/jwks.json", "method": "HEAD", "status": "200"}
    before = REGISTRY.get_sample_value("bastion_http_requests_total", labels) or 0.0
    assert (await app.http.head("/.well-known/jwks.json")).status_code == 200
    assert REGISTRY.get_sample_value("bastion_http_requests_total", labels) == before + 1


async def test_a_request_from_an_address_written_otherwise_is_counted_under_its_route(
        app: App) -> None:
    """An IPv4 address mapped in IPv6 (a dual-stack proxy) is written back in its own
    form, in a copy of the request's scope: the route set in the copy never reached
    the metrics, and every request of the API and the pages was counted as "other"."""
    import httpx2
    from prometheus_client import REGISTRY

    from bastion.server.app import create_app

    labels = {"endpoint": "/.well-known/openid-configuration", "method": "GET",
              "status": "200"}
    before = REGISTRY.get_sample_value("bastion_http_requests_total", labels) or 0.0
    transport = httpx2.ASGITransport(app=create_app(app.ctx.settings, app.ctx),
                                     client=("::ffff:203.0.113.9", 4000))
    async with httpx2.AsyncClient(transport=transport, base_url=str(app.http.base_url)) as http:
        assert (await http.get("/.well-known/openid-configuration")).status_code == 200
    assert REGISTRY.get_sample_value("bastion_http_requests_total", labels) == before + 1
