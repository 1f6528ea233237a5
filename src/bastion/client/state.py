"""The self-contained OAuth ``state``: sealed (encrypted and authenticated), so any
worker holding the connection's ``state_key`` can finish a login it did not start.

A sealed state is ``v1.`` followed by the base64url of a 12-byte random nonce and
an AES-256-GCM ciphertext (tag included). The AES key is derived from
``state_key`` with HKDF-SHA256, so the same ``state_key`` is never used raw.
HKDF does not stretch a weak key: a guess costs a microsecond, and a sealed state
is enough to test guesses offline. So ``state_key`` must itself be random, at
least 32 bytes (the settings refuse a shorter one). The version prefix is bound
as associated data. The plaintext is compact JSON carrying the PKCE
verifier, the OIDC nonce, the issuer, client and redirect URI, the expiry, the
``max_age`` sent if any, and a random ``id`` for replay detection.

Anything wrong (bad prefix or base64, a flipped bit anywhere, another key,
missing fields, expiry) raises ``InvalidStateError`` with a short reason and
never the state itself.

RFC 6749 section 10.12 (CSRF), RFC 9700 section 4.7 (state and PKCE).
"""

from __future__ import annotations

import binascii
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.oauth.jose import b64url_decode, b64url_encode

from ._callbacks import not_awaitable
from .exceptions import InvalidStateError

__all__ = ["AuthorizationState", "MemoryReplayStore", "ReplayStore", "claimed", "seal", "unseal"]

_VERSION = "v1"
_INFO = b"bastion oauth state v1"
_NONCE_SIZE = 12
#: A sealed state longer than this is refused before decoding.
MAX_STATE_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class AuthorizationState:
    """What one authorization request needs to be finished later, anywhere."""

    id: str
    issuer: str
    client_id: str
    redirect_uri: str
    code_verifier: str
    expires_at: float
    issued_at: float
    nonce: str | None = None
    #: ``openid`` was requested, so the token response must carry an ID token.
    openid: bool = False
    #: The ``max_age`` sent: the ID token's ``auth_time`` must be at most this old.
    max_age: int | None = None

    def __repr__(self) -> str:  # never show the verifier or nonce
        return (
            f"AuthorizationState(id={self.id!r}, issuer={self.issuer!r}, "
            f"client_id={self.client_id!r}, expires_at={self.expires_at!r})"
        )

    @classmethod
    def new(
        cls,
        *,
        issuer: str,
        client_id: str,
        redirect_uri: str,
        code_verifier: str,
        now: float,
        expiration: float,
        nonce: str | None,
        openid: bool,
        max_age: int | None = None,
    ) -> AuthorizationState:
        return cls(
            id=secrets.token_urlsafe(16),
            issuer=issuer,
            client_id=client_id,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
            expires_at=now + expiration,
            issued_at=now,
            nonce=nonce,
            openid=openid,
            max_age=max_age,
        )


def derive_key(state_key: str) -> bytes:
    """The 256-bit AES key for ``state_key`` (HKDF-SHA256, fixed context).

    Its strength is the strength of ``state_key``; ``Settings`` checks the length.
    """
    if not state_key:
        raise InvalidStateError("No state_key is configured.")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return hkdf.derive(state_key.encode("utf-8"))


def seal(state: AuthorizationState, key: bytes) -> str:
    """The sealed text of ``state``, safe to put in a URL."""
    nonce = os.urandom(_NONCE_SIZE)
    plaintext = json.dumps(asdict(state), separators=(",", ":")).encode("utf-8")
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, _VERSION.encode("ascii"))
    return f"{_VERSION}.{b64url_encode(nonce + ciphertext)}"


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise InvalidStateError("The state is malformed.")
    return value


def unseal(text: object, key: bytes, now: float) -> AuthorizationState:
    """Open a sealed state and check its expiry; ``InvalidStateError`` otherwise."""
    if not isinstance(text, str) or not text or len(text) > MAX_STATE_LENGTH:
        raise InvalidStateError("The state is missing or malformed.")
    version, dot, body = text.partition(".")
    if version != _VERSION or not dot:
        raise InvalidStateError("The state is malformed.")
    try:
        raw = b64url_decode(body)
        if b64url_encode(raw) != body:  # one canonical spelling only
            raise ValueError("non-canonical base64url")
        if len(raw) <= _NONCE_SIZE + 16:
            raise ValueError("too short")
        plaintext = AESGCM(key).decrypt(
            raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], _VERSION.encode("ascii")
        )
        data = json.loads(plaintext)
    except InvalidTag:
        raise InvalidStateError("The state was tampered with or sealed with another key.") from None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidStateError("The state is malformed.") from None
    if not isinstance(data, dict):
        raise InvalidStateError("The state is malformed.")
    nonce = data.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise InvalidStateError("The state is malformed.")
    max_age = data.get("max_age")  # absent from states sealed before it existed
    if max_age is not None:
        max_age = _field(data, "max_age", int)
    state = AuthorizationState(
        id=_field(data, "id", str),
        issuer=_field(data, "issuer", str),
        client_id=_field(data, "client_id", str),
        redirect_uri=_field(data, "redirect_uri", str),
        code_verifier=_field(data, "code_verifier", str),
        expires_at=float(_field(data, "expires_at", (int, float))),
        issued_at=float(_field(data, "issued_at", (int, float))),
        nonce=nonce,
        openid=_field(data, "openid", bool),
        max_age=max_age,
    )
    if state.expires_at <= now:
        raise InvalidStateError("The state has expired: start the login again.")
    return state


class ReplayStore(Protocol):
    """Remembers which states were used, so each finishes one login only.

    ``claim`` returns ``True`` the first time it sees ``state_id`` and ``False``
    after; it may forget an id once ``expires_at`` (epoch seconds) has passed,
    since an expired state is refused anyway. Share one store between workers
    (a database or cache) to detect replays across processes.
    """

    def claim(self, state_id: str, expires_at: float) -> bool: ...


def claimed(store: ReplayStore, state_id: str, expires_at: float) -> bool:
    """``store.claim(...)``, taken for its truth (a Redis ``SET NX`` answers ``True`` or
    ``None``, a SQL insert its row count). Not an awaitable: the coroutine of an
    ``async def claim`` is always true, and would let every replay through."""
    answer = not_awaitable(store.claim(state_id, expires_at), "replay_store.claim",
                           "give a store whose claim is a plain call")
    return bool(answer)


class MemoryReplayStore:
    """A ``ReplayStore`` for one process: a dict, pruned of expired ids."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, state_id: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._seen) > 1024:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if state_id in self._seen and self._seen[state_id] > now:
                return False
            self._seen[state_id] = expires_at
            return True
