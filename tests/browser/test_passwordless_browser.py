"""Sign-in links in a real browser: the real server mails a link to a real SMTP server
(aiosmtpd), Chromium opens it, and the authorization completes with a code that the
token endpoint accepts with the PKCE verifier.

Screenshots (login page, link sent, confirmation, used link, rate limit) are kept
under ``test-results/browser/`` as artefacts of the run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Browser, Page, expect

from support import Mailbox

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-results" / "browser"
LINK_SENT = ("If an account can sign in with that address, a sign-in link is on its way. "
             "It works once, for 15 minutes.")


def shot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def ask_for_link(page: Page, url: str, email: str, name: str = "") -> Any:
    """Open the login page at ``url``, ask for a link for ``email``; the response."""
    page.goto(url)
    expect(page.get_by_role("heading", name="Or get a sign-in link")).to_be_visible()
    if name:
        shot(page, name)
    page.get_by_label("Email", exact=True).fill(email)
    with page.expect_response(lambda r: r.url.endswith("/login/link/request")) as answer:
        page.get_by_role("button", name="Email me a sign-in link").click()
    page.wait_for_load_state()
    return answer.value


def redeem(site: Any, redirect_uri: str, url: str, state: str, client: tuple[str, str],
           verifier: str) -> dict[str, Any]:
    """Check the callback URL and exchange its code; the token response."""
    assert url.startswith(redirect_uri + "?"), url
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["state"] == state and params["code"]
    assert params["iss"] == site.server.url
    r = httpx2.post(site.server.url + "/oauth/token", auth=client, timeout=10, data={
        "grant_type": "authorization_code", "code": params["code"],
        "redirect_uri": redirect_uri, "code_verifier": verifier})
    assert r.status_code == 200, r.text
    return r.json()


def test_sign_in_with_an_emailed_link(page: Page, mail_site: Any) -> None:
    user_id, _username, email, _ = mail_site.new_user()
    client_id, secret, redirect_uri, name = mail_site.new_client()
    url, state, verifier = mail_site.authorize_url(client_id, redirect_uri)

    answer = ask_for_link(page, url, email, "passwordless-login-page")
    assert answer.status == 200
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.locator("#message")).to_have_text(LINK_SENT)
    shot(page, "passwordless-link-sent")

    (mail,) = mail_site.mail_to(email)
    assert mail["Subject"] == "Your sign-in link"
    link = Mailbox.link(mail)
    token = link.split("token=", 1)[1]
    assert link == f"{mail_site.server.url}/login/link?token={token}"
    assert len(token) >= 43  # 256 bits, base64url
    assert name in mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert f'href="{link}"' in html
    # the authorization request is bound to the token, not carried in the link
    assert client_id not in link and state not in link

    page.goto(link)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#message")).to_have_text(f"Continue to sign in as {email}.")
    shot(page, "passwordless-confirm")
    with page.expect_navigation(url=lambda u: u.startswith(redirect_uri)):
        page.get_by_role("button", name="Continue").click()
    expect(page.locator("#callback")).to_have_text("Back at the app")
    tokens = redeem(mail_site, redirect_uri, page.url, state, (client_id, secret), verifier)
    assert tokens["access_token"] and tokens["id_token"]
    info = httpx2.get(mail_site.server.url + "/oauth/userinfo", timeout=10,
                      headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200 and info.json()["sub"] == user_id
    assert info.json()["email"] == email

    # The link works once: opening it again shows a clear error page.
    used = page.goto(link)
    assert used is not None and used.status == 400
    expect(page.get_by_role("heading", name="This link cannot be used")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("already used")
    expect(page.get_by_role("button")).to_have_count(0)
    shot(page, "passwordless-link-used")


def test_a_link_opened_in_another_browser_still_completes_for_its_client(
    page: Page, browser: Browser, mail_site: Any
) -> None:
    """The mail may be read on another device: the link carries the pending request.
    A pending request of another client in that browser does not change where it lands."""
    _, _, email, _ = mail_site.new_user()
    a_id, a_secret, a_redirect, _ = mail_site.new_client("App A")
    b_id, _, b_redirect, _ = mail_site.new_client("App B")
    url, state, verifier = mail_site.authorize_url(a_id, a_redirect)
    assert ask_for_link(page, url, email).status == 200
    link = Mailbox.link(mail_site.mail_to(email)[0])

    other = browser.new_context()
    try:
        phone = other.new_page()
        phone.goto(mail_site.authorize_url(b_id, b_redirect)[0])  # B's login page, pending
        expect(phone.get_by_text("App B")).to_be_visible()
        phone.goto(link)
        with phone.expect_navigation(url=lambda u: u.startswith(a_redirect)):
            phone.get_by_role("button", name="Continue").click()
        assert not phone.url.startswith(b_redirect)
        tokens = redeem(mail_site, a_redirect, phone.url, state, (a_id, a_secret), verifier)
        assert tokens["id_token"]
    finally:
        other.close()


def test_an_expired_link_shows_a_clear_page(page: Page, mail_site: Any) -> None:
    _, _, email, _ = mail_site.new_user()
    client_id, _, redirect_uri, _ = mail_site.new_client()
    url, _, _ = mail_site.authorize_url(client_id, redirect_uri)
    assert ask_for_link(page, url, email).status == 200
    link = Mailbox.link(mail_site.mail_to(email)[0])
    page.goto(link)
    expect(page.get_by_role("button", name="Continue")).to_be_visible()
    # The link expires while its confirmation page is open.
    past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    mail_site.sql("UPDATE one_time_tokens SET expires_at = ? WHERE email = ?", past, email)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Continue").click()
    assert answer.value.status == 400
    expect(page.get_by_role("alert")).to_contain_text("has expired")
    assert not page.url.startswith(redirect_uri)
    # and opening it again says the same
    again = page.goto(link)
    assert again is not None and again.status == 400
    expect(page.get_by_role("heading", name="This link cannot be used")).to_be_visible()
    shot(page, "passwordless-link-expired")


def test_too_many_links_for_one_address(page: Page, mail_site: Any) -> None:
    _, _, email, _ = mail_site.new_user()
    client_id, _, redirect_uri, _ = mail_site.new_client()
    url, _, _ = mail_site.authorize_url(client_id, redirect_uri)
    for _ in range(3):  # the server allows 3 per address and hour
        assert ask_for_link(page, url, email).status == 200
    limited = ask_for_link(page, url, email)
    assert limited.status == 429
    assert 0 < int(limited.headers["retry-after"]) <= 3600
    expect(page.get_by_role("alert")).to_contain_text("Try again in")
    # still the login page, so the user can sign in with a password instead
    expect(page.get_by_label("Password")).to_be_visible()
    shot(page, "passwordless-rate-limited")
    assert len(mail_site.mail_to(email, 3)) == 3


def test_the_rate_limit_page_says_what_was_limited(page: Page, mail_site: Any) -> None:
    _, _, email, _ = mail_site.new_user()
    client_id, _, redirect_uri, _ = mail_site.new_client()
    url, _, _ = mail_site.authorize_url(client_id, redirect_uri)
    for _ in range(3):
        ask_for_link(page, url, email)
    assert ask_for_link(page, url, email).status == 429
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("link", timeout=1000)
    expect(alert).not_to_contain_text("failed sign-ins", timeout=1000)
    expect(alert).not_to_contain_text("locked", timeout=1000)
    expect(alert).not_to_contain_text("seconds", timeout=1000)
