"""Brute-force protection of password sign-in (login form and password grant): per
account and per client IP, growing delays then a temporary lock, a 429 that names
the wait, counters shared through the database.

Time never passes in these tests: throttle rows with past timestamps are written
through the storage API instead."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from security_helpers import PASSWORD, Env, authorize_url, login_form, post_login

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
    assert "Try again in N seconds." in page_message(r)
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
