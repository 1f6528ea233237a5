"""Server-generated secrets: high-entropy, stored as SHA-256 digests, compared in
constant time. Checking one costs microseconds (DESIGN: "hashed secrets at rest")."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def matches(secret: str, stored_digest: bytes | None) -> bool:
    # Compare digests, not plain values: equal length, no early exit.
    expected = stored_digest if stored_digest is not None else b"\0" * 32
    return hmac.compare_digest(digest(secret), expected) and stored_digest is not None
