"""A small JWS layer over ``cryptography``: sign and verify compact JWTs.

Key import and export (JWK) go through PyJWT; the hot paths (signing an access
token on the server, verifying one in the SDK) call ``cryptography`` directly on
key objects parsed once, so a token costs one signature operation plus a little
base64 and JSON.

Security rules (RFC 8725, RFC 9700 section 2.6): algorithms are allow-listed,
``none`` and HMAC are never accepted, the algorithm must match the key's type,
``jku``/``x5u``/``jwk`` headers are ignored, and oversized tokens are refused
before any parsing.

RFC 7515 (JWS): https://www.rfc-editor.org/rfc/rfc7515
RFC 7518 (JWA): https://www.rfc-editor.org/rfc/rfc7518
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = [
    "ALGORITHMS",
    "JoseError",
    "PrivateKey",
    "PublicKey",
    "b64url_decode",
    "b64url_encode",
    "check_crit",
    "generate_private_key",
    "parse_compact",
]

Algorithm = Literal["ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA"]

#: Every algorithm this module signs or verifies. No ``none``, no HMAC.
ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA")

#: Tokens longer than this are refused before they are parsed.
MAX_TOKEN_LENGTH = 16 * 1024

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "ES256": hashes.SHA256(),
    "ES384": hashes.SHA384(),
    "RS256": hashes.SHA256(),
    "RS384": hashes.SHA384(),
    "RS512": hashes.SHA512(),
    "PS256": hashes.SHA256(),
}
_EC_CURVES = {"ES256": ("P-256", 32), "ES384": ("P-384", 48)}
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)

_AnyPrivate = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_AnyPublic = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class JoseError(ValueError):
    """A token or key that cannot be used; the message says why, without the token."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


#: The hash of each algorithm's signature; Ed25519 (EdDSA) hashes with SHA-512, as the
#: OpenID Connect working group settled for ``at_hash`` (openid/connect issue 1125).
_TOKEN_HASHES = {"ES256": hashlib.sha256, "ES384": hashlib.sha384, "RS256": hashlib.sha256,
                 "RS384": hashlib.sha384, "RS512": hashlib.sha512, "PS256": hashlib.sha256,
                 "EdDSA": hashlib.sha512}


def token_hash(token: str, alg: str) -> str:
    """``at_hash`` or ``c_hash`` (OpenID Connect Core 3.1.3.6): the base64url of the
    left half of the hash that ``alg`` signs with."""
    digest = _TOKEN_HASHES.get(alg, hashlib.sha256)(token.encode("ascii")).digest()
    return b64url_encode(digest[: len(digest) // 2])


#: A canonical unpadded base64url segment (RFC 7515 section 2): only the URL-safe
#: alphabet, no padding, and never a length that leaves a stray character.
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")


def b64url_decode(data: str | bytes) -> bytes:
    """Strict: anything but the canonical unpadded form is refused, so one value has
    one spelling (a signature cannot be rewritten into another that still verifies)."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if len(raw) % 4 == 1 or not _SEGMENT.fullmatch(raw):
        raise JoseError("malformed base64url")
    try:
        decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JoseError("malformed base64url") from exc
    if raw and base64.urlsafe_b64encode(decoded).rstrip(b"=") != raw:
        raise JoseError("malformed base64url")  # non-zero padding bits
    return decoded


def _alg_matches_key(alg: str, key: _AnyPublic) -> bool:
    if alg in _EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == {
            "ES256": "secp256r1",
            "ES384": "secp384r1",
        }[alg]
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey)
    return False


@dataclass(frozen=True, slots=True)
class Compact:
    """A compact JWS split into its parts; nothing verified yet."""

    header: dict[str, Any]
    signing_input: bytes
    payload_b64: bytes
    signature: bytes

    def claims(self) -> dict[str, Any]:
        return _json_object(self.payload_b64, "payload")


def _json_object(part: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(part))
    # RecursionError: deeply nested arrays fit well inside the size limit.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise JoseError(f"malformed {what}") from exc
    if not isinstance(value, dict):
        raise JoseError(f"{what} is not a JSON object")
    return value


def parse_compact(token: str | bytes, max_length: int = MAX_TOKEN_LENGTH) -> Compact:
    """Split a compact JWS, refusing oversized or malformed input early."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else token
    if len(raw) > max_length:
        raise JoseError("token too large")
    if raw.count(b".") != 2:
        raise JoseError("not a compact JWS")
    header_b64, payload_b64, sig_b64 = raw.split(b".")
    header = _json_object(header_b64, "header")
    return Compact(header, raw[: len(header_b64) + 1 + len(payload_b64)], payload_b64,
                   b64url_decode(sig_b64))


@dataclass(slots=True)
class PublicKey:
    """A verification key parsed once from its JWK (``kid`` empty if it has none)."""

    kid: str
    alg: str
    key: _AnyPublic
    jwk: dict[str, Any] = field(repr=False)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        kty, alg, kid = jwk.get("kty"), jwk.get("alg"), jwk.get("kid", "")
        if not isinstance(kid, str):
            raise JoseError("JWK with a kid that is not a string")
        try:
            key: Any
            if kty == "EC":
                key = ECAlgorithm.from_jwk(dict(jwk))
                alg = alg or ("ES384" if jwk.get("crv") == "P-384" else "ES256")
            elif kty == "RSA":
                key = RSAAlgorithm.from_jwk(dict(jwk))
                alg = alg or "RS256"
            elif kty == "OKP":
                key = OKPAlgorithm.from_jwk(dict(jwk))
                alg = alg or "EdDSA"
            else:
                raise JoseError(f"unsupported key type {kty!r}")
        except JoseError:
            raise
        except Exception as exc:  # PyJWT raises several types for bad JWKs
            raise JoseError("malformed JWK") from exc
        if hasattr(key, "public_key") and not isinstance(key, _AnyPublic):
            key = key.public_key()
        if not isinstance(alg, str) or alg not in ALGORITHMS or not _alg_matches_key(alg, key):
            raise JoseError(f"algorithm {alg!r} not allowed for this key")
        public_jwk = {k: v for k, v in jwk.items() if k not in {"d", "p", "q", "dp", "dq", "qi"}}
        return cls(kid=kid, alg=alg, key=key, jwk=public_jwk)

    def verify(self, signing_input: bytes, signature: bytes, alg: str) -> bool:
        """True when ``signature`` is valid; the algorithm must be this key's."""
        if alg != self.alg:
            return False
        key = self.key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                size = _EC_CURVES[alg][1]
                if len(signature) != 2 * size:
                    return False
                der = encode_dss_signature(
                    int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                )
                key.verify(der, signing_input, ec.ECDSA(_HASHES[alg]))
            elif isinstance(key, rsa.RSAPublicKey):
                pad: padding.AsymmetricPadding = (
                    padding.PSS(padding.MGF1(_HASHES[alg]), padding.PSS.DIGEST_LENGTH)
                    if alg.startswith("PS")
                    else padding.PKCS1v15()
                )
                key.verify(signature, signing_input, pad, _HASHES[alg])
            else:
                key.verify(signature, signing_input)
        except InvalidSignature:
            return False
        return True


def generate_private_key(alg: str) -> _AnyPrivate:
    if alg in _EC_CURVES:
        return ec.generate_private_key(ec.SECP256R1() if alg == "ES256" else ec.SECP384R1())
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise JoseError(f"unsupported algorithm {alg!r}")


class PrivateKey:
    """A signing key with its ``kid``; the JWS header is built once."""

    __slots__ = ("_headers", "alg", "key", "kid")

    def __init__(self, kid: str, alg: str, key: _AnyPrivate) -> None:
        if alg not in ALGORITHMS or not _alg_matches_key(alg, key.public_key()):
            raise JoseError(f"algorithm {alg!r} not allowed for this key")
        self.kid, self.alg, self.key = kid, alg, key
        self._headers: dict[str | None, bytes] = {}

    def __repr__(self) -> str:
        return f"PrivateKey(kid={self.kid!r}, alg={self.alg!r})"

    @classmethod
    def generate(cls, kid: str, alg: str) -> PrivateKey:
        return cls(kid, alg, generate_private_key(alg))

    @classmethod
    def from_pem(cls, kid: str, alg: str, pem: bytes) -> PrivateKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, _AnyPrivate):
            raise JoseError("unsupported private key type")
        return cls(kid, alg, key)

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_jwk(self) -> dict[str, Any]:
        public = self.key.public_key()
        jwk: dict[str, Any]
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        jwk.pop("key_ops", None)  # RFC 7517 4.3: "use" and "key_ops" should not be mixed
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk

    def public(self) -> PublicKey:
        return PublicKey.from_jwk(self.public_jwk())

    def _header(self, typ: str | None) -> bytes:
        encoded = self._headers.get(typ)
        if encoded is None:
            header = {"alg": self.alg, "kid": self.kid}
            if typ:
                header["typ"] = typ
            encoded = b64url_encode(_JSON.encode(header).encode()).encode("ascii")
            self._headers[typ] = encoded
        return encoded

    def sign(self, claims: Mapping[str, Any], typ: str | None = "JWT") -> str:
        """A compact JWS of ``claims``."""
        signing_input = (
            self._header(typ) + b"." + b64url_encode(_JSON.encode(claims).encode()).encode("ascii")
        )
        return (signing_input + b"." + self._signature(signing_input)).decode("ascii")

    def _signature(self, signing_input: bytes) -> bytes:
        key, alg = self.key, self.alg
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(_HASHES[alg])))
            size = _EC_CURVES[alg][1]
            raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        elif isinstance(key, rsa.RSAPrivateKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(_HASHES[alg]), padding.PSS.DIGEST_LENGTH)
                if alg.startswith("PS")
                else padding.PKCS1v15()
            )
            raw = key.sign(signing_input, pad, _HASHES[alg])
        else:
            raw = key.sign(signing_input)
        return b64url_encode(raw).encode("ascii")


def check_crit(header: Mapping[str, Any]) -> None:
    """RFC 7515 section 4.1.11: a token whose ``crit`` names extensions must be
    refused by whoever does not understand them, and we understand none."""
    if "crit" in header:
        raise JoseError("unsupported critical header parameters (crit)")


def verify_signature(
    compact: Compact, keys: Mapping[str, PublicKey], algorithms: Iterable[str]
) -> PublicKey:
    """Check ``compact``'s signature against the key its ``kid`` names.

    Raises ``JoseError`` for a disallowed algorithm, a ``crit`` header, an unknown
    ``kid`` (see ``UnknownKey``) or a bad signature.
    """
    check_crit(compact.header)
    alg, kid = compact.header.get("alg"), compact.header.get("kid")
    if not isinstance(alg, str) or alg not in ALGORITHMS or alg not in algorithms:
        raise JoseError("algorithm not allowed")
    if kid is not None and not isinstance(kid, str):
        raise JoseError("kid is not a string")
    key = find_key(keys, kid, alg)
    if key is None:
        raise UnknownKey("unknown kid")
    if not key.verify(compact.signing_input, compact.signature, alg):
        raise JoseError("bad signature")
    return key


def find_key(keys: Mapping[str, PublicKey], kid: str | None, alg: str) -> PublicKey | None:
    """The key ``kid`` names. A token without ``kid`` is verified with the one key
    for its algorithm: OIDC Core 10.1 lets a provider with one key leave it out."""
    if kid is not None:
        return keys.get(kid)
    found = [key for key in keys.values() if key.alg == alg]
    return found[0] if len(found) == 1 else None


class UnknownKey(JoseError):
    """The token names a key the key set does not hold (refetch the JWKS)."""
