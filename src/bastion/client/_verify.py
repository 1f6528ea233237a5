"""Signature verification of compact JWS access tokens, kept lean on purpose.

``verify_token`` is called on every API request a resource server receives, so
this path avoids work a cache can do: a token's header (``alg``, ``kid``,
``typ``) repeats across tokens and is parsed and checked once per distinct
header; keys are parsed once per JWKS fetch. What remains per token is one
signature check, two base64 decodes and one JSON parse.

Checks, in order: size cap (before any parsing), three segments, header is a
JSON object with an allow-listed ``alg`` and ``typ`` at+jwt (RFC 9068 2.1), the
``kid`` is in the key set, the signature verifies with that key and ``alg``
(``PublicKey.verify`` refuses an ``alg`` that is not the key's own).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Collection
from typing import Any

from bastion.oauth.claims import check_access_token_type
from bastion.oauth.errors import InvalidToken
from bastion.oauth.jose import (
    MAX_TOKEN_LENGTH,
    JoseError,
    UnknownKey,
    b64url_decode,
    check_crit,
    find_key,
)

from .jwks import KeySet

__all__ = ["TokenVerifier"]

_URLSAFE = bytes.maketrans(b"-_", b"+/")
_DECODER = json.JSONDecoder()
#: Distinct headers remembered; a flood of odd headers just empties the cache.
_MAX_HEADERS = 64


def _b64(segment: bytes) -> bytes:
    return binascii.a2b_base64(segment.translate(_URLSAFE) + b"=" * (-len(segment) % 4))


def _json_object(segment: bytes) -> dict[str, Any]:
    try:
        text = _b64(segment).decode("utf-8")
        value, end = _DECODER.raw_decode(text)
        if end != len(text):  # trailing whitespace (or junk): let the full parser judge
            value = _DECODER.decode(text)
    # ValueError covers JSON and UTF-8 errors; RecursionError deeply nested arrays.
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidToken("The token is malformed.") from None
    if not isinstance(value, dict):
        raise InvalidToken("The token is malformed.")
    return value


class TokenVerifier:
    """Verifies signatures against a ``KeySet``; claims are checked by the caller."""

    __slots__ = ("_headers", "algorithms", "keys", "max_length")

    def __init__(
        self, keys: KeySet, algorithms: Collection[str], max_length: int = MAX_TOKEN_LENGTH
    ) -> None:
        self.keys = keys
        self.algorithms = frozenset(algorithms)
        self.max_length = max_length
        self._headers: dict[bytes, tuple[str, str | None]] = {}

    def _header(self, segment: bytes) -> tuple[str, str | None]:
        """``(alg, kid)`` of an acceptable header; raises ``InvalidToken`` otherwise."""
        cached = self._headers.get(segment)
        if cached is not None:
            return cached
        header = _json_object(segment)
        check_access_token_type(header)
        try:
            check_crit(header)
        except JoseError:
            raise InvalidToken("The token has critical header parameters (crit) not "
                               "understood.") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken("The token's algorithm is not allowed.")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("The token's key id (kid) is not a string.")
        if len(self._headers) >= _MAX_HEADERS:
            self._headers.clear()
        self._headers[segment] = (alg, kid)
        return alg, kid

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once its signature checks out.

        Raises ``UnknownKey`` when the ``kid`` is not in the key set (the caller
        may refetch the JWKS), ``InvalidToken`` for everything else.
        """
        if not isinstance(token, str) or len(token) > self.max_length:
            raise InvalidToken("The token is malformed or too large.")
        raw = token.encode("ascii", "replace")
        signing_input, _, signature = raw.rpartition(b".")
        header, _, payload = signing_input.partition(b".")
        if not payload or b"." in payload:
            raise InvalidToken("The token is malformed.")
        alg, kid = self._header(header)
        key = find_key(self.keys.keys, kid, alg)
        if key is None:
            raise UnknownKey("unknown kid")
        try:
            # Strict decoding: the signature segment is the only part the signature
            # does not cover, so a lenient decoder would let it be respelled.
            valid = key.verify(signing_input, b64url_decode(signature), alg)
        except JoseError:
            valid = False
        if not valid:
            raise InvalidToken("The token's signature is invalid.")
        return _json_object(payload)
