"""The first layer of the I/O-free core: settings, the decisions every flow
shares, discovery, the provider's keys and local verification.

``DiscoveryCore`` holds the settings and the caches (metadata from OpenID
Connect Discovery 1.0 or RFC 8414, and the JWKS); it decides whether a request
is safe to retry, maps error responses to exceptions, finds advertised
endpoints, and verifies JWT access tokens (RFC 9068) with the keys, fetching
them again for an unknown key. Work that many callers may need at once (a JWKS
fetch, a refresh) runs as a single flight (see ``_flight``). ``BaseClient`` in
``_base`` builds on it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable, Collection, Generator, Hashable
from typing import Any, TypeVar

import httpx2

from bastion.oauth.claims import check_access_token_claims
from bastion.oauth.errors import InvalidToken, OAuthError
from bastion.oauth.jose import UnknownKey
from bastion.oauth.metadata import MetadataError, ProviderMetadata, discovery_urls

from ._arguments import scope_text
from ._config import Settings, check_leeway
from ._flight import Flight, Flights, Wait
from ._responses import error_from_response, json_object
from ._retry import IDEMPOTENT_METHODS, RetryPolicy
from ._verify import TokenVerifier
from .exceptions import BastionError, EndpointNotAdvertised, ProtocolError, TransportError
from .jwks import KeySet

__all__ = ["JSON_HEADERS", "ONE_TRY", "DiscoveryCore", "Flow"]

T = TypeVar("T")
#: Yields requests (or a ``Wait`` for another caller's flight), is sent their
#: responses, returns a result.
Flow = Generator[httpx2.Request | Wait, httpx2.Response, T]

JSON_HEADERS = {"Accept": "application/json"}
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])no-(?:cache|store)\b", re.IGNORECASE)
#: A request extension: send once, never retry (see ``first_attempt``).
ONE_TRY = "bastion.one_try"


class DiscoveryCore:
    """Settings, caches (metadata, keys), shared decisions and verification; no I/O."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.retry = RetryPolicy(retries=settings.retries, max_wait=settings.timeout)
        self.metadata: ProviderMetadata | None = None
        self.keys = KeySet()
        #: A load of the JWKS without keys at hand failed (cleared by a fetch that
        #: succeeds): the next loads are single requests.
        self.jwks_failed = False
        #: Discovery failed (cleared when it succeeds): its next tries are single
        #: requests, as the JWKS's are.
        self.discovery_failed = False
        self.verifier = TokenVerifier(self.keys, settings.algorithms)
        self.flights = Flights()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.settings.url!r})"

    def request(self, method: str, url: str, *, extensions: dict[str, object] | None = None,
                **options: Any) -> httpx2.Request:
        """A request of a flow, with the configured timeout on it: httpx2 sets its
        client's timeout only on the request given to ``send``, not on those an
        ``httpx2.Auth`` flow sends (a token fetched inside ``client.auth``)."""
        timeout = httpx2.Timeout(self.settings.timeout).as_dict()
        return httpx2.Request(method, url, extensions={"timeout": timeout, **(extensions or {})},
                              **options)

    # -- shared decisions -------------------------------------------------------

    def is_idempotent(self, request: httpx2.Request) -> bool:
        """Safe to send twice? Introspection and revocation POSTs are (RFC 7009 2.2)."""
        if request.method in IDEMPOTENT_METHODS:
            return True
        metadata = self.metadata
        if metadata is None or request.method != "POST":
            return False
        url = str(request.url)
        return url in (metadata.introspection_endpoint, metadata.revocation_endpoint)

    def first_attempt(self, request: httpx2.Request) -> int:
        """The attempt number ``request`` starts at: the last one for a request sent
        with ``ONE_TRY`` (a JWKS renewal), so the shells never retry it."""
        return self.retry.retries if ONE_TRY in request.extensions else 0

    def raise_for_response(self, response: httpx2.Response) -> None:
        if 300 <= response.status_code < 400:
            raise ProtocolError(f"The provider answered with a redirect ({response.status_code}).")
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.headers, response.content, self.clock()
            )

    def raise_for_provider_response(self, response: httpx2.Response, what: str) -> None:
        """``raise_for_response`` for a document the client fetches for itself
        (metadata, keys): an OAuth refusal there (a proxy's 401 ``invalid_token``) is
        no verdict on a token the client was asked about, so it is a ``ProtocolError``
        (an app's guard answers 503, not 401 to a valid token)."""
        try:
            self.raise_for_response(response)
        except OAuthError as exc:
            if exc.status_code is not None and exc.status_code >= 500:
                raise
            raise ProtocolError(f"The provider refused to give {what} "
                                f"({response.status_code} {exc.error_code}).") from exc

    def endpoint(self, metadata: ProviderMetadata, name: str) -> str:
        """An advertised endpoint: a standard one, or an extension such as Bastion's
        ``passwordless_endpoint`` read from the raw document (an http(s) URL)."""
        url = metadata.endpoint(name)
        extra = metadata.raw.get(name) if name.endswith("_endpoint") else None
        if url is None and isinstance(extra, str) and extra.startswith(("https://", "http://")):
            url = extra
        if url is None:
            raise EndpointNotAdvertised(f"the provider's metadata does not advertise {name}")
        return url

    # -- discovery and keys -----------------------------------------------------

    def metadata_flow(self) -> Flow[ProviderMetadata]:
        """Discovery once per client, one request for all concurrent callers."""
        if self.metadata is not None:
            return self.metadata
        flight, lead = self.flights.join("metadata", lambda: self.metadata)
        if not lead:
            found: ProviderMetadata = yield from self.follow(flight)
            return found
        try:
            return (yield from self.lead("metadata", flight, self.discovery_flow()))
        except BastionError:
            self.discovery_failed = True
            raise

    def discovery_flow(self) -> Flow[ProviderMetadata]:
        """Fetch the metadata: OpenID Connect Discovery first, then RFC 8414."""
        oidc_url, rfc8414_url = discovery_urls(self.settings.url)
        # Once discovery has failed, each try is one request (see ``keys_flow``):
        # while the provider is down, every call would wait for retries otherwise.
        once: dict[str, object] | None = {ONE_TRY: True} if self.discovery_failed else None
        response = yield self.request("GET", oidc_url, headers=JSON_HEADERS, extensions=once)
        # A refusal (4xx: no such document, not allowed here...) says "not an OpenID
        # provider": try RFC 8414. But a 429 is the answer (RateLimited, with this
        # response's Retry-After), and so is a 5xx: the provider is in trouble.
        if 400 <= response.status_code < 500 and response.status_code != 429:
            response = yield self.request("GET", rfc8414_url, headers=JSON_HEADERS,
                                          extensions=once)
        self.raise_for_provider_response(response, "its metadata")
        try:
            metadata = ProviderMetadata.from_document(
                json_object(response.content), expected_issuer=self.settings.url
            )
        except MetadataError as exc:
            raise ProtocolError(f"Unusable provider metadata: {exc}.") from None
        self.metadata, self.discovery_failed = metadata, False
        return metadata

    def jwks_flow(self, *, one_try: bool = False) -> Flow[KeySet]:
        metadata = yield from self.metadata_flow()
        url = self.endpoint(metadata, "jwks_uri")
        response = yield self.request("GET", url, headers=JSON_HEADERS,
                                      extensions={ONE_TRY: True} if one_try else None)
        self.raise_for_provider_response(response, "its keys")
        self.keys.load(json_object(response.content), self.clock(), self.jwks_max_age(response),
                       self.settings.jwks_max_stale)
        self.jwks_failed = False
        return self.keys

    def jwks_max_age(self, response: httpx2.Response) -> float:
        """How long the keys of ``response`` are trusted: ``jwks_max_age``, or the
        provider's shorter ``max-age`` (though not below ``jwks_refresh_interval``:
        ``max-age=0`` must not mean a fetch per token)."""
        settings = self.settings
        control = response.headers.get("cache-control", "")
        found = _MAX_AGE.search(control)
        if found is None:
            return settings.jwks_refresh_interval if _NO_CACHE.search(control) \
                else settings.jwks_max_age
        return min(settings.jwks_max_age, max(float(found[1]), settings.jwks_refresh_interval))

    def keys_flow(self, *, refetch: bool = False) -> Flow[bool]:
        """Fetch the JWKS once for all concurrent callers: if none is loaded, or
        with ``refetch`` at most once per ``jwks_refresh_interval``, counted from
        the attempt, failed or not. ``False`` when that limit refuses a refetch.

        A first load is not rate-limited, but once one has failed the next are
        single requests, as a refetch always is: while the provider is down, no
        verification waits for retries and their ``Retry-After``."""
        now, interval = self.clock(), self.settings.jwks_refresh_interval

        def settled() -> bool | None:
            if not refetch:
                return True if self.keys.loaded else None
            return None if self.keys.may_refetch(now, interval) else False

        flight, lead = self.flights.join("jwks", settled)
        if lead:
            self.keys.fetched_at = now  # the attempt counts, even if the fetch fails
            try:
                # A refetch (keys at hand, a kid not among them: perhaps forged) is
                # one request too: its callers must not wait for retries.
                flow = self.jwks_flow(one_try=self.jwks_failed or refetch)
                yield from self.lead("jwks", flight, flow)
            except BastionError:
                if not refetch:  # (a refetch, with keys at hand, waits the interval)
                    self.jwks_failed = True
                raise
            return True
        answer = yield from self.follow(flight)  # settled: True or False; else the keys
        return answer is not False

    def renew_flow(self) -> Flow[None]:
        """Fetch keys older than their max age again, without holding up verification:
        one caller per ``jwks_refresh_interval`` sends a single request (no retries)
        and waits for it; everyone else, and that caller too if it fails, goes on with
        the keys at hand (an outage must not fail or stall every token)."""
        now, interval = self.clock(), self.settings.jwks_refresh_interval

        def settled() -> bool | None:
            keys = self.keys
            return None if keys.stale(now) and keys.may_refetch(now, interval) else False

        flight, lead = self.flights.join("jwks", settled)
        if not lead:  # fresh now, tried lately, or being fetched: not waited for
            return
        self.keys.fetched_at = now
        try:
            yield from self.lead("jwks", flight, self.jwks_flow(one_try=True))
        except BastionError:
            later = self.clock()  # the next try (and the fast path) after the interval,
            keys = self.keys  # though never past the keys' last usable moment
            keys.fetched_at, keys.expires_at = later, min(later + interval, keys.usable_until)

    # -- single flights (see ``_flight``) -----------------------------------------

    def lead(
        self,
        key: Hashable,
        flight: Flight,
        flow: Flow[T],
        keep: Callable[[T], object] | None = None,
        keep_error: Callable[[Exception], object] | None = None,
    ) -> Flow[T]:
        """Run ``flow`` for everyone following ``flight``, then land it; ``keep``
        stores a result for later callers, ``keep_error`` an error (see
        ``Flights.land``)."""
        def failed(error: Exception) -> None:
            keep = None if keep_error is None else functools.partial(keep_error, error)
            self.flights.land(key, flight, error=error, keep=keep)

        try:
            result = yield from flow
        except Exception as exc:
            failed(exc)
            raise
        except BaseException:  # cancelled or abandoned: the request may have left
            failed(TransportError("The request this call waited for was interrupted."))
            raise
        stored = None if keep is None else lambda: keep(result)
        self.flights.land(key, flight, result, keep=stored)
        return result

    def follow(self, flight: Flight) -> Flow[Any]:
        """The outcome of another caller's ``flight``, once it has landed."""
        if not flight.landed:
            yield Wait(flight)
        return flight.outcome()

    # -- local verification -----------------------------------------------------

    def verify_local(
        self,
        token: str,
        audience: str | None = None,
        scopes: Collection[str] | str | None = None,
        leeway: float | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Verify with the keys at hand; ``UnknownKey`` means "fetch the JWKS"."""
        claims = self.verifier.verify(token)
        settings = self.settings
        metadata = self.metadata
        issuer = metadata.issuer if metadata is not None else settings.url
        check_access_token_claims(
            claims,
            issuer=issuer,
            audience=audience or settings.audience or issuer,
            now=self.clock() if now is None else now,
            leeway=settings.leeway if leeway is None else check_leeway(leeway),
            scopes=() if scopes is None else (scope_text(scopes) or "").split(),  # hot path
        )
        return claims

    def verify_cached(
        self,
        token: str,
        audience: str | None = None,
        scopes: Collection[str] | str | None = None,
        leeway: float | None = None,
    ) -> dict[str, Any] | None:
        """The fast path: claims, or ``None`` when the JWKS must be fetched first."""
        now = self.clock()
        if self.keys.stale(now):  # (no keys loaded yet are stale too)
            return None
        try:
            return self.verify_local(token, audience, scopes, leeway, now)
        except UnknownKey:
            return None

    def verify_flow(
        self,
        token: str,
        audience: str | None = None,
        scopes: Collection[str] | str | None = None,
        leeway: float | None = None,
    ) -> Flow[dict[str, Any]]:
        """Verify a JWT access token (RFC 9068) with the provider's JWKS.

        The JWKS is fetched on first use, and again for an unknown ``kid`` (keys
        rotate) at most once per ``jwks_refresh_interval``.
        """
        return (
            yield from self.with_keys_flow(
                lambda: self.verify_local(token, audience, scopes, leeway), "The token"
            )
        )

    def with_keys_flow(self, verify: Callable[[], T], what: str) -> Flow[T]:
        """``verify()`` with the provider's keys: the JWKS is fetched first if none
        is loaded, and once more (rate-limited) when ``verify`` meets an unknown
        key; a key still unknown, or a refetch refused or failed, makes ``what``
        an ``InvalidToken``."""
        keys = self.keys
        keys.drop_if_unusable(self.clock())
        if keys.loaded and keys.stale(self.clock()):
            yield from self.renew_flow()
            keys.drop_if_unusable(self.clock())  # the renewal failed past the limit
        if not keys.loaded:  # (dropped by another caller meanwhile too)
            # Without keys ``verify`` gets as far as the key id: junk is refused
            # before any fetch, costing the provider nothing (and answered as junk).
            with contextlib.suppress(UnknownKey):
                verify()
            yield from self.keys_flow()
        try:
            return verify()
        except UnknownKey:
            pass
        unknown = f"{what} is signed by an unknown key."
        try:
            fetched = yield from self.keys_flow(refetch=True)
        except BastionError as exc:  # we have keys, and this is not one of them
            raise InvalidToken(unknown) from exc
        if not fetched:
            raise InvalidToken(unknown)
        try:
            return verify()
        except UnknownKey:
            raise InvalidToken(unknown) from None
