"""The hosted account page in a real browser, against the real server and a real
SMTP server (aiosmtpd): edits persist, an email change is confirmed through a link
mailed to the new address, sessions are listed and can be ended, ``return_to`` is
shown only when it is a registered redirect URI of the client, and the user's data
downloads.

Screenshots (account page, after edits, sessions, back link) are kept under
``test-results/browser/``.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Browser, Page, expect

from support import Mailbox

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-results" / "browser"
OTHER_AGENT = "Bastion-Test-Second-Browser/1.0"


def shot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def open_account(page: Page, site: Any, login: str, password: str, query: str = "") -> None:
    """Open /account, which asks for a sign-in first, and sign in."""
    page.goto(f"{site.server.url}/account{query}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username or email").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()


def test_account_edits_persist(page: Page, browser: Browser, mail_site: Any) -> None:
    user_id, username, email, password = mail_site.new_user()
    open_account(page, mail_site, username, password)
    expect(page.get_by_label("Username")).to_have_value(username)
    expect(page.get_by_label("Email")).to_have_value(email)
    # signed in just now: no current password needed
    expect(page.get_by_label("Current password")).to_have_count(0)
    shot(page, "account-page")

    # username
    new_name = "n" + secrets.token_hex(5)
    page.get_by_label("Username").fill(new_name)
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("status")).to_have_text("Your profile is saved.")
    page.reload()
    expect(page.get_by_label("Username")).to_have_value(new_name)

    # password
    new_password = secrets.token_urlsafe(18)
    page.get_by_label("New password").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_have_text("Your password is changed.")

    # email: nothing changes until the link sent to the new address is used
    new_email = f"{new_name}@example.org"
    page.get_by_label("Email").fill(new_email)
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("status")).to_have_text(
        "We sent a confirmation link to your new address.")
    expect(page.get_by_label("Email")).to_have_value(email)
    (mail,) = mail_site.mail_to(new_email)
    assert mail["Subject"] == "Confirm your new email address"
    assert new_name in mail.get_body(preferencelist=("plain",)).get_content()
    assert not [m for m in mail_site.box.messages if m["To"] == email]  # not to the old one
    page.goto(Mailbox.link(mail))
    expect(page.get_by_role("heading", name="Confirm your email")).to_be_visible()
    expect(page.locator("#message")).to_have_text(
        f"Make {new_email} the email address of your account {new_name}?")
    shot(page, "account-email-confirm")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Email changed")).to_be_visible()
    expect(page.locator("#message")).to_have_text(f"Your email address is now {new_email}.")
    page.goto(f"{mail_site.server.url}/account")
    expect(page.get_by_label("Username")).to_have_value(new_name)
    expect(page.get_by_label("Email")).to_have_value(new_email)
    shot(page, "account-after-edits")

    # The changes are stored: a new browser signs in with the new password only.
    fresh = browser.new_context()
    try:
        other = fresh.new_page()
        other.goto(f"{mail_site.server.url}/account")
        other.get_by_label("Username or email").fill(new_name)
        other.get_by_label("Password").fill(password)
        other.get_by_role("button", name="Sign in").click()
        expect(other.get_by_role("alert")).to_have_text("Incorrect username or password.")
        open_account(other, mail_site, new_email, new_password)  # the new email works too
        expect(other.get_by_label("Username")).to_have_value(new_name)
    finally:
        fresh.close()
    assert mail_site.sql("SELECT username, email FROM users WHERE id = ?", user_id) == [
        (new_name, new_email)]


def test_a_password_change_needs_the_current_password_after_five_minutes(
    page: Page, mail_site: Any
) -> None:
    user_id, username, _, password = mail_site.new_user()
    open_account(page, mail_site, username, password)
    earlier = (datetime.now(UTC) - timedelta(minutes=6)).strftime("%Y-%m-%d %H:%M:%S.%f")
    mail_site.sql("UPDATE login_sessions SET auth_time = ? WHERE user_id = ?", earlier, user_id)
    page.reload()
    expect(page.get_by_label("Current password")).to_be_visible()
    new_password = secrets.token_urlsafe(18)
    page.get_by_label("Current password").fill(password + "x")
    page.get_by_label("New password").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("The current password is not right.")
    page.get_by_label("Current password").fill(password)
    page.get_by_label("New password").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_have_text("Your password is changed.")


def test_sessions_are_listed_and_another_can_be_signed_out(
    page: Page, browser: Browser, mail_site: Any
) -> None:
    _, username, _, password = mail_site.new_user()
    second = browser.new_context(user_agent=OTHER_AGENT)
    try:
        other = second.new_page()
        open_account(other, mail_site, username, password)
        open_account(page, mail_site, username, password)
        sessions = page.locator("#sessions > li")
        expect(sessions).to_have_count(2)
        this = sessions.filter(has_text="(this browser)")
        expect(this).to_have_count(1)
        expect(this).to_contain_text("HeadlessChrome")  # Chromium's own user agent
        them = sessions.filter(has_text=OTHER_AGENT)
        expect(them).to_have_count(1)
        shot(page, "account-sessions")
        them.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("status")).to_have_text("That session is signed out.")
        expect(sessions).to_have_count(1)
        expect(sessions).to_contain_text("(this browser)")
        # The other browser is signed out; this one is not.
        other.reload()
        expect(other.get_by_role("heading", name="Sign in")).to_be_visible()
        page.reload()
        expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    finally:
        second.close()


def test_each_session_sign_out_button_names_its_session(
    page: Page, browser: Browser, mail_site: Any
) -> None:
    _, username, _, password = mail_site.new_user()
    second = browser.new_context(user_agent=OTHER_AGENT)
    try:
        open_account(second.new_page(), mail_site, username, password)
        open_account(page, mail_site, username, password)
        button = page.locator("#sessions").get_by_role("button")
        expect(button).to_have_count(1)
        expect(button).to_have_accessible_description(OTHER_AGENT, timeout=1000)
    finally:
        second.close()


def test_return_to_is_shown_only_for_a_registered_redirect_uri(
    page: Page, mail_site: Any
) -> None:
    _, username, _, password = mail_site.new_user()
    client_id, _, redirect_uri, name = mail_site.new_client()
    _, _, b_redirect, _ = mail_site.new_client()
    good = "?" + urlencode({"client_id": client_id, "return_to": redirect_uri})
    open_account(page, mail_site, username, password, good)  # kept through the sign-in
    back = page.get_by_role("link", name=f"Back to {name}")
    expect(back).to_have_attribute("href", redirect_uri)
    shot(page, "account-back-link")
    # ...and through a form post
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("status")).to_have_text("Your profile is saved.")
    expect(back).to_have_attribute("href", redirect_uri)

    for foreign in ("https://evil.example/cb", redirect_uri + "/../x", "javascript:alert(1)",
                    b_redirect):  # the last is registered, but for another client
        page.goto(f"{mail_site.server.url}/account?"
                  + urlencode({"client_id": client_id, "return_to": foreign}))
        expect(page.get_by_role("heading", name="Your account")).to_be_visible()
        expect(page.locator("#back")).to_have_count(0)
        expect(page.get_by_role("link", name="Back to", exact=False)).to_have_count(0)
    page.goto(f"{mail_site.server.url}/account?" + urlencode({"return_to": redirect_uri}))
    expect(page.locator("#back")).to_have_count(0)


def test_a_user_downloads_their_data(page: Page, mail_site: Any) -> None:
    user_id, username, email, password = mail_site.new_user()
    open_account(page, mail_site, username, password)
    with page.expect_download() as started:
        page.get_by_role("link", name="Download your data").click()
    download = started.value
    assert download.suggested_filename == f"user-{user_id}.json"
    export = json.loads(Path(download.path()).read_text())
    assert (export["user"]["id"], export["user"]["username"]) == (user_id, username)
    assert export["user"]["email"] == email
    (session,) = export["sessions"]  # this browser's sign-in, with its user agent
    assert session["revoked_at"] is None and session["user_agent"]
    assert "login.success" in [e["action"] for e in export["events"]]
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()  # still here
