"""Checks of an authorization request (RFC 6749 section 4.1.1, RFC 9700 2.1).

The table at the bottom lists them in order. The first two run before the redirect
URI is trusted: their errors are shown on a page, never redirected. The rest
raise errors that go back to the verified redirect URI with ``state``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bastion.oauth import pkce
from bastion.oauth.errors import (
    InvalidRequest,
    OAuthError,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from bastion.server.checks.scope import granted_scope
from bastion.server.models import Client
from bastion.server.services.clients import ClientCache, matching_redirect_uri

_MAX_PARAM = 2048
#: How the answer goes back: in the redirect's query, or posted by an HTML form
#: (OAuth 2.0 Form Post Response Mode), which keeps the code out of URLs.
RESPONSE_MODES = ("query", "form_post")


class InvalidClientPage(OAuthError):
    """Unknown client or redirect URI: answered on a page, never by redirect."""

    error = "invalid_request"


@dataclass
class AuthorizationRequest:
    params: Mapping[str, str]
    client: Client | None = None
    redirect_uri: str = ""
    scope: str = ""
    prompt: frozenset[str] = field(default_factory=frozenset)
    max_age: int | None = None
    response_mode: str = "query"

    @property
    def state(self) -> str | None:
        return self.params.get("state")


async def check_client(req: AuthorizationRequest, clients: ClientCache) -> None:
    client_id = req.params.get("client_id")
    client = await clients.get(client_id) if client_id else None
    if client is None:
        raise InvalidClientPage("Unknown client_id: this sign-in link is not valid.")
    req.client = client


async def check_redirect_uri(req: AuthorizationRequest, _clients: ClientCache) -> None:
    assert req.client is not None  # check_client ran first
    given = req.params.get("redirect_uri")
    registered = req.client.redirect_uris
    if given is None:
        asked = req.params.get("scope")  # none: the client's registered scopes
        if "openid" in (asked.split() if asked is not None else req.client.scopes):
            raise InvalidClientPage("redirect_uri is required in an OpenID Connect request "
                                    "(scope openid), OpenID Connect Core 3.1.2.1.")
        if len(registered) != 1:
            raise InvalidClientPage("redirect_uri is required for this client.")
        req.redirect_uri = registered[0]
    elif matching_redirect_uri(given, registered):
        req.redirect_uri = given  # as given: the token request must send it again
    else:
        raise InvalidClientPage("redirect_uri is not registered for this client.")


def check_response_mode(req: AuthorizationRequest) -> None:
    """First: every later error goes back in the mode asked for. One not served is
    refused, not ignored (the app's callback may not read another)."""
    mode = req.params.get("response_mode", "query")
    if mode not in RESPONSE_MODES:
        raise InvalidRequest("response_mode must be query or form_post.")
    if mode == "form_post" and urlsplit(req.redirect_uri).scheme not in ("https", "http"):
        # A browser cannot post a form to an app's own scheme: the code would be lost.
        raise InvalidRequest("response_mode=form_post needs an http(s) redirect URI.")
    req.response_mode = mode


#: OpenID Connect Core 3.1.2.6: a request object, by value or by reference, or
#: registration data, would carry parameters that must not be silently dropped.
_UNSUPPORTED = {"request": "request_not_supported",
                "request_uri": "request_uri_not_supported",
                "registration": "registration_not_supported"}


def check_request_object(req: AuthorizationRequest) -> None:
    for name, error in _UNSUPPORTED.items():
        if name in req.params:
            raise InvalidRequest(f"The {name} parameter is not supported.", error=error)


def check_response_type(req: AuthorizationRequest) -> None:
    response_type = req.params.get("response_type")
    if response_type is None:
        raise InvalidRequest("Missing response_type.")
    if response_type != "code":
        raise UnsupportedResponseType("Only response_type=code is supported.")


def check_grant_allowed(req: AuthorizationRequest) -> None:
    assert req.client is not None
    if "authorization_code" not in req.client.grant_types:
        raise UnauthorizedClient("This client may not use the authorization code flow.")


def check_pkce(req: AuthorizationRequest) -> None:
    assert req.client is not None
    challenge = req.params.get("code_challenge")
    method = req.params.get("code_challenge_method")
    if challenge is None:
        if method is not None:
            raise InvalidRequest("code_challenge_method without code_challenge.")
        if req.client.is_public:
            raise InvalidRequest("PKCE is required: send code_challenge with method S256.")
        return
    if method != pkce.METHOD:
        raise InvalidRequest("code_challenge_method must be S256 (plain is not allowed).")
    if not pkce.is_valid_challenge(challenge):
        raise InvalidRequest("code_challenge is malformed.")


def check_scope(req: AuthorizationRequest) -> None:
    assert req.client is not None
    req.scope = granted_scope(req.params.get("scope"), req.client)


#: OpenID Connect Core 3.1.2.1. Bastion asks no consent of the clients its operator
#: registered, so ``consent`` is met by the sign-in; ``select_account`` shows the form.
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
#: The prompt values a completed sign-in satisfies (dropped when the flow goes on).
SIGN_IN_PROMPTS = frozenset({"login", "select_account"})
_MAX_AGE_LIMIT = 10 ** 9  # about 31 years: any larger value means "no limit"


def check_prompt(req: AuthorizationRequest) -> None:
    values = frozenset(req.params.get("prompt", "").split())
    if not values <= PROMPTS:
        raise InvalidRequest("prompt may only hold none, login, consent or select_account.")
    if "none" in values and len(values) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other values.")
    req.prompt = values


def check_max_age(req: AuthorizationRequest) -> None:
    raw = req.params.get("max_age")
    if raw is None:
        return
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise InvalidRequest("max_age must be a whole number of seconds.")
    req.max_age = min(int(raw), _MAX_AGE_LIMIT)


#: The nonce is stored with the code (``authorization_codes.nonce``, 255 characters);
#: the others are only looked up, shown or sent back.
MAX_NONCE = 255
_MAX_LENGTHS = {"state": _MAX_PARAM, "nonce": MAX_NONCE, "login_hint": _MAX_PARAM,
                "organization": _MAX_PARAM}


def check_lengths(req: AuthorizationRequest) -> None:
    for name, limit in _MAX_LENGTHS.items():
        if len(req.params.get(name, "")) > limit:
            raise InvalidRequest(f"{name} is too long: at most {limit} characters.")


BEFORE_REDIRECT: tuple[Callable[[AuthorizationRequest, ClientCache], Awaitable[None]], ...] = (
    check_client,
    check_redirect_uri,
)
AFTER_REDIRECT: tuple[Callable[[AuthorizationRequest], None], ...] = (
    check_response_mode,
    check_request_object,
    check_response_type,
    check_grant_allowed,
    check_pkce,
    check_scope,
    check_prompt,
    check_max_age,
    check_lengths,
)
