"""Registering OAuth clients and checking their credentials."""

from __future__ import annotations

import re
import secrets as _secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bastion.server.models import Client
from bastion.server.services import secrets
from bastion.server.services.errors import AlreadyExists, InvalidInput
from bastion.server.storage.base import Conflict, Storage

#: Grant types a client may be registered for. Grants not yet served by the token
#: endpoint are refused there with ``unsupported_grant_type``.
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", "password")
_CONFIDENTIAL_ONLY = {"client_credentials"}
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 section 3.3
_LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def check_redirect_uri(uri: str) -> str:
    """RFC 9700 2.1 / RFC 8252: absolute, no fragment, https or loopback http or a
    private-use scheme for native apps."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidInput("redirect_uri", f"{uri!r} is not a valid URI") from None
    if not parts.scheme or parts.fragment or "#" in uri or any(c.isspace() for c in uri):
        raise InvalidInput("redirect_uri", f"{uri!r} must be absolute and have no fragment")
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise InvalidInput("redirect_uri", f"{uri!r} has no host")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise InvalidInput("redirect_uri", f"{uri!r} must use https (http only for loopback)")
    elif "." not in parts.scheme:
        raise InvalidInput(
            "redirect_uri", f"{uri!r}: a custom scheme must be reverse-DNS, e.g. com.example.app"
        )
    return uri


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for scope in scopes:
        for token in scope.split():
            if not _SCOPE_TOKEN.match(token):
                raise InvalidInput("scope", f"{token!r} is not a valid scope token")
            if token not in out:
                out.append(token)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NewClient:
    client: Client
    client_secret: str | None  # shown once, at creation


async def create_client(
    storage: Storage,
    *,
    name: str,
    public: bool = False,
    redirect_uris: Iterable[str] = (),
    grant_types: Iterable[str] = (),
    scopes: Iterable[str] = (),
    client_id: str | None = None,
    post_logout_redirect_uris: Iterable[str] = (),
) -> NewClient:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name", "must be 1 to 200 characters")
    uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in redirect_uris))
    logout_uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in post_logout_redirect_uris))
    grants = tuple(dict.fromkeys(grant_types)) or (
        ("authorization_code", "refresh_token") if uris else ("client_credentials",)
    )
    for grant in grants:
        if grant not in GRANT_TYPES:
            raise InvalidInput("grant_type", f"unknown grant type {grant!r}; one of {GRANT_TYPES}")
        if public and grant in _CONFIDENTIAL_ONLY:
            raise InvalidInput("grant_type", f"a public client cannot use {grant!r}")
    if "authorization_code" in grants and not uris:
        raise InvalidInput("redirect_uri", "authorization_code needs at least one redirect URI")
    plain = None if public else secrets.new_secret()
    client = Client(
        client_id=client_id or _secrets.token_urlsafe(16),
        name=name,
        is_public=public,
        secret_digest=secrets.digest(plain) if plain else None,
        redirect_uris=uris,
        grant_types=grants,
        scopes=check_scopes(scopes),
        created_at=datetime.now(UTC),
        post_logout_redirect_uris=logout_uris,
    )
    try:
        await storage.create_client(client)
    except Conflict:
        raise AlreadyExists("client_id", client.client_id) from None
    return NewClient(client, plain)


class ClientCache:
    """Clients by id, trusted for ``ttl`` seconds: the token endpoint's hot path
    then needs no database round trip. Unknown ids are cached too, so a flood of
    bogus ids costs one query each per ``ttl``."""

    def __init__(self, storage: Storage, ttl: float, max_entries: int = 10_000) -> None:
        self._storage, self._ttl, self._max = storage, ttl, max_entries
        self._entries: dict[str, tuple[float, Client | None]] = {}
        self._loading: set[str] = set()

    async def get(self, client_id: str) -> Client | None:
        now = time.monotonic()
        hit = self._entries.get(client_id)
        if hit is not None and (now - hit[0] < self._ttl or client_id in self._loading):
            # Fresh; or stale while another request reloads it: one read per expiry,
            # not one per request that arrives meanwhile.
            return hit[1]
        self._loading.add(client_id)
        try:
            client = await self._storage.get_client(client_id)
        finally:
            self._loading.discard(client_id)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[client_id] = (now, client)
        return client
