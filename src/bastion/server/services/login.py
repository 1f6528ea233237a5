"""Password sign-in, shared by the login page and the password grant."""

from __future__ import annotations

from datetime import UTC, datetime

from bastion.server.metrics import LOGIN_FAILURES
from bastion.server.models import User
from bastion.server.services import throttle
from bastion.server.services.errors import RateLimited, ServiceError
from bastion.server.services.passwords import Passwords
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage


class LoginFailed(ServiceError):
    """Wrong login or password; deliberately says no more than that."""

    def __init__(self) -> None:
        super().__init__("Incorrect username or password.")


class TooManyAttempts(RateLimited):
    def __init__(self, retry_after: int, locked: bool) -> None:
        what = "temporarily locked" if locked else "paused"
        super().__init__(f"Too many failed sign-ins: sign-in is {what}. "
                         f"Try again in {retry_after} seconds.", retry_after)


async def authenticate(
    storage: Storage, passwords: Passwords, settings: Settings,
    login: str, password: str, ip: str | None,
) -> User:
    now = datetime.now(UTC)
    # Counted per spelling typed (unknown accounts behave like real ones) and, for a real
    # account, per account: typing the username and then the email shares one count.
    keys = throttle.login_keys(settings, login, ip)
    names = [k for k, _ in keys]
    if 0 < len(login) <= 320:
        user, counts = await storage.get_login(login.strip(), names, throttle.ACCOUNT_KEY)
    else:
        user, counts = None, await storage.get_throttles(names)
    if user is not None:
        keys.append(throttle.account_key(settings, user.id))
    blocked = throttle.evaluate(counts, keys, now)
    if blocked:
        LOGIN_FAILURES.labels("throttled").inc()
        raise TooManyAttempts(blocked.retry_after, blocked.locked)
    usable = user is not None and user.deleted_at is None
    # Always run the hash, so a missing account costs the same time as a wrong password.
    ok = await passwords.averify(user.password_hash if user and usable else None, password)
    if not ok or user is None or not usable:
        await throttle.record(storage, keys, now)
        LOGIN_FAILURES.labels("bad_credentials").inc()
        raise LoginFailed()
    stale = [t.key for t in counts if not t.key.startswith("ip:")]
    if stale:  # a success forgets the account's failures (the IP's count stays)
        await throttle.clear(storage, stale)
    return user
