"""The awaited twin of ``_signin``: ``AsyncClient``'s calls that sign users in
and handle their tokens, each running one flow of ``_authorization``,
``_login`` or ``_passwordless``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, TypeVar

from . import _authorization, _login, _passwordless
from ._auth import ClientCredentialsAuth, OnRefresh, ScopedAuths, TokenAuth
from ._authorization import Callback
from .exceptions import InvalidGrant
from .state import ReplayStore
from .tokens import TokenCheck, TokenSet

if TYPE_CHECKING:
    from ._base import BaseClient, Flow

__all__ = ["AsyncSignIn"]

T = TypeVar("T")


class AsyncSignIn:
    """Mixed into ``AsyncClient``, which provides ``_core``, ``_run`` and ``refresh``."""

    if TYPE_CHECKING:
        _core: BaseClient
        _auths: ScopedAuths

        async def _run(self, flow: Flow[T]) -> T: ...

        async def refresh(
            self, refresh_token: str | TokenSet, scope: str | Collection[str] | None = None
        ) -> TokenSet: ...

    async def start_authorization(
        self,
        scope: str | Collection[str] | None = "openid",
        expiration: float = 600,
        nonce: str | None = None,
        *,
        redirect_uri: str | None = None,
        prompt: str | None = None,
        login_hint: str | None = None,
        organization: str | None = None,
        response_mode: str | None = None,
        max_age: int | None = None,
    ) -> tuple[str, str]:
        """``(state, url)`` for the authorization code flow with PKCE.

        Send the browser to ``url``. ``state`` is sealed with ``state_key`` and
        carries the PKCE verifier and nonce, so any worker can finish; keep it in
        the user's session to pass as ``expected_state``. ``redirect_uri``
        overrides the connection's; ``prompt`` is ``login`` or ``none``;
        ``response_mode`` ``form_post`` has the answer posted to the redirect URI
        (the code stays out of URLs: pass the posted form to
        ``finish_authorization_response``). With ``max_age`` (seconds) the user
        signs in again if they did longer ago, and finishing checks the ID token's
        ``auth_time`` against it.
        """
        flow = _authorization.start_authorization_flow(
            self._core,
            scope,
            expiration,
            nonce,
            redirect_uri=redirect_uri,
            prompt=prompt,
            login_hint=login_hint,
            organization=organization,
            response_mode=response_mode,
            max_age=max_age,
        )
        return await self._run(flow)

    async def finish_authorization(
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
        return await self._run(
            _authorization.finish_authorization_flow(
                self._core,
                code,
                callback_state,
                expected_state,
                iss=iss,
                replay_store=replay_store,
            )
        )

    async def finish_authorization_response(
        self,
        callback: Callback,
        expected_state: str | None = None,
        *,
        replay_store: ReplayStore | None = None,
    ) -> TokenSet:
        """Like ``finish_authorization``, from the callback URL (a str, or a URL object
        such as Starlette's ``request.url``) or its parameters (a mapping).

        An ``error`` in the callback raises its OAuth error class (``AccessDenied``,
        ``LoginRequired``...) once the state is verified.
        """
        flow = _authorization.finish_authorization_response_flow(
            self._core, callback, expected_state, replay_store=replay_store
        )
        return await self._run(flow)

    async def login_password(
        self,
        username: str,
        password: str,
        scope: str | Collection[str] | None = None,
        *,
        organization: str | None = None,
    ) -> TokenSet:
        flow = _login.password_flow(self._core, username, password, scope, organization)
        return await self._run(flow)

    async def start_passwordless(
        self,
        email: str,
        scope: str | Collection[str] | None = "openid",
        expiration: float = _passwordless.PASSWORDLESS_EXPIRATION,
        nonce: str | None = None,
        *,
        redirect_uri: str | None = None,
        organization: str | None = None,
    ) -> str:
        flow = _passwordless.start_passwordless_flow(
            self._core,
            email,
            scope,
            expiration,
            nonce,
            redirect_uri=redirect_uri,
            organization=organization,
        )
        return await self._run(flow)

    async def edit_profile_url(self, return_to: str | None = None) -> str:
        return await self._run(_passwordless.edit_profile_url_flow(self._core, return_to))

    async def userinfo(self, access_token: str | TokenSet) -> dict[str, Any]:
        """The signed-in user's claims (OIDC userinfo; needs scope ``openid``)."""
        return await self._run(_login.userinfo_flow(self._core, access_token))

    async def _signed_in_claims(self, tokens: TokenSet) -> dict[str, Any]:
        return await self._run(_login.signed_in_claims_flow(self._core, tokens))

    async def logout_url(
        self,
        id_token_hint: str | TokenSet | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
    ) -> str:
        """Where to send the browser to sign out at the provider (RP-initiated logout)."""
        return await self._run(
            _login.logout_url_flow(self._core, id_token_hint, post_logout_redirect_uri, state)
        )

    async def revoke_all(
        self, access_token: str | TokenSet | None = None, *, user_id: str | None = None
    ) -> None:
        """End every session of a user: yourself with ``access_token``, or anyone
        by ``user_id`` as an administrator (this client needs ``bastion:admin``)."""
        await self._run(_login.revoke_all_flow(self._core, access_token, user_id=user_id))

    async def validate_token_set(
        self, access_token: str, refresh_token: str | None = None, *, introspect: bool = False
    ) -> TokenCheck:
        """``valid``, ``refreshed`` (store the new tokens) or ``invalid``.

        The access token is verified locally, or by introspection (which sees
        revocation) when ``introspect=True``. Network and server errors raise:
        an unreachable provider does not mean the tokens are invalid.
        """
        check = await self._run(
            _login.token_check_flow(self._core, access_token, refresh_token, introspect)
        )
        if check.state == "valid" or not refresh_token:
            return check
        try:
            return TokenCheck("refreshed", await self.refresh(refresh_token))
        except InvalidGrant as exc:
            return TokenCheck("invalid", error=exc)

    def token_auth(self, tokens: TokenSet, on_refresh: OnRefresh | None = None) -> TokenAuth:
        """An ``httpx2.Auth`` sending ``tokens`` and refreshing them before they expire
        (one refresh for concurrent callers); ``on_refresh`` receives the new ones, and
        is awaited if it is an ``async def``."""
        return TokenAuth(self._core, tokens, on_refresh)

    def client_credentials_auth(
        self, scope: str | Collection[str] | None = None
    ) -> ClientCredentialsAuth:
        """An ``httpx2.Auth`` sending this client's own token for ``scope`` (``auth``
        is the one for the registered scopes), fetched once and renewed when due: the
        same object for each call with that scope, so calling it per request is fine."""
        return self._auths.get(scope)
