"""HMAC signatures for values the browser carries (session and CSRF cookies).

The key is derived from ``secret_key`` (HKDF, its own ``info``), so it is the same
on every instance and different from the key that encrypts signing keys.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.oauth.jose import b64url_encode


class Signer:
    def __init__(self, secret_key: bytes) -> None:
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion cookies v1"
        ).derive(secret_key)

    def mac(self, purpose: str, value: str) -> str:
        message = f"{purpose}\x00{value}".encode()
        return b64url_encode(hmac.new(self._key, message, hashlib.sha256).digest())

    def sign(self, purpose: str, value: str) -> str:
        return f"{value}.{self.mac(purpose, value)}"

    def unsign(self, purpose: str, signed: str | None) -> str | None:
        """The value if ``signed`` carries a valid MAC for ``purpose``, else None."""
        if not signed or "." not in signed or len(signed) > 512:
            return None
        value, _, mac = signed.rpartition(".")
        return value if self.matches(purpose, value, mac) else None

    def matches(self, purpose: str, value: str, mac: str) -> bool:
        return hmac.compare_digest(mac.encode(), self.mac(purpose, value).encode())
