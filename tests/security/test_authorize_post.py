"""The authorization endpoint takes its parameters by POST as well as by GET (OpenID
Connect Core 3.1.2.1), with the same checks and answers; a form it cannot read is an
error page, never a redirect, and a cross-site POST, which leaves the session cookie
behind, is posted again from Bastion's own origin."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from security_helpers import REDIRECT, Env, authorize_url, exchange, get_code, hidden_fields

from support import ISSUER, SESSION_COOKIE


def _form(client_id: str, **extra: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(authorize_url(client_id, **extra)).query))


async def test_a_posted_request_with_a_session_gets_a_code(env: Env) -> None:
    await get_code(env)  # signs in
    r = await env.http.post("/oauth/authorize", data=_form(env.web.client_id))
    assert r.status_code == 303 and r.headers["location"].startswith(REDIRECT + "?")
    answer = dict(parse_qsl(urlsplit(r.headers["location"]).query))
    assert answer["state"] == "st-1" and answer["iss"] == ISSUER
    assert (await exchange(env, answer["code"])).status_code == 200


async def test_a_posted_request_without_a_session_signs_in_first(env: Env) -> None:
    page = await env.http.post("/oauth/authorize", data=_form(env.web.client_id))
    assert page.status_code == 200 and 'action="/login"' in page.text
    posted = await env.http.post("/login", data={
        **hidden_fields(page.text), "login": "alice", "password": "correct horse battery staple"})
    assert posted.status_code == 303
    r = await env.http.get(posted.headers["location"])
    assert r.status_code == 303 and "code=" in r.headers["location"]


async def test_posted_errors_go_where_get_errors_go(env: Env) -> None:
    r = await env.http.post("/oauth/authorize", data=_form(env.web.client_id, prompt="none"))
    assert r.status_code == 303 and "error=login_required" in r.headers["location"]
    r = await env.http.post("/oauth/authorize",
                            data=_form(env.web.client_id, redirect_uri="https://evil.example/"))
    assert r.status_code == 400 and "location" not in r.headers


async def test_an_unreadable_form_is_an_error_page(env: Env) -> None:
    body = "&".join(f"{k}={v}" for k, v in _form(env.web.client_id).items())
    for content, headers in [
        (body + "&state=again", {"content-type": "application/x-www-form-urlencoded"}),
        (body, {"content-type": "application/json"}),
        ("state=" + "x" * 70_000, {"content-type": "application/x-www-form-urlencoded"}),
        (b"\xff\xfe", {"content-type": "application/x-www-form-urlencoded"}),
    ]:
        r = await env.http.post("/oauth/authorize", content=content, headers=headers)
        assert r.status_code == 400 and "location" not in r.headers, r.status_code
        assert r.headers["content-type"].startswith("text/html")


async def test_a_cross_site_post_without_the_cookie_is_posted_again_from_here(env: Env):
    """A cross-site POST brings no SameSite=Lax session cookie: Bastion's page posts
    the same form to itself (same-origin), which brings it."""
    await get_code(env)  # signs in: the browser has a session
    form = _form(env.web.client_id, prompt="none")
    session = env.http.cookies.get(SESSION_COOKIE)
    assert session
    env.http.cookies.clear()  # what a cross-site POST sends
    again = await env.http.post("/oauth/authorize", data=form,
                                headers={"Sec-Fetch-Site": "cross-site"})
    assert again.status_code == 200 and "location" not in again.headers
    assert f'action="{ISSUER}/oauth/authorize"' in again.text
    assert hidden_fields(again.text) == form
    env.http.cookies.set(SESSION_COOKIE, session)  # the same-origin re-post has it
    r = await env.http.post("/oauth/authorize", data=hidden_fields(again.text),
                            headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303 and "code=" in r.headers["location"]


async def test_a_post_from_here_without_a_session_is_not_posted_again(env: Env) -> None:
    r = await env.http.post("/oauth/authorize", data=_form(env.web.client_id, prompt="none"),
                            headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303 and "error=login_required" in r.headers["location"]
