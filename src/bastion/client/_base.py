"""The I/O-free core that ``Client`` and ``AsyncClient`` share.

Every operation is a *flow*: a generator that yields the ``httpx2.Request`` it
needs sent, receives the ``httpx2.Response`` (already read) and finally returns
its result. Discovery, JWKS fetches, request building, response parsing, error
mapping and retry decisions all live here (the first layer, discovery, keys and
verification, in ``_discovery``); a shell only drives the generator (``for`` a
thread or ``await`` for a task), waiting where a flow yields ``Wait`` for another
caller's single flight (``_flight``). The same flows feed the ``httpx2.Auth``
classes in ``_auth``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Collection
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote_plus

import httpx2

from bastion.oauth.errors import InvalidGrant, InvalidToken
from bastion.oauth.jose import JoseError, parse_compact
from bastion.oauth.metadata import ProviderMetadata

from ._arguments import expect, scope_text
from ._config import Settings
from ._discovery import JSON_HEADERS, ONE_TRY, DiscoveryCore, Flow
from ._responses import json_object
from ._retry import NOT_SENT, TOKEN_REQUEST_IN_FLIGHT, mark_resend
from .exceptions import ConfigurationError, ProtocolError, TimeoutError, TransportError
from .id_token import check_id_token_claims, verify_id_token_signature
from .logout_token import LogoutToken, check_logout_token_claims, verify_logout_token_signature
from .state import ReplayStore, claimed
from .tokens import TokenSet, renewal_margin

__all__ = ["CLOSED", "BaseClient", "Flow", "map_http_error", "not_copied", "subject_of"]

R = TypeVar("R")

#: What a call on a closed client raises (as ``ConfigurationError``).
CLOSED = "this client has been closed"
#: Extension of a refresh request: the digest of the refresh token it presents.
REFRESHING = "bastion.refreshing"
#: Refresh outcomes kept to answer a second refresh of the same token.
_MAX_REMEMBERED = 1024
#: Seconds a refresh's outcome answers for the token it spent: long enough for the
#: requests of one session that race each other, short enough that a spent token
#: presented later (a stolen session cookie, say) reaches the provider, whose reuse
#: detection revokes the family (RFC 9700 section 4.14.2).
REMEMBER_FOR = 30.0


def not_copied(client: object, memo: dict[int, Any]) -> NoReturn:
    """A client's ``__deepcopy__``: it holds connections and locks, which cannot be
    copied. ``dataclasses.asdict`` deep-copies each field, so FastAPI returning a
    ``User`` or ``TokenSet`` bound to a client ends here: say what to do instead."""
    raise ConfigurationError(f"{type(client).__name__} objects cannot be copied; to send "
                             "a User or TokenSet as JSON (a route's answer), use its to_dict()")


class BaseClient(DiscoveryCore):
    """Settings, caches (metadata, keys, tokens) and every flow; no I/O."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, clock=clock)
        #: The ``Client`` or ``AsyncClient`` driving this core; tokens are bound to it.
        self.owner: Any = None
        #: Recent refreshes' outcomes and when they landed, by digest of the spent
        #: refresh token (see ``refresh_flow``).
        self.refreshed: dict[bytes, tuple[float, TokenSet | Exception]] = {}
        #: This client's own ``bastion:admin`` token for the REST API (see ``_admin``).
        self.admin_token: TokenSet | None = None
        self.admin_margin = self.settings.refresh_margin
        self._state_key: bytes | None = None

    # -- token endpoint ---------------------------------------------------------

    def _authenticate(
        self, metadata: ProviderMetadata, data: dict[str, str], purpose: str
    ) -> dict[str, str]:
        """Add client authentication (RFC 6749 section 2.3.1); returns headers."""
        settings = self.settings
        client_id = settings.require("client_id", purpose)
        secret = settings.client_secret
        if secret is None:  # a public client identifies itself only
            data["client_id"] = client_id
            return dict(JSON_HEADERS)
        method = settings.token_endpoint_auth_method
        if method is None:
            supported = metadata.token_endpoint_auth_methods_supported
            basic = not supported or "client_secret_basic" in supported
            method = "client_secret_basic" if basic else "client_secret_post"
        if method == "client_secret_post":
            data["client_id"] = client_id
            data["client_secret"] = secret
            return dict(JSON_HEADERS)
        # Form-encode each part before base64, as 2.3.1 says (and many forget).
        pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
        return {**JSON_HEADERS, "Authorization": "Basic " + base64.b64encode(pair).decode()}

    def _post_flow(
        self,
        endpoint: str,
        data: dict[str, str],
        purpose: str,
        extensions: dict[str, object] | None = None,
    ) -> Flow[httpx2.Response]:
        metadata = yield from self.metadata_flow()
        url = self.endpoint(metadata, endpoint)
        headers = self._authenticate(metadata, data, purpose)
        request = self.request("POST", url, data=data, headers=headers, extensions=extensions)
        response = yield request
        self.raise_for_response(response)
        return response

    def token_flow(
        self, data: dict[str, str], purpose: str, extensions: dict[str, object] | None = None
    ) -> Flow[TokenSet]:
        response = yield from self._post_flow("token_endpoint", data, purpose, extensions)
        tokens = TokenSet.from_response(json_object(response.content), self.clock(),
                                        issued=True)
        return dataclasses.replace(tokens, client=self.owner)

    def state_key(self) -> bytes:
        """The AES key for sealed OAuth states, derived once from ``state_key``."""
        if self._state_key is None:
            from .state import derive_key

            self._state_key = derive_key(self.settings.require("state_key", "the OAuth state"))
        return self._state_key

    def client_credentials_flow(self, scope: str | Collection[str] | None = None) -> Flow[TokenSet]:
        """RFC 6749 section 4.4."""
        data = {"grant_type": "client_credentials"}
        if text := scope_text(scope):
            data["scope"] = text
        return (yield from self.token_flow(data, "client_credentials"))

    def id_token_flow(
        self, tokens: TokenSet, nonce: str | None, max_age: int | None = None
    ) -> Flow[TokenSet]:
        """``tokens`` with ``id_token_claims`` once the ID token is validated
        (OIDC Core 3.1.3.7); ``nonce`` and ``max_age`` are checked when given."""
        token = tokens.id_token
        if token is None:
            return tokens
        metadata = yield from self.metadata_flow()
        algorithms = self.settings.algorithms
        alg, claims = yield from self.with_keys_flow(
            lambda: verify_id_token_signature(token, self.keys.keys, algorithms), "The ID token"
        )
        check_id_token_claims(
            claims,
            issuer=metadata.issuer,
            client_id=self.settings.require("client_id", "ID token validation"),
            now=self.clock(),
            leeway=self.settings.leeway,
            nonce=nonce,
            access_token=tokens.access_token,
            alg=alg,
            max_age=max_age,
        )
        return dataclasses.replace(tokens, id_token_claims=claims)

    def logout_token_flow(
        self, token: str, replay_store: ReplayStore | None = None
    ) -> Flow[LogoutToken]:
        """A back-channel logout token, validated (Back-Channel Logout 1.0 section
        2.6) with the provider's JWKS; its ``jti`` is claimed in ``replay_store``."""
        metadata = yield from self.metadata_flow()
        algorithms = self.settings.algorithms
        claims = yield from self.with_keys_flow(
            lambda: verify_logout_token_signature(token, self.keys.keys, algorithms),
            "The logout token")
        logout = check_logout_token_claims(
            claims, issuer=metadata.issuer,
            client_id=self.settings.require("client_id", "logout token validation"),
            now=self.clock(), leeway=self.settings.leeway)
        # Prefixed: the store may be the one that holds the login states' ids too.
        if replay_store is not None and not claimed(
                replay_store, f"logout:{metadata.issuer}:{logout.jti}",
                float(claims["exp"]) + self.settings.leeway):
            raise InvalidToken("The logout token was used before.")
        return logout

    def refresh_flow(
        self, refresh_token: str | TokenSet, scope: str | Collection[str] | None = None
    ) -> Flow[TokenSet]:
        """RFC 6749 section 6, sending each refresh token once per client.

        With rotation (RFC 9700 section 4.14.2) a refresh token is single use and
        a reused one revokes its whole family. So every refresh of one token is a
        single flight (see ``_flight``): concurrent callers holding the same token
        (two requests of one browser session, a ``TokenAuth`` and a
        ``validate_token_set``) wait for the one request and share its answer.
        The outcome is then remembered for ``REMEMBER_FOR`` seconds, keyed by the
        spent token, so a caller a moment late still gets the new tokens (or the
        error, when the answer was lost and the token may be spent) instead of
        presenting it again. Revoking the tokens forgets them at once. Followers
        share the leader's answer whatever ``scope`` they asked for: the token can
        be presented only once.

        An ID token in the answer is validated like a login's, without nonce
        (OIDC Core 12.2), after the flight: the traded tokens are remembered even
        when that check fails (a JWKS briefly unreachable), so trying again does
        not present the spent token. Given a ``TokenSet``, its ID token is kept
        when the refresh brings none, and a new one must be about the same user.
        """
        previous = refresh_token if isinstance(refresh_token, TokenSet) else None
        token = previous.refresh_token if previous is not None else refresh_token
        if not isinstance(token, str) or not token:
            raise ConfigurationError("refresh needs a refresh token (or tokens that have one)")
        digest = hashlib.sha256(token.encode()).digest()
        key = ("refresh", digest)
        # Discovery first: within the flight, the token request is the only one, so
        # a failure there is the refresh's own.
        yield from self.metadata_flow()
        now = self.clock()
        while True:
            flight, lead = self.flights.join(key, lambda: self._remembered(digest, token, now))
            if lead:
                request = self._refresh_once_flow(token, digest, scope)
                keep = functools.partial(self._remember, digest, token)
                keep_error = functools.partial(self._remember_error, digest, token)
                tokens: TokenSet | None = yield from self.lead(
                    key, flight, request, keep, keep_error)
            else:
                tokens = yield from self.follow(flight)
            if tokens is not None:  # None: a reissue that traded nothing (see below)
                break
        if tokens.id_token_claims is None:  # validated once, not again when remembered
            traded = tokens
            tokens = yield from self.id_token_flow(tokens, None)  # no nonce on refresh (12.2)
            self.flights.locked(functools.partial(self._validated, digest, traded, tokens))
        return _same_user(previous, tokens)

    def reissue_flow(
        self,
        refresh_token: str,
        send: Callable[[str], Flow[R]],
        traded: Callable[[R], TokenSet | None],
    ) -> Flow[R]:
        """Run ``send``, a request that trades ``refresh_token`` for new tokens other
        than by the token endpoint (the REST API's role change with ``reissue``), as
        that token's single flight, so it never races a refresh of the same token.

        A refresh already under way is waited for, and the token it brought is sent
        instead. Refreshes that start meanwhile wait for ``send`` and get the tokens
        ``traded`` finds in its result, which are remembered as a refresh's are. If the
        server refuses ``send`` (4xx: nothing was traded), they go on to present the
        token themselves; after any other failure they get its error, as the token may
        have been traded. ``traded`` returning ``None`` (tokens revoked, none issued)
        fails them with ``InvalidGrant``, as the token endpoint would.
        """
        token = refresh_token
        yield from self.metadata_flow()
        while True:
            digest = hashlib.sha256(token.encode()).digest()
            key = ("refresh", digest)
            settled = functools.partial(self._remembered, digest, token, self.clock())
            flight, lead = self.flights.join(key, settled)
            if lead:
                break
            try:
                earlier: TokenSet | None = yield from self.follow(flight)
            except TransportError:  # its answer was lost: the token may be spent
                raise
            except Exception:  # the token is spent or refused: the server will say so
                return (yield from send(token))
            if earlier is not None:
                if earlier.refresh_token in (None, token):  # not rotated: nothing to wait on
                    return (yield from send(token))
                token = earlier.refresh_token
        try:
            result = yield from send(token)
        except Exception as exc:
            if _refused(exc):  # answered and rolled back: nothing traded, followers go on
                self.flights.land(key, flight, None)
            else:  # it may have been traded: followers must not present the token
                keep_error = functools.partial(self._remember_error, digest, token, exc)
                self.flights.land(key, flight, error=exc, keep=keep_error)
            raise
        except BaseException:  # cancelled or abandoned: the request may have left
            interrupted = TransportError("The request this call waited for was interrupted.")
            keep_error = functools.partial(self._remember_error, digest, token, interrupted)
            self.flights.land(key, flight, error=interrupted, keep=keep_error)
            raise
        tokens = traded(result)
        if tokens is None:
            revoked = InvalidGrant("The refresh token was revoked by a role change.")
            self.flights.land(key, flight, error=revoked)
        else:
            keep = functools.partial(self._remember, digest, token, tokens)
            self.flights.land(key, flight, tokens, keep=keep)
        return result

    def _refresh_once_flow(
        self, refresh_token: str, digest: bytes, scope: str | Collection[str] | None
    ) -> Flow[TokenSet]:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if text := scope_text(scope):
            data["scope"] = text
        tokens = yield from self.token_flow(data, "refresh", {REFRESHING: digest})
        if tokens.refresh_token is None:  # no rotation: the old one stays valid
            tokens = dataclasses.replace(tokens, refresh_token=refresh_token)
        return tokens

    # ``refreshed`` is read and written only under the flights' lock (``settled``,
    # ``keep`` and ``locked``), so threads refreshing different tokens never trip
    # over it.

    def _remembered(
        self, digest: bytes, refresh_token: str, now: float
    ) -> TokenSet | Exception | None:
        """The outcome of trading ``refresh_token`` if it must not be sent again.

        A rotated token is spent for good: for ``REMEMBER_FOR`` seconds its new
        tokens are handed back even when their access token is about to expire
        (their refresh token is the one to use next); after that the provider
        judges it. A token the provider did not rotate may be sent again once the
        tokens it brought are due for renewal. An error stands for a trade whose
        answer was lost: the token may be spent.
        """
        entry = self.refreshed.get(digest)
        if entry is None:
            return None
        landed, known = entry
        if now - landed >= REMEMBER_FOR:  # (landed after ``now``: within, surely)
            del self.refreshed[digest]
            return None
        if isinstance(known, Exception):  # a new one for each caller: never one shared
            return TransportError(  # traceback growing with every raise
                f"An earlier refresh of this token got no answer ({type(known).__name__}); "
                f"the provider may have spent it, so it is not sent again for "
                f"{REMEMBER_FOR:.0f} s. Sign in again, or try later.")
        if known.refresh_token != refresh_token:
            return known
        margin = renewal_margin(known, landed, self.settings.refresh_margin)
        return None if known.expires_within(margin, now) else known

    def _keep(self, digest: bytes, outcome: TokenSet | Exception) -> None:
        while len(self.refreshed) >= _MAX_REMEMBERED:  # forget the oldest first
            del self.refreshed[next(iter(self.refreshed))]
        self.refreshed[digest] = (self.clock(), outcome)

    def _remember(self, digest: bytes, refresh_token: str, tokens: TokenSet) -> None:
        # Without rotation and expiry there is nothing to protect or to share.
        if tokens.refresh_token == refresh_token and tokens.expires_at is None:
            return
        self._keep(digest, tokens)

    def _remember_error(self, digest: bytes, refresh_token: str, error: Exception) -> None:
        if _may_have_traded(error):
            self._keep(digest, error)
        elif isinstance(error, InvalidGrant):  # the family is gone: so are its tokens
            self._forget(lambda tokens: tokens.refresh_token == refresh_token)

    def not_sent(self, token_request: httpx2.Request) -> None:
        """``token_request`` (a refresh an auth flow was sending) never reached the
        provider: forget the error its interrupted flight left for its token."""
        digest = token_request.extensions.get(REFRESHING)
        if isinstance(digest, bytes):
            self.flights.locked(functools.partial(self._forget_error, digest))

    def _forget_error(self, digest: bytes) -> None:
        entry = self.refreshed.get(digest)
        if entry is not None and isinstance(entry[1], Exception):
            del self.refreshed[digest]

    def _validated(self, digest: bytes, traded: TokenSet, tokens: TokenSet) -> None:
        """Remember ``tokens`` (``traded`` with its ID token checked) in its place."""
        entry = self.refreshed.get(digest)
        if entry is not None and entry[1] is traded:
            self.refreshed[digest] = (entry[0], tokens)

    def _forget(self, revoked: Callable[[TokenSet], bool]) -> None:
        """Drop remembered tokens that were revoked: they must not be handed out."""
        for digest, (_, known) in list(self.refreshed.items()):
            if isinstance(known, TokenSet) and revoked(known):
                del self.refreshed[digest]

    def forget_refresh_token(self, token: str) -> None:
        """Forget what is remembered of refresh token ``token`` (being revoked, and its
        family with it): what it was traded for, and the trade that brought it."""
        def forget() -> None:
            self.refreshed.pop(hashlib.sha256(token.encode()).digest(), None)
            self._forget(lambda tokens: tokens.refresh_token == token)
        self.flights.locked(forget)

    def forget_user(self, subject: str) -> None:
        """Forget remembered tokens of user ``subject`` (all being revoked)."""
        self.flights.locked(functools.partial(
            self._forget, lambda tokens: subject_of(tokens) == subject))

    # -- retry decisions for the shells' sending loops ----------------------------

    def delay_after_error(
        self, request: httpx2.Request, error: Exception, attempt: int, idempotent: bool
    ) -> float | None:
        """Seconds to wait before sending ``request`` again after ``error``, or ``None``:
        raise it."""
        token_request = request.extensions.get(TOKEN_REQUEST_IN_FLIGHT)
        if token_request is not None and isinstance(error, NOT_SENT):
            self.not_sent(token_request)
        # A token request an auth flow was sending may have been processed.
        safe = idempotent and token_request is None
        delay = self.retry.after_error(error, attempt, idempotent=safe)
        if delay is not None:
            mark_resend(request, error)
        return delay

    def delay_after_response(
        self, request: httpx2.Request, response: httpx2.Response, attempt: int
    ) -> float | None:
        """Seconds to wait before sending ``request`` again, or ``None``: ``response``
        is the answer."""
        delay = self.retry.after_response(response.status_code, response.headers, attempt,
                                          method=request.method, now=self.clock())
        if delay is not None:
            mark_resend(request, response.status_code)
        return delay

    def keep_admin_token(self, tokens: TokenSet) -> None:
        self.admin_token = tokens
        self.admin_margin = renewal_margin(tokens, self.clock(), self.settings.refresh_margin)

    # -- introspection and revocation -------------------------------------------

    def introspect_flow(
        self, token: str, token_type_hint: str | None = None
    ) -> Flow[dict[str, Any]]:
        """RFC 7662: the provider's view of ``token``, including ``active``."""
        data = {"token": token}
        if token_type_hint:
            data["token_type_hint"] = token_type_hint
        response = yield from self._post_flow("introspection_endpoint", data, "introspection")
        body = json_object(response.content)
        if not isinstance(body.get("active"), bool):
            raise ProtocolError("The introspection response has no boolean 'active'.")
        return body

    def revoke_flow(
        self, token: str | TokenSet, token_type_hint: str | None = None, *, one_try: bool = False
    ) -> Flow[None]:
        """RFC 7009: revoking an unknown or already revoked token also succeeds.

        A ``TokenSet`` revokes its refresh token first (the provider revokes the
        whole family), then its access token. ``one_try`` sends each request once,
        without retries (a best-effort revoke after a failure).
        """
        expect(token, str | TokenSet, "revoke needs a token (str) or a TokenSet")
        if isinstance(token, TokenSet):
            if token.refresh_token:
                yield from self.revoke_flow(token.refresh_token, "refresh_token", one_try=one_try)
            yield from self.revoke_flow(token.access_token, "access_token", one_try=one_try)
            return
        if token_type_hint != "access_token":  # an access token alone ends no family
            self.forget_refresh_token(token)
        data = {"token": token}
        if token_type_hint:
            data["token_type_hint"] = token_type_hint
        extensions: dict[str, object] | None = {ONE_TRY: True} if one_try else None
        yield from self._post_flow("revocation_endpoint", data, "revocation", extensions)


def _may_have_traded(exc: Exception) -> bool:
    """Whether a token request that failed with ``exc`` may have been processed: its
    answer was lost or unreadable, or a proxy's 502/504 (or a 500) came instead."""
    if isinstance(exc, TransportError):
        return exc.sent
    if isinstance(exc, ConfigurationError):  # raised before anything was sent
        return False
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status >= 500 and status != 503
    return True  # an answer that could not be read (ProtocolError): it may have traded


def _refused(exc: Exception) -> bool:
    """Whether the server answered ``exc`` as a refusal (4xx), so nothing changed."""
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500


def subject_of(token: str | TokenSet) -> object:
    """The ``sub`` a token names, unchecked; of a ``TokenSet``, its ID token's
    (validated, or kept from a login this app validated), else its access token's."""
    if isinstance(token, TokenSet):
        if token.id_token_claims is not None:
            return token.id_token_claims.get("sub")
        token = token.id_token or token.access_token
    try:
        return parse_compact(token).claims().get("sub")
    except JoseError:
        return None


def _same_user(previous: TokenSet | None, tokens: TokenSet) -> TokenSet:
    """The refreshed ``tokens``, keeping ``previous``'s ID token when they bring
    none; a new ID token must be about the same user (OIDC Core 12.2)."""
    if previous is None or previous.id_token is None:
        return tokens
    if tokens.id_token is None:
        return dataclasses.replace(
            tokens, id_token=previous.id_token, id_token_claims=previous.id_token_claims
        )
    before = subject_of(previous)
    if before is not None and subject_of(tokens) != before:
        raise InvalidToken("The refreshed ID token is about another user.")
    return tokens


def map_http_error(exc: Exception) -> Exception:
    """The SDK exception for an exception raised by httpx2 while sending."""
    mapped = _mapped_http_error(exc)
    if isinstance(mapped, TransportError) and isinstance(exc, NOT_SENT):
        mapped.sent = False
    return mapped


def _mapped_http_error(exc: Exception) -> Exception:
    if isinstance(exc, httpx2.TimeoutException):
        return TimeoutError("The request to the provider timed out.")
    if isinstance(exc, httpx2.UnsupportedProtocol | httpx2.InvalidURL):
        return ConfigurationError("The provider URL cannot be used (check option 'url').")
    if isinstance(exc, httpx2.TooManyRedirects):
        return ProtocolError("The provider redirected too many times.")
    if isinstance(exc, httpx2.DecodingError):
        return ProtocolError("The provider's response could not be decoded.")
    if isinstance(exc, httpx2.HTTPError | httpx2.StreamError):
        return TransportError(f"Could not reach the provider ({type(exc).__name__}).")
    return exc
