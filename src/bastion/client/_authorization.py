"""The I/O-free authorization code flow with PKCE (RFC 6749 section 4.1,
RFC 7636, OAuth 2.1).

A sealed ``state`` (see ``state``) carries everything the callback needs; the
callback checks the state, ``iss`` (RFC 9207), replays, exchanges the code with
the verifier and validates the ID token (OIDC Core 3.1.3.7, with
``BaseClient.id_token_flow``). The other ways to sign in and the token-set
flows are in ``_login``; emailed links in ``_passwordless``.

Each function takes the shared core and returns a flow, like ``BaseClient``'s.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
from collections.abc import Collection, Mapping
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit

from bastion.oauth import pkce
from bastion.oauth.errors import error_class

from ._arguments import expect, scope_text
from ._base import BaseClient, Flow
from .exceptions import ConfigurationError, InvalidStateError, ProtocolError
from .state import AuthorizationState, ReplayStore, claimed, seal, unseal
from .tokens import TokenSet

__all__ = [
    "Callback",
    "URLObject",
    "authorization_request_flow",
    "callback_params",
    "finish_authorization_flow",
    "finish_authorization_response_flow",
    "open_state",
    "start_authorization_flow",
    "with_query",
]


def with_query(url: str, params: Mapping[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


def authorization_request_flow(
    core: BaseClient,
    scope: str | Collection[str] | None = "openid",
    expiration: float = 600,
    nonce: str | None = None,
    *,
    redirect_uri: str | None = None,
    purpose: str = "start_authorization",
    extra: Mapping[str, str | None] | None = None,
    max_age: int | None = None,
) -> Flow[tuple[str, dict[str, str]]]:
    """``(state, params)`` of a new authorization request with PKCE: the sealed
    state, and the parameters to send (in the URL, or to the passwordless endpoint).

    ``extra`` are more parameters (``prompt``, ``login_hint``,
    ``organization``...), left out when empty. ``max_age`` goes into the state
    too, for the ID token's ``auth_time`` to be checked against it.
    """
    settings = core.settings
    client_id = settings.require("client_id", purpose)
    redirect = redirect_uri or settings.require("redirect_uri", purpose)
    if (
        not isinstance(expiration, int | float)
        or isinstance(expiration, bool)
        or not math.isfinite(expiration)
        or expiration <= 0
    ):
        raise ConfigurationError("expiration must be a positive number of seconds")
    if max_age is not None and (
        not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0
    ):
        raise ConfigurationError("max_age must be a whole number of seconds, 0 or more")
    key = core.state_key()
    metadata = yield from core.metadata_flow()
    requested = scope_text(scope) or ""
    openid = "openid" in requested.split()
    if max_age is not None and not openid:
        raise ConfigurationError(
            "max_age needs the openid scope: the ID token's auth_time is how it is checked"
        )
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
        max_age=max_age,
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
    age = None if max_age is None else str(max_age)
    optional = {**(extra or {}), "scope": requested, "nonce": nonce, "max_age": age}
    params.update({name: value for name, value in optional.items() if value})
    return sealed, params


def start_authorization_flow(
    core: BaseClient,
    scope: str | Collection[str] | None = "openid",
    expiration: float = 600,
    nonce: str | None = None,
    *,
    redirect_uri: str | None = None,
    max_age: int | None = None,
    **optional: str | None,
) -> Flow[tuple[str, str]]:
    """``(state, url)``: send the browser to ``url``, keep ``state`` if you like."""
    sealed, params = yield from authorization_request_flow(
        core, scope, expiration, nonce, redirect_uri=redirect_uri, extra=optional,
        max_age=max_age,
    )
    metadata = yield from core.metadata_flow()
    return sealed, with_query(core.endpoint(metadata, "authorization_endpoint"), params)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


@runtime_checkable
class URLObject(Protocol):
    """A URL object, whose ``str()`` is the URL: Starlette's ``request.url``,
    ``httpx2.URL``, ``yarl.URL``."""

    @property
    def query(self) -> object: ...


#: What a whole authorization response may be given as.
Callback = str | Mapping[str, str] | URLObject


def callback_params(callback: Callback) -> dict[str, str]:
    """The parameters of an authorization response: a callback URL (or URL object)
    or a mapping."""
    expect(callback, str | Mapping | URLObject, "the callback must be its URL (a str, or "
           "a URL object such as request.url) or its parameters (a mapping)")
    if not isinstance(callback, str | Mapping):
        callback = str(callback)  # a URL object
    if isinstance(callback, str):
        # A URL (a scheme, a path, or a host and path before the ``?``) or the query
        # itself, in which an ``iss`` may be written unencoded (``iss=https://...``).
        head = callback.split("?", 1)[0]
        url = (_SCHEME.match(callback) or callback.startswith(("/", "?"))
               or ("?" in callback and "=" not in head))
        query = urlsplit(callback).query if url else callback
        pairs = parse_qsl(query, keep_blank_values=True)
        names = [name for name, _ in pairs]
        if len(names) != len(set(names)):  # RFC 6749 3.1: no repeated parameters
            raise InvalidStateError("The callback repeats a parameter.")
        return dict(pairs)
    # None is an absent parameter: a mapping built with ``args.get("error")``
    return {str(k): str(v) for k, v in callback.items() if v is not None}


def _utf8(value: object) -> bytes:
    """A state as bytes to compare: ``surrogatepass`` so that any text compares (and
    fails) quietly; bytes as a session store may give them back."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


def open_state(
    core: BaseClient, callback_state: object, expected_state: str | None
) -> AuthorizationState:
    """The state of a callback, checked against this client; ``InvalidStateError``."""
    if expected_state is not None and (
        not isinstance(callback_state, str)
        or not hmac.compare_digest(_utf8(callback_state), _utf8(expected_state))
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
    if replay_store is not None and not claimed(replay_store, state.id, state.expires_at):
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
        return (yield from core.id_token_flow(tokens, state.nonce, state.max_age))
    if state.openid:
        raise ProtocolError("The provider returned no ID token for an openid request.")
    return tokens


def finish_authorization_response_flow(
    core: BaseClient,
    callback: Callback,
    expected_state: str | None = None,
    *,
    replay_store: ReplayStore | None = None,
) -> Flow[TokenSet]:
    """``finish_authorization_flow`` for a whole callback (URL or parameters)."""
    params = callback_params(callback)
    return (
        yield from finish_authorization_flow(
            core,
            params.get("code"),
            params.get("state"),
            expected_state,
            iss=params.get("iss"),
            error=params,
            replay_store=replay_store,
            whole_response=True,
        )
    )
