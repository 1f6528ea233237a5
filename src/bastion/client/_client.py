"""``Client``: the synchronous shell around the I/O-free core in ``_base``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2

from bastion.oauth.metadata import ProviderMetadata

from . import _login, _passwordless
from ._api import Events, Organizations, Roles, Users
from ._auth import TOKEN_REQUEST_IN_FLIGHT, ClientCredentialsAuth, TokenAuth
from ._base import BaseClient, Flow, map_http_error
from .connections import resolve
from .exceptions import InvalidGrant
from .state import ReplayStore
from .tokens import TokenCheck, TokenSet

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """Talks to one OAuth 2.0 / OpenID Connect provider, blocking.

    ``Client(url=..., client_id=..., client_secret=...)`` or
    ``Client(using="test")`` for a connection made with ``configure``.
    ``transport=`` takes any ``httpx2`` transport (``MockTransport`` in tests).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        using: str | None = None,
        transport: httpx2.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        settings = resolve(url, using, options)
        self._core = BaseClient(settings)
        self._core.owner = self
        self._refresh_lock = threading.Lock()
        self._http = httpx2.Client(
            base_url=settings.url,
            transport=transport,
            timeout=settings.timeout,
            verify=settings.verify_ssl,
            follow_redirects=settings.allow_redirects,
        )
        #: Client-credentials auth for this client's own calls, or any httpx2 client.
        self.auth = ClientCredentialsAuth(self._core)
        #: Bastion's REST API, as an administrator (``.with_token(tokens)``: as a user).
        self.users = Users(self)
        self.organizations = Organizations(self)
        self.roles = Roles(self)
        self.events = Events(self)

    def __repr__(self) -> str:
        settings = self._core.settings
        return f"Client(url={settings.url!r}, client_id={settings.client_id!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the sending loop: the only part AsyncClient writes differently -----------

    _sleep = staticmethod(time.sleep)

    def _send(self, request: httpx2.Request, auth: httpx2.Auth | None = None) -> httpx2.Response:
        core = self._core
        idempotent = core.is_idempotent(request)
        attempt = 0
        while True:
            request.extensions.pop(TOKEN_REQUEST_IN_FLIGHT, None)
            try:
                response = self._http.send(request, auth=auth)
            except (httpx2.HTTPError, httpx2.StreamError, httpx2.InvalidURL) as exc:
                # A token request an auth flow was sending may have been processed.
                safe = idempotent and TOKEN_REQUEST_IN_FLIGHT not in request.extensions
                delay = core.retry.after_error(exc, attempt, idempotent=safe)
                if delay is None:
                    raise map_http_error(exc) from exc
            else:
                delay = core.retry.after_response(
                    response.status_code,
                    response.headers,
                    attempt,
                    idempotent=idempotent,
                    now=core.clock(),
                )
                if delay is None:
                    return response
                response.close()
            attempt += 1
            self._sleep(delay)

    def _run(self, flow: Flow[T]) -> T:
        try:
            request = next(flow)
            while True:
                request = flow.send(self._send(request))
        except StopIteration as done:
            result: T = done.value
            return result

    # -- the public calls: each runs one flow of the core --------------------------

    def discover(self) -> ProviderMetadata:
        """The provider's metadata (fetched once, then cached)."""
        return self._run(self._core.metadata_flow())

    def client_credentials(self, scope: str | Collection[str] | None = None) -> TokenSet:
        """A fresh token for this client itself (RFC 6749 section 4.4)."""
        return self._run(self._core.client_credentials_flow(scope))

    def refresh(self, refresh_token: str, scope: str | Collection[str] | None = None) -> TokenSet:
        """Trade a refresh token for new tokens; keep the *new* refresh token.

        Refreshes are serialized, and a refresh token already traded by this
        client returns the same new tokens instead of being sent again.
        """
        with self._refresh_lock:
            return self._run(self._core.refresh_flow(refresh_token, scope))

    def verify_token(
        self,
        token: str,
        audience: str | None = None,
        scopes: str | Collection[str] | None = None,
        leeway: float | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid JWT access token, checked locally with the JWKS.

        Raises ``InvalidToken``, or ``InsufficientScope`` when ``scopes`` are missing.
        A revoked token stays valid here until it expires; use ``introspect``.
        """
        claims = self._core.verify_cached(token, audience, scopes, leeway)
        if claims is not None:  # no I/O needed: the common case, kept cheap
            return claims
        return self._run(self._core.verify_flow(token, audience, scopes, leeway))

    def introspect(self, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
        """The provider's view of a token (RFC 7662); sees revocation at once."""
        return self._run(self._core.introspect_flow(token, token_type_hint))

    def revoke(self, token: str | TokenSet, token_type_hint: str | None = None) -> None:
        """Revoke an access or refresh token (RFC 7009); a ``TokenSet`` revokes both."""
        self._run(self._core.revoke_flow(token, token_type_hint))

    # -- signing users in -------------------------------------------------------

    def start_authorization(
        self,
        scope: str | Collection[str] | None = "openid",
        expiration: float = 600,
        nonce: str | None = None,
        *,
        redirect_uri: str | None = None,
        prompt: str | None = None,
        login_hint: str | None = None,
        organization: str | None = None,
    ) -> tuple[str, str]:
        """``(state, url)`` for the authorization code flow with PKCE.

        Send the browser to ``url``. ``state`` is sealed with ``state_key`` and
        carries the PKCE verifier and nonce, so any worker can finish; keep it in
        the user's session to pass as ``expected_state``. ``redirect_uri``
        overrides the connection's; ``prompt`` is ``login`` or ``none``.
        """
        flow = _login.start_authorization_flow(
            self._core,
            scope,
            expiration,
            nonce,
            redirect_uri=redirect_uri,
            prompt=prompt,
            login_hint=login_hint,
            organization=organization,
        )
        return self._run(flow)

    def finish_authorization(
        self,
        code: str,
        callback_state: str,
        expected_state: str | None = None,
        *,
        iss: str | None = None,
        replay_store: ReplayStore | None = None,
    ) -> TokenSet:
        """Tokens for the ``code`` and ``state`` the callback received.

        Raises ``InvalidStateError`` for a state that is forged, expired, for
        another provider or client, not ``expected_state``, or already claimed
        in ``replay_store``, or when ``iss`` (RFC 9207) names another issuer;
        ``InvalidToken`` for a bad ID token.
        """
        return self._run(
            _login.finish_authorization_flow(
                self._core,
                code,
                callback_state,
                expected_state,
                iss=iss,
                replay_store=replay_store,
            )
        )

    def finish_authorization_response(
        self,
        callback: str | Mapping[str, str],
        expected_state: str | None = None,
        *,
        replay_store: ReplayStore | None = None,
    ) -> TokenSet:
        """Like ``finish_authorization``, from the callback URL (or its parameters).

        An ``error`` in the callback raises its OAuth error class (``AccessDenied``,
        ``LoginRequired``...) once the state is verified.
        """
        params = _login.callback_params(callback)
        return self._run(
            _login.finish_authorization_flow(
                self._core,
                params.get("code"),
                params.get("state"),
                expected_state,
                iss=params.get("iss"),
                error=params,
                replay_store=replay_store,
                whole_response=True,
            )
        )

    def login_password(
        self,
        username: str,
        password: str,
        scope: str | Collection[str] | None = None,
        *,
        organization: str | None = None,
    ) -> TokenSet:
        """The password grant, for first-party clients the provider enables it for;
        ``organization`` asks for the user's roles in it in the token (Bastion)."""
        flow = _login.password_flow(self._core, username, password, scope, organization)
        return self._run(flow)

    def start_passwordless(
        self,
        email: str,
        scope: str | Collection[str] | None = "openid",
        expiration: float = _passwordless.PASSWORDLESS_EXPIRATION,
        nonce: str | None = None,
        *,
        redirect_uri: str | None = None,
        organization: str | None = None,
    ) -> str:
        """Email the user a sign-in link (Bastion); returns the sealed ``state``.

        The link completes an authorization request built like
        ``start_authorization``'s, so the callback finishes it with
        ``finish_authorization`` as usual. Same answer for unknown addresses;
        ``RateLimited`` (``retry_after``) when asked too often.
        """
        flow = _passwordless.start_passwordless_flow(
            self._core,
            email,
            scope,
            expiration,
            nonce,
            redirect_uri=redirect_uri,
            organization=organization,
        )
        return self._run(flow)

    def edit_profile_url(self, return_to: str | None = None) -> str:
        """The hosted account page (Bastion), coming back to ``return_to`` (a
        registered redirect URI); no token or secret is in the URL."""
        return self._run(_passwordless.edit_profile_url_flow(self._core, return_to))

    def userinfo(self, access_token: str | TokenSet) -> dict[str, Any]:
        """The signed-in user's claims (OIDC userinfo; needs scope ``openid``)."""
        return self._run(_login.userinfo_flow(self._core, access_token))

    def logout_url(
        self,
        id_token_hint: str | TokenSet | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
    ) -> str:
        """Where to send the browser to sign out at the provider (RP-initiated logout)."""
        return self._run(
            _login.logout_url_flow(self._core, id_token_hint, post_logout_redirect_uri, state)
        )

    def revoke_all(
        self, access_token: str | TokenSet | None = None, *, user_id: str | None = None
    ) -> None:
        """End every session of a user: yourself with ``access_token``, or anyone
        by ``user_id`` as an administrator (this client needs ``bastion:admin``)."""
        self._run(_login.revoke_all_flow(self._core, access_token, user_id=user_id))

    def validate_token_set(
        self, access_token: str, refresh_token: str | None = None, *, introspect: bool = False
    ) -> TokenCheck:
        """``valid``, ``refreshed`` (store the new tokens) or ``invalid``.

        The access token is verified locally, or by introspection (which sees
        revocation) when ``introspect=True``. Network and server errors raise:
        an unreachable provider does not mean the tokens are invalid.
        """
        check = self._run(
            _login.token_check_flow(self._core, access_token, refresh_token, introspect)
        )
        if check.state == "valid" or not refresh_token:
            return check
        try:
            return TokenCheck("refreshed", self.refresh(refresh_token))
        except InvalidGrant as exc:
            return TokenCheck("invalid", error=exc)

    def token_auth(
        self, tokens: TokenSet, on_refresh: Callable[[TokenSet], object] | None = None
    ) -> TokenAuth:
        """An ``httpx2.Auth`` sending ``tokens`` and refreshing them before they expire
        (one refresh for concurrent callers); ``on_refresh`` receives the new ones."""
        return TokenAuth(self._core, tokens, on_refresh)

    def request(
        self, method: str, url: str, *, auth: httpx2.Auth | None = None, **kwargs: Any
    ) -> httpx2.Response:
        """Call the provider's API as this client (client-credentials bearer token),
        or with ``auth=client.token_auth(tokens)`` as a user.

        ``url`` may be relative to the issuer URL. Error statuses raise.
        """
        try:
            request = self._http.build_request(method, url, **kwargs)
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            raise map_http_error(exc) from exc
        response = self._send(request, auth=auth or self.auth)
        self._core.raise_for_response(response)
        return response
