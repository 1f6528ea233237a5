"""The I/O-free flows for signing users in and managing their tokens.

- authorization code with PKCE (RFC 6749 section 4.1, RFC 7636, OAuth 2.1): a
  sealed ``state`` (see ``state``) carries everything the callback needs;
  the callback checks the state, ``iss`` (RFC 9207), replays, exchanges the
  code with the verifier and validates the ID token (OIDC Core 3.1.3.7);
- the password grant (RFC 6749 section 4.3, for first-party apps only);
- userinfo (OIDC Core 5.3), RP-initiated logout URL (OIDC RP-Initiated
  Logout 1.0 section 2), and Bastion's "revoke all sessions" REST call;
- ``validate_token_set``'s first half: is the access token still good?

Each function takes the shared core and returns a flow, like ``BaseClient``'s.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx2

from bastion.oauth import pkce
from bastion.oauth.errors import InvalidToken, error_class
from bastion.oauth.jose import UnknownKey

from ._admin import api_flow
from ._base import BaseClient, Flow, _scope_text
from ._responses import json_object
from .exceptions import ConfigurationError, InvalidStateError, ProtocolError
from .id_token import check_id_token_claims, verify_id_token_signature
from .state import AuthorizationState, ReplayStore, seal, unseal
from .tokens import TokenCheck, TokenSet

__all__ = [
    "authorization_request_flow",
    "callback_params",
    "finish_authorization_flow",
    "id_token_flow",
    "logout_url_flow",
    "password_flow",
    "revoke_all_flow",
    "start_authorization_flow",
    "token_check_flow",
    "userinfo_flow",
    "with_query",
]

_JSON_HEADERS = {"Accept": "application/json"}
#: Bastion's REST paths (not OAuth endpoints, so not in discovery).
_SESSIONS_SELF = "/users/me/sessions"
_SESSIONS_OF = "/users/{}/sessions"


def with_query(url: str, params: Mapping[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


# -- authorization code -----------------------------------------------------------


def authorization_request_flow(
    core: BaseClient,
    scope: str | Collection[str] | None = "openid",
    expiration: float = 600,
    nonce: str | None = None,
    *,
    redirect_uri: str | None = None,
    purpose: str = "start_authorization",
    extra: Mapping[str, str | None] | None = None,
) -> Flow[tuple[str, dict[str, str]]]:
    """``(state, params)`` of a new authorization request with PKCE: the sealed
    state, and the parameters to send (in the URL, or to the passwordless endpoint).

    ``extra`` are more parameters (``prompt``, ``login_hint``,
    ``organization``...), left out when empty.
    """
    settings = core.settings
    client_id = settings.require("client_id", purpose)
    redirect = redirect_uri or settings.require("redirect_uri", purpose)
    if not isinstance(expiration, int | float) or isinstance(expiration, bool) or expiration <= 0:
        raise ConfigurationError("expiration must be a positive number of seconds")
    key = core.state_key()
    metadata = yield from core.metadata_flow()
    scope_text = _scope_text(scope) or ""
    openid = "openid" in scope_text.split()
    if openid and nonce is None:
        nonce = secrets.token_urlsafe(32)
    verifier = pkce.new_verifier()
    state = AuthorizationState.new(
        issuer=metadata.issuer,
        client_id=client_id,
        redirect_uri=redirect,
        code_verifier=verifier,
        now=core.clock(),
        expiration=expiration,
        nonce=nonce,
        openid=openid,
    )
    sealed = seal(state, key)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect,
        "state": sealed,
        "code_challenge": pkce.challenge(verifier),
        "code_challenge_method": pkce.METHOD,
    }
    optional = {**(extra or {}), "scope": scope_text, "nonce": nonce}
    params.update({name: value for name, value in optional.items() if value})
    return sealed, params


def start_authorization_flow(
    core: BaseClient,
    scope: str | Collection[str] | None = "openid",
    expiration: float = 600,
    nonce: str | None = None,
    *,
    redirect_uri: str | None = None,
    **optional: str | None,
) -> Flow[tuple[str, str]]:
    """``(state, url)``: send the browser to ``url``, keep ``state`` if you like."""
    sealed, params = yield from authorization_request_flow(
        core, scope, expiration, nonce, redirect_uri=redirect_uri, extra=optional
    )
    metadata = yield from core.metadata_flow()
    return sealed, with_query(core.endpoint(metadata, "authorization_endpoint"), params)


def callback_params(callback: str | Mapping[str, str]) -> dict[str, str]:
    """The parameters of an authorization response: a callback URL or a mapping."""
    if isinstance(callback, str):
        query = urlsplit(callback).query if "?" in callback or "://" in callback else callback
        pairs = parse_qsl(query, keep_blank_values=True)
        names = [name for name, _ in pairs]
        if len(names) != len(set(names)):  # RFC 6749 3.1: no repeated parameters
            raise InvalidStateError("The callback repeats a parameter.")
        return dict(pairs)
    return {str(k): str(v) for k, v in callback.items()}


def open_state(
    core: BaseClient, callback_state: object, expected_state: str | None
) -> AuthorizationState:
    """The state of a callback, checked against this client; ``InvalidStateError``."""
    if expected_state is not None and (
        not isinstance(callback_state, str)
        or not hmac.compare_digest(callback_state.encode(), expected_state.encode())
    ):
        raise InvalidStateError("The state does not match the one this session started.")
    state = unseal(callback_state, core.state_key(), core.clock())
    settings = core.settings
    if core.metadata is not None and state.issuer != core.metadata.issuer:
        raise InvalidStateError("The state was issued for another provider.")
    if state.issuer.rstrip("/") != settings.issuer:
        raise InvalidStateError("The state was issued for another provider.")
    if state.client_id != settings.client_id:
        raise InvalidStateError("The state was issued for another client.")
    return state


def finish_authorization_flow(
    core: BaseClient,
    code: str | None,
    callback_state: object,
    expected_state: str | None = None,
    *,
    iss: str | None = None,
    error: Mapping[str, str] | None = None,
    replay_store: ReplayStore | None = None,
    whole_response: bool = False,
) -> Flow[TokenSet]:
    """Check the callback, exchange the code (with PKCE) and validate the ID token.

    ``iss`` is checked when given; with ``whole_response`` (the caller passed the
    whole callback) its absence is an error too if the provider says it sends it.
    """
    state = open_state(core, callback_state, expected_state)
    metadata = yield from core.metadata_flow()
    if state.issuer != metadata.issuer:
        raise InvalidStateError("The state was issued for another provider.")
    if iss is not None and iss != metadata.issuer:  # RFC 9207 section 2.4
        raise InvalidStateError("The callback comes from another issuer (iss).")
    sends_iss = metadata.raw.get("authorization_response_iss_parameter_supported") is True
    if iss is None and whole_response and sends_iss:
        raise InvalidStateError("The callback lacks the iss parameter its provider sends.")
    if replay_store is not None and not replay_store.claim(state.id, state.expires_at):
        raise InvalidStateError("The state was already used.")
    if error is not None and error.get("error"):
        code_name = error["error"]
        raise error_class(code_name)(error.get("error_description"), error=code_name)
    if not code:
        raise ProtocolError("The callback carries neither a code nor an error.")
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": state.redirect_uri,
        "code_verifier": state.code_verifier,
    }
    tokens = yield from core.token_flow(data, "finish_authorization")
    if tokens.id_token is not None:
        return (yield from id_token_flow(core, tokens, state.nonce))
    if state.openid:
        raise ProtocolError("The provider returned no ID token for an openid request.")
    return tokens


def id_token_flow(core: BaseClient, tokens: TokenSet, nonce: str | None) -> Flow[TokenSet]:
    """``tokens`` with ``id_token_claims`` once the ID token is validated."""
    token = tokens.id_token
    if token is None:
        return tokens
    metadata = yield from core.metadata_flow()
    algorithms = core.settings.algorithms
    if not core.keys.loaded:
        yield from core.jwks_flow()
    try:
        alg, claims = verify_id_token_signature(token, core.keys.keys, algorithms)
    except UnknownKey:
        if not core.keys.may_refetch(core.clock(), core.settings.jwks_refresh_interval):
            raise InvalidToken("The ID token is signed by an unknown key.") from None
        yield from core.jwks_flow()
        try:
            alg, claims = verify_id_token_signature(token, core.keys.keys, algorithms)
        except UnknownKey:
            raise InvalidToken("The ID token is signed by an unknown key.") from None
    check_id_token_claims(
        claims,
        issuer=metadata.issuer,
        client_id=core.settings.require("client_id", "ID token validation"),
        now=core.clock(),
        leeway=core.settings.leeway,
        nonce=nonce,
        access_token=tokens.access_token,
        alg=alg,
    )
    return dataclasses.replace(tokens, id_token_claims=claims)


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
    if text := _scope_text(scope):
        data["scope"] = text
    if organization:
        data["organization"] = organization
    tokens = yield from core.token_flow(data, "login_password")
    return (yield from id_token_flow(core, tokens, None))


# -- user endpoints -----------------------------------------------------------------


def _bearer(token: str | TokenSet) -> dict[str, str]:
    if isinstance(token, TokenSet):
        return {**_JSON_HEADERS, "Authorization": token.authorization}
    if not isinstance(token, str) or not token:
        raise ConfigurationError("an access token (str or TokenSet) is required")
    return {**_JSON_HEADERS, "Authorization": f"Bearer {token}"}


def userinfo_flow(core: BaseClient, access_token: str | TokenSet) -> Flow[dict[str, Any]]:
    """OIDC Core 5.3: the claims about the signed-in user (needs scope ``openid``)."""
    metadata = yield from core.metadata_flow()
    url = core.endpoint(metadata, "userinfo_endpoint")
    response = yield httpx2.Request("GET", url, headers=_bearer(access_token))
    core.raise_for_response(response)
    claims = json_object(response.content)
    if not isinstance(claims.get("sub"), str):
        raise ProtocolError("The userinfo response has no subject (sub).")
    known = access_token.id_token_claims if isinstance(access_token, TokenSet) else None
    if known is not None and claims["sub"] != known.get("sub"):  # Core 5.3.2
        raise ProtocolError("The userinfo subject differs from the ID token's.")
    return claims


def logout_url_flow(
    core: BaseClient,
    id_token_hint: str | TokenSet | None = None,
    post_logout_redirect_uri: str | None = None,
    state: str | None = None,
) -> Flow[str]:
    """Where to send the browser to end the provider session (RP-Initiated Logout)."""
    metadata = yield from core.metadata_flow()
    url = core.endpoint(metadata, "end_session_endpoint")
    if isinstance(id_token_hint, TokenSet):
        id_token_hint = id_token_hint.id_token
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
    path = _SESSIONS_SELF if user_id is None else _SESSIONS_OF.format(quote(user_id, safe=""))
    yield from api_flow(core, "DELETE", path, token=access_token)


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
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        body["expires_in"] = max(0, int(exp - core.clock()))
    if isinstance(scope, str):
        body["scope"] = scope
    tokens = TokenSet.from_response(body, core.clock())
    return TokenCheck("valid", dataclasses.replace(tokens, client=core.owner), claims)
