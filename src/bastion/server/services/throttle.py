"""Counting attempts per key in the database, so every instance sees the same counts.

Used for brute-force protection of password sign-in and for rate limits on emailed
links. A ``Policy`` says when attempts must wait (doubling from 1 s up to 60 s,
after ``delay_after``) and when the key is locked (``lock_after`` attempts locks it
for ``lock_seconds``). Counts older than an hour start over.

Sign-in keys are the login as typed (lower-cased: unknown accounts are throttled
exactly like real ones, so the answer reveals nothing), the client IP and, for a real
account, the account itself (``account_key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.server.models import Throttle
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage

_FORGET_AFTER = timedelta(hours=1)
ACCOUNT_KEY = "user:"  # + user id: the count shared by every spelling of one account
_MAX_DELAY = 60


@dataclass(frozen=True, slots=True)
class Policy:
    lock_after: int
    lock_seconds: int
    delay_after: int | None = None


@dataclass(frozen=True, slots=True)
class Blocked:
    retry_after: int  # seconds
    locked: bool


Keys = Sequence[tuple[str, Policy]]


def _account_policy(settings: Settings) -> Policy:
    return Policy(settings.login_lock_after, settings.login_lock_seconds,
                  settings.login_delay_after)


def login_keys(settings: Settings, login: str, ip: str | None) -> list[tuple[str, Policy]]:
    """The keys of a sign-in known before its account is: the spelling and the IP."""
    account = _account_policy(settings)
    keys = [("acct:" + login.strip().lower()[:300], account)]
    if ip:
        keys.append(("ip:" + ip, Policy(account.lock_after * 10, account.lock_seconds,
                                        settings.login_delay_after * 10)))
    return keys


def account_key(settings: Settings, user_id: str) -> tuple[str, Policy]:
    """The key of a real account, shared by every spelling of it."""
    return ACCOUNT_KEY + user_id, _account_policy(settings)


def link_keys(settings: Settings, email: str, ip: str | None) -> list[tuple[str, Policy]]:
    keys = [("link:" + email.strip().lower()[:300], Policy(settings.link_limit_per_email, 3600))]
    if ip:
        keys.append(("link-ip:" + ip, Policy(settings.link_limit_per_ip, 3600)))
    return keys


async def check(storage: Storage, keys: Keys, now: datetime) -> Blocked | None:
    """Whether an attempt may be made now; if not, how long to wait."""
    return evaluate(await storage.get_throttles([k for k, _ in keys]), keys, now)


def evaluate(counts: list[Throttle], keys: Keys, now: datetime) -> Blocked | None:
    """``check`` on counts already read."""
    policies = dict(keys)
    worst: Blocked | None = None
    for t in counts:
        if now - t.last_failure_at > _FORGET_AFTER and not (t.locked_until and
                                                           t.locked_until > now):
            continue
        policy = policies[t.key]
        blocked: Blocked | None = None
        if t.locked_until and t.locked_until > now:
            blocked = Blocked(int((t.locked_until - now).total_seconds()) + 1, locked=True)
        elif policy.delay_after is not None and t.failures >= policy.delay_after:
            wait = min(2 ** (t.failures - policy.delay_after), _MAX_DELAY)
            ready = t.last_failure_at + timedelta(seconds=wait)
            if ready > now:
                blocked = Blocked(int((ready - now).total_seconds()) + 1, locked=False)
        if blocked and (worst is None or blocked.retry_after > worst.retry_after):
            worst = blocked
    return worst


async def record(storage: Storage, keys: Keys, now: datetime) -> None:
    """Count one attempt (a failed sign-in, a link sent) for every key."""
    stale = {t.key for t in await storage.get_throttles([k for k, _ in keys])
             if now - t.last_failure_at > _FORGET_AFTER}
    for key, policy in keys:
        if key in stale:
            await storage.clear_throttle(key)
        await storage.record_failure(key, now, policy.lock_after,
                                     now + timedelta(seconds=policy.lock_seconds))


async def clear(storage: Storage, keys: list[str]) -> None:
    """Forget the counts of ``keys`` (one statement; nothing is written if none exist)."""
    await storage.clear_throttles(keys)
