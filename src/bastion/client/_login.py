"""The I/O-free flows for the other ways of signing in and for a user's tokens.

- the password grant (RFC 6749 section 4.3, for first-party apps only);
- userinfo (OIDC Core 5.3) and the claims of a new sign-in, RP-initiated logout
  URL (OIDC RP-Initiated Logout 1.0 section 2), and Bastion's "revoke all sessions"
  REST call;
- ``validate_token_set``'s first half: is the access token still good?

The authorization code flow is in ``_authorization``. Each function takes the
shared core and returns a flow, like ``BaseClient``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Collection
from typing import Any

from bastion.oauth.claims import ACCESS_TOKEN_TYPES
from bastion.oauth.errors import InvalidToken
from bastion.oauth.jose import JoseError, parse_compact

from ._admin import api_flow, authorization, segment
from ._arguments import expect, scope_text
from ._authorization import with_query
from ._base import BaseClient, Flow, subject_of
from ._discovery import JSON_HEADERS
from ._responses import json_object
from .exceptions import BastionError, ConfigurationError, ProtocolError
from .tokens import TokenCheck, TokenSet

__all__ = [
    "logout_url_flow",
    "password_flow",
    "revoke_all_flow",
    "signed_in_claims_flow",
    "token_check_flow",
    "userinfo_flow",
]

#: Bastion's REST paths (not OAuth endpoints, so not in discovery).
_SESSIONS_SELF = "/users/me/sessions"
_SESSIONS_OF = "/users/{}/sessions"


# -- password grant ------------------------------------------------------------------


def password_flow(
    core: BaseClient,
    username: str,
    password: str,
    scope: str | Collection[str] | None = None,
    organization: str | None = None,
) -> Flow[TokenSet]:
    """RFC 6749 section 4.3: only for first-party clients the provider allows it.
    ``organization`` (Bastion) asks for the user's roles in it in the token."""
    data = {"grant_type": "password", "username": username, "password": password}
    if text := scope_text(scope):
        data["scope"] = text
    if organization:
        data["organization"] = organization
    tokens = yield from core.token_flow(data, "login_password")
    return (yield from core.id_token_flow(tokens, None))


# -- user endpoints -----------------------------------------------------------------


def _bearer(token: str | TokenSet) -> dict[str, str]:
    refusal = "an access token (str or TokenSet) is required"
    return {**JSON_HEADERS, "Authorization": authorization(token, refusal)}


def userinfo_flow(core: BaseClient, access_token: str | TokenSet) -> Flow[dict[str, Any]]:
    """OIDC Core 5.3: the claims about the signed-in user (needs scope ``openid``)."""
    metadata = yield from core.metadata_flow()
    url = core.endpoint(metadata, "userinfo_endpoint")
    response = yield core.request("GET", url, headers=_bearer(access_token))
    core.raise_for_response(response)
    claims = json_object(response.content)
    if not isinstance(claims.get("sub"), str):
        raise ProtocolError("The userinfo response has no subject (sub).")
    known = access_token.id_token_claims if isinstance(access_token, TokenSet) else None
    if known is not None and claims["sub"] != known.get("sub"):  # Core 5.3.2
        raise _AnotherSubject("The userinfo subject differs from the ID token's.")
    return claims


class _AnotherSubject(ProtocolError):
    """Userinfo answered about another user than the ID token names (OIDC Core
    5.3.2): a ``ProtocolError`` to callers; ``signed_in_claims_flow`` tells it apart."""


def _against_the_tokens(error: BastionError) -> bool:
    """Whether a userinfo failure says the tokens must not be used: the access token
    was refused (``InvalidToken``, any 401), or they are about someone else."""
    return isinstance(error, InvalidToken | _AnotherSubject) or error.status_code == 401


def signed_in_claims_flow(core: BaseClient, tokens: TokenSet) -> Flow[dict[str, Any]]:
    """The claims of the user a login just signed in (``User.from_authorization_code``):
    userinfo's, or, since the code is spent and the user cannot simply try again, its
    validated ID token's when userinfo fails for any reason that says nothing against
    the tokens (unreachable, 5xx, 429, 403, 404, an answer that is not JSON...).

    When neither will do (no ID token, or userinfo refused the token or answered
    about someone else), the tokens, which nobody will hold, are revoked before the
    error is raised: a live refresh token must not be left behind. One try each, no
    retries: a provider that just failed userinfo should not hold up the browser's
    callback for a second round of backoff."""
    try:
        return (yield from userinfo_flow(core, tokens))
    except BastionError as exc:
        if tokens.id_token_claims is not None and not _against_the_tokens(exc):
            return dict(tokens.id_token_claims)
        with contextlib.suppress(BastionError):  # best effort: what failed userinfo
            yield from core.revoke_flow(tokens, one_try=True)  # may fail this too
        raise


def logout_url_flow(
    core: BaseClient,
    id_token_hint: str | TokenSet | None = None,
    post_logout_redirect_uri: str | None = None,
    state: str | None = None,
) -> Flow[str]:
    """Where to send the browser to end the provider session (RP-Initiated Logout)."""
    expect(id_token_hint, str | TokenSet | None,
           "id_token_hint must be an ID token (str) or a TokenSet")
    metadata = yield from core.metadata_flow()
    url = core.endpoint(metadata, "end_session_endpoint")
    if isinstance(id_token_hint, TokenSet):
        id_token_hint = id_token_hint.id_token
    elif id_token_hint:  # it goes in a URL: no other token may
        _check_id_token_hint(id_token_hint)
    params = {
        name: value
        for name, value in (
            ("id_token_hint", id_token_hint),
            ("post_logout_redirect_uri", post_logout_redirect_uri),
            ("state", state),
            ("client_id", core.settings.client_id),
        )
        if value
    }
    return with_query(url, params) if params else url


def revoke_all_flow(
    core: BaseClient, access_token: str | TokenSet | None = None, *, user_id: str | None = None
) -> Flow[None]:
    """End every session of a user (Bastion's REST API).

    With ``access_token`` a user signs themselves out everywhere; with
    ``user_id`` this client does it as an administrator, using a client
    credentials token with scope ``bastion:admin``.
    """
    if (access_token is None) == (user_id is None):
        raise ConfigurationError("revoke_all takes either an access token or a user_id")
    user_id = getattr(user_id, "id", user_id)  # a User will do
    path = _SESSIONS_SELF if user_id is None else _SESSIONS_OF.format(segment(user_id, "user_id"))
    response = yield from api_flow(core, "DELETE", path, token=access_token, revokes_token=True)
    # A 401 to a resend says the first attempt revoked the token, unless it could have
    # expired meanwhile (a backoff, a Retry-After): then nothing proves the sessions ended.
    if response.status_code == 401 and access_token is not None and not _valid_until(
            access_token, core.clock() + core.settings.leeway):
        raise InvalidToken("The sessions may not have ended: an answer was lost, and the "
                           "access token may have expired before it was sent again. Sign "
                           "in again and retry.", status_code=401)
    subject = user_id if access_token is None else subject_of(access_token)
    if isinstance(subject, str):  # refreshes remembered for that user's sessions are revoked too
        core.forget_user(subject)


def _valid_until(token: str | TokenSet, moment: float) -> bool:
    """Whether ``token`` surely has not expired by ``moment`` (its ``exp``, unchecked)."""
    if isinstance(token, TokenSet) and token.expires_at is not None:
        return not token.expires_within(0, moment)
    try:
        exp = parse_compact(token.access_token if isinstance(token, TokenSet) else token
                            ).claims().get("exp")
    except JoseError:
        return False
    return isinstance(exp, int | float) and not isinstance(exp, bool) and exp > moment


# -- validate_token_set ---------------------------------------------------------------


def token_check_flow(
    core: BaseClient, access_token: str, refresh_token: str | None, introspect: bool
) -> Flow[TokenCheck]:
    """``valid`` or ``invalid`` for the access token alone; the shells refresh."""
    try:
        if introspect:
            claims = yield from core.introspect_flow(access_token, "access_token")
            if claims.get("active") is not True:
                raise InvalidToken("The access token is not active.")
        else:
            claims = yield from core.verify_flow(access_token)
    except InvalidToken as exc:
        return TokenCheck("invalid", error=exc)
    body: dict[str, Any] = {"access_token": access_token, "refresh_token": refresh_token}
    exp, scope = claims.get("exp"), claims.get("scope")
    if isinstance(exp, int | float) and not isinstance(exp, bool) and math.isfinite(exp):
        body["expires_in"] = max(0, int(exp - core.clock()))  # TokenSet drops absurd ones
    if isinstance(scope, str):
        body["scope"] = scope
    tokens = TokenSet.from_response(body, core.clock())
    return TokenCheck("valid", dataclasses.replace(tokens, client=core.owner), claims)


def _check_id_token_hint(token: str) -> None:
    """``ConfigurationError`` unless ``token`` looks like an ID token (unverified: the
    provider verifies it): a JWT with an audience and a subject, not typed as an
    access token. An access or refresh token would travel in the URL."""
    try:
        compact = parse_compact(token)
        claims = compact.claims()
    except JoseError:
        claims = {}
    else:
        typ = compact.header.get("typ")
        if isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_TYPES:
            raise ConfigurationError("id_token_hint must be an ID token, not an access token")
    if "aud" not in claims or "sub" not in claims:
        raise ConfigurationError("id_token_hint must be an ID token (a JWT with aud and sub), "
                                 "such as tokens.id_token")
