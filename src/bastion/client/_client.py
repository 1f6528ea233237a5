"""``Client``: the synchronous shell around the I/O-free core in ``_base``."""

from __future__ import annotations

import time
from collections.abc import Collection
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2

from bastion.oauth.metadata import ProviderMetadata

from ._api import Events, Organizations, Roles, Users
from ._api_clients import Clients, Keys
from ._auth import ScopedAuths
from ._base import CLOSED, BaseClient, Flow, map_http_error, not_copied
from ._flight import Wait, wait_in_thread
from ._retry import TOKEN_REQUEST_IN_FLIGHT
from ._signin import SignIn
from .connections import resolve
from .exceptions import ConfigurationError
from .logout_token import LogoutToken
from .state import ReplayStore
from .tokens import TokenSet

__all__ = ["Client"]

T = TypeVar("T")


class Client(SignIn):
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
        self._http = httpx2.Client(
            base_url=settings.url,
            transport=transport,
            timeout=settings.timeout,
            verify=settings.verify_ssl,
            follow_redirects=settings.allow_redirects,
        )
        #: Client-credentials auth for this client's own calls, or any httpx2 client.
        self._auths = ScopedAuths(self._core)
        self.auth = self._auths.get()
        #: Bastion's REST API, as an administrator (``.with_token(tokens)``: as a user).
        self.users = Users(self)
        self.organizations = Organizations(self)
        self.roles = Roles(self)
        self.events = Events(self)
        self.clients = Clients(self)
        self.keys = Keys(self)

    def __repr__(self) -> str:
        settings = self._core.settings
        return f"Client(url={settings.url!r}, client_id={settings.client_id!r})"

    __deepcopy__ = not_copied

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
        attempt = core.first_attempt(request)
        while True:
            # Checked before each attempt: the client may be closed during a wait.
            if self._http.is_closed:  # httpx would raise a bare RuntimeError
                raise ConfigurationError(CLOSED)
            request.extensions.pop(TOKEN_REQUEST_IN_FLIGHT, None)
            try:
                response = self._http.send(request, auth=auth)
            except (httpx2.HTTPError, httpx2.StreamError, httpx2.InvalidURL) as exc:
                delay = core.delay_after_error(request, exc, attempt, idempotent)
                if delay is None:
                    raise map_http_error(exc) from exc
            except RuntimeError:  # (httpx2's StreamError is one too: caught above)
                if not self._http.is_closed:
                    raise
                raise ConfigurationError(CLOSED) from None  # by another thread meanwhile
            else:
                delay = core.delay_after_response(request, response, attempt)
                if delay is None:
                    return response
                response.close()
            attempt += 1
            self._sleep(delay)

    def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Wait):
                    wait_in_thread(step)
                    step = next(flow)
                    continue
                try:
                    response = self._send(step)
                except BaseException as exc:  # let a flow leading a flight land it
                    step = flow.throw(exc)
                else:
                    step = flow.send(response)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            flow.close()

    # -- the public calls: each runs one flow of the core --------------------------

    def discover(self) -> ProviderMetadata:
        """The provider's metadata (fetched once, then cached)."""
        return self._run(self._core.metadata_flow())

    def client_credentials(self, scope: str | Collection[str] | None = None) -> TokenSet:
        """A fresh token for this client itself (RFC 6749 section 4.4)."""
        return self._run(self._core.client_credentials_flow(scope))

    def refresh(
        self, refresh_token: str | TokenSet, scope: str | Collection[str] | None = None
    ) -> TokenSet:
        """Trade a refresh token for new tokens; keep the *new* refresh token.

        Threads refreshing the same token share one request, and a refresh token
        already traded by this client returns the same new tokens instead of
        being sent again. Given a ``TokenSet``, a new ID token must be about the
        same user, and the old one is kept if the provider sends none.
        """
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

    def verify_logout_token(
        self, logout_token: str, replay_store: ReplayStore | None = None
    ) -> LogoutToken:
        """A back-channel logout token POSTed to the app's ``backchannel_logout_uri``
        (form field ``logout_token``), validated: end the app's sessions of ``.sub``,
        or only the one of ``.sid`` when it is set. Raises ``InvalidToken`` (answer 400).
        With ``replay_store`` (shared between workers), a token is accepted once."""
        return self._run(self._core.logout_token_flow(logout_token, replay_store))

    def introspect(self, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
        """The provider's view of a token (RFC 7662); sees revocation at once."""
        return self._run(self._core.introspect_flow(token, token_type_hint))

    def revoke(self, token: str | TokenSet, token_type_hint: str | None = None) -> None:
        """Revoke an access or refresh token (RFC 7009); a ``TokenSet`` revokes both."""
        self._run(self._core.revoke_flow(token, token_type_hint))

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
