"""Brute-force protection of password sign-in (login form and password grant): per
account and per client IP (per client for a confidential client's back channel),
growing delays then a temporary lock, a 429 that names the wait, counters shared
through the database, and bursts of concurrent attempts held to the limits.

Time never passes in these tests: throttle rows with past timestamps are written
through the storage API instead."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from security_helpers import PASSWORD, Env, authorize_url, login_form, post_login

from bastion.server.services import throttle
from bastion.server.storage.tables import events
from support import CSRF_COOKIE, KNOWN_COOKIE, create_database

WRONG = "wrong password!"
LOCK_AFTER = 3
LOCK_SECONDS = 900
#: Locks only: delays start so late they never get in the way.
LOCK_ONLY = {"login_lock_after": LOCK_AFTER, "login_lock_seconds": LOCK_SECONDS,
             "login_delay_after": 100}


@pytest.fixture
async def locking(make_env) -> Env:
    return await make_env(**LOCK_ONLY)


async def form_attempt(env: Env, login: str = "alice", password: str = WRONG,
                       http: httpx2.AsyncClient | None = None) -> httpx2.Response:
    http = http or env.http
    url = authorize_url(env.web.client_id, prompt="login")  # the form, signed in or not
    return await post_login(http, await login_form(http, url),
                            login, password)


def page_message(r: httpx2.Response) -> str:
    """The error shown on the login page, with the number of seconds blanked out."""
    found = re.search(r'id="error">([^<]*)<', r.text)
    assert found, r.text[:300]
    return found.group(1).replace(r.headers.get("retry-after", "-"), "N")


def assert_throttled_page(r: httpx2.Response, low: int, high: int) -> int:
    assert r.status_code == 429, (r.status_code, r.text[:200])
    retry_after = int(r.headers["retry-after"])
    assert low <= retry_after <= high, retry_after
    unit = "second." if retry_after == 1 else "seconds."
    assert f"Try again in N {unit}" in page_message(r)
    return retry_after


async def test_account_is_locked_after_n_failures_with_a_429_naming_the_wait(locking: Env):
    for _ in range(LOCK_AFTER):
        assert (await form_attempt(locking)).status_code == 401
    r = await form_attempt(locking)
    assert_throttled_page(r, LOCK_SECONDS - 5, LOCK_SECONDS + 1)
    assert "temporarily locked" in r.text


async def test_locked_account_refuses_the_correct_password_too(locking: Env) -> None:
    for _ in range(LOCK_AFTER):
        await form_attempt(locking)
    r = await form_attempt(locking, password=PASSWORD)
    assert_throttled_page(r, 1, LOCK_SECONDS + 1)
    assert "bastion_session" not in r.headers.get("set-cookie", "")
    assert (await locking.password_grant()).status_code == 429


async def test_lock_covers_other_spellings_of_the_username(locking: Env) -> None:
    for _ in range(LOCK_AFTER):
        await form_attempt(locking, "alice")
    assert (await form_attempt(locking, " ALICE ", PASSWORD)).status_code == 429


async def test_lock_covers_the_accounts_email_too(locking: Env) -> None:
    for _ in range(LOCK_AFTER):
        await form_attempt(locking, "alice")
    assert (await form_attempt(locking, "alice@example.com", PASSWORD)).status_code == 429


async def test_unknown_accounts_are_throttled_like_real_ones(locking: Env) -> None:
    for login in ("alice", "nobody"):
        for _ in range(LOCK_AFTER):
            assert (await form_attempt(locking, login)).status_code == 401
    real, unknown = await form_attempt(locking, "alice"), await form_attempt(locking, "nobody")
    assert real.status_code == unknown.status_code == 429
    assert page_message(real) == page_message(unknown)


@pytest.mark.parametrize(("failures", "wait"), [(3, 1), (4, 2), (6, 8), (8, 32), (9, 60)])
async def test_delays_grow_after_a_few_failures(make_env, failures: int, wait: int) -> None:
    env = await make_env(login_delay_after=3, login_lock_after=10)
    now = datetime.now(UTC)
    for _ in range(failures):  # as if they had just happened
        await env.ctx.storage.record_failure("acct:alice", now, 10, now + timedelta(hours=1))
    r = await form_attempt(env, password=PASSWORD)
    assert_throttled_page(r, wait - 1, wait + 1)
    assert "paused" in r.text


async def test_lock_expires(locking: Env) -> None:
    long_ago = datetime.now(UTC) - timedelta(seconds=LOCK_SECONDS + 60)
    for _ in range(LOCK_AFTER):
        await locking.ctx.storage.record_failure(
            "acct:alice", long_ago, LOCK_AFTER, long_ago + timedelta(seconds=LOCK_SECONDS))
    [row] = await locking.ctx.storage.get_throttles(["acct:alice"])
    assert row.locked_until is not None  # it was locked, and the lock is over
    assert (await form_attempt(locking, password=PASSWORD)).status_code == 303


async def test_success_resets_the_account_counter(locking: Env) -> None:
    for _ in range(LOCK_AFTER - 1):
        await form_attempt(locking)
    assert (await form_attempt(locking, password=PASSWORD)).status_code == 303
    assert await locking.ctx.storage.get_throttles(["acct:alice"]) == []
    # without the reset, these would reach the lock
    for _ in range(LOCK_AFTER - 1):
        assert (await form_attempt(locking)).status_code == 401
    assert (await form_attempt(locking, password=PASSWORD)).status_code == 303


async def test_per_ip_limit_blocks_every_account_from_that_ip_only(make_env) -> None:
    env = await make_env(login_delay_after=100, login_lock_after=2)
    ip_limit = 2 * 10  # the per-IP limit is ten times the account limit
    attacker = await env.browser(ip="203.0.113.7")
    for i in range(ip_limit):  # one failure per account: no account reaches its limit
        assert (await form_attempt(env, f"user{i}", http=attacker)).status_code == 401
    assert (await form_attempt(env, "alice", PASSWORD, http=attacker)).status_code == 429
    elsewhere = await env.browser(ip="198.51.100.2")
    assert (await form_attempt(env, "alice", PASSWORD, http=elsewhere)).status_code == 303
    [row] = await env.ctx.storage.get_throttles(["ip:203.0.113.7"])
    assert row.failures == ip_limit and row.locked_until is not None


async def test_an_ipv6_client_is_counted_by_its_64_not_by_each_address(make_env) -> None:
    """One IPv6 subscriber picks addresses from a whole /64: counted by address, the
    per-IP limit would never be reached."""
    env = await make_env(login_delay_after=100, login_lock_after=2)
    ip_limit = 2 * 10
    for i in range(ip_limit):  # a new address of one /64 for every guess
        attacker = await env.browser(ip=f"2001:db8:1:2::{i + 1:x}")
        assert (await form_attempt(env, f"user{i}", http=attacker)).status_code == 401
    same_64 = await env.browser(ip="2001:db8:1:2:ffff::1")
    assert (await form_attempt(env, "alice", PASSWORD, http=same_64)).status_code == 429
    other_64 = await env.browser(ip="2001:db8:1:3::1")
    assert (await form_attempt(env, "alice", PASSWORD, http=other_64)).status_code == 303
    [row] = await env.ctx.storage.get_throttles(["ip:2001:db8:1:2::/64"])
    assert row.failures == ip_limit


async def test_password_grant_answers_429_slow_down_with_retry_after(locking: Env) -> None:
    for _ in range(LOCK_AFTER):
        r = await locking.password_grant(password=WRONG)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    r = await locking.password_grant()
    assert r.status_code == 429
    assert r.json()["error"] == "slow_down"
    retry_after = int(r.headers["retry-after"])
    assert LOCK_SECONDS - 5 <= retry_after <= LOCK_SECONDS + 1
    assert f"Try again in {retry_after} seconds" in r.json()["error_description"]


async def test_login_form_and_password_grant_share_the_counter(locking: Env) -> None:
    await form_attempt(locking)
    await locking.password_grant(password=WRONG)
    await form_attempt(locking)
    assert (await locking.password_grant()).status_code == 429


async def test_counters_are_shared_by_two_instances_on_one_database(make_env) -> None:
    first = await make_env(**LOCK_ONLY)
    second = await make_env(share=first, **LOCK_ONLY)
    assert first.ctx is not second.ctx
    await form_attempt(first)
    await form_attempt(second)
    await form_attempt(first)  # three failures in all, spread over both instances
    for instance in (first, second):
        assert (await form_attempt(instance, password=PASSWORD)).status_code == 429
        assert (await instance.password_grant()).status_code == 429


# -- bursts of concurrent attempts (asyncio.gather: they really overlap) ----------

BURST = 60


def statuses(responses: Sequence[httpx2.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def burst(env: Env, logins: Sequence[str], http: httpx2.AsyncClient | None = None,
                ) -> list[httpx2.Response]:
    """Wrong passwords for ``logins``, all posted to the login form at once."""
    http = http or env.http
    fields = await login_form(http, authorize_url(env.web.client_id, prompt="login"))
    return list(await asyncio.gather(*(post_login(http, fields, login, WRONG)
                                       for login in logins)))


@pytest.mark.parametrize("via", ["form", "grant"])
async def test_a_burst_of_guesses_gets_exactly_as_many_checks_as_the_lock_allows(
        locking: Env, via: str) -> None:
    if via == "form":
        answers = await burst(locking, ["alice"] * BURST)
    else:
        answers = list(await asyncio.gather(*(locking.password_grant(password=WRONG)
                                              for _ in range(BURST))))
    failed = 401 if via == "form" else 400
    assert statuses(answers) == {failed: LOCK_AFTER, 429: BURST - LOCK_AFTER}
    [row] = await locking.ctx.storage.get_throttles(["user:" + locking.user.id])
    assert row.failures == LOCK_AFTER and row.locked_until is not None


async def test_a_burst_at_an_unknown_account_is_answered_as_at_a_real_one(
        locking: Env) -> None:
    real, unknown = await burst(locking, ["alice"] * 20), await burst(locking, ["nobody"] * 20)
    assert statuses(real) == statuses(unknown) == {401: LOCK_AFTER, 429: 20 - LOCK_AFTER}


async def test_a_burst_stops_at_the_first_delay(make_env) -> None:
    env = await make_env(login_delay_after=3, login_lock_after=10)
    answers = await burst(env, ["alice"] * BURST)
    assert statuses(answers) == {401: 3, 429: BURST - 3}
    assert all("paused" in r.text for r in answers if r.status_code == 429)


async def test_a_burst_through_both_spellings_of_an_account_shares_its_count(
        locking: Env) -> None:
    answers = await burst(locking, ["alice", "alice@example.com"] * (BURST // 2))
    assert statuses(answers) == {401: LOCK_AFTER, 429: BURST - LOCK_AFTER}


async def test_a_burst_from_one_ip_at_many_accounts_stops_near_the_ip_limit(make_env) -> None:
    env = await make_env(login_delay_after=100, login_lock_after=2)
    [_, (_, ip)] = throttle.login_keys(env.ctx.settings, "x", "127.0.0.1")
    assert ip.lock_after == 20 and ip.in_flight == 2
    answers = await burst(env, [f"user{i}" for i in range(BURST)])
    # in_flight attempts of one IP are checked at once, each blind to the others
    checked = statuses(answers)[401]
    assert ip.lock_after <= checked <= ip.lock_after + ip.in_flight - 1
    assert statuses(answers)[429] == BURST - checked


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for a fresh database of each backend (SQLite: the env's own file)."""
    if request.param == "sqlite":
        return {}
    admin = request.getfixturevalue("pg_admin_url")
    return {"database_url": await create_database(admin, f"bf_{uuid.uuid4().hex[:12]}")}


async def test_a_burst_split_over_two_instances_gets_one_extra_check_at_most(
        make_env, database: dict[str, str]) -> None:
    first = await make_env(**LOCK_ONLY, **database)
    second = await make_env(share=first, **LOCK_ONLY, **database)
    half = ["alice"] * (BURST // 2)
    answers = [r for rs in await asyncio.gather(burst(first, half), burst(second, half))
               for r in rs]
    # each instance checks one attempt on the account at a time: lock_after + 2 - 1
    checked = statuses(answers)[401]
    assert LOCK_AFTER <= checked <= LOCK_AFTER + 1, statuses(answers)
    assert statuses(answers)[429] == BURST - checked
    for instance in (first, second):
        assert (await form_attempt(instance, password=PASSWORD)).status_code == 429


# -- a confidential client's back channel: its own budget, not its server's IP -----


async def test_password_grant_failures_count_against_the_client_not_its_servers_ip(
        make_env) -> None:
    env = await make_env(login_delay_after=100, login_lock_after=2)
    for i in range(25):  # more than the per-IP limit (20), each for another account
        r = await env.password_grant(f"user{i}", WRONG)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    assert (await env.password_grant()).status_code == 200
    # a browser at the app server's address is not held back either
    assert (await form_attempt(env, password=PASSWORD)).status_code == 303
    assert await env.ctx.storage.get_throttles(["ip:127.0.0.1"]) == []
    [row] = await env.ctx.storage.get_throttles(["client:" + env.web.client_id])
    assert row.failures == 25


async def test_a_clients_budget_locks_its_password_grants_and_says_so(make_env) -> None:
    env = await make_env(login_delay_after=100, login_client_lock_after=5)
    for i in range(5):
        assert (await env.password_grant(f"user{i}", WRONG)).status_code == 400
    r = await env.password_grant()
    assert (r.status_code, r.json()["error"]) == (429, "slow_down")
    assert LOCK_SECONDS - 5 <= int(r.headers["retry-after"]) <= LOCK_SECONDS + 1
    description = r.json()["error_description"]
    assert "through this client" in description and "address" not in description
    assert (await form_attempt(env, password=PASSWORD)).status_code == 303  # the form: per IP


async def link_request_api(env: Env, email: str) -> httpx2.Response:
    return await env.http.post("/oauth/passwordless", auth=env.web.auth, data={
        "email": email, "response_type": "code", "redirect_uri": "https://app.example/callback",
        "scope": "openid", "state": "s", "code_challenge_method": "S256",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"})


async def test_passwordless_api_is_limited_per_client_not_per_ip(make_env) -> None:
    env = await make_env(link_limit_per_ip=3, link_limit_per_client=5)
    await env.ctx.outbox.stop()
    for i in range(5):  # more than the per-IP limit
        assert (await link_request_api(env, f"p{i}@example.com")).status_code == 200
    r = await link_request_api(env, "alice@example.com")
    assert (r.status_code, r.json()["error"]) == (429, "slow_down")
    description = r.json()["error_description"]
    assert "by this client" in description and "address" not in description
    assert await env.ctx.storage.get_throttles(["link-ip:127.0.0.1"]) == []


async def test_concurrent_link_requests_for_one_address_stop_at_its_limit(
        make_env, database: dict[str, str]) -> None:
    env = await make_env(link_limit_per_email=3, **database)
    await env.ctx.outbox.stop()
    answers = await asyncio.gather(*(link_request_api(env, "alice@example.com")
                                     for _ in range(20)))
    assert statuses(answers) == {200: 3, 429: 17}
    assert all("for this address" in r.json()["error_description"]
               for r in answers if r.status_code == 429)


# -- when a lock ends, the count starts over --------------------------------------


async def lock_that_ended(env: Env, lock_seconds: int = LOCK_SECONDS, failures: int = LOCK_AFTER,
                          ) -> None:
    """``failures`` failures on alice (both keys), locked, the lock over a minute ago."""
    then = datetime.now(UTC) - timedelta(seconds=lock_seconds + 60)
    for key in ("acct:alice", "user:" + env.user.id):
        for _ in range(failures):
            await env.ctx.storage.record_failure(key, then, failures,
                                                 then + timedelta(seconds=lock_seconds))


async def test_after_a_lock_ends_the_full_number_of_failures_is_needed_again(
        locking: Env) -> None:
    await lock_that_ended(locking)
    for _ in range(LOCK_AFTER - 1):
        assert (await form_attempt(locking)).status_code == 401
    [row] = await locking.ctx.storage.get_throttles(["user:" + locking.user.id])
    assert (row.failures, row.locked_until) == (LOCK_AFTER - 1, None)
    assert (await form_attempt(locking, password=PASSWORD)).status_code == 303
    # and a full count locks again
    for _ in range(LOCK_AFTER):
        assert (await form_attempt(locking)).status_code == 401
    assert (await form_attempt(locking, password=PASSWORD)).status_code == 429


async def test_an_ended_lock_leaves_no_delay_behind(make_env) -> None:
    # 10 failures would ask for a 60 s pause after the last one; the 30 s lock is over
    env = await make_env(login_delay_after=3, login_lock_after=10, login_lock_seconds=30)
    await lock_that_ended(env, lock_seconds=30, failures=10)
    assert (await form_attempt(env)).status_code == 401
    assert (await form_attempt(env, password=PASSWORD)).status_code == 303


async def test_a_burst_of_refused_attempts_is_audited_once(locking: Env) -> None:
    # A refused attempt costs no hash: auditing each would let anyone fill the audit
    # log. The wait's first refusal is recorded; the metric counts them all.
    for _ in range(LOCK_AFTER):
        assert (await form_attempt(locking)).status_code == 401
    refused_before = REGISTRY.get_sample_value("bastion_login_failures_total",
                                               {"reason": "throttled"}) or 0.0
    for _ in range(10):
        assert (await form_attempt(locking)).status_code == 429
        assert (await locking.password_grant(password=WRONG)).status_code == 429
    assert REGISTRY.get_sample_value("bastion_login_failures_total",
                                     {"reason": "throttled"}) == refused_before + 20
    engine = locking.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        audited = (await conn.execute(sa.select(sa.func.count()).select_from(events).where(
            events.c.action == "login.throttled"))).scalar()
    assert audited == 1


async def test_a_stranger_cannot_lock_the_owners_browser_out(locking: Env) -> None:
    """A stranger who knows a username locked its account for everyone, its owner
    included. The browsers that have signed in with the account's address have a
    count of their own (a MAC of the address in the bastion_known cookie)."""
    owner = locking.http
    assert (await form_attempt(locking, password=PASSWORD, http=owner)).status_code == 303
    stranger = await locking.browser(ip="203.0.113.9")
    for _ in range(LOCK_AFTER):
        assert (await form_attempt(locking, http=stranger)).status_code == 401
    assert (await form_attempt(locking, password=PASSWORD, http=stranger)).status_code == 429
    fresh = await locking.browser(ip="203.0.113.10")  # a browser the account never used
    assert (await form_attempt(locking, password=PASSWORD, http=fresh)).status_code == 429
    assert (await form_attempt(locking, password=PASSWORD, http=owner)).status_code == 303
    # Its own count locks it, as the account's does, and leaves the stranger's alone.
    for _ in range(LOCK_AFTER):
        assert (await form_attempt(locking, http=owner)).status_code == 401
    assert (await form_attempt(locking, password=PASSWORD, http=owner)).status_code == 429
    forged = await locking.browser(ip="203.0.113.11")
    forged.cookies.set(KNOWN_COOKIE, "not-a-mark")
    assert (await form_attempt(locking, password=PASSWORD, http=forged)).status_code == 429


async def test_a_known_mark_that_is_not_ascii_is_no_mark(locking: Env) -> None:
    """Such a cookie made the login's constant-time check raise: a 500 for a real
    account's login and a 401 for an unknown one, no count kept, and a 500 on the
    sign-in link form. Now it is no mark at all."""
    browser = await locking.browser(ip="203.0.113.12")
    fields = await login_form(browser, authorize_url(locking.web.client_id, prompt="login"))
    mark = locking.ctx.signer.mac("known-browser", "alice@example.com")
    cookie = (f"{CSRF_COOKIE}={browser.cookies[CSRF_COOKIE]}; {KNOWN_COOKIE}=".encode()
              + b"\xe9." + mark.encode() + b"\xe9")
    def attempt(login: str) -> Awaitable[httpx2.Response]:
        return browser.post("/login", data={**fields, "login": login, "password": WRONG},
                            headers={"Cookie": cookie})
    for _ in range(LOCK_AFTER):
        real, unknown = await attempt("alice"), await attempt("nobody")
        assert real.status_code == unknown.status_code == 401
    assert (await attempt("alice")).status_code == 429  # counted with the account's
    r = await browser.post("/login/link/request", data={**fields, "email": "x@example.com"},
                           headers={"Cookie": cookie})
    assert r.status_code == 200, r.text[:300]
