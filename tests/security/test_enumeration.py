"""User enumeration: whether an account exists must show neither in the answer
(status, message, headers) nor in the time it takes.

Covered: the login form, the password grant, the sign-in link request (page and
``/oauth/passwordless``). There is no separate password-reset flow: the emailed
sign-in link is the reset path (sign in by link, then set a password on /account),
so the link request tests cover it.

Timing is checked two ways, both robust on a noisy two-core box:
- structurally: every path runs exactly one argon2 verification (``Passwords.verify``
  is counted), the real cost that would otherwise tell accounts apart;
- statistically: medians of interleaved samples of both paths are within 0.5-2.0x.
Throttling (covered in ``test_brute_force.py``, including "unknown accounts are
throttled like real ones") is set out of the way here.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import pytest
from security_helpers import PASSWORD, Env, authorize_url, login_form

from bastion.server.services.passwords import Passwords
from bastion.server.services.users import create_user

NO_THROTTLE = dict(login_delay_after=1_000_000, login_lock_after=1_000_000,
                   link_limit_per_email=1_000_000, link_limit_per_ip=1_000_000)
SAMPLES = 15  # per path, interleaved


@pytest.fixture
async def quiet(make_env: Any) -> Env:
    """No throttling, and an argon2 cost (32 MiB) that dominates a request, so a
    skipped hash would show plainly in the timings."""
    env = await make_env(password_hash_memory_kib=32 * 1024, **NO_THROTTLE)
    await env.ctx.outbox.stop()  # mail stays queued: delivery is not what is measured
    # Accounts that exist but cannot sign in with a password: passwordless-only, deleted.
    await create_user(env.ctx.storage, env.ctx.passwords, username="linkonly",
                      email="linkonly@example.com", password=None)
    gone = await create_user(env.ctx.storage, env.ctx.passwords, username="gone",
                             email="gone@example.com", password=PASSWORD)
    await env.delete_user(gone.id)
    return env


LOGINS = {
    "unknown": "nobody-here",
    "unknown-email": "nobody@example.com",
    "wrong-password": "alice",
    "wrong-password-email": "alice@example.com",
    "passwordless-only": "linkonly",
    "deleted": "gone",
}


def page_without_tokens(html: str) -> str:
    """A page with its per-request values (CSRF token, form continue, the login
    typed) blanked out."""
    return re.sub(r'(name="(csrf_token|continue|login)" value=")[^"]*', r"\1", html)


WRONG = "not the password"


async def login_attempt(env: Env, login: str) -> httpx2.Response:
    """A failed sign-in on the login form (the password is wrong for every account)."""
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    return await env.http.post("/login", data={**fields, "login": login, "password": WRONG})


def counting_verify(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record each argon2 verification (the result) made by the server."""
    calls: list[bool] = []
    real = Passwords.verify

    def verify(self: Passwords, stored: str | None, password: str) -> bool:
        result = real(self, stored, password)
        calls.append(result)
        return result

    monkeypatch.setattr(Passwords, "verify", verify)
    return calls


async def interleaved_medians(paths: dict[str, Callable[[], Awaitable[Any]]]
                              ) -> dict[str, float]:
    """Median seconds of each path, sampled alternately (after one warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for run in paths.values():
        await run()
    for _ in range(SAMPLES):
        for name, run in paths.items():
            start = time.perf_counter()
            await run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) for name, samples in times.items()}


def assert_alike(medians: dict[str, float], bound: float = 2.0) -> None:
    fastest, slowest = min(medians.values()), max(medians.values())
    assert slowest / fastest < bound, medians


# -- the login form ---------------------------------------------------------------------------


async def test_login_form_gives_one_answer_whether_or_not_the_account_exists(quiet: Env):
    answers = {}
    for case, login in LOGINS.items():
        r = await login_attempt(quiet, login)
        assert f'name="login" value="{login}"' in r.text  # as typed: no account's form
        answers[case] = (r.status_code, page_without_tokens(r.text),
                         tuple(sorted(k for k in r.headers if k not in ("content-length",
                                                                        "set-cookie"))))
    assert len(set(answers.values())) == 1, {k: v[:1] for k, v in answers.items()}
    assert answers["unknown"][0] == 401 and "Incorrect username or password." in \
        answers["unknown"][1]


async def test_login_form_runs_one_password_hash_for_every_kind_of_failure(
        quiet: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_verify(monkeypatch)
    for login in LOGINS.values():
        calls.clear()
        await login_attempt(quiet, login)
        assert calls == [False], (login, calls)


async def test_login_form_takes_as_long_for_an_unknown_account_as_a_wrong_password(
        quiet: Env) -> None:
    medians = await interleaved_medians({
        case: (lambda login=login: login_attempt(quiet, login))  # type: ignore[misc]
        for case, login in LOGINS.items() if case in ("unknown", "wrong-password", "deleted")})
    assert_alike(medians)


# -- the password grant -------------------------------------------------------------------------


async def test_password_grant_gives_one_answer_whether_or_not_the_account_exists(quiet: Env):
    answers = set()
    for login in LOGINS.values():
        r = await quiet.password_grant(login=login, password=WRONG)
        answers.add((r.status_code, r.text, r.headers.get("www-authenticate")))
    assert len(answers) == 1, answers
    status, body, _ = answers.pop()
    assert status == 400 and '"invalid_grant"' in body


async def test_password_grant_runs_one_password_hash_for_every_kind_of_failure(
        quiet: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_verify(monkeypatch)
    for login in LOGINS.values():
        calls.clear()
        await quiet.password_grant(login=login, password=WRONG)
        assert calls == [False], (login, calls)


async def test_password_grant_takes_as_long_for_an_unknown_account_as_a_wrong_password(
        quiet: Env) -> None:
    medians = await interleaved_medians({
        "unknown": lambda: quiet.password_grant(login="nobody-here", password="x"),
        "wrong-password": lambda: quiet.password_grant(login="alice", password="x"),
    })
    assert_alike(medians)


# -- the sign-in link request (also the way to reset a password) -----------------------------


EMAILS = {
    "known": "alice@example.com",
    "known-other-case": "ALICE@Example.com",
    "unknown": "nobody@example.com",
    "deleted": "gone@example.com",
    "passwordless-only": "linkonly@example.com",
}


async def link_request_page(env: Env, email: str) -> httpx2.Response:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    return await env.http.post("/login/link/request", data={
        "csrf_token": fields["csrf_token"], "continue": fields["continue"], "email": email})


async def link_request_api(env: Env, email: str) -> httpx2.Response:
    return await env.http.post("/oauth/passwordless", auth=env.web.auth, data={
        "email": email, "response_type": "code", "redirect_uri": "https://app.example/callback",
        "scope": "openid", "state": "s", "code_challenge_method": "S256",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"})


@pytest.mark.parametrize("request_link", [link_request_page, link_request_api],
                         ids=["page", "api"])
async def test_link_request_gives_one_answer_whether_or_not_the_account_exists(
        quiet: Env, request_link: Callable[[Env, str], Awaitable[httpx2.Response]]) -> None:
    answers = {}
    for case, email in EMAILS.items():
        r = await request_link(quiet, email)
        answers[case] = (r.status_code, page_without_tokens(r.text))
    assert len(set(answers.values())) == 1, answers
    assert answers["unknown"][0] == 200


@pytest.mark.parametrize("request_link", [link_request_page, link_request_api],
                         ids=["page", "api"])
async def test_a_link_request_is_answered_before_the_address_is_looked_up(
        quiet: Env, request_link: Callable[[Env, str], Awaitable[httpx2.Response]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # What the lookup finds decides the work (a link and a mail, or nothing): the
    # answer must not wait for it. Here the lookup waits until the answer has come.
    storage = quiet.ctx.storage
    lookup, answered = storage.get_user_by_login, asyncio.Event()
    looked_up: list[str] = []

    async def after_the_answer(login: str) -> Any:
        await answered.wait()
        looked_up.append(login)
        return await lookup(login)

    monkeypatch.setattr(storage, "get_user_by_login", after_the_answer)
    answer = await asyncio.wait_for(request_link(quiet, "alice@example.com"), 10)
    assert answer.status_code == 200 and looked_up == []
    answered.set()
    await quiet.ctx.outbox.settled()
    assert looked_up == ["alice@example.com"]


@pytest.mark.parametrize("request_link", [link_request_page, link_request_api],
                         ids=["page", "api"])
async def test_link_request_takes_as_long_for_an_unknown_address(
        quiet: Env, request_link: Callable[[Env, str], Awaitable[httpx2.Response]]) -> None:
    # The known address also writes a token and a mail; that must stay in the noise.
    medians = await interleaved_medians({
        case: (lambda email=email: request_link(quiet, email))  # type: ignore[misc]
        for case, email in EMAILS.items() if case in ("known", "unknown")})
    assert_alike(medians)


async def test_link_request_rate_limit_answers_alike_for_known_and_unknown(make_env: Any):
    env = await make_env(link_limit_per_email=1)
    await env.ctx.outbox.stop()
    answers = set()
    for email in ("alice@example.com", "nobody@example.com"):
        await link_request_api(env, email)
        r = await link_request_api(env, email)  # over the per-address limit
        answers.add((r.status_code, r.text))
    assert len(answers) == 1, answers
