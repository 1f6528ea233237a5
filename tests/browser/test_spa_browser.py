"""A single-page app on its own origin signs in with a public client and PKCE, all in
the browser: Chromium runs the page's JavaScript, which sends the authorization
request, exchanges the code at the token endpoint and reads UserInfo with ``fetch``
across origins (``server/cors.py``). A page on an origin the client did not register
cannot read the token endpoint's answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect
from test_login_browser import new_user, shot, sign_in

from support import ServerProcess

# The app: PKCE with WebCrypto (loopback http is a secure context), the verifier kept in
# sessionStorage across the redirect, the code exchanged and UserInfo read with fetch.
APP = """<!doctype html><meta charset="utf-8"><title>SPA</title>
<p id="result"></p><p id="error"></p>
<script type="module">
const config = %(config)s;
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const show = (id, text) => { document.getElementById(id).textContent = text; };
const params = new URLSearchParams(location.search);
try {
  if (location.pathname === "/") {
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    sessionStorage.setItem("pkce", JSON.stringify({verifier, state}));
    location.assign(config.issuer + "/oauth/authorize?" + new URLSearchParams({
      response_type: "code", client_id: config.client_id, redirect_uri: config.redirect_uri,
      scope: "openid profile", state, code_challenge: b64url(digest),
      code_challenge_method: "S256"}));
  } else if (location.pathname === "/callback") {
    const {verifier, state} = JSON.parse(sessionStorage.getItem("pkce"));
    if (params.get("state") !== state) throw new Error("state mismatch");
    const token = await fetch(config.issuer + "/oauth/token", {method: "POST",
      body: new URLSearchParams({grant_type: "authorization_code", code: params.get("code"),
        redirect_uri: config.redirect_uri, client_id: config.client_id,
        code_verifier: verifier})});
    const tokens = await token.json();
    if (!token.ok) throw new Error(tokens.error);
    const info = await (await fetch(config.issuer + "/oauth/userinfo", {
      headers: {Authorization: "Bearer " + tokens.access_token}})).json();
    show("result", "signed in as " + info.preferred_username +
         (tokens.refresh_token ? " with a refresh token" : ""));
  } else if (location.pathname === "/probe") {
    // A code that does not exist: a readable invalid_grant, or, from an origin the
    // client did not register, an answer the browser keeps from the page.
    const r = await fetch(config.issuer + "/oauth/token", {method: "POST",
      body: new URLSearchParams({grant_type: "authorization_code", code: "nope",
        redirect_uri: config.redirect_uri, client_id: config.client_id,
        code_verifier: "x".repeat(43)})});
    show("result", "read: " + (await r.json()).error);
  }
} catch (e) { show("error", e.name + ": " + e.message); }
</script>
"""


@pytest.fixture(scope="module")
def spa(bastion_server: ServerProcess) -> Iterator[dict[str, Any]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    origin = f"http://127.0.0.1:{port}"
    made = bastion_server.create_client(
        "--name", "Browser SPA", "--public", "--redirect-uri", origin + "/callback",
        "--scope", "openid", "--scope", "profile")
    config = {"issuer": bastion_server.url, "client_id": made["client_id"],
              "redirect_uri": origin + "/callback"}
    page = (APP % {"config": json.dumps(config)}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    httpd.RequestHandlerClass = Handler
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"origin": origin, "port": port, **config}
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_a_single_page_app_signs_in_with_fetch_across_origins(
    page: Page, spa: dict[str, Any], bastion_server: ServerProcess
) -> None:
    _, username, password = new_user(bastion_server)
    page.context.clear_cookies()
    page.goto(spa["origin"] + "/")
    expect(page.locator("#password")).to_be_visible()  # Bastion's hosted page
    assert page.url.startswith(bastion_server.url + "/oauth/authorize?")
    sign_in(page, username, password)
    try:
        expect(page.locator("#result")).to_have_text(
            f"signed in as {username} with a refresh token")
    finally:
        shot(page, "spa-after-sign-in")
    expect(page.locator("#error")).to_have_text("")


def test_only_the_clients_origin_may_read_the_token_endpoint(
    page: Page, spa: dict[str, Any]
) -> None:
    page.goto(spa["origin"] + "/probe")
    expect(page.locator("#result")).to_have_text("read: invalid_grant")
    # localhost is another origin than 127.0.0.1, though the same server
    page.goto(f"http://localhost:{spa['port']}/probe")
    expect(page.locator("#error")).to_have_text("TypeError: Failed to fetch")
    expect(page.locator("#result")).to_have_text("")
