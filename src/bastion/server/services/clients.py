"""Registering OAuth clients and checking their credentials."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets as _secrets
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from bastion.server.models import Client
from bastion.server.services import secrets
from bastion.server.services.errors import AlreadyExists, InvalidInput, NotFound
from bastion.server.storage.base import Conflict, Storage
from bastion.server.text import storable

#: Grant types a client may be registered for. Grants not yet served by the token
#: endpoint are refused there with ``unsupported_grant_type``.
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", "password")
_CONFIDENTIAL_ONLY = {"client_credentials"}
SCOPE_PATTERN = r"^[\x21\x23-\x5b\x5d-\x7e]+$"  # one scope token: RFC 6749 section 3.3
SCOPE_RULE = "printable ASCII characters other than space, '\"' and '\\' (one scope token)"
_SCOPE_TOKEN = re.compile(SCOPE_PATTERN)
#: Characters a client's scopes may come to (joined by spaces, as a token's ``scope``
#: carries them): with up to ``rbac.CLAIMS_BUDGET`` of roles and permissions and the
#: other claims, every access token stays within the ``MAX_TOKEN_LENGTH`` that Bastion
#: and the SDK accept (tests/server/test_token_size.py signs the largest).
MAX_SCOPE_LENGTH = 2048
_LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# An http loopback redirect URI's authority, exactly as registered apps write it.
_LOOPBACK_AUTHORITY = re.compile(r"http://(127\.0\.0\.1|\[::1\]|localhost)(?::([0-9]{1,5}))?(?=[/?]|$)")


def without_loopback_port(uri: str) -> str | None:
    """``uri`` with its port dropped if it is an http loopback redirect URI (a native
    app's, RFC 8252 section 7.3: any port at request time), else ``None``."""
    found = _LOOPBACK_AUTHORITY.match(uri)
    if found is None or (found[2] is not None and not 0 < int(found[2]) < 65536):
        return None
    return f"http://{found[1]}{uri[found.end():]}"


def matching_redirect_uri(given: str, registered: Iterable[str]) -> bool:
    """Exact string match (RFC 9700 section 2.1), but for the port of a loopback URI."""
    if given in registered:
        return True
    base = without_loopback_port(given)
    return base is not None and any(without_loopback_port(r) == base for r in registered)


def check_redirect_uri(uri: str, field: str = "redirect_uri") -> str:
    """RFC 9700 2.1 / RFC 8252: absolute, no fragment, https or loopback http or a
    private-use scheme for native apps."""
    if not storable(uri):  # a NUL or a lone surrogate (CLI arguments can carry one)
        raise InvalidInput(field, "must be text without NUL or undecodable bytes")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidInput(field, f"{uri!r} is not a valid URI") from None
    if not parts.scheme or parts.fragment or "#" in uri or any(c.isspace() for c in uri):
        raise InvalidInput(field, f"{uri!r} must be absolute and have no fragment")
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise InvalidInput(field, f"{uri!r} has no host")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise InvalidInput(field, f"{uri!r} must use https (http only for loopback)")
    elif "." not in parts.scheme:
        raise InvalidInput(
            field, f"{uri!r}: a custom scheme must be reverse-DNS, e.g. com.example.app"
        )
    return uri


def check_logout_uri(uri: str) -> str | None:
    """A ``backchannel_logout_uri`` (Back-Channel Logout 1.0 section 2.2): absolute http
    or https, https unless loopback, no fragment; ``""`` stands for none."""
    if uri == "":
        return None
    check_redirect_uri(uri, "backchannel_logout_uri")
    if urlsplit(uri).scheme not in ("http", "https"):
        raise InvalidInput("backchannel_logout_uri", f"{uri!r} must use https")
    return uri


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for scope in scopes:
        for token in scope.split():
            if not _SCOPE_TOKEN.match(token):
                raise InvalidInput("scopes", f"{token!r} is not a valid scope token")
            if token not in out:
                out.append(token)
    length = len(" ".join(out))
    if length > MAX_SCOPE_LENGTH:
        raise InvalidInput("scopes", f"the scopes come to {length} characters, over the "
                           f"{MAX_SCOPE_LENGTH} a token can carry next to the roles of a "
                           "user; register fewer or shorter scopes")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NewClient:
    client: Client
    client_secret: str | None = field(repr=False)  # shown once, when issued


def _checked_grants(grant_types: Iterable[str], public: bool,
                    uris: tuple[str, ...]) -> tuple[str, ...]:
    grants = tuple(dict.fromkeys(grant_types)) or (  # a public client signs users in
        ("authorization_code", "refresh_token") if uris or public else ("client_credentials",)
    )
    for grant in grants:
        if grant not in GRANT_TYPES:
            raise InvalidInput("grant_types", f"unknown grant type {grant!r}; one of {GRANT_TYPES}")
        if public and grant in _CONFIDENTIAL_ONLY:
            raise InvalidInput("grant_types", f"a public client cannot use {grant!r}")
    if "authorization_code" in grants and not uris:
        raise InvalidInput("redirect_uris", "authorization_code needs at least one redirect URI")
    return grants


#: Bidirectional formatting characters (embeddings, overrides, isolates, marks).
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _checked_name(name: str) -> str:
    name = name.strip()
    if not storable(name):
        raise InvalidInput("name", "must be text without NUL or undecodable bytes")
    if not name or len(name) > 200:
        raise InvalidInput("name", "must be 1 to 200 characters")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI for c in name):
        # It is shown on pages and in mail: a line break in a sign-in mail's text
        # could set a link of the name's above Bastion's own, a bidi override reverse it.
        raise InvalidInput("name", "must be one line, without control characters")
    return name


def _checked_uris(uris: Iterable[str], field: str = "redirect_uris") -> tuple[str, ...]:
    """``field``: the list's name in the API (an error names it)."""
    return tuple(dict.fromkeys(check_redirect_uri(u, field) for u in uris))


def new_client_id() -> str:
    """128 random bits, never beginning with '-': given to a command (``bastion clients
    rotate-secret -X...``) such an id read as an option, one client in 64."""
    while (client_id := _secrets.token_urlsafe(16)).startswith("-"):
        pass
    return client_id


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
    backchannel_logout_uri: str | None = None,
) -> NewClient:
    name = _checked_name(name)
    uris = _checked_uris(redirect_uris)
    logout_uris = _checked_uris(post_logout_redirect_uris, "post_logout_redirect_uris")
    grants = _checked_grants(grant_types, public, uris)
    plain = None if public else secrets.new_secret()
    client = Client(
        client_id=client_id or new_client_id(),
        name=name,
        is_public=public,
        secret_digest=secrets.digest(plain) if plain else None,
        redirect_uris=uris,
        grant_types=grants,
        scopes=check_scopes(scopes),
        created_at=datetime.now(UTC),
        post_logout_redirect_uris=logout_uris,
        backchannel_logout_uri=check_logout_uri(backchannel_logout_uri or ""),
    )
    try:
        await storage.create_client(client)
    except Conflict:
        raise AlreadyExists("client_id", client.client_id) from None
    return NewClient(client, plain)


async def get_client(storage: Storage, client_id: str) -> Client:
    client = await storage.get_client(client_id)
    if client is None:
        raise NotFound("client", client_id)
    return client


async def update_client(
    storage: Storage,
    client_id: str,
    *,
    name: str | None = None,
    redirect_uris: Iterable[str] | None = None,
    grant_types: Iterable[str] | None = None,
    scopes: Iterable[str] | None = None,
    post_logout_redirect_uris: Iterable[str] | None = None,
    backchannel_logout_uri: str | None = None,
) -> Client:
    """Change what is given (a list replaces the stored one; ``""`` removes the
    back-channel logout URI). The client as a whole
    must still be valid, checked under its row lock: no authorization_code grant
    without a redirect URI, even when two changes race."""
    changes: dict[str, Any] = {}
    if redirect_uris is not None:
        changes["redirect_uris"] = _checked_uris(redirect_uris)
    if post_logout_redirect_uris is not None:
        changes["post_logout_redirect_uris"] = _checked_uris(post_logout_redirect_uris,
                                                             "post_logout_redirect_uris")
    if backchannel_logout_uri is not None:
        changes["backchannel_logout_uri"] = check_logout_uri(backchannel_logout_uri)
    if scopes is not None:
        changes["scopes"] = check_scopes(scopes)
    given = None if grant_types is None else tuple(grant_types)
    if given == ():
        raise InvalidInput("grant_types", "must name at least one grant type")

    def change(current: Client) -> dict[str, Any]:
        uris = changes.get("redirect_uris", current.redirect_uris)
        grants = _checked_grants(given or current.grant_types, current.is_public, uris)
        named = {}
        if name is not None and name.strip() != current.name:  # a name stored before the
            named["name"] = _checked_name(name)  # rules were, sent back unchanged, passes
        return {**changes, **named, **({"grant_types": grants} if given else {})}

    updated = await storage.update_client(client_id, change)
    if updated is None:
        raise NotFound("client", client_id)
    return updated


#: The longest a replaced secret may stay valid: long enough to roll it out.
MAX_SECRET_OVERLAP = 7 * 24 * 3600


async def rotate_secret(storage: Storage, client_id: str, keep_old_for: int = 0) -> NewClient:
    """A new secret for a confidential client, shown once. The old one stays valid
    for ``keep_old_for`` seconds (0: stops at once), so apps can move without downtime;
    a secret kept from an earlier rotation ends now."""
    if not 0 <= keep_old_for <= MAX_SECRET_OVERLAP:
        raise InvalidInput("keep_old_for", f"must be 0 to {MAX_SECRET_OVERLAP} seconds")
    plain = secrets.new_secret()
    now = datetime.now(UTC)
    until = now + timedelta(seconds=keep_old_for) if keep_old_for else None

    def change(current: Client) -> dict[str, Any]:
        if current.is_public:
            raise InvalidInput("client_id", "a public client has no secret to rotate")
        changes = {"secret_digest": secrets.digest(plain),
                   "previous_secret_digest": current.secret_digest if until else None,
                   "previous_secret_expires_at": until}
        if until is None:  # as after a leak: the tokens got with the old secret end too
            changes["tokens_not_before"] = now
        return changes

    updated = await storage.update_client(client_id, change)
    if updated is None:
        raise NotFound("client", client_id)
    return NewClient(updated, plain)


def previous_secret_until(client: Client, now: datetime | None = None) -> datetime | None:
    """Until when the secret before the last rotation still works; None if it does not."""
    until = client.previous_secret_expires_at
    if client.previous_secret_digest is None or until is None:
        return None
    return until if (now or datetime.now(UTC)) < until else None


def matching_secret(client: Client, secret: str, now: datetime | None = None) -> bytes | None:
    """The digest of the client's secret that ``secret`` is: the current one, or the
    previous one within its overlap; ``None`` if neither. Both are compared, in
    constant time, whenever a previous one is stored."""
    current = secrets.matches(secret, client.secret_digest)
    previous = client.previous_secret_digest
    older = previous is not None and secrets.matches(secret, previous)
    if current:
        return client.secret_digest
    return previous if older and previous_secret_until(client, now) is not None else None


@functools.lru_cache(maxsize=1024)  # per token issued and checked: hashed once per secret
def secret_generation(digest: bytes) -> str:
    """``sgen``, a tag of the secret (by its digest) a client's own token was got
    with: a token from a secret that has since ended is refused, even one minted by
    an instance whose cache still held it (see ``own_token_refused``)."""
    tag = hashlib.sha256(b"bastion sgen\0" + digest).digest()[:9]
    return base64.urlsafe_b64encode(tag).decode("ascii")


async def delete_client(storage: Storage, client_id: str) -> bool:
    """Delete a client and revoke what it holds; False if it was deleted before (a
    repeated DELETE), ``NotFound`` if there never was one."""
    done = await storage.delete_client(client_id, datetime.now(UTC))
    if done == "missing":
        raise NotFound("client", client_id)
    return done == "deleted"


def own_token_refused(client: Client, claims: Mapping[str, Any]) -> bool:
    """Whether a token the client got for itself (no grant) was got with a secret that
    has ended: one replaced since, or a previous one after its overlap (a token it got
    within the overlap lives out its ttl). Tokens from before ``sgen`` existed fall
    back to ``tokens_not_before``, in whole seconds of ``iat``."""
    if claims.get("gid"):
        return False
    iat, tag = claims.get("iat"), claims.get("sgen")
    if isinstance(tag, str):
        if client.secret_digest is not None and tag == secret_generation(client.secret_digest):
            return False
        previous, until = client.previous_secret_digest, client.previous_secret_expires_at
        if previous is None or until is None or tag != secret_generation(previous):
            return True
        return not isinstance(iat, int) or iat >= until.timestamp()
    cutoff = client.tokens_not_before
    if cutoff is None:
        return False
    return not isinstance(iat, int) or iat < int(cutoff.timestamp())


class ClientCache:
    """Clients by id, trusted for ``ttl`` seconds: the token endpoint's hot path
    then needs no database round trip. Unknown ids are cached too, so a flood of
    bogus ids costs one query each per ``ttl``."""

    def __init__(self, storage: Storage, ttl: float, max_entries: int = 10_000) -> None:
        self._storage, self._ttl, self._max = storage, ttl, max_entries
        self._entries: dict[str, tuple[float, Client | None]] = {}
        self._loading: set[str] = set()
        self._generation = 0  # counts forget(): a read begun before one is not cached

    async def get(self, client_id: str, *, fresh: bool = False) -> Client | None:
        """The client, from the cache unless ``fresh`` (read now, and cached)."""
        if not storable(client_id):  # no such id can be stored (PostgreSQL refuses NUL)
            return None
        now = time.monotonic()
        hit = None if fresh else self._entries.get(client_id)
        if hit is not None and (now - hit[0] < self._ttl or client_id in self._loading):
            # Fresh; or stale while another request reloads it: one read per expiry,
            # not one per request that arrives meanwhile.
            return hit[1]
        self._loading.add(client_id)
        generation = self._generation
        try:
            client = await self._storage.get_client(client_id)
        finally:
            self._loading.discard(client_id)
        if generation != self._generation:  # a change was made meanwhile: may predate it
            return client
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[client_id] = (now, client)
        return client

    def forget(self, client_id: str) -> None:
        """Drop one entry: a change made through this instance applies here at once."""
        self._generation += 1
        self._entries.pop(client_id, None)
