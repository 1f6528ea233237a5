"""Validation of back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0
section 2.6), without I/O.

Bastion POSTs a logout token to a client's ``backchannel_logout_uri`` when a
session the client holds tokens from ends: the user signed out, was signed out
everywhere, changed their password, or was deleted. The app ends its own sessions
of ``sub`` (or the one tied to ``sid``).

Checks: the signature (``alg`` allow-listed, key by ``kid``); ``typ`` is
``logout+jwt``, so no other JWT of the provider passes for one (required: the spec
only recommends it, and Bastion always sends it); ``iss``, ``aud`` (and ``azp``, as
for ID tokens), ``iat`` and ``exp``; the backchannel-logout event; ``sub`` or ``sid``; no ``nonce``
(an ID token never passes); a ``jti``, refused the second time when the app gives
a replay store.

https://openid.net/specs/openid-connect-backchannel-1_0.html#Validation
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.oauth.claims import LOGOUT_EVENT, LOGOUT_TOKEN_TYPES
from bastion.oauth.errors import InvalidToken
from bastion.oauth.jose import JoseError, PublicKey, UnknownKey, parse_compact, verify_signature

from .id_token import check_audience, number_claim

__all__ = ["LogoutToken", "check_logout_token_claims", "verify_logout_token_signature"]

EVENT = LOGOUT_EVENT
_WHAT = "The logout token"


@dataclass(frozen=True, slots=True)
class LogoutToken:
    """A valid logout token: end the app's sessions of ``sub``, or, when ``sid`` is
    set, the one the ID token with that ``sid`` started."""

    sub: str | None
    sid: str | None
    jti: str
    issued_at: float
    claims: Mapping[str, Any] = field(repr=False)


def verify_logout_token_signature(
    token: str, keys: Mapping[str, PublicKey], algorithms: Collection[str]
) -> dict[str, Any]:
    """The claims once the type and signature check out. Raises ``UnknownKey`` for a
    ``kid`` not in ``keys`` (refetch the JWKS) and ``InvalidToken`` otherwise."""
    if not isinstance(token, str):
        raise InvalidToken("The logout token is malformed.")
    try:
        compact = parse_compact(token)
        typ = compact.header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in LOGOUT_TOKEN_TYPES:
            raise InvalidToken("The token is not a logout token (typ logout+jwt).")
        verify_signature(compact, keys, algorithms)
        return compact.claims()
    except UnknownKey:
        raise
    except JoseError:
        raise InvalidToken("The logout token is malformed or its signature is invalid.") from None


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"The logout token's {name} claim is not a string.")
    return value


def check_logout_token_claims(
    claims: Mapping[str, Any], *, issuer: str, client_id: str, now: float, leeway: float
) -> LogoutToken:
    """The ``LogoutToken``, or ``InvalidToken`` naming what is wrong."""
    if claims.get("iss") != issuer:
        raise InvalidToken("The logout token was issued by another issuer.")
    check_audience(claims, client_id, _WHAT)  # as for ID tokens
    issued_at = number_claim(claims, "iat", _WHAT)
    if issued_at > now + leeway:
        raise InvalidToken("The logout token was issued in the future.")
    if number_claim(claims, "exp", _WHAT) <= now - leeway:
        raise InvalidToken("The logout token has expired.")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
        raise InvalidToken("The logout token has no backchannel-logout event.")
    if "nonce" in claims:
        raise InvalidToken("A logout token must not have a nonce (is it an ID token?).")
    sub, sid = _text(claims, "sub"), _text(claims, "sid")
    if sub is None and sid is None:
        raise InvalidToken("The logout token names neither a user (sub) nor a session (sid).")
    jti = _text(claims, "jti")
    if jti is None:
        raise InvalidToken("The logout token has no jti.")
    return LogoutToken(sub=sub, sid=sid, jti=jti, issued_at=issued_at, claims=claims)
