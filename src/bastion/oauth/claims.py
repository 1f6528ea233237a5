"""Checks on the claims of a JWT access token, after its signature is verified.

RFC 9068 (JWT profile for access tokens) section 4: the ``typ`` header is
``at+jwt``; ``iss`` must be the expected issuer, ``aud`` must contain the
expected audience, ``exp`` must be in the future. RFC 7519 section 4.1 for
``nbf`` and ``iat``. A token that fails raises ``InvalidToken``; a valid token
that lacks a required scope raises ``InsufficientScope`` (RFC 6750 section 3.1).

The checks are plain comparisons in one function: verification is a hot path.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from .errors import InsufficientScope, InvalidToken

__all__ = ["ACCESS_TOKEN_TYPES", "LOGOUT_EVENT", "LOGOUT_TOKEN_TYPES",
           "check_access_token_claims", "check_access_token_type"]

#: ``typ`` values RFC 9068 section 2.1 allows, compared case-insensitively.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
#: A back-channel logout token's event and ``typ`` values (Back-Channel Logout 1.0
#: sections 2.4 and 4.1), shared by the server that signs and the SDK that checks.
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPES = frozenset({"logout+jwt", "application/logout+jwt"})


def check_access_token_type(header: Mapping[str, Any]) -> None:
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise InvalidToken("The token is not a JWT access token (typ).")


#: Beyond a float's exact integers no int is a time (and a huge one overflows).
_MAX_TIME = 2 ** 53


def timestamp(value: Any) -> float | None:
    """``value`` if it is a number a time claim can hold, else ``None``: not a bool (an
    int subclass: ``true`` is malformed, not 1), not NaN or an infinity (``json``
    reads them), not an int too large for a float."""
    if type(value) is int and -_MAX_TIME < value < _MAX_TIME:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None or (type(value) is int and -_MAX_TIME < value < _MAX_TIME):
        return value  # (the usual answer, without a call: this runs per token)
    found = timestamp(value)
    if found is None:
        raise InvalidToken(f"The token's {name} claim is not a number.")
    return found


def check_access_token_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: float = 0.0,
    scopes: Collection[str] = (),
) -> None:
    """Raise unless ``claims`` describe an access token valid for us right now."""
    if claims.get("iss") != issuer:
        raise InvalidToken("The token was issued by another issuer.")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise InvalidToken("The token is not meant for this audience.")
    exp = _number(claims, "exp")
    if exp is None:
        raise InvalidToken("The token has no exp claim.")
    if exp <= now - leeway:
        raise InvalidToken("The token has expired.")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise InvalidToken("The token is not valid yet.")
    iat = _number(claims, "iat")
    if iat is None:
        raise InvalidToken("The token has no iat claim.")
    if iat > now + leeway:
        raise InvalidToken("The token was issued in the future.")
    if scopes:
        granted = claims.get("scope")
        held = set(granted.split()) if isinstance(granted, str) else set()
        missing = [scope for scope in scopes if scope not in held]
        if missing:
            raise InsufficientScope(f"The token lacks scope: {' '.join(sorted(missing))}.")
