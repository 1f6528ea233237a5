"""``bastion secret-key rotate`` against real server processes: the server on the old
secret key keeps serving until it restarts; restarted on the new one it signs with the
same keys, tokens issued before stay valid, and sessions made before end."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urljoin

import httpx2

from bastion.oauth.jose import parse_compact
from support import cli, hidden_fields, running_server

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32
SETTINGS = {"password_hash_memory_kib": "8192"}


def token(url: str, auth: tuple[str, str]) -> str:
    answer = httpx2.post(url + "/oauth/token", auth=auth, data={"grant_type": "client_credentials"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def kid(jwt: str) -> object:
    return parse_compact(jwt).header["kid"]


def sign_in(browser: httpx2.Client, username: str, password: str) -> str:
    """The account page, signed in with the password form it sends to."""
    page = browser.get("/account")
    form = next(f for f in page.text.split("</form>") if 'id="password"' in f)
    action = re.search(r'<form[^>]*action="([^"]*)"', form)
    post_url = urljoin(str(page.url), unescape(action.group(1)) if action else "/login")
    return browser.post(post_url, data={**hidden_fields(form), "login": username,
                                        "password": password}).text


def test_a_restart_on_the_new_secret_key_keeps_the_keys_and_ends_the_sessions(tmp_path) -> None:
    with httpx2.Client(follow_redirects=True, timeout=10) as browser:
        with running_server(tmp_path, None, secret_key=OLD, **SETTINGS) as server:
            app = server.create_client("--name", "svc", "--grant-type", "client_credentials")
            auth = (str(app["client_id"]), str(app["client_secret"]))
            made = server.cli("users", "create", "--username", "ann", "--email",
                              "ann@example.com", "--password-stdin", stdin="correct horse 1")
            assert made.returncode == 0, made.stderr
            before = token(server.url, auth)
            browser.base_url = httpx2.URL(server.url)
            assert "ann@example.com" in sign_in(browser, "ann", "correct horse 1")

            done = cli("secret-key", "rotate", env={**server.env, "BASTION_SECRET_KEY": NEW,
                                                    "BASTION_OLD_SECRET_KEY": OLD})
            assert done.returncode == 0, done.stderr
            # not restarted yet: it signs with the keys it holds, and its sessions go on
            assert kid(token(server.url, auth)) == kid(before)
            assert "ann@example.com" in browser.get("/account").text
            port = int(server.url.rsplit(":", 1)[1])

        with running_server(tmp_path, None, port=port, secret_key=NEW, **SETTINGS) as server:
            assert kid(token(server.url, auth)) == kid(before)
            checked = httpx2.post(server.url + "/oauth/introspect", auth=auth,
                                  data={"token": before})
            assert checked.json()["active"] is True
            assert "ann@example.com" not in browser.get("/account").text  # signed out
