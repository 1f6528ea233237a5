"""PKCE with S256 only (RFC 7636; RFC 9700 section 2.1.1: ``plain`` is refused).

https://www.rfc-editor.org/rfc/rfc7636
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from bastion.oauth.jose import b64url_encode

METHOD = "S256"
# RFC 7636 section 4.1: 43 to 128 characters of [A-Za-z0-9-._~].
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# An S256 challenge is the base64url of a SHA-256 digest: exactly 43 characters.
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def new_verifier() -> str:
    return secrets.token_urlsafe(48)  # 64 characters, 384 bits


def challenge(verifier: str) -> str:
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def is_valid_verifier(verifier: str) -> bool:
    return bool(_VERIFIER.fullmatch(verifier))


def is_valid_challenge(value: str) -> bool:
    return bool(_CHALLENGE.fullmatch(value))


def verify(verifier: str, expected_challenge: str) -> bool:
    """Constant-time check of ``verifier`` against a stored S256 challenge."""
    if not is_valid_verifier(verifier):
        return False
    return hmac.compare_digest(challenge(verifier), expected_challenge)
