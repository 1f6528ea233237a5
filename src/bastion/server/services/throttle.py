"""Brute-force protection for password sign-in (login form and password grant).

Counters live in the database, so every instance sees the same ones. Keys are the
login as typed (lower-cased; unknown accounts are throttled exactly like real ones,
so the answer reveals nothing) and the client IP. After ``login_delay_after``
failures each attempt must wait, doubling from 1 s up to 60 s; at
``login_lock_after`` failures the key is locked for ``login_lock_seconds``.
A success clears the account's counter; counters older than an hour start over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.server.settings import Settings
from bastion.server.storage.base import Storage

_FORGET_AFTER = timedelta(hours=1)
_MAX_DELAY = 60


@dataclass(frozen=True, slots=True)
class Blocked:
    retry_after: int  # seconds
    locked: bool


def keys(login: str, ip: str | None) -> list[str]:
    out = ["acct:" + login.strip().lower()[:300]]
    if ip:
        out.append("ip:" + ip)
    return out


def _limits(key: str, settings: Settings) -> tuple[int, int]:
    factor = 10 if key.startswith("ip:") else 1
    return settings.login_delay_after * factor, settings.login_lock_after * factor


async def check(storage: Storage, settings: Settings, login: str, ip: str | None,
                now: datetime) -> Blocked | None:
    """Whether an attempt may be made now; if not, how long to wait."""
    worst: Blocked | None = None
    for t in await storage.get_throttles(keys(login, ip)):
        if now - t.last_failure_at > _FORGET_AFTER:
            continue
        delay_after, _ = _limits(t.key, settings)
        blocked: Blocked | None = None
        if t.locked_until and t.locked_until > now:
            blocked = Blocked(int((t.locked_until - now).total_seconds()) + 1, locked=True)
        elif t.failures >= delay_after:
            wait = min(2 ** (t.failures - delay_after), _MAX_DELAY)
            ready = t.last_failure_at + timedelta(seconds=wait)
            if ready > now:
                blocked = Blocked(int((ready - now).total_seconds()) + 1, locked=False)
        if blocked and (worst is None or blocked.retry_after > worst.retry_after):
            worst = blocked
    return worst


async def failed(storage: Storage, settings: Settings, login: str, ip: str | None,
                 now: datetime) -> None:
    lock_until = now + timedelta(seconds=settings.login_lock_seconds)
    stale = {t.key for t in await storage.get_throttles(keys(login, ip))
             if now - t.last_failure_at > _FORGET_AFTER}
    for key in keys(login, ip):
        if key in stale:
            await storage.clear_throttle(key)
        _, lock_after = _limits(key, settings)
        await storage.record_failure(key, now, lock_after, lock_until)


async def succeeded(storage: Storage, login: str) -> None:
    await storage.clear_throttle(keys(login, None)[0])
