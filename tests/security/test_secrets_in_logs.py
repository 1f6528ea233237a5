"""No secret reaches the logs: one full run against the real server process
(``bastion serve --access-log``, mail over real SMTP) does client credentials, a
code+PKCE sign-in, a refresh, a revocation, a passwordless request and its link,
the password grant and failed sign-ins; then its log, and the CLI's output besides
the one-time secret prints, are searched for every secret the run used."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
import pytest

from bastion.oauth import pkce
from support import Mailbox, hidden_fields, running_server, smtp_server

REDIRECT = "https://app.example/callback"
PASSWORD = "log-canary password 7Hq!"
WRONG_PASSWORD = "log-canary wrong 9Zx!"


@dataclass
class Run:
    log: str = ""
    cli_output: str = ""  # stderr of every CLI call, and stdout of those printing no secret
    secrets: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, *values: str) -> None:
        self.secrets.setdefault(kind, []).extend(v for v in values if v)


def other_lines(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "HTTP/1.1" not in line)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    record = Run()
    data_dir: Path = tmp_path_factory.mktemp("bastion-logs")
    with smtp_server() as (host, port, box), running_server(
            data_dir, None, "--access-log", smtp_host=host, smtp_port=str(port), smtp_tls="none",
            password_hash_memory_kib="8192", password_hash_time_cost="1") as server:
        web = server.create_client("--name", "Web", "--redirect-uri", REDIRECT,
                                   "--grant-type", "authorization_code",
                                   "--grant-type", "refresh_token", "--grant-type", "password",
                                   "--scope", "openid", "--scope", "email")
        svc = server.create_client("--name", "Svc", "--grant-type", "client_credentials",
                                   "--scope", "read")
        record.add("client secret", str(web["client_secret"]), str(svc["client_secret"]))
        user = server.cli("users", "create", "--username", "alice", "--email",
                          "alice@example.com", "--password-stdin", "--json", stdin=PASSWORD)
        assert user.returncode == 0, user.stderr
        record.cli_output += user.stdout + user.stderr
        record.add("password", PASSWORD, WRONG_PASSWORD)
        web_auth = (str(web["client_id"]), str(web["client_secret"]))

        with httpx2.Client(base_url=server.url) as http:
            def token(auth: tuple[str, str], **data: str) -> dict[str, str]:
                r = http.post("/oauth/token", data=data, auth=auth)
                assert r.status_code == 200, r.text
                return dict(r.json())

            def tokens(answer: dict[str, str]) -> None:
                record.add("access token", answer["access_token"])
                record.add("refresh token", answer.get("refresh_token", ""))
                record.add("id token", answer.get("id_token", ""))

            # client credentials
            tokens(token((str(svc["client_id"]), str(svc["client_secret"])),
                         grant_type="client_credentials", scope="read"))
            # code + PKCE through the login form
            verifier, state, nonce = pkce.new_verifier(), "state-canary-8d1f", "nonce-canary-3k"
            record.add("code verifier", verifier)
            record.add("state", state)
            query = urlencode({"response_type": "code", "client_id": web_auth[0],
                               "redirect_uri": REDIRECT, "scope": "openid email",
                               "state": state, "nonce": nonce,
                               "code_challenge": pkce.challenge(verifier),
                               "code_challenge_method": "S256"})
            page = http.get("/oauth/authorize?" + query)
            fields = hidden_fields(page.text)
            record.add("csrf token", fields["csrf_token"])
            failed = http.post("/login", data={**fields, "login": "alice",
                                               "password": WRONG_PASSWORD})
            assert failed.status_code == 401
            posted = http.post("/login", data={**fields, "login": "alice",
                                               "password": PASSWORD})
            assert posted.status_code == 303, posted.text
            record.add("session cookie", http.cookies.get("bastion_session") or "")
            back = http.get(posted.headers["location"])
            code = dict(parse_qsl(urlsplit(back.headers["location"]).query))["code"]
            record.add("authorization code", code)
            first = token(web_auth, grant_type="authorization_code", code=code,
                          redirect_uri=REDIRECT, code_verifier=verifier)
            tokens(first)
            # refresh, then revoke
            second = token(web_auth, grant_type="refresh_token",
                           refresh_token=first["refresh_token"])
            tokens(second)
            revoked = http.post("/oauth/revoke", auth=web_auth,
                                data={"token": second["refresh_token"]})
            assert revoked.status_code == 200
            # password grant, and failed ones
            tokens(token(web_auth, grant_type="password", username="alice", password=PASSWORD,
                         scope="openid"))
            for login in ("alice", "nobody"):
                r = http.post("/oauth/token", auth=web_auth, data={
                    "grant_type": "password", "username": login, "password": WRONG_PASSWORD})
                assert r.status_code == 400
            # a bad client secret
            http.post("/oauth/token", auth=(web_auth[0], web_auth[1] + "x"),
                      data={"grant_type": "password", "username": "alice",
                            "password": PASSWORD})
            # passwordless: request, then open the link and use it
            r = http.post("/oauth/passwordless", auth=web_auth, data={
                "email": "alice@example.com", "response_type": "code", "client_id": web_auth[0],
                "redirect_uri": REDIRECT, "scope": "openid", "state": state,
                "code_challenge": pkce.challenge(verifier), "code_challenge_method": "S256"})
            assert r.status_code == 200, r.text
            link = Mailbox.link(box.wait_for(1)[0])
            link_token = link.split("token=", 1)[1]
            record.add("sign-in link token", link_token)
            confirm = http.get(urlsplit(link).path + "?" + urlsplit(link).query)
            used = http.post("/login/link", data=hidden_fields(confirm.text))
            assert used.status_code == 303, used.text
            # introspection of a live token
            http.post("/oauth/introspect", auth=web_auth,
                      data={"token": first["access_token"]})
        keys = server.cli("keys", "list")
        record.cli_output += keys.stdout + keys.stderr
    record.log = server.log()
    assert "POST /oauth/token" in record.log  # the access log was on
    yield record


def found(text: str, values: list[str]) -> list[str]:
    """Which values occur in ``text`` (also URL-encoded, or by a 12-character prefix)."""
    hits = []
    for value in values:
        probes = {value, urlencode({"x": value})[2:], value[:12] if len(value) >= 24 else value}
        if any(probe in text for probe in probes):
            hits.append(value[:6] + "...")
    return hits


KINDS = ["client secret", "password", "access token", "refresh token", "id token",
         "authorization code", "code verifier", "csrf token", "session cookie"]


@pytest.mark.parametrize("kind", KINDS)
def test_secret_never_appears_in_the_server_log(run: Run, kind: str) -> None:
    assert run.secrets[kind], kind
    assert found(run.log, run.secrets[kind]) == [], kind


@pytest.mark.parametrize("kind", KINDS)
def test_secret_never_appears_in_cli_output(run: Run, kind: str) -> None:
    assert found(run.cli_output, run.secrets[kind]) == [], kind


def test_sign_in_link_token_never_appears_in_the_server_log(run: Run) -> None:
    assert found(run.log, run.secrets["sign-in link token"]) == []


def test_sign_in_link_token_appears_in_no_application_log_line(run: Run) -> None:
    assert found(other_lines(run.log), run.secrets["sign-in link token"]) == []


def test_state_appears_only_in_the_authorization_request_line(run: Run) -> None:
    # state travels in the authorization URL by design (RFC 6749 4.1.1); an access log
    # sees it there, and nowhere else.
    for line in run.log.splitlines():
        if run.secrets["state"][0] in line:
            assert re.search(r'"GET /oauth/authorize\?', line), line


def test_failed_sign_ins_are_logged_without_the_password(run: Run) -> None:
    assert WRONG_PASSWORD not in run.log
    assert json.dumps(WRONG_PASSWORD)[1:-1] not in run.log
