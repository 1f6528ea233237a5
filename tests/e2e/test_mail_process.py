"""Sign-in links end to end over plain HTTP: the real ``bastion serve`` process sends
its mail to a real SMTP server (aiosmtpd) started here; the tests read the link out
of the received mail and complete the authorization with httpx2, as a browser would.

Covers: the whole flow up to a token (with the PKCE verifier), replayed and expired
links, links bound to their client, the same answer (and no mail) for unknown
addresses, the per-address rate limit, and the email-change link.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
import pytest

from bastion.oauth import pkce
from support import Mailbox, ServerProcess, hidden_fields, running_server, smtp_server, wait_until

LIMIT = 2  # links per address and hour on this test's server
SENT = "If an account can sign in with that address, a sign-in link is on its way."


@dataclass
class Site:
    server: ServerProcess
    box: Mailbox

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.server.data_dir / "bastion.db", timeout=30)
        try:
            with db:
                return db.execute(statement, params).fetchall()
        finally:
            db.close()

    def mail_to(self, address: str, count: int = 1) -> list[Any]:
        def received() -> list[Any]:
            found = [m for m in list(self.box.messages) if m["To"].lower() == address.lower()]
            return found if len(found) >= count else []

        return wait_until(received, timeout=20, what=f"mail to {address}")

    def received_by(self, address: str) -> list[Any]:
        return [m for m in list(self.box.messages) if m["To"].lower() == address.lower()]


@dataclass
class App:
    client_id: str
    secret: str
    redirect_uri: str


@dataclass
class Request:
    """One authorization request (with its state and PKCE verifier)."""

    app: App
    state: str
    verifier: str

    @property
    def params(self) -> dict[str, str]:
        return {"response_type": "code", "client_id": self.app.client_id,
                "redirect_uri": self.app.redirect_uri, "scope": "openid email",
                "state": self.state, "code_challenge": pkce.challenge(self.verifier),
                "code_challenge_method": "S256"}

    @property
    def url(self) -> str:
        return "/oauth/authorize?" + urlencode(self.params)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with smtp_server() as (host, port, box), running_server(
        tmp_path_factory.mktemp("bastion-mail"), smtp_host=host, smtp_port=str(port),
        smtp_tls="none", link_limit_per_email=str(LIMIT), link_limit_per_ip="1000",
    ) as server:
        yield Site(server, box)


@pytest.fixture
def http(site: Site) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=site.server.url, follow_redirects=False, timeout=10) as client:
        yield client


def new_app(site: Site) -> App:
    redirect_uri = f"https://app-{secrets.token_hex(3)}.example/cb"
    made = site.server.create_client(
        "--name", "Mail e2e " + secrets.token_hex(3), "--redirect-uri", redirect_uri,
        "--grant-type", "authorization_code", "--scope", "openid", "--scope", "email")
    return App(str(made["client_id"]), str(made["client_secret"]), redirect_uri)


def new_user(site: Site) -> tuple[str, str, str]:
    """(id, email, password)"""
    username = "e" + secrets.token_hex(5)
    password = secrets.token_urlsafe(18)
    done = site.server.cli("users", "create", "--username", username, "--email",
                           f"{username}@example.com", "--password-stdin", "--json",
                           stdin=password)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"]), f"{username}@example.com", password


def new_request(app: App) -> Request:
    return Request(app, secrets.token_urlsafe(12), pkce.new_verifier())


def ask_for_link(http: httpx2.Client, request: Request, email: str) -> httpx2.Response:
    """The login page's "Email me a sign-in link" form, submitted."""
    page = http.get(request.url)
    assert page.status_code == 200 and "Email me a sign-in link" in page.text, page.text[:300]
    form = next(f for f in page.text.split("</form>") if 'action="/login/link/request"' in f)
    fields = hidden_fields(form)
    assert set(fields) == {"csrf_token", "continue"}, fields
    return http.post("/login/link/request", data={**fields, "email": email})


def open_link(http: httpx2.Client, link: str) -> httpx2.Response:
    """GET the link (the confirmation page), then press its button (POST)."""
    parts = urlsplit(link)
    page = http.get(f"{parts.path}?{parts.query}")
    if page.status_code != 200:
        return page
    assert 'method="post"' in page.text and "Continue" in page.text
    return http.post(parts.path, data=hidden_fields(page.text))


def callback(http: httpx2.Client, signed_in: httpx2.Response, request: Request) -> str:
    """From the 303 after the link's POST to the code at the redirect URI."""
    assert signed_in.status_code == 303, (signed_in.status_code, signed_in.text[:300])
    assert signed_in.headers["location"].startswith("/oauth/authorize?")
    back = http.get(signed_in.headers["location"])
    assert back.status_code == 303, back.text[:300]
    location = back.headers["location"]
    assert location.startswith(request.app.redirect_uri + "?"), location
    params = dict(parse_qsl(urlsplit(location).query))
    assert params["state"] == request.state and params["iss"] == str(http.base_url).rstrip("/")
    return params["code"]


def exchange(http: httpx2.Client, request: Request, code: str) -> httpx2.Response:
    return http.post("/oauth/token", auth=(request.app.client_id, request.app.secret), data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": request.app.redirect_uri, "code_verifier": request.verifier})


def stamp(when: datetime) -> str:
    """A time as the server's SQLite tables store it (naive UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def test_sign_in_link_completes_the_authorization(site: Site, http: httpx2.Client) -> None:
    user_id, email, _ = new_user(site)
    app = new_app(site)
    request = new_request(app)
    answer = ask_for_link(http, request, email)
    assert answer.status_code == 200
    assert "Check your email" in answer.text and SENT in answer.text
    assert email not in answer.text

    (mail,) = site.mail_to(email)
    assert mail["Subject"] == "Your sign-in link" and "Bastion" in mail["From"]
    assert mail.get_content_type() == "multipart/alternative"
    link = Mailbox.link(mail)
    assert link.startswith(site.server.url + "/login/link?token=")
    assert link in mail.get_body(preferencelist=("html",)).get_content()
    # the token is stored as a digest, never in clear
    token = link.split("token=", 1)[1]
    stored = site.sql("SELECT digest, client_id, user_id FROM one_time_tokens WHERE email = ?",
                      email)
    assert len(stored) == 1 and stored[0][1:] == (app.client_id, user_id)
    assert token.encode() not in stored[0][0] and len(stored[0][0]) == 32

    # Prefetching the link (a mail scanner) does not use it up.
    assert http.get(urlsplit(link).path + "?" + urlsplit(link).query).status_code == 200
    code = callback(http, open_link(http, link), request)
    tokens = exchange(http, request, code)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["id_token"] and tokens.json()["access_token"]
    info = http.get("/oauth/userinfo",
                    headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    assert info.json()["sub"] == user_id and info.json()["email"] == email
    # the code was single use too
    assert exchange(http, request, code).json()["error"] == "invalid_grant"


def test_a_replayed_link_is_refused_with_a_clear_page(site: Site, http: httpx2.Client) -> None:
    _, email, _ = new_user(site)
    request = new_request(new_app(site))
    ask_for_link(http, request, email)
    link = Mailbox.link(site.mail_to(email)[0])
    callback(http, open_link(http, link), request)

    with httpx2.Client(base_url=site.server.url, follow_redirects=False, timeout=10) as other:
        again = open_link(other, link)  # another browser, no session
    assert again.status_code == 400
    assert "This link cannot be used" in again.text and "already used" in again.text
    assert again.headers["content-type"].startswith("text/html")
    # POSTing the spent token directly (with a valid CSRF pair) is refused as well
    page = http.get("/oauth/logout")  # any form page: a CSRF cookie and its token
    csrf = hidden_fields(page.text)["csrf_token"]
    posted = http.post("/login/link", data={"csrf_token": csrf,
                                            "token": link.split("token=", 1)[1]})
    assert posted.status_code == 400 and "already used" in posted.text


def test_an_expired_link_is_refused_with_a_clear_page(site: Site, http: httpx2.Client) -> None:
    _, email, _ = new_user(site)
    request = new_request(new_app(site))
    ask_for_link(http, request, email)
    link = Mailbox.link(site.mail_to(email)[0])
    (created, expires), = site.sql(
        "SELECT created_at, expires_at FROM one_time_tokens WHERE email = ?", email)
    lifetime = (datetime.fromisoformat(expires) - datetime.fromisoformat(created))
    assert lifetime == timedelta(minutes=15)
    site.sql("UPDATE one_time_tokens SET expires_at = ? WHERE email = ?",
             stamp(datetime.now(UTC) - timedelta(seconds=1)), email)
    expired = open_link(http, link)
    assert expired.status_code == 400
    assert "This link cannot be used" in expired.text and "has expired" in expired.text
    # and nobody got signed in: a silent authorization needs a login
    silent = http.get(request.url + "&prompt=none")
    assert dict(parse_qsl(urlsplit(silent.headers["location"]).query))["error"] == (
        "login_required")


def test_a_link_is_bound_to_the_client_that_asked_for_it(site: Site,
                                                         http: httpx2.Client) -> None:
    _, email, _ = new_user(site)
    a, b = new_app(site), new_app(site)
    for_a = new_request(a)
    # Client B cannot ask for a link in A's name through the API.
    foreign = http.post("/oauth/passwordless", auth=(b.client_id, b.secret),
                        data={**for_a.params, "email": email})
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_request"
    assert foreign.headers["cache-control"] == "no-store"
    # A can (first-party API); the answer says nothing about the account.
    ok = http.post("/oauth/passwordless", auth=(a.client_id, a.secret),
                   data={**for_a.params, "email": email})
    assert ok.status_code == 200 and ok.json() == {"status": "accepted", "expires_in": 900}
    (mail,) = site.mail_to(email)
    link = Mailbox.link(mail)

    # The browser that opens it has B's authorization pending, and the POST even carries
    # B's request: the link still completes A's request, at A's redirect URI.
    for_b = new_request(b)
    assert http.get(for_b.url).status_code == 200
    parts = urlsplit(link)
    fields = hidden_fields(http.get(f"{parts.path}?{parts.query}").text)
    signed_in = http.post(parts.path, data={**fields, "continue": urlencode(for_b.params),
                                            "client_id": b.client_id})
    code = callback(http, signed_in, for_a)
    assert exchange(http, for_a, code).status_code == 200


def test_unknown_addresses_get_the_same_answer_and_no_mail(site: Site,
                                                          http: httpx2.Client) -> None:
    _, known, _ = new_user(site)
    unknown = f"nobody-{secrets.token_hex(5)}@example.com"
    request = new_request(new_app(site))
    first = ask_for_link(http, request, unknown)
    second = ask_for_link(http, request, known)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content  # byte for byte
    ignored = {"date", "x-request-id"}  # each request has its own id; it tells nothing
    assert {k: v for k, v in first.headers.items() if k not in ignored} == {
        k: v for k, v in second.headers.items() if k not in ignored}
    api = [http.post("/oauth/passwordless", auth=(request.app.client_id, request.app.secret),
                     data={**request.params, "email": address}) for address in (unknown, known)]
    assert api[0].status_code == api[1].status_code == 200 and api[0].content == api[1].content

    # The known address got both its mails; the unknown one nothing (asked for first).
    assert len(site.mail_to(known, 2)) == 2
    assert site.received_by(unknown) == []
    assert site.sql('SELECT COUNT(*) FROM outbox WHERE "to" = ?', unknown) == [(0,)]
    assert site.sql("SELECT COUNT(*) FROM one_time_tokens WHERE email = ?", unknown) == [(0,)]


def test_the_per_address_rate_limit(site: Site, http: httpx2.Client) -> None:
    _, email, _ = new_user(site)
    unknown = f"nobody-{secrets.token_hex(5)}@example.com"
    request = new_request(new_app(site))
    for address in (email, unknown):
        for _ in range(LIMIT):
            assert ask_for_link(http, request, address).status_code == 200
        limited = ask_for_link(http, request, address)
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 3600
        assert "Try again in" in limited.text and 'role="alert"' in limited.text
        assert 'id="password"' in limited.text  # the login page, to sign in another way
    api = http.post("/oauth/passwordless", auth=(request.app.client_id, request.app.secret),
                    data={**request.params, "email": email})
    assert api.status_code == 429 and api.json()["error"] == "slow_down"
    assert 0 < int(api.headers["retry-after"]) <= 3600
    # exactly LIMIT mails went out
    assert len(site.mail_to(email, LIMIT)) == LIMIT
    assert site.sql('SELECT COUNT(*) FROM outbox WHERE "to" = ?', email) == [(LIMIT,)]


def test_an_email_change_link_works_once(site: Site, http: httpx2.Client) -> None:
    user_id, email, password = new_user(site)
    page = http.get("/account")
    fields = hidden_fields(page.text)
    signed_in = http.post("/login", data={**fields, "login": email, "password": password})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/account"
    page = http.get("/account")
    new_email = f"changed-{secrets.token_hex(4)}@example.org"
    saved = http.post("/account/profile", data={
        "csrf_token": hidden_fields(page.text)["csrf_token"], "email": new_email})
    assert saved.status_code == 303
    (mail,) = site.mail_to(new_email)
    link = Mailbox.link(mail)
    assert link.startswith(site.server.url + "/account/email/confirm?token=")
    assert site.sql("SELECT email FROM users WHERE id = ?", user_id) == [(email,)]
    parts = urlsplit(link)
    confirm = http.get(f"{parts.path}?{parts.query}")
    assert confirm.status_code == 200 and new_email in confirm.text
    done = http.post(parts.path, data=hidden_fields(confirm.text))
    assert done.status_code == 200 and f"Your email address is now {new_email}." in done.text
    assert site.sql("SELECT email FROM users WHERE id = ?", user_id) == [(new_email,)]
    again = http.post(parts.path, data=hidden_fields(confirm.text))
    assert again.status_code == 400 and "already used" in again.text
