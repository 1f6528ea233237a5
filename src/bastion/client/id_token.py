"""Validation of OpenID Connect ID tokens (Core 1.0 section 3.1.3.7), without I/O.

After the signature is checked with the provider's JWKS (``alg`` allow-listed,
key chosen by ``kid``): ``iss`` is the issuer, ``aud`` contains our client id
(and ``azp`` is us when there are several audiences), ``exp`` is in the future
and ``iat`` not in the future (with leeway), ``nonce`` equals the one we sent
(when we sent one), ``auth_time`` is at most ``max_age`` old (when we sent one,
Core 3.1.3.7 item 13), and ``at_hash``, when present, is the left half of the
hash of the access token.

https://openid.net/specs/openid-connect-core-1_0.html#IDTokenValidation
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from typing import Any

from bastion.oauth.claims import timestamp
from bastion.oauth.errors import InvalidToken
from bastion.oauth.jose import (
    JoseError,
    PublicKey,
    UnknownKey,
    parse_compact,
    token_hash,
    verify_signature,
)

__all__ = ["at_hash", "check_id_token_claims", "verify_id_token_signature"]

at_hash = token_hash  # Core 3.1.3.6, shared with the server


def verify_id_token_signature(
    token: str, keys: Mapping[str, PublicKey], algorithms: Collection[str]
) -> tuple[str, dict[str, Any]]:
    """``(alg, claims)`` once the signature checks out.

    Raises ``UnknownKey`` for a ``kid`` not in ``keys`` (refetch the JWKS) and
    ``InvalidToken`` for anything else.
    """
    try:
        compact = parse_compact(token)
        key = verify_signature(compact, keys, algorithms)
        return key.alg, compact.claims()
    except UnknownKey:
        raise
    except JoseError:
        raise InvalidToken("The ID token is malformed or its signature is invalid.") from None


def number_claim(claims: Mapping[str, Any], name: str, what: str = "The ID token") -> float:
    value = timestamp(claims.get(name))
    if value is None:
        raise InvalidToken(f"{what} has no numeric {name} claim.")
    return float(value)


def check_audience(claims: Mapping[str, Any], client_id: str,
                   what: str = "The ID token") -> None:
    """``aud`` contains ``client_id``, and ``azp`` is it when there are several
    audiences or an ``azp`` at all (Core 3.1.3.7)."""
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise InvalidToken(f"{what} is not meant for this client.")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise InvalidToken(f"{what}'s authorized party is another client.")


def check_id_token_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    now: float,
    leeway: float,
    nonce: str | None,
    access_token: str | None = None,
    alg: str = "RS256",
    max_age: int | None = None,
) -> None:
    """Raise ``InvalidToken`` unless ``claims`` are a valid ID token for us now."""
    if claims.get("iss") != issuer:
        raise InvalidToken("The ID token was issued by another issuer.")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidToken("The ID token has no subject.")
    check_audience(claims, client_id)
    if number_claim(claims, "exp") <= now - leeway:
        raise InvalidToken("The ID token has expired.")
    if number_claim(claims, "iat") > now + leeway:
        raise InvalidToken("The ID token was issued in the future.")
    if nonce is not None:
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, nonce):
            raise InvalidToken("The ID token's nonce does not match the login request.")
    # Core 3.1.2.1: with max_age the provider MUST send auth_time.
    if max_age is not None and number_claim(claims, "auth_time") < now - max_age - leeway:
        raise InvalidToken("The user signed in longer ago than the login's max_age allows.")
    expected_hash = claims.get("at_hash")
    if expected_hash is None or access_token is None:
        return
    if not isinstance(expected_hash, str) or not hmac.compare_digest(
        expected_hash, at_hash(access_token, alg)
    ):
        raise InvalidToken("The ID token's at_hash does not match the access token.")
