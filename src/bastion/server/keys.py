"""Signing keys: generated on first start, encrypted at rest, rotated without
breaking tokens already issued, and published before they sign.

Each use (access tokens, ID tokens) has an active key, which signs, and a next key,
which is in the JWKS but does not sign yet. A rotation retires the active key,
activates the next one and publishes a new next key. So a new key has been in the
JWKS since the previous rotation when its first token appears, and relying parties
that cache the JWKS (ours for 60 s, some for much longer) already know it.

Private keys are stored AES-256-GCM encrypted under a key derived (HKDF-SHA256)
from ``Settings.secret_key``; the ``kid`` is the associated data, so a ciphertext
cannot be moved to another key's row.

A new key takes the algorithm of the key it follows in its use (``successor_alg``),
not that of the settings where it is made: ``bastion keys rotate`` may run on a host
without ``BASTION_ACCESS_TOKEN_ALG``. Only the servers' setting changes it, at their
start (``replace_stale_next``).

A retired key stays in the JWKS until every token it can have signed has expired:
``retired_at + cache_ttl`` (the longest another instance may still sign with it)
``+ max(token lifetimes)``. Housekeeping deletes it after that
(``services.housekeeping.KEEP_EXPIRED``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.oauth.jose import PrivateKey, PublicKey
from bastion.server.models import KeyUse, SigningKey
from bastion.server.services.errors import NotFound
from bastion.server.settings import MIN_SECRET_KEY_LENGTH, SHORT_SECRET_KEY, Settings
from bastion.server.storage.base import Storage

log = logging.getLogger("bastion.keys")
_VERSION = b"\x01"
USES: tuple[KeyUse, ...] = ("access", "id")
#: Seconds an instance keeps its keys before reading them again (or ``cache_ttl``, if
#: shorter): a withdrawn key stops signing and verifying everywhere within it. A
#: read of a few rows a second costs nothing a token would notice.
RELOAD_EVERY = 1.0
#: Keys read up to this long past their reload are still used while a read runs.
RELOAD_GRACE = 0.25
#: The longest a running server signs with keys no longer stored so (plus the read).
RELOAD_BOUND = RELOAD_EVERY + RELOAD_GRACE
JWKS_MAX_AGE = 60  # seconds a relying party may cache the JWKS (its Cache-Control)
#: A token naming an unknown key waits for a read of the keys begun after it arrived
#: (a key made a moment ago elsewhere), but such reads start at most this often.
UNKNOWN_KID_EVERY = 0.1


class KeyDecryptionError(RuntimeError):
    """A private key cannot be decrypted: the secret key differs from the one used."""


def aead_for(secret_key: bytes, purpose: bytes) -> AESGCM:
    """AES-GCM under a key derived from ``BASTION_SECRET_KEY``, one per ``purpose``."""
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
                  .derive(secret_key))


class KeyCipher:
    def __init__(self, secret_key: bytes) -> None:
        self._aead = aead_for(secret_key, b"bastion signing keys v1")

    def encrypt(self, kid: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, kid.encode())

    def decrypt(self, kid: str, blob: bytes) -> bytes:
        if blob[:1] != _VERSION:
            raise KeyDecryptionError(f"key {kid}: unknown format")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], kid.encode())
        except InvalidTag:
            raise KeyDecryptionError(
                f"key {kid} cannot be decrypted: is BASTION_SECRET_KEY the one it was created with?"
            ) from None


def new_signing_key(settings: Settings, cipher: KeyCipher, use: KeyUse,
                    alg: str | None = None) -> SigningKey:
    """A new key of ``use``, of ``alg`` or else of the setting's algorithm (which only
    the servers' own choices should take: see ``successor_alg``)."""
    alg = alg or configured_alg(settings, use)
    kid = f"{use}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
    key = PrivateKey.generate(kid, alg)
    return SigningKey(
        kid=kid,
        alg=alg,
        use=use,
        private_key_enc=cipher.encrypt(kid, key.to_pem()),
        public_jwk=key.public_jwk(),
        created_at=datetime.now(UTC),
    )


def configured_alg(settings: Settings, use: KeyUse) -> str:
    return settings.access_token_alg if use == "access" else settings.id_token_alg


def successor_alg(keys: list[SigningKey], use: KeyUse, settings: Settings) -> str:
    """The algorithm of a new key of ``use``: that of the key it follows, the use's
    next key or else the one that signs, so that a rotation or a withdrawal from a host
    whose settings differ from the servers' (a cron job without
    ``BASTION_ACCESS_TOKEN_ALG``) keeps the algorithm the servers publish. The
    setting's for a use with no key yet."""
    live = [k for k in keys if k.use == use and k.retired_at is None]
    newest = sorted(live, key=lambda k: k.activated_at is None)  # the next key last
    return newest[-1].alg if newest else configured_alg(settings, use)


async def rotate(
    storage: Storage, settings: Settings, uses: tuple[KeyUse, ...] = USES, *,
    algorithms: Mapping[KeyUse, str] | None = None,
) -> list[str]:
    """Activate the next key of each use and publish a new next key, of the algorithm
    of the key it follows unless ``algorithms`` names another; returns the kids that
    now sign."""
    cipher = KeyCipher(settings.secret_key_bytes())
    keys = await storage.signing_keys()
    check_secret_key(settings, cipher, keys)
    chosen = algorithms or {}
    kids = [await storage.rotate_signing_key(new_signing_key(
                settings, cipher, use, chosen.get(use) or successor_alg(keys, use, settings)))
            for use in uses]
    await publish_next(storage, settings)
    return kids


async def withdraw(storage: Storage, settings: Settings, kid: str, *,
                   alg: str | None = None) -> list[str]:
    """Take a key out of service at once (its private key leaked): it leaves the JWKS,
    and every token it signed stops verifying. The key that signs is first replaced by
    its use's next key; a next key by a new one, of the algorithm of the key it
    follows unless ``alg`` names another. Returns the kids that sign after."""
    keys = await storage.signing_keys()
    key = next((k for k in keys if k.kid == kid), None)
    if key is None:
        raise NotFound("signing key", kid)
    cipher = KeyCipher(settings.secret_key_bytes())
    check_secret_key(settings, cipher, keys)
    new = new_signing_key(settings, cipher, key.use,
                          alg or successor_alg(keys, key.use, settings))
    if not await storage.withdraw_signing_key(kid, new):
        raise NotFound("signing key", kid)  # withdrawn meanwhile
    return sorted(k.kid for k in await storage.signing_keys() if signs(k))


def check_secret_key(settings: Settings, cipher: KeyCipher, keys: list[SigningKey]) -> None:
    """Refuse to store keys under a secret the servers do not share: ``cipher`` must
    open the keys that sign and those waiting their turn (a CLI run without
    BASTION_SECRET_KEY would have generated a development key, and the servers would
    have stopped signing). A store's first keys need a secret key of 32 characters or
    more; one that holds keys already keeps working with its shorter one."""
    live = [k for k in keys if k.retired_at is None]
    if not keys and len(settings.secret_key_bytes()) < MIN_SECRET_KEY_LENGTH:
        raise KeyDecryptionError(SHORT_SECRET_KEY)
    for key in sorted(live, key=lambda k: k.activated_at is None):  # the signing ones first
        try:
            cipher.decrypt(key.kid, key.private_key_enc)
        except KeyDecryptionError:
            if signs(key) or all(not signs(k) for k in live):
                raise
            raise KeyDecryptionError(
                f"the next key {key.kid} was stored under another secret key, while the "
                "keys that sign open with this one: delete its row from the signing_keys "
                "table and rotate again") from None


async def check_signing(storage: Storage, settings: Settings) -> None:
    """Refuse a secret key that cannot open a key that signs: ``bastion serve`` stops
    with one line rather than start a server that issues no tokens. (A running server
    keeps going instead, see ``KeyRing.reload``.)"""
    _, failed = KeyRing(storage, settings).open_signers(await storage.signing_keys())
    if failed:
        raise KeyDecryptionError("; ".join(failed))


async def replace_stale_next(storage: Storage, settings: Settings) -> list[str]:
    """Replace each next key whose algorithm is no longer the setting's (the setting
    changed since it was published), so that the next rotation brings the new
    algorithm, not the one after; returns the new kids."""
    keys = await storage.signing_keys()
    cipher = KeyCipher(settings.secret_key_bytes())
    kids = []
    for key in keys:
        wanted = configured_alg(settings, key.use)
        if key.activated_at is None and key.retired_at is None and key.alg != wanted:
            check_secret_key(settings, cipher, keys)
            new = new_signing_key(settings, cipher, key.use)
            if await storage.replace_next_signing_key(key.kid, new):  # (else: no longer next)
                log.info("next %s key %s (%s) replaced by %s (%s)", key.use, key.kid, key.alg,
                         new.kid, new.alg)
                kids.append(new.kid)
    return kids


async def publish_next(storage: Storage, settings: Settings) -> list[str]:
    """Publish a next key for each use that has none (a first start, a store from
    before keys were published ahead), of the algorithm of the key that signs; returns
    their kids."""
    keys = await storage.signing_keys()
    waiting = {k.use for k in keys if k.activated_at is None and k.retired_at is None}
    cipher = KeyCipher(settings.secret_key_bytes())
    check_secret_key(settings, cipher, keys)
    kids = []
    for use in USES:
        if use not in waiting:
            key = new_signing_key(settings, cipher, use, successor_alg(keys, use, settings))
            if await storage.publish_signing_key(key):
                kids.append(key.kid)
    return kids


def signs(key: SigningKey) -> bool:
    return key.retired_at is None and key.activated_at is not None


def published(keys: list[SigningKey], settings: Settings, now: datetime) -> list[SigningKey]:
    """The keys whose tokens may still be valid somewhere."""
    grace = timedelta(
        seconds=settings.cache_ttl + max(settings.access_token_ttl, settings.id_token_ttl) + 60
    )
    return [k for k in keys if k.retired_at is None or k.retired_at + grace > now]


@dataclass
class _Active:
    signers: dict[KeyUse, PrivateKey]
    verifiers: dict[str, PublicKey]
    algorithms: dict[KeyUse, tuple[str, ...]]  # of the published keys, by use
    loaded_at: float  # when the read of the keys began (monotonic)


class KeyRing:
    """The active signing keys of this instance, reloaded every ``RELOAD_EVERY``
    seconds (or ``cache_ttl``, if shorter).

    Keys read more recently than that are handed out at once, with no await. Up to
    ``RELOAD_GRACE`` later, a caller begins a read (or finds one under way) and goes
    on with them: under traffic a request never waits for the keys. A caller that
    finds them older still (the first after an idle spell) waits for a read, never
    using the old ones (they may name a key withdrawn since, or one retired and no
    longer published). The callers that find them so together share one read; if it
    fails (the database does not answer), each of them gets its error and the next
    caller reads again."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self._storage = storage
        self._settings = settings
        self._cipher = KeyCipher(settings.secret_key_bytes())
        self._active: _Active | None = None
        self._decrypted: dict[str, PrivateKey] = {}
        self._verifying: dict[str, PublicKey] = {}
        self._reading: tuple[asyncio.AbstractEventLoop, asyncio.Task[None]] | None = None
        self._unknown_kid: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        #: Which active keys the last reload could not decrypt (``/readyz`` says so).
        self.reload_error: str | None = None

    async def ensure(self) -> None:
        """Create the missing keys (first start), then load."""
        keys = await self._storage.signing_keys()
        active = {k.use for k in keys if signs(k)}
        missing = tuple(u for u in USES if u not in active)
        if missing:
            await rotate(self._storage, self._settings, missing)
        elif len({k.use for k in keys if k.activated_at is None}) < len(USES):
            await publish_next(self._storage, self._settings)
        await replace_stale_next(self._storage, self._settings)
        await self.reload()

    async def reload(self) -> None:
        began = time.monotonic()
        keys = await self._storage.signing_keys()
        if self._active is not None and self._active.loaded_at > began:
            return  # a read begun after this one is in already: keep the newer keys
        shown = published(keys, self._settings, datetime.now(UTC))
        signers, failed = self.open_signers(keys)
        before = self._active.signers if self._active is not None else {}
        kept = {k.kid for k in shown}
        for use, signer in before.items():  # keep signing while its tokens verify
            if use not in signers and signer.kid in kept:
                signers[use] = signer
        # Verifying needs no private key: a key we cannot decrypt still verifies.
        verifiers = {k.kid: self._public(k) for k in shown}
        stored = {k.kid for k in keys}  # forget withdrawn and purged keys, private parts too
        self._decrypted = {kid: k for kid, k in self._decrypted.items() if kid in stored}
        self._verifying = {kid: k for kid, k in self._verifying.items() if kid in stored}
        algorithms: dict[KeyUse, tuple[str, ...]] = {}
        for key in shown:
            if key.alg not in algorithms.get(key.use, ()):
                algorithms[key.use] = (*algorithms.get(key.use, ()), key.alg)
        self._active = _Active(signers, verifiers, algorithms, began)
        if failed and self.reload_error is None:
            log.error("signing keys not loaded: %s", "; ".join(failed))
        self.reload_error = "; ".join(failed) or None

    def open_signers(self, keys: list[SigningKey]) -> tuple[dict[KeyUse, PrivateKey], list[str]]:
        """The keys that sign, by use, and why any of them cannot be opened (stored
        under another secret key)."""
        signers: dict[KeyUse, PrivateKey] = {}
        failed = []
        for key in keys:
            if signs(key):
                try:
                    signers[key.use] = self._private(key)
                except KeyDecryptionError as exc:
                    failed.append(str(exc))
        return signers, failed

    async def _fresh(self) -> _Active:
        active = self._active
        if active is not None:
            age = time.monotonic() - active.loaded_at
            due = min(self._settings.cache_ttl, RELOAD_EVERY)
            if age < due:
                return active  # the hot path: no await
            # (cache_ttl 0: no cache, so no grace either)
            if age < due + (RELOAD_GRACE if due else 0.0):  # read again, not waited for
                self._reading_task()  # (else every request during a read waits for it)
                return active
        await asyncio.shield(self._reading_task())  # after an idle spell: not the old keys
        active = self._active
        assert active is not None  # set by reload
        return active

    def _reading_task(self) -> asyncio.Task[None]:
        """The read of the keys under way, or a new one. It runs as a task of its own,
        so a caller cancelled meanwhile (a client gone) does not cancel it for the
        others; one per event loop, as ``_unknown_kid_lock``."""
        loop = asyncio.get_running_loop()
        if self._reading is None or self._reading[0] is not loop or self._reading[1].done():
            task = loop.create_task(self.reload())
            task.add_done_callback(_retrieve)
            self._reading = (loop, task)
        return self._reading[1]

    async def verifiers(self, kid: str | None = None) -> dict[str, PublicKey]:
        """Public keys of every published key, by kid. An unknown ``kid`` waits for a
        read of the keys begun after it arrived, so a key made elsewhere a moment ago
        (two rotations in a row) is found; those reads start at most every
        ``UNKNOWN_KID_EVERY`` seconds, and one serves every token that came before it,
        so made-up kids cannot turn each request into a read."""
        active = await self._fresh()
        if kid is None or kid in active.verifiers:
            return active.verifiers
        arrived = time.monotonic()
        async with self._unknown_kid_lock():
            active = await self._fresh()
            if active.loaded_at < arrived:
                wait = active.loaded_at + UNKNOWN_KID_EVERY - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.reload()
        return (await self._fresh()).verifiers

    def _unknown_kid_lock(self) -> asyncio.Lock:
        # One per event loop: a lock waited on in one loop cannot be in another (a
        # ring used by successive ``asyncio.run`` calls, as the CLI's are).
        loop = asyncio.get_running_loop()
        if self._unknown_kid is None or self._unknown_kid[0] is not loop:
            self._unknown_kid = (loop, asyncio.Lock())
        return self._unknown_kid[1]

    async def algorithms(self, use: KeyUse) -> tuple[str, ...]:
        """The algorithms of the published keys of ``use``: those its tokens may be
        signed with (a key's own algorithm is checked with its signature)."""
        return (await self._fresh()).algorithms.get(use, ())

    def _public(self, key: SigningKey) -> PublicKey:
        cached = self._verifying.get(key.kid)
        if cached is None:
            cached = self._verifying[key.kid] = PublicKey.from_jwk(key.public_jwk)
        return cached

    def _private(self, key: SigningKey) -> PrivateKey:
        cached = self._decrypted.get(key.kid)
        if cached is None:
            pem = self._cipher.decrypt(key.kid, key.private_key_enc)
            cached = self._decrypted[key.kid] = PrivateKey.from_pem(key.kid, key.alg, pem)
        return cached

    def loaded(self) -> bool:
        """Whether both signing keys are in memory (for the readiness check)."""
        return self._active is not None and all(u in self._active.signers for u in USES)

    async def signer(self, use: KeyUse) -> PrivateKey:
        active = await self._fresh()
        signer = active.signers.get(use)
        if signer is None:  # a first start, or keys deleted meanwhile
            await self.ensure()
            signer = self._active.signers.get(use) if self._active is not None else None
            if signer is None:  # stored, but under another secret key
                raise KeyDecryptionError(self.reload_error or f"no {use} signing key")
        return signer

    async def jwks(self) -> dict[str, Any]:
        """The public keys to publish; read from the database on every call so a
        rotation done anywhere is published at once."""
        keys = published(await self._storage.signing_keys(), self._settings, datetime.now(UTC))
        return {"keys": [k.public_jwk for k in keys]}


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # marked retrieved: its callers may all have been cancelled
