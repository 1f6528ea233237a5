"""The storage protocol every backend implements.

One contract test suite (``tests/storage``) runs it on SQLite and PostgreSQL.
Methods are small and single-purpose; anything that must be atomic is one method.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, TypedDict

from bastion.server.models import (
    AuthorizationCode,
    Client,
    Event,
    Grant,
    LoginSession,
    LogoutNotice,
    Member,
    OneTimeToken,
    Organization,
    OutgoingMail,
    RefreshToken,
    Role,
    SigningKey,
    Throttle,
    User,
)

#: "reused": a used token, whose family this call revoked; "replayed": a used token
#: whose family was revoked already.
RotateResult = Literal["rotated", "reused", "replayed", "invalid"]
DeleteRoleResult = Literal["deleted", "in_use", "missing"]
DeleteOrganizationResult = DeleteRoleResult
DeleteClientResult = Literal["deleted", "already", "missing"]


def _no_keys(_user_id: str, _names: Collection[str]) -> list[str]:
    return []


@dataclass(frozen=True, slots=True)
class PersonalData:
    """Where a user's name lies beyond their own rows, in terms the services define:
    what ``export_user`` gathers and ``erase_user`` takes out with the rest."""

    #: Actions of sign-in attempts, whose target is the login tried, as ``spell``
    #: spells it (not the user's id: the account may not exist).
    attempts: Collection[str] = ()
    spell: Callable[[str], str] = str
    #: Actions whose detail may hold the ``username`` or ``email`` of their target.
    named: Collection[str] = ()
    #: The throttle keys that name the account, from its id and its names.
    throttle_keys: Callable[[str, Collection[str]], list[str]] = _no_keys


@dataclass(frozen=True, slots=True)
class UserExport:
    """What the database holds about one user (``Storage.export_user``)."""

    user: User
    #: Each organization where they hold roles, with the roles' names (sorted).
    organizations: list[tuple[Organization, tuple[str, ...]]]
    sessions: list[LoginSession]  # newest first, ended ones too
    grants: list[tuple[Grant, str | None]]  # newest first, with the client's name
    events: list[Event]  # theirs, newest first, at most ``event_limit``
    events_total: int


class EventFilter(TypedDict, total=False):
    action: str
    actor: str
    target: str
    client_id: str
    since: datetime
    until: datetime


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """What ``Storage.purge`` may delete: rows that no longer decide anything."""

    now: datetime
    #: Authorization codes, refresh tokens, revoked access tokens' ids, emailed links
    #: and login sessions that expired before this, signing keys retired before it
    #: (and, for ``purge_grants``, grants made before it). Later than any access token
    #: lives: a grant's access tokens need its row (it says whether they are revoked).
    expired_before: datetime
    #: Throttle counts whose last attempt came before this, unless locked at ``now``.
    throttles_before: datetime
    #: Mail and back-channel logouts sent, or given up on, before this.
    mail_before: datetime
    #: Audit events recorded before this; ``None`` keeps them all.
    events_before: datetime | None = None
    #: Login sessions started before this are purged once expired even while a grant
    #: made in them lives: their cookie, which lasts ``session_ttl``, is gone.
    #: ``None``: only ``expired_before`` and the grants decide.
    sessions_before: datetime | None = None


class Conflict(Exception):
    """A unique value is taken; ``field`` names which (e.g. 'username')."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} already exists")
        self.field = field


class Unusable(Exception):
    """The database can no longer serve; the message says why (and holds no secret)."""


class Missing(Exception):
    """A record to refer to does not exist (e.g. deleted meanwhile); ``key`` names it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} does not exist")
        self.key = key


class Storage(Protocol):
    async def create_user(self, user: User) -> None:
        """Insert a user; raises ``Conflict('username' | 'email')``."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def get_user_by_login(self, login: str) -> User | None:
        """The user whose username or email equals ``login``, case-insensitively."""

    async def create_client(self, client: Client) -> None:
        """Insert a client; raises ``Conflict('client_id')``."""

    async def get_client(self, client_id: str) -> Client | None: ...

    async def list_clients(self, limit: int, offset: int) -> tuple[list[Client], int]:
        """A page of clients, oldest first, and how many there are."""

    async def update_client(
        self, client_id: str, change: Callable[[Client], Mapping[str, Any]]
    ) -> Client | None:
        """Under the client's row lock, ``change(current)`` gives the columns to set (it
        may raise: then nothing changes), so concurrent changes each see the last one.
        The client as it is after, or None if there is none."""

    async def delete_client(self, client_id: str, at: datetime) -> DeleteClientResult:
        """Mark a client deleted (its id is never reused; it is no longer found, listed
        or changed; its secrets are cleared) and revoke every grant it holds, with their
        codes, refresh and access tokens, in one transaction. "already" if it was
        deleted before, "missing" if there never was one."""

    async def rotate_signing_key(self, key: SigningKey) -> str:
        """In one transaction, for ``key``'s use: retire the active key, activate the
        next one and insert ``key`` as the new next key. With no next key (a first
        start) ``key`` is activated itself. Returns the kid that now signs."""

    async def publish_signing_key(self, key: SigningKey) -> bool:
        """Insert ``key`` as the next key of its use, unless that use has one already
        (then ``False``)."""

    async def withdraw_signing_key(self, kid: str, replacement: SigningKey) -> bool:
        """Delete a key, in one transaction that no rotation interleaves with: it leaves
        the JWKS and verifies nothing more. The key that signs is rotated out first (its
        use's next key signs, ``replacement`` waits next); a next key is replaced by
        ``replacement``; a retired key just goes. False if there is no such key."""

    async def replace_next_signing_key(self, kid: str, replacement: SigningKey) -> bool:
        """Replace the next key ``kid`` by ``replacement``, in one transaction that no
        rotation interleaves with, only while ``kid`` is still next (never signed);
        False if it is not (a rotation activated it meanwhile, or it is gone)."""

    async def signing_keys(self) -> list[SigningKey]:
        """Every key, active and retired, oldest first."""

    async def reencrypt(self, key: Callable[[SigningKey], bytes],
                        mail: Callable[[OutgoingMail], tuple[str, str]]) -> tuple[int, int]:
        """Store ``key(k)`` as the encrypted private key of every signing key, and
        ``mail(m)`` as the (text, html) bodies of every mail still queued (neither sent
        nor given up), in one transaction that no rotation interleaves with: an
        exception from either changes nothing. Returns how many keys and mails changed
        (a value returned as it was is not written)."""

    async def create_session(self, session: LoginSession, event: Event | None = None, *,
                             password_hash: str | None = None) -> bool:
        """Store a session and, optionally, the audit event of the sign-in, atomically;
        ``False``, storing nothing, if its user is deleted, or no longer has
        ``password_hash`` (the hash the sign-in checked the password against, or read
        with the link it spent; ``""`` for none), as the
        user's row is now: a deletion or new password under way is waited for, and one
        that comes later sees the session."""

    async def get_session(self, session_id: str) -> LoginSession | None: ...

    async def list_sessions(self, user_id: str) -> list[LoginSession]:
        """A user's live sessions, newest first."""

    async def extend_session(self, session_id: str, expires_at: datetime) -> None:
        """Move a live session's end to ``expires_at`` if that is later (never earlier,
        never for a revoked one)."""

    async def revoke_session(self, session_id: str, at: datetime) -> None:
        """End a login session and revoke every grant made in it, queuing a logout
        notice for each client with a back-channel logout URI among them."""

    async def revoke_user_sessions(self, user_id: str, at: datetime,
                                   keep_session: str | None = None) -> int:
        """End all of a user's sessions but ``keep_session`` and revoke all their grants
        (those made in ``keep_session`` too), queuing logout notices as
        ``revoke_session`` does; returns how many."""

    async def create_code(self, code: AuthorizationCode, grant: Grant) -> bool:
        """Store a code and the grant its tokens will belong to, atomically; ``False``,
        storing nothing, if the grant's login session has ended or expired by the
        grant's ``created_at`` (or is ending: a sign-out, new password or deletion under
        way is waited for, and one that comes later revokes the grant), or, for a grant
        made in no session, if its user is deleted."""

    async def consume_code(
        self, digest: bytes, at: datetime, client_id: str
    ) -> tuple[AuthorizationCode | None, bool]:
        """Mark a code used if it was issued to ``client_id`` and is unexpired at
        ``at``; returns it and whether this call was the first use. Another client,
        or a late one, neither uses it up nor counts as a replay."""

    async def create_grant(self, grant: Grant, refresh: RefreshToken | None,
                           event: Event | None = None, *,
                           password_hash: str | None = None) -> bool:
        """Store a grant and, optionally, its first refresh token and the audit event
        of its issue, atomically; ``False``, storing nothing, if its user is deleted or
        no longer has ``password_hash`` (as for ``create_session``), or the grant is in
        an organization where its user holds no role (any more: one deleted meanwhile)."""

    async def get_grant(self, grant_id: str) -> Grant | None: ...

    async def revoke_grant(self, grant_id: str, at: datetime,
                           event: Event | None = None) -> bool:
        """Revoke a grant and its whole token family; whether this call revoked it (not
        revoked already). ``event``, its audit event, is stored with it if it did."""

    async def reissue_grant(self, old_id: str, grant: Grant, refresh: RefreshToken,
                            at: datetime) -> bool:
        """Revoke grant ``old_id`` with its family and store ``grant`` with its first
        refresh token, atomically; ``False``, changing nothing, if ``old_id`` is already
        revoked (of concurrent reissues of one family exactly one succeeds), if
        ``grant`` is in an organization where its user holds no role, or if the user is
        deleted (a deletion or erasure under way is waited for)."""

    async def create_refresh_token(self, token: RefreshToken) -> bool:
        """Store ``token`` unless its grant is revoked (or gone); whether it was."""

    async def get_refresh_token(self, digest: bytes) -> RefreshToken | None: ...

    async def get_refresh_family(
        self, digest: bytes
    ) -> tuple[RefreshToken, Grant, User] | None:
        """A refresh token with its grant and user, read at once."""

    async def rotate_refresh_token(
        self, digest: bytes, new: RefreshToken, at: datetime,
        on_reuse: Callable[[], Event] | None = None,
    ) -> RotateResult:
        """Use a refresh token once and store its successor, atomically. Of several
        concurrent calls exactly one rotates; a used token revokes its family in the
        same transaction and is 'reused' for the call that revoked it, 'replayed' for
        the others. ``on_reuse()`` makes the audit event of a revocation for reuse,
        stored in its transaction."""

    async def revoke_access_token(self, jti: str, expires_at: datetime,
                                  event: Event | None = None) -> bool:
        """Remember a revoked access token until it expires; ``False`` if it was
        already. ``event``, its audit event, is stored with it if it was not."""

    async def is_revoked(self, jti: str, grant_id: str | None) -> bool:
        """Whether access token ``jti`` is revoked: by itself, or by its grant, which
        counts as revoked when it no longer exists (purged)."""

    async def get_throttles(self, keys: list[str]) -> list[Throttle]: ...

    async def get_login(self, login: str, keys: list[str], account_prefix: str,
                        ) -> tuple[User | None, list[Throttle]]:
        """What a password sign-in reads, at once: the user whose username or email is
        ``login`` (any case), and the throttle counts of ``keys`` and, if that user
        exists, of ``account_prefix + user.id``."""

    async def record_failure(
        self, key: str, at: datetime, lock_after: int, lock_until: datetime,
        restart_before: datetime | None = None,
    ) -> Throttle:
        """Count one failed attempt atomically (several instances share the count); at
        ``lock_after`` the key is locked until ``lock_until``. The count starts over (at
        1, unlocked) when the key's lock has ended by ``at``, or when it is not locked
        and its first failure is older than ``restart_before``."""

    async def clear_throttle(self, key: str) -> None: ...

    async def clear_throttles(self, keys: list[str]) -> None: ...

    async def search_users(self, query: str | None, limit: int, offset: int,
                           include_deleted: bool = False,
                           after: tuple[datetime, str] | None = None) -> list[User]:
        """Users whose username or email contains ``query`` (case-insensitive),
        oldest first (by creation time, then id: a stable order for paging); with
        ``after`` (a creation time and id), only those that come after it."""

    async def count_users(self, query: str | None, include_deleted: bool = False) -> int: ...

    async def update_user(self, user_id: str, changes: Mapping[str, Any], *,
                          end_sessions_at: datetime | None = None,
                          keep_session: str | None = None,
                          cancel_links: Collection[str] = ()) -> User | None:
        """Apply column changes (and ``updated_at``); raises ``Conflict``. A new
        ``email`` unverifies the address unless ``email_verified_at`` is given too (the
        same address in the row keeps its flag). With ``end_sessions_at``, in the same
        transaction, what ``revoke_user_sessions`` does (a new password, a deletion:
        never one without the other), and with ``cancel_links`` (purposes) what
        ``cancel_one_time_tokens`` does, for the addresses before and after. None if
        there is no such user, or it was erased (an erased user is never changed
        again)."""

    async def erase_user(self, user_id: str, at: datetime,
                         data: PersonalData) -> User | None:
        """Erase a user's personal data for good, in one transaction: placeholders for
        the name and address (``erased_at`` set, deleted if not already, no password),
        what ``revoke_user_sessions`` does, and delete their sessions, memberships,
        emailed links, mail and throttle counts; in the audit trail, the attempts on
        their username or address name their id instead, and the ``named`` events
        about them lose the username and email of their detail. Returns the user as
        left; ``None`` if there is no such user. An erased user is left as it is, and
        ``update_user`` and ``change_user_roles`` leave them so too."""

    async def export_user(self, user_id: str, event_limit: int,
                          data: PersonalData) -> UserExport | None:
        """Everything kept about a user; ``None`` if there is no such user. The events
        are those by or about them and the attempts on their username or address; of
        the events by others, the address (``ip``) is left out."""

    async def verify_email(self, user_id: str, email: str, at: datetime) -> bool:
        """Mark the user's address verified at ``at`` if it is still ``email`` (a link
        mailed to it was used) and not verified already; whether it did."""

    async def create_organization(self, org: Organization) -> None: ...

    async def get_organization(self, org_id: str) -> Organization | None:
        """By id or (case-insensitive) name."""

    async def list_organizations(
        self, limit: int, offset: int
    ) -> tuple[list[Organization], int]: ...

    async def rename_organization(self, org_id: str, name: str) -> Organization | None:
        """Raises ``Conflict('name')``; ``None`` if there is no such organization."""

    async def delete_organization(
        self, org_id: str, force: bool, at: datetime
    ) -> DeleteOrganizationResult:
        """In one transaction, delete the organization, its roles and their assignments,
        and revoke the grants issued in it (at ``at``); 'in_use' (changing nothing)
        while a user holds one of its roles, unless ``force``."""

    async def list_members(
        self, org_id: str, limit: int, offset: int, include_deleted: bool = False
    ) -> tuple[list[Member], int]:
        """The users holding a role in the organization, oldest first, and their count."""

    async def user_organizations(
        self, user_id: str, limit: int, offset: int
    ) -> tuple[list[Organization], int]:
        """The organizations where the user holds a role, oldest first, and their count."""

    async def create_role(self, role: Role) -> None:
        """Insert a role with its permissions; raises ``Conflict('name')``, or
        ``Missing`` if its organization is gone (deleted meanwhile)."""

    async def list_roles(self, org_id: str) -> list[Role]: ...

    async def get_role(self, org_id: str, role: str) -> Role | None: ...

    async def delete_role(self, org_id: str, role_id: str, force: bool) -> DeleteRoleResult:
        """Delete unless assigned to someone (then 'in_use'), or with ``force``."""

    async def change_permissions(
        self, role_id: str, add: Iterable[str], remove: Iterable[str],
        check: Callable[[Role], None] | None = None,
    ) -> None:
        """Add (idempotently, also when concurrent) and remove permissions of a role;
        raises ``Missing`` if there is something to add and the role does not exist.
        ``check`` is called in the transaction with the role as it would be after an
        add, other adds to it committed before (they wait for each other); what it
        raises undoes the change."""

    async def user_roles(self, user_id: str, org_id: str) -> list[Role]: ...

    async def change_user_roles(
        self, user_id: str, org_id: str, add: Iterable[str], remove: Iterable[str],
        check: Callable[[list[Role]], None] | None = None,
    ) -> list[Role]:
        """Add (idempotently, also when concurrent) and remove a user's roles in one
        transaction; the roles after. Raises ``Missing`` (changing nothing) if a role
        to add is not (or no longer) one of the organization's, or, keyed by
        ``user_id``, if roles are added to an erased user. ``check`` is called in the
        transaction with the roles after, other changes adding roles to the user
        committed before (they wait for each other); what it raises undoes the change."""

    async def add_event(self, event: Event) -> None: ...

    async def list_events(
        self, where: EventFilter, limit: int, offset: int,
        after: tuple[datetime, str] | None = None, count: bool = True,
    ) -> tuple[list[Event], int | None]:
        """Newest first (by time, then id), with the total count for the filter (None
        unless ``count``); with ``after`` (a time and id), only those that come after
        it: older ones."""

    async def enqueue_mail(self, mail: OutgoingMail) -> bool:
        """Queue a message; ``False``, queuing nothing, if it is about a user
        (``user_id``) who is deleted (as for ``create_session``)."""

    async def claim_mail(self, now: datetime, limit: int = 10) -> list[OutgoingMail]:
        """Due messages, claimed so that no other instance sends them meanwhile; those
        past their ``expires_at`` too (the sender settles them unsent)."""

    async def mail_sent(self, mail_id: str, at: datetime, *, claimed_until: datetime) -> bool:
        """Record a claimed message sent; False (and nothing changed) if the claim
        ``claimed_until`` from ``claim_mail`` no longer holds (it expired and was taken)."""

    async def mail_failed(
        self, mail_id: str, error: str, retry_at: datetime | None, at: datetime, *,
        claimed_until: datetime,
    ) -> bool:
        """Record a failed attempt of a claimed message; False as for ``mail_sent``."""

    async def get_mail(self, mail_id: str) -> OutgoingMail | None: ...

    async def claim_logout_notices(self, now: datetime, limit: int = 10,
                                   skip_clients: Collection[str] = ()) -> list[LogoutNotice]:
        """Due back-channel logouts (queued by ``revoke_session`` and
        ``revoke_user_sessions``) for clients other than ``skip_clients`` (those this
        instance is posting to already), claimed as ``claim_mail`` claims mail."""

    async def logout_notice_sent(self, notice_id: int, at: datetime, *,
                                 claimed_until: datetime) -> bool:
        """As ``mail_sent``."""

    async def logout_notice_failed(self, notice_id: int, error: str, retry_at: datetime | None,
                                   at: datetime, *, claimed_until: datetime) -> bool:
        """As ``mail_failed``."""

    async def create_one_time_token(self, token: OneTimeToken) -> bool:
        """Store an emailed link's token; ``False``, storing nothing, if it is for a
        user (``user_id``) who is deleted (as for ``create_session``)."""

    async def get_one_time_token(self, digest: bytes) -> OneTimeToken | None: ...

    async def use_one_time_token(self, digest: bytes, at: datetime,
                                 ) -> tuple[OneTimeToken, User | None] | None:
        """Mark a token used, once: None if it is unknown, used or expired. Else the
        token and its user as the same transaction reads them: a new password that
        cancels the user's links either comes first (the token is refused) or is not
        seen yet, so a sign-in that goes on with this user's ``password_hash`` finds it
        changed (``create_session``)."""

    async def adopt_signup(self, user_id: str, email: str) -> None:
        """Give the user the links and mail sent to ``email`` (folded) for no user:
        the sign-up that made their account, and others before it. Erasing them then
        finds that address, and its mail, even once it is no longer theirs."""

    async def cancel_one_time_tokens(
        self, user_id: str, purposes: Collection[str], at: datetime,
        emails: Collection[str] = (),
    ) -> int:
        """Mark every unused token of the user with one of these purposes used (so its
        link stops working), and those of no user sent to one of ``emails`` (folded):
        sign-up links mailed before the account existed; returns how many."""

    async def purge(self, cutoffs: Cutoffs, limit: int) -> dict[str, int]:
        """Delete up to ``limit`` rows of each kind ``cutoffs`` names, each kind in its
        own short transaction; how many of each went. Several instances may purge at
        once: a row one of them holds is left to it."""

    async def purge_grants(self, before: datetime, after: tuple[datetime, str] | None,
                           limit: int) -> tuple[int, tuple[datetime, str] | None]:
        """Look at up to ``limit`` grants made before ``before``, oldest first, after
        ``after`` (a (created_at, id) returned before), and delete those no code or
        refresh token refers to any longer. How many went, and where to go on (``None``
        when no grant is left to look at)."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached; ``Unusable`` if it can but must
        not be used (a SQLite file deleted under the server)."""

    async def close(self) -> None: ...
