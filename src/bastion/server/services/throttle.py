"""Counting attempts per key in the database, so every instance sees the same counts.

Used for brute-force protection of password sign-in and for rate limits on emailed
links. A ``Policy`` says when attempts must wait (doubling from 1 s up to 60 s,
after ``delay_after``) and when the key is locked (``lock_after`` attempts locks it
for ``lock_seconds``). A count starts over an hour after its first attempt, so a
budget is per hour, and so does a count whose lock has ended: after a lock, the full
number of attempts is needed again. (A count kept until an hour without attempts would
never end for a key many people share: a busy app's steady trickle of typos would
lock all its users out.)

Sign-in keys are the login as typed (folded, ``text.fold``: unknown accounts are throttled
exactly like real ones, so the answer reveals nothing), the account itself for a real
account (``account_key``), and who is asking: the client IP (of IPv6, the /64) or, when
a confidential client's server calls for its users (password grant, ``POST
/oauth/passwordless``), that client, with a budget of its own (the app server's address
is every user's).

A ``Gate`` orders the attempts on a key within one instance, so that a burst of
concurrent attempts cannot all read the counts before any of them is recorded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType

from bastion.server.models import Throttle
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage
from bastion.server.text import fold

FORGET_AFTER = timedelta(hours=1)
ACCOUNT_KEY = "user:"  # + user id: the count shared by every spelling of one account
SPELLING_KEY = "acct:"  # + a login as typed, folded
KNOWN_ACCOUNT_KEY = "user-known:"  # + user id: sign-ins from browsers known to the account
CLIENT_KEY = "client:"  # + client id: a confidential client's back-channel sign-ins
KNOWN_KEY = "link-known:"  # + address: links asked for by browsers signed in with it
CHANGE_KEY = "link-change:"  # + address: email-change links to it, from any account
CHANGER_KEY = "link-changer:"  # + user id: email-change links an account asked for
#: Keys that count links to one address, whoever asked ("Too many ... for this address").
ADDRESS_KEYS = ("link:", KNOWN_KEY, CHANGE_KEY)
_MAX_DELAY = 60


@dataclass(frozen=True, slots=True)
class Policy:
    lock_after: int
    lock_seconds: int
    delay_after: int | None = None
    #: Attempts on this key one instance decides at once (see ``Gate``).
    in_flight: int = 1


def _shared(lock_after: int, lock_seconds: int, delay_after: int | None = None) -> Policy:
    """The policy of a key many people share (an IP, an app's server): a tenth of its
    budget may be in flight at once on each instance."""
    return Policy(lock_after, lock_seconds, delay_after, in_flight=max(1, lock_after // 10))


@dataclass(frozen=True, slots=True)
class Blocked:
    retry_after: int  # seconds
    locked: bool
    key: str  # the key that blocks (of several, the one with the longest wait)


Keys = Sequence[tuple[str, Policy]]
#: Blocking keys whose refusal an instance remembers having audited.
_MAX_REFUSALS = 10_000


_GLOBAL = ipaddress.IPv6Network("2000::/3")
#: IPv4 clients seen through a translator (RFC 6052, RFC 6145): one key per client.
_EMBEDDED_IPV4 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::ffff:0:0:0/96"))


def ip_key(ip: str) -> str:
    """An IPv4 address, or the /64 of a global IPv6 one: a single IPv6 subscriber (a
    home, a server) has a whole /64 to pick addresses from. An IPv4 address in IPv6
    dress is the IPv4 one; other IPv6 addresses (loopback, link-local, a local
    translator's prefix) are taken as they are."""
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if any(address in net for net in _EMBEDDED_IPV4):
        return str(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address in _GLOBAL:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _account_policy(settings: Settings) -> Policy:
    return Policy(settings.login_lock_after, settings.login_lock_seconds,
                  settings.login_delay_after)


def login_keys(settings: Settings, login: str, ip: str | None, client_id: str | None = None,
               ) -> list[tuple[str, Policy]]:
    """The keys of a sign-in known before its account is: the spelling, and the IP or,
    for a confidential client's back-channel call, the client (``client_id``)."""
    account = _account_policy(settings)
    keys = [(SPELLING_KEY + fold(login.strip())[:300], account)]
    if client_id is not None:  # no delays: they would pause every user of the app
        keys.append((CLIENT_KEY + client_id, _shared(settings.login_client_lock_after,
                                                     account.lock_seconds)))
    elif ip:
        keys.append(("ip:" + ip_key(ip), _shared(account.lock_after * 10, account.lock_seconds,
                                         settings.login_delay_after * 10)))
    return keys


def account_key(settings: Settings, user_id: str) -> tuple[str, Policy]:
    """The key of a real account, shared by every spelling of it."""
    return ACCOUNT_KEY + user_id, _account_policy(settings)


def known_account_key(settings: Settings, user_id: str) -> tuple[str, Policy]:
    """The key of a real account's sign-ins from browsers that have signed in with its
    address: their own count, so that strangers cannot lock them out."""
    return KNOWN_ACCOUNT_KEY + user_id, _account_policy(settings)


def keys_naming(user_id: str, names: Collection[str]) -> list[str]:
    """Every key that names an account: its id, and its logins and addresses as a
    sign-in or a link request spells them."""
    spelled = sorted({fold(name.strip())[:300] for name in names})
    return [ACCOUNT_KEY + user_id, KNOWN_ACCOUNT_KEY + user_id, CHANGER_KEY + user_id,
            *(prefix + n for n in spelled for prefix in (SPELLING_KEY, *ADDRESS_KEYS))]


def email_change_keys(settings: Settings, user_id: str, email: str, ip: str | None,
                      ) -> list[tuple[str, Policy]]:
    """The keys of an email-change link: the account asking, the new address (a count
    of its own: another account changing to it must not spend the owner's sign-in
    links), and the IP."""
    policy = Policy(settings.link_limit_per_email, 3600)
    keys = [(CHANGER_KEY + user_id, policy), (CHANGE_KEY + fold(email.strip())[:300], policy)]
    if ip:
        keys.append(("link-ip:" + ip_key(ip), _shared(settings.link_limit_per_ip, 3600)))
    return keys


def link_keys(settings: Settings, email: str, ip: str | None, client_id: str | None = None,
              known: bool = False) -> list[tuple[str, Policy]]:
    """The keys of a request for an emailed link: the address (its own count for the
    browsers ``known`` to have signed in with it), and the IP or, for a confidential
    client's back-channel call, the client (``client_id``)."""
    address = (KNOWN_KEY if known else "link:") + fold(email.strip())[:300]
    keys = [(address, Policy(settings.link_limit_per_email, 3600))]
    if client_id is not None:
        keys.append(("link-" + CLIENT_KEY + client_id,
                     _shared(settings.link_limit_per_client, 3600)))
    elif ip:
        keys.append(("link-ip:" + ip_key(ip), _shared(settings.link_limit_per_ip, 3600)))
    return keys


async def check(storage: Storage, keys: Keys, now: datetime) -> Blocked | None:
    """Whether an attempt may be made now; if not, how long to wait."""
    return evaluate(await storage.get_throttles([k for k, _ in keys]), keys, now)


def _over(t: Throttle, now: datetime) -> bool:
    """Whether a count no longer counts (``Storage.record_failure`` restarts it): its
    lock has ended, or it began over an hour ago."""
    if t.locked_until is not None:
        return t.locked_until <= now
    return now - t.first_failure_at > FORGET_AFTER


def evaluate(counts: list[Throttle], keys: Keys, now: datetime) -> Blocked | None:
    """``check`` on counts already read."""
    policies = dict(keys)
    worst: Blocked | None = None
    for t in counts:
        if _over(t, now):
            continue
        policy = policies[t.key]
        blocked: Blocked | None = None
        if t.locked_until is not None:
            blocked = Blocked(int((t.locked_until - now).total_seconds()) + 1, True, t.key)
        elif policy.delay_after is not None and t.failures >= policy.delay_after:
            wait = min(2 ** (t.failures - policy.delay_after), _MAX_DELAY)
            ready = t.last_failure_at + timedelta(seconds=wait)
            if ready > now:
                blocked = Blocked(int((ready - now).total_seconds()) + 1, False, t.key)
        if blocked and (worst is None or blocked.retry_after > worst.retry_after):
            worst = blocked
    return worst


async def record(storage: Storage, keys: Keys, now: datetime) -> None:
    """Count one attempt (a failed sign-in, a link sent) for every key."""
    for key, policy in keys:
        await storage.record_failure(key, now, policy.lock_after,
                                     now + timedelta(seconds=policy.lock_seconds),
                                     restart_before=now - FORGET_AFTER)
    gate(storage).recorded += 1


async def clear(storage: Storage, keys: list[str]) -> None:
    """Forget the counts of ``keys`` (one statement; nothing is written if none exist)."""
    await storage.clear_throttles(keys)


# -- attempts in flight on this instance ------------------------------------------


class Gate:
    """Orders the attempts on each key within one instance.

    An attempt is counted only once it has failed, after its password was checked
    (~20 ms of argon2): a burst whose attempts all read the counts before the first
    is recorded would all see them under the limit. So an attempt takes a place for
    each of its keys before it reads their counts, and keeps it until its failure is
    recorded. A key with ``in_flight`` 1 (a spelling, an account) is decided one
    attempt after another, each seeing the failures before it; a shared key (an IP,
    an app) lets ``in_flight`` through at once. Processes (instances, workers) do not
    wait for one another, so a burst spread over n gets at most ``lock_after + n * in_flight - 1``
    attempts on a key past the counts: ``lock_after + n - 1`` on an account.

    Why not count each attempt in the database before checking it: that is a write on
    every sign-in, and a successful one with clean counts costs a single read besides
    the hash (``bench/login_bench.py``). The places are in memory and cost no I/O.

    Places must be taken in one order: a spelling, then the IP or client, then (once
    the read has found it) the account.
    """

    def __init__(self) -> None:
        self._places: dict[str, _Place] = {}
        #: Attempts recorded through this gate: a read older than a change is redone.
        self.recorded = 0
        self._refusals: dict[str, datetime] = {}  # blocking key -> end of its audited wait

    def first_refusal(self, blocked: Blocked, now: datetime) -> bool:
        """Whether ``blocked`` refuses its first attempt on this instance since its
        wait began. Only that one is audited: a refused attempt costs no hash, so the
        others would let anyone fill the audit log (each is counted in
        ``bastion_login_failures_total`` all the same)."""
        until = self._refusals.get(blocked.key)
        if until is not None and until > now:
            return False
        if len(self._refusals) >= _MAX_REFUSALS:  # forget the ended waits, else the oldest
            ended = [key for key, end in self._refusals.items() if end <= now]
            for key in ended or list(self._refusals)[:_MAX_REFUSALS // 10]:
                del self._refusals[key]
        self._refusals[blocked.key] = now + timedelta(seconds=blocked.retry_after)
        return True

    def hold(self, keys: Keys) -> _Held:
        """``async with gate.hold(keys):`` a place for each key, in the order given."""
        return _Held(self, keys)

    async def _take(self, key: str, width: int) -> None:
        place = self._places.get(key)
        if place is None:
            place = self._places[key] = _Place(asyncio.Semaphore(width))
        place.users += 1
        try:
            await place.free.acquire()
        except BaseException:  # cancelled while waiting
            self._leave(key, place)
            raise

    def _give(self, key: str) -> None:
        place = self._places[key]
        place.free.release()
        self._leave(key, place)

    def _leave(self, key: str, place: _Place) -> None:
        place.users -= 1
        if not place.users:  # nobody holds or waits: forget the key
            del self._places[key]


@dataclass(slots=True)
class _Place:
    free: asyncio.Semaphore
    users: int = 0  # holding or waiting


@dataclass(slots=True)
class _Held:
    gate: Gate
    keys: Keys
    taken: list[str] = field(default_factory=list)

    async def __aenter__(self) -> None:
        try:
            for key, policy in self.keys:
                await self.gate._take(key, policy.in_flight)
                self.taken.append(key)
        except BaseException:
            self._release()
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._release()

    def _release(self) -> None:
        while self.taken:
            self.gate._give(self.taken.pop())


# One gate per storage, that is per running server: in-process apps sharing a database
# in tests are separate instances, as two processes would be.
_GATES: weakref.WeakKeyDictionary[Storage, Gate] = weakref.WeakKeyDictionary()


def gate(storage: Storage) -> Gate:
    """The gate of the instance that uses ``storage``."""
    found = _GATES.get(storage)
    if found is None:
        found = _GATES[storage] = Gate()
    return found
