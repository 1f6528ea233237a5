"""Domain records the services and storage exchange. Plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

KeyUse = Literal["access", "id"]


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    email: str
    password_hash: str | None = field(repr=False)
    is_administrator: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    #: When the address was proven theirs (a link mailed to it used), or an admin said so.
    email_verified_at: datetime | None = None
    #: When the user's name, address and other personal data were erased (for good).
    erased_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    is_public: bool
    secret_digest: bytes | None = field(repr=False)
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    created_at: datetime | None = None
    post_logout_redirect_uris: tuple[str, ...] = ()
    #: The secret before the last rotation, accepted until ``previous_secret_expires_at``.
    previous_secret_digest: bytes | None = field(default=None, repr=False)
    previous_secret_expires_at: datetime | None = None
    #: The client's own tokens (no grant) issued before this are refused.
    tokens_not_before: datetime | None = None
    #: Deleted clients are kept, marked: their ids are never reused.
    deleted_at: datetime | None = None
    #: Where Bastion POSTs a logout token when a session the client holds tokens from
    #: ends (OpenID Connect Back-Channel Logout 1.0).
    backchannel_logout_uri: str | None = None


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    use: KeyUse
    private_key_enc: bytes = field(repr=False)
    public_jwk: dict[str, Any] = field(repr=False)
    created_at: datetime
    retired_at: datetime | None = None
    #: When it began to sign; ``None`` for the next key, published ahead of its turn.
    activated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LoginSession:
    """A browser's signed-in session at Bastion (the OIDC ``sid``)."""

    id: str
    user_id: str
    auth_time: datetime
    expires_at: datetime
    created_at: datetime
    user_agent: str = ""
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    digest: bytes = field(repr=False)
    client_id: str
    user_id: str
    session_id: str | None
    grant_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    auth_time: datetime
    expires_at: datetime
    consumed_at: datetime | None = None
    organization_id: str | None = None
    #: Whether the authorization request named the redirect URI; only then must the
    #: token request repeat it (RFC 6749 section 4.1.3).
    redirect_uri_sent: bool = True


@dataclass(frozen=True, slots=True)
class Grant:
    """One authorization of a client by a user: the family of every token issued
    from it. Revoking the grant revokes them all."""

    id: str
    client_id: str
    user_id: str
    session_id: str | None
    scope: str
    auth_time: datetime
    created_at: datetime
    revoked_at: datetime | None = None
    organization_id: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    digest: bytes = field(repr=False)
    grant_id: str
    client_id: str
    user_id: str
    scope: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Throttle:
    """Failed sign-in attempts for one key (an account or a client IP)."""

    key: str
    failures: int
    last_failure_at: datetime
    #: When this count began: it starts over an hour later (or when its lock ends).
    first_failure_at: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Member:
    """A user holding roles in an organization (membership *is* holding a role)."""

    user: User
    roles: tuple[str, ...]  # the names, sorted


@dataclass(frozen=True, slots=True)
class Role:
    """A named set of permission strings within one organization."""

    id: str
    organization_id: str
    name: str
    permissions: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    """One audit record: who did what to what, when, from where."""

    id: str
    at: datetime
    action: str
    actor: str | None  # a user id or a client id
    actor_type: Literal["user", "client", "anonymous", "system"]
    target: str | None
    client_id: str | None
    ip: str | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A message in the outbox: kept until sent, retried with backoff when sending fails.
    Its body is erased once it is sent (it may hold a sign-in link)."""

    id: str
    to: str
    subject: str
    text: str = field(repr=False)
    html: str = field(repr=False)
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None
    #: The user the mail is about, if any (erasing them deletes it).
    user_id: str | None = None
    #: When the link it carries stops working: not sent after that (None: never).
    expires_at: datetime | None = None
    claimed_until: datetime | None = None  # set by ``claim_mail``: the claim to settle it with


@dataclass(frozen=True, slots=True)
class OneTimeToken:
    """A single-use emailed token (sign-in link, email change), stored as a digest."""

    digest: bytes = field(repr=False)
    purpose: Literal["sign_in", "email_change"]
    email: str
    user_id: str | None
    client_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LogoutNotice:
    """A back-channel logout to deliver: one per client, user and session whose grants
    were revoked when the session (or all the user's sessions) ended. Queued in the
    transaction that ends them; the logout token is signed when it is sent."""

    id: int
    client_id: str
    user_id: str
    session_id: str | None
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None
    claimed_until: datetime | None = None  # set when claimed: the claim to settle it with
