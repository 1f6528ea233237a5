"""A real browser signs in on Bastion's hosted page and lands on an app using the SDK.

Screenshots of the login page (empty, after a wrong password, filled) and of the
app after sign-in are kept under ``test-results/browser/`` as artefacts of the
run (pytest-playwright empties ``test-results/`` when a session starts).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from support import ServerProcess

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-results" / "browser"

def new_user(server: ServerProcess) -> tuple[str, str, str]:
    username = "b" + secrets.token_hex(5)
    password = secrets.token_urlsafe(18)
    done = server.cli("users", "create", "--username", username, "--email",
                      f"{username}@example.com", "--password-stdin", "--json", stdin=password)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"]), username, password


def shot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, username: str, password: str) -> None:
    page.fill("#login", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()


def test_the_login_page_and_a_failed_sign_in(
    page: Page, relying_party: Any, bastion_server: ServerProcess
) -> None:
    _, username, password = new_user(bastion_server)
    page.context.clear_cookies()
    page.goto(relying_party.url + "/login")
    # The SDK's authorization URL led to Bastion's hosted login page.
    assert page.url.startswith(bastion_server.url + "/oauth/authorize?")
    expect(page.get_by_label("Username or email")).to_be_visible()
    expect(page.get_by_label("Password")).to_be_visible()
    expect(page.get_by_text("Browser test app")).to_be_visible()
    shot(page, "login-page")
    sign_in(page, username, password + "-wrong")
    expect(page.get_by_role("alert")).to_have_text("Incorrect username or password.")
    expect(page.locator("#login")).to_have_value(username)  # kept: retype the password
    expect(page.locator("#password")).to_have_value("")
    expect(page.locator("#password")).to_be_focused()
    expect(page).to_have_title("Error: Sign in · Bastion")  # said first by screen readers
    shot(page, "login-failed")
    page.fill("#login", username)
    page.fill("#password", password)
    shot(page, "login-filled")


def test_sign_in_finish_with_the_sdk_and_log_out(
    page: Page, relying_party: Any, bastion_server: ServerProcess
) -> None:
    user_id, username, password = new_user(bastion_server)
    page.context.clear_cookies()
    page.goto(relying_party.url + "/login")
    sign_in(page, username, password)
    try:
        expect(page.locator("#hello")).to_have_text(f"Hello {username}")
    finally:
        shot(page, "after-sign-in")
    assert page.url.startswith(relying_party.url + "/callback?")
    assert not relying_party.errors
    tokens, info = relying_party.logins[-1]
    assert info["sub"] == user_id and info["email"] == f"{username}@example.com"
    assert tokens.id_token_claims is not None and tokens.id_token_claims["sub"] == user_id
    assert tokens.refresh_token

    # A second login within the provider session skips the form.
    page.goto(relying_party.url + "/login")
    expect(page.locator("#hello")).to_have_text(f"Hello {username}")
    assert relying_party.logins[-1][1]["sub"] == user_id

    # Reloading the callback replays its state: the app's replay store refuses it
    # before the (spent) code is even sent.
    page.reload()
    expect(page.locator("#error")).to_have_text("InvalidStateError")
    relying_party.errors.clear()

    # RP-initiated logout ends the provider session; the next login shows the form.
    page.goto(relying_party.url + "/logout")
    expect(page.locator("#bye")).to_have_text("Signed out")
    assert page.url == relying_party.url + "/bye?state=bye"
    page.goto(relying_party.url + "/login")
    expect(page.locator("#password")).to_be_visible()


def test_form_post_answer_and_logout_by_post(
    page: Page, relying_party: Any, bastion_server: ServerProcess
) -> None:
    """response_mode=form_post: Bastion's page posts the code to the app's callback, so
    it is in no URL; then RP-initiated logout by POST, same-site and cross-site."""
    user_id, username, password = new_user(bastion_server)
    page.context.clear_cookies()
    page.goto(relying_party.url + "/login-form-post")
    sign_in(page, username, password)
    expect(page.locator("#hello")).to_have_text(f"Hello {username}")
    assert page.url == relying_party.url + "/callback"  # posted: no code in the URL
    assert not relying_party.errors
    assert relying_party.logins[-1][1]["sub"] == user_id

    # An authorization request posted from another site ("localhost") carries no
    # SameSite=Lax cookie; Bastion posts it again from its own origin, sees the
    # session, and answers without the form.
    other_site = relying_party.url.replace("127.0.0.1", "localhost")
    before = len(relying_party.logins)
    page.goto(other_site + "/login-post")
    expect(page.locator("#hello")).to_have_text(f"Hello {username}")
    assert page.url.startswith(relying_party.url + "/callback?code=")
    assert len(relying_party.logins) == before + 1 and not relying_party.errors
    assert relying_party.logins[-1][1]["sub"] == user_id

    # Same site (both on 127.0.0.1): the session cookie goes with the POST, and the
    # session's own ID token signs out at once.
    page.goto(relying_party.url + "/logout-post")
    expect(page.locator("#bye")).to_have_text("Signed out")
    assert page.url == relying_party.url + "/bye?state=bye"
    page.goto(relying_party.url + "/login")
    expect(page.locator("#password")).to_be_visible()

    # Cross-site (the app's page on "localhost"): the POST carries no SameSite=Lax
    # cookie, so Bastion asks; its own form, posted same-site, ends the session.
    sign_in(page, username, password)
    expect(page.locator("#hello")).to_have_text(f"Hello {username}")
    page.goto(other_site + "/logout-post")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.url == bastion_server.url + "/oauth/logout"
    shot(page, "logout-confirmation")
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#bye")).to_have_text("Signed out")
    assert page.url == relying_party.url + "/bye?state=bye"
    page.goto(relying_party.url + "/login")
    expect(page.locator("#password")).to_be_visible()
