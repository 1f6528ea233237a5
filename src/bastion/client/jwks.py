"""The provider's signing keys (a JWKS, RFC 7517 section 5), parsed once and cached.

Keys are looked up by ``kid``. A token naming an unknown ``kid`` may trigger a
refetch (keys rotate), but at most once per ``refresh_interval`` counted from the
last attempt, failed or not: otherwise a stream of junk tokens would turn into a
stream of JWKS requests (see ``DiscoveryCore.keys_flow``).

A set is also fetched again once it is older than its ``max_age``, so a key the
provider has withdrawn (after a leak) stops verifying; if that fetch fails, the keys
at hand go on serving and the next try waits ``refresh_interval``, but only for
``max_stale`` more seconds: after that they are dropped, and a verification must
fetch them as at the start (and fails if it cannot). Otherwise whoever could keep an
app from reaching the provider would keep a withdrawn key trusted there for ever.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bastion.oauth.jose import JoseError, PublicKey

from .exceptions import ProtocolError

__all__ = ["KeySet"]


class KeySet:
    __slots__ = ("expires_at", "fetched_at", "keys", "loaded", "usable_until")

    def __init__(self) -> None:
        self.keys: dict[str, PublicKey] = {}
        #: When the JWKS was last requested (set before the request is sent).
        self.fetched_at: float | None = None
        #: A JWKS has been read (its keys may still be none).
        self.loaded = False
        #: When the keys read last must be fetched again before they are trusted (none
        #: read yet: at once).
        self.expires_at = 0.0
        #: When the keys read last are dropped if they could not be fetched again.
        self.usable_until = math.inf

    def __repr__(self) -> str:
        return f"KeySet(kids={sorted(self.keys)!r})"

    def may_refetch(self, now: float, interval: float) -> bool:
        return self.fetched_at is None or now - self.fetched_at >= interval

    def stale(self, now: float) -> bool:
        return now >= self.expires_at

    def drop_if_unusable(self, now: float) -> None:
        """Forget keys past ``max_stale`` (see the module's docstring)."""
        if self.loaded and now >= self.usable_until:
            self.keys, self.loaded = {}, False

    def load(self, document: Mapping[str, Any], now: float, max_age: float,
             max_stale: float | None = None) -> None:
        """Replace the keys with the signing keys of ``document``.

        Keys this SDK cannot use (encryption keys, unknown types) are skipped rather
        than failing the whole set: a provider may publish more. A key without
        ``kid`` is kept under a name of its own, for tokens without ``kid``.
        """
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise ProtocolError("The provider's JWKS has no 'keys' list.")
        keys: dict[str, PublicKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = PublicKey.from_jwk(entry)
            except JoseError:
                continue
            keys[key.kid or f"(key {len(keys)} without kid)"] = key
        self.keys = keys
        self.fetched_at = now
        self.expires_at = now + max_age
        self.usable_until = math.inf if max_stale is None else self.expires_at + max_stale
        self.loaded = True
