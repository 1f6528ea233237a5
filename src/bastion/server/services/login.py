"""Password sign-in, shared by the login page and the password grant."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bastion.server.metrics import LOGIN_FAILURES
from bastion.server.models import Throttle, User
from bastion.server.services import throttle
from bastion.server.services.errors import RateLimited, ServiceError
from bastion.server.services.passwords import Passwords
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage
from bastion.server.text import fold, plural

#: The audit actions of a failed sign-in; their target is the login tried (``tried``).
ATTEMPTS = ("login.failure", "login.throttled")


def tried(login: str) -> str:
    """A login as the audit trail names it: folded, as accounts are matched, so that
    erasing a user finds every attempt on their name however it was typed."""
    return fold(login.strip())[:200]


class LoginFailed(ServiceError):
    """Wrong login or password; deliberately says no more than that."""

    def __init__(self) -> None:
        super().__init__("Incorrect username or password.")


class TooManyAttempts(RateLimited):
    def __init__(self, blocked: throttle.Blocked) -> None:
        #: The count that refused the attempt (``first_refusal``).
        self.blocked = blocked
        what = "temporarily locked" if blocked.locked else "paused"
        # The budget of a client's back channel, shared by all its users.
        whose = " through this client" if blocked.key.startswith(throttle.CLIENT_KEY) else ""
        super().__init__(f"Too many failed sign-ins{whose}: sign-in is {what}. "
                         f"Try again in {plural(blocked.retry_after, 'second')}.",
                         blocked.retry_after)


def first_refusal(storage: Storage, refused: TooManyAttempts) -> bool:
    """Whether to audit ``refused`` as ``login.throttled``: the first refusal of its
    wait on this instance (``throttle.Gate.first_refusal``). Ask only where it is
    audited: asking spends it."""
    return throttle.gate(storage).first_refusal(refused.blocked, datetime.now(UTC))


async def authenticate(
    storage: Storage, passwords: Passwords, settings: Settings,
    login: str, password: str, ip: str | None, *, client_id: str | None = None,
    known: Callable[[str], bool] | None = None,
) -> User:
    """The user whose ``login`` (username or email) and ``password`` these are.

    ``client_id``: the confidential client whose server makes this call for one of its
    users (the password grant); its budget replaces the one of ``ip``, the app
    server's address, which all its users share.

    ``known``: whether this browser has signed in with an address (``pages.known_to``).
    Its attempts on that account have a count of their own, apart from the account's:
    a stranger's guesses cannot lock the account's owner out of their own browser."""
    # Counted per spelling typed (unknown accounts behave like real ones) and, for a real
    # account, per account: typing the username and then the email shares one count.
    keys = throttle.login_keys(settings, login, ip, client_id)
    names = [k for k, _ in keys]
    gate = throttle.gate(storage)
    async with gate.hold(keys):  # see throttle.Gate: within an instance, a burst waits its turn
        seen = gate.recorded
        if 0 < len(login) <= 320:
            user, counts = await storage.get_login(login.strip(), names, throttle.ACCOUNT_KEY)
        else:
            user, counts = None, await storage.get_throttles(names)
        account: throttle.Keys = []
        own = user is not None and known is not None and known(fold(user.email))
        if own:  # counted apart from the spelling's and the account's counts
            keys = [k for k in keys if not k[0].startswith(throttle.SPELLING_KEY)]
        if user is not None:
            key = throttle.known_account_key if own else throttle.account_key
            account = [key(settings, user.id)]
        keys = [*keys, *account]
        async with gate.hold(account):  # the account, whichever spelling was typed
            if own or gate.recorded != seen:  # (a failure recorded since the read may be
                counts = await storage.get_throttles([k for k, _ in keys])  # this account's)
            return await _decide(storage, passwords, keys, counts, user, password)


async def _decide(storage: Storage, passwords: Passwords, keys: throttle.Keys,
                  counts: list[Throttle], user: User | None, password: str) -> User:
    now = datetime.now(UTC)
    blocked = throttle.evaluate(counts, keys, now)
    if blocked:
        LOGIN_FAILURES.labels("throttled").inc()
        raise TooManyAttempts(blocked)
    usable = user is not None and user.deleted_at is None
    # Always run the hash, so a missing account costs the same time as a wrong password.
    ok = await passwords.averify(user.password_hash if user and usable else None, password)
    if not ok or user is None or not usable:
        await throttle.record(storage, keys, now)
        LOGIN_FAILURES.labels("bad_credentials").inc()
        raise LoginFailed()
    # A success forgets the account's failures (the IP's or client's count stays).
    stale = [t.key for t in counts if t.key.startswith((throttle.SPELLING_KEY,
                                                        throttle.ACCOUNT_KEY,
                                                        throttle.KNOWN_ACCOUNT_KEY))]
    if stale:
        await throttle.clear(storage, stale)
    return user
