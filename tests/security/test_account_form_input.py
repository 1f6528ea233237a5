"""The account page's forms do all they were asked or nothing: a refused part leaves
the rest unchanged and unaudited, and nothing typed is silently changed."""

from __future__ import annotations

import httpx2
import sqlalchemy as sa
from security_helpers import Env, account_page, authorize_url, login_form, post_login

from bastion.server.storage.tables import events, one_time_tokens


async def _count(env: Env, query: sa.Select[tuple[int]]) -> int:
    async with env.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(query)).scalar_one())


async def _unchanged(env: Env) -> None:
    """Still alice, with no username change audited and no email-change link out."""
    user = await env.ctx.storage.get_user(env.user.id)
    assert user is not None and user.username == "alice"
    count = sa.select(sa.func.count())
    assert await _count(env, count.select_from(events).where(
        events.c.action == "account.username")) == 0
    assert await _count(env, count.select_from(one_time_tokens).where(
        one_time_tokens.c.purpose == "email_change")) == 0


def _page(r: httpx2.Response, status: int, says: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html") and says in r.text


async def test_a_refused_email_leaves_the_username_unchanged(env: Env) -> None:
    fields = await account_page(env)
    r = await env.http.post("/account/profile", data={
        "csrf_token": fields["csrf_token"], "username": "bobby", "email": "not-an-email"})
    _page(r, 400, "is not an email address")
    await _unchanged(env)


async def test_an_email_over_its_link_budget_leaves_the_username_unchanged(make_env) -> None:
    env = await make_env(link_limit_per_email=1)
    await env.ctx.outbox.stop()
    csrf = {"csrf_token": (await account_page(env))["csrf_token"]}
    budget = await env.http.post("/account/profile", data={**csrf, "email": "new@example.com"})
    assert budget.status_code == 303
    async with env.ctx.storage.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(one_time_tokens.delete())  # only the budget is left spent
    r = await env.http.post("/account/profile", data={**csrf, "username": "bobby",
                                                      "email": "new@example.com"})
    _page(r, 429, "Too many links were requested for this address")
    await _unchanged(env)


async def test_a_refused_username_sends_no_email_link(env: Env) -> None:
    fields = await account_page(env)
    for username in ("-starts-badly", "x" * 151):
        r = await env.http.post("/account/profile", data={
            "csrf_token": fields["csrf_token"], "username": username,
            "email": "new@example.com"})
        _page(r, 400, "1 to 150 letters")
    await _unchanged(env)


async def test_a_taken_username_spends_no_link_budget(make_env) -> None:
    from bastion.server.services.users import create_user

    env = await make_env(link_limit_per_email=1)
    await env.ctx.outbox.stop()
    await create_user(env.ctx.storage, env.ctx.passwords, username="Bob",
                      email="bob@example.com", password=None)
    csrf = {"csrf_token": (await account_page(env))["csrf_token"]}
    r = await env.http.post("/account/profile", data={**csrf, "username": "bob",
                                                      "email": "new@example.com"})
    _page(r, 400, "already taken")
    await _unchanged(env)
    again = await env.http.post("/account/profile", data={**csrf, "email": "new@example.com"})
    assert again.status_code == 303, again.text[:300]  # the one link the budget allows


async def test_an_over_long_new_password_is_refused_not_cut(env: Env) -> None:
    fields = await account_page(env)
    typed = "p" * 1500
    r = await env.http.post("/account/password", data={"csrf_token": fields["csrf_token"],
                                                       "new_password": typed})
    _page(r, 400, "must be 8 to 1024 characters")
    assert (await env.password_grant()).status_code == 200  # the old password stands
    assert (await env.password_grant(password=typed[:1024])).status_code == 400


async def test_a_password_longer_than_any_set_signs_in_nowhere(env: Env) -> None:
    """The login form took the first 1024 characters of what was typed, the token
    endpoint all of them: one more character than the longest password signed in on
    the form only. Now it is a wrong password everywhere."""
    longest = "q" * 1024
    fields = await account_page(env)
    r = await env.http.post("/account/password", data={"csrf_token": fields["csrf_token"],
                                                       "new_password": longest})
    assert r.status_code == 303
    browser = await env.browser()
    form = await login_form(browser, authorize_url(env.web.client_id))
    assert (await post_login(browser, form, password=longest + "q")).status_code == 401
    assert (await env.password_grant(password=longest + "q")).status_code == 400
    assert (await post_login(browser, form, password=longest)).status_code == 303
    assert (await env.password_grant(password=longest)).status_code == 200
