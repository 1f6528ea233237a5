"""Browser tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``).

Never ``playwright install``: the system Chromium is used through
``executable_path``. Without Chromium or Playwright these tests are skipped.

``relying_party`` is a tiny web app (``http.server`` in a thread, on a free
loopback port) that uses the SDK the way a real app would: ``/login`` starts the
authorization and keeps the state in an HttpOnly cookie, ``/callback`` finishes
it with that cookie as ``expected_state`` (and a replay store) and greets the
user by the name userinfo returns, ``/logout`` sends the browser to the provider's end-session
endpoint, which comes back to ``/bye``.
"""

from __future__ import annotations

import html
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

from bastion import BastionError, Client, MemoryReplayStore, TokenSet
from support import ServerProcess

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STATE_COOKIE = "rp_oauth_state"


@pytest.fixture(scope="session")
def base_url() -> str | None:
    """Replaces pytest-playwright's fallback ``base_url``: a session fixture defined
    on a plugin instance, which pytest 9.2 deprecates (and warnings are errors)."""
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Keep pytest-playwright's own options, and point it at Debian's Chromium."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@dataclass
class RelyingParty:
    url: str
    client: Client
    #: What the callback did: the tokens and userinfo of each completed login.
    logins: list[tuple[TokenSet, dict[str, Any]]] = field(default_factory=list)
    replay_store: MemoryReplayStore = field(default_factory=MemoryReplayStore)
    errors: list[BaseException] = field(default_factory=list)


def _handler(app: RelyingParty) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None):
            data = f"<!doctype html><title>RP</title><body>{body}</body>".encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _finish(self, callback: str | dict[str, str]) -> None:
            cookies = SimpleCookie(self.headers.get("Cookie", ""))
            expected = cookies[STATE_COOKIE].value if STATE_COOKIE in cookies else None
            tokens = app.client.finish_authorization_response(
                callback, expected_state=expected, replay_store=app.replay_store)
            info = app.client.userinfo(tokens)
            app.logins.append((tokens, info))
            name = html.escape(str(info.get("preferred_username")))
            self._send(200, f'<p id="hello">Hello {name}</p>', {
                "Set-Cookie": f"{STATE_COOKIE}=; Path=/; Max-Age=0",
            })

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/login":
                    state, url = app.client.start_authorization("openid profile email")
                    cookie = f"{STATE_COOKIE}={state}; Path=/; HttpOnly; SameSite=Lax"
                    self._send(303, headers={"Location": url, "Set-Cookie": cookie})
                elif path == "/login-form-post":
                    # Both servers are on 127.0.0.1, one site, so the posted answer
                    # carries this SameSite=Lax cookie (a cross-site one would not).
                    state, url = app.client.start_authorization(
                        "openid profile email", response_mode="form_post")
                    cookie = f"{STATE_COOKIE}={state}; Path=/; HttpOnly; SameSite=Lax"
                    self._send(303, headers={"Location": url, "Set-Cookie": cookie})
                elif path == "/callback":
                    self._finish(app.url + self.path)
                elif path == "/logout":
                    tokens = app.logins[-1][0]
                    url = app.client.logout_url(tokens, app.url + "/bye", state="bye")
                    self._send(303, headers={"Location": url})
                elif path == "/login-post":
                    # An authorization request by POST: a form that submits itself.
                    _, url = app.client.start_authorization("openid profile email")
                    action, _, query = url.partition("?")
                    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" '
                                     f'value="{html.escape(v)}">' for k, v in parse_qsl(query))
                    self._send(200, f'<form method="post" action="{html.escape(action)}">'
                               f"{inputs}</form><script>document.forms[0].submit()</script>")
                elif path == "/logout-post":
                    # RP-Initiated Logout by POST: a form that submits itself.
                    tokens = app.logins[-1][0]
                    action = app.client.logout_url(tokens).split("?")[0]
                    fields = {"id_token_hint": tokens.id_token or "", "state": "bye",
                              "post_logout_redirect_uri": app.url + "/bye"}
                    inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
                                     for k, v in fields.items())
                    self._send(200, f'<form method="post" action="{html.escape(action)}">'
                               f"{inputs}</form><script>document.forms[0].submit()</script>")
                elif path == "/bye":
                    self._send(200, '<p id="bye">Signed out</p>')
                else:
                    self._send(404, "not found")
            except BastionError as exc:
                app.errors.append(exc)
                self._send(400, f'<p id="error">{html.escape(type(exc).__name__)}</p>')

        def do_POST(self) -> None:  # the callback, for response_mode=form_post
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            try:
                if self.path == "/callback":
                    self._finish(dict(parse_qsl(body)))
                else:
                    self._send(404, "not found")
            except BastionError as exc:
                app.errors.append(exc)
                self._send(400, f'<p id="error">{html.escape(type(exc).__name__)}</p>')

    return Handler


@pytest.fixture(scope="session")
def relying_party(bastion_server: ServerProcess) -> Iterator[RelyingParty]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    registered = bastion_server.create_client(
        "--name", "Browser test app", "--redirect-uri", url + "/callback",
        "--post-logout-redirect-uri", url + "/bye",
        "--grant-type", "authorization_code", "--grant-type", "refresh_token",
        "--scope", "openid", "--scope", "profile", "--scope", "email",
    )
    client = Client(
        url=bastion_server.url,
        client_id=str(registered["client_id"]),
        client_secret=str(registered["client_secret"]),
        redirect_uri=url + "/callback",
        state_key=secrets.token_urlsafe(32),
    )
    app = RelyingParty(url, client)
    httpd.RequestHandlerClass = _handler(app)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()  # the socket is bound and listening already: ready at once
    try:
        yield app
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
        client.close()


# -- sign-in links and the account page: the real server with a real SMTP server ----------


@dataclass
class MailSite:
    """The real ``bastion serve`` sending mail to a real SMTP server (aiosmtpd), and a
    tiny app at ``callback_url`` that the clients registered here redirect to."""

    server: ServerProcess
    box: Any  # support.Mailbox
    callback_url: str

    def new_user(self) -> tuple[str, str, str, str]:
        """(id, username, email, password) of a fresh account."""
        import json

        username = "m" + secrets.token_hex(5)
        password = secrets.token_urlsafe(18)
        email = f"{username}@example.com"
        done = self.server.cli("users", "create", "--username", username, "--email", email,
                               "--password-stdin", "--json", stdin=password)
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["id"]), username, email, password

    def new_client(self, name: str = "") -> tuple[str, str, str, str]:
        """(client_id, client_secret, redirect_uri, name) of a fresh confidential client."""
        name = name or "Mail app " + secrets.token_hex(3)
        redirect_uri = f"{self.callback_url}/cb/{secrets.token_hex(4)}"
        made = self.server.create_client(
            "--name", name, "--redirect-uri", redirect_uri,
            "--grant-type", "authorization_code", "--grant-type", "refresh_token",
            "--scope", "openid", "--scope", "profile", "--scope", "email")
        return str(made["client_id"]), str(made["client_secret"]), redirect_uri, name

    def authorize_url(self, client_id: str, redirect_uri: str) -> tuple[str, str, str]:
        """(url, state, PKCE verifier) of a fresh authorization request."""
        from urllib.parse import urlencode

        from bastion.oauth import pkce

        state, verifier = secrets.token_urlsafe(16), pkce.new_verifier()
        query = urlencode({"response_type": "code", "client_id": client_id,
                           "redirect_uri": redirect_uri, "scope": "openid profile email",
                           "state": state, "code_challenge": pkce.challenge(verifier),
                           "code_challenge_method": "S256"})
        return f"{self.server.url}/oauth/authorize?{query}", state, verifier

    def mail_to(self, address: str, count: int = 1) -> list[Any]:
        """The mails received for ``address``, once there are at least ``count``."""
        from support import wait_until

        def received() -> list[Any]:
            found = [m for m in list(self.box.messages) if m["To"].lower() == address.lower()]
            return found if len(found) >= count else []

        return wait_until(received, timeout=20, what=f"mail to {address}")

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Run SQL on the server's SQLite database (to age tokens and sessions)."""
        import sqlite3

        with sqlite3.connect(self.server.data_dir / "bastion.db", timeout=30) as db:
            rows = db.execute(statement, params).fetchall()
        db.close()
        return rows


def _callback_handler() -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            data = (b'<!doctype html><title>Callback</title>'
                    b'<p id="callback">Back at the app</p>')
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture(scope="session")
def mail_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSite]:
    """A server of its own (SMTP settings, at most 3 links per address and hour)."""
    from support import running_server, smtp_server

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _callback_handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with smtp_server() as (host, port, box), running_server(
            tmp_path_factory.mktemp("bastion-mail-browser"), smtp_host=host,
            smtp_port=str(port), smtp_tls="none", link_limit_per_email="3",
            link_limit_per_ip="1000",
        ) as server:
            yield MailSite(server, box, f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
