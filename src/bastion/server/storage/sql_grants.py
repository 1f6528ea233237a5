"""Sessions, authorization codes, grants (token families), refresh tokens, revoked
access tokens and sign-in throttling on SQLAlchemy (mixed into SQLStorage)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from bastion.server.models import (
    AuthorizationCode,
    Event,
    Grant,
    LoginSession,
    RefreshToken,
    Throttle,
    User,
)
from bastion.server.storage import prepared
from bastion.server.storage.base import RotateResult
from bastion.server.storage.prepared import select_by
from bastion.server.storage.sql_base import SQLBase
from bastion.server.storage.sql_base import values as _values
from bastion.server.storage.tables import (
    authorization_codes,
    clients,
    events,
    grants,
    login_sessions,
    login_throttle,
    logout_notices,
    refresh_tokens,
    revoked_access_tokens,
    roles,
    user_roles,
    users,
)
from bastion.server.text import fold


class GrantsMixin(SQLBase):
    # login sessions

    async def create_session(self, session: LoginSession, event: Event | None = None, *,
                             password_hash: str | None = None) -> bool:
        def create(conn: sa.Connection) -> bool:
            if not prepared.insert_for_user(conn, login_sessions, _values(session),
                                            password_hash):
                return False
            if event is not None:
                prepared.insert(conn, events, _values(event))
            return True
        return await self._write(create)

    async def get_session(self, session_id: str) -> LoginSession | None:
        row = await self._one(select_by(login_sessions, "id"), {"id": session_id})
        return LoginSession(**row) if row else None

    async def list_sessions(self, user_id: str) -> list[LoginSession]:
        query = sa.select(login_sessions).where(
            login_sessions.c.user_id == user_id, login_sessions.c.revoked_at.is_(None),
            login_sessions.c.expires_at > datetime.now(UTC),
        ).order_by(login_sessions.c.created_at.desc())
        return await self._read(lambda conn: [
            LoginSession(**row) for row in conn.execute(query).mappings()])

    async def extend_session(self, session_id: str, expires_at: datetime) -> None:
        await self._write(lambda conn: conn.execute(login_sessions.update().where(
            login_sessions.c.id == session_id, login_sessions.c.revoked_at.is_(None),
            login_sessions.c.expires_at < expires_at).values(expires_at=expires_at)))

    async def revoke_session(self, session_id: str, at: datetime) -> None:
        def revoke(conn: sa.Connection) -> None:
            _hold_user(conn, sa.select(login_sessions.c.user_id)
                       .where(login_sessions.c.id == session_id).scalar_subquery())
            conn.execute(
                login_sessions.update()
                .where(login_sessions.c.id == session_id, login_sessions.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            revoke_grants(conn, sa.select(grants.c.id).where(grants.c.session_id == session_id),
                          at, tell=True)
        await self._write(revoke)

    async def revoke_user_sessions(self, user_id: str, at: datetime,
                                   keep_session: str | None = None) -> int:
        return await self._write(lambda conn: end_user_sessions(conn, user_id, at, keep_session))

    # authorization codes and grants

    async def create_code(self, code: AuthorizationCode, grant: Grant) -> bool:
        def create(conn: sa.Connection) -> bool:
            insert = prepared.insert_for_user if grant.session_id is None \
                else prepared.insert_in_session
            if not insert(conn, grants, _values(grant)):
                return False
            prepared.insert(conn, authorization_codes, _values(code))
            return True
        return await self._write(create)

    async def consume_code(
        self, digest: bytes, at: datetime, client_id: str
    ) -> tuple[AuthorizationCode | None, bool]:
        def consume(conn: sa.Connection) -> tuple[AuthorizationCode | None, bool]:
            done = prepared.run(conn, _CONSUME_CODE,
                                {"code": digest, "at": at, "client": client_id})
            found = prepared.rows(conn, select_by(authorization_codes, "digest"),
                                  {"digest": digest})
            return (AuthorizationCode(**found[0]) if found else None), done == 1
        return await self._write(consume)

    async def create_grant(self, grant: Grant, refresh: RefreshToken | None,
                           event: Event | None = None, *,
                           password_hash: str | None = None) -> bool:
        def create(conn: sa.Connection) -> bool:
            if not prepared.insert_for_user(conn, grants, _values(grant), password_hash):
                return False
            if refresh is not None:
                prepared.insert(conn, refresh_tokens, _values(refresh))
            if event is not None:
                prepared.insert(conn, events, _values(event))
            return not grant.organization_id or _holds_role(conn, grant)
        return await self._write_unless(create)

    async def get_grant(self, grant_id: str) -> Grant | None:
        row = await self._one(select_by(grants, "id"), {"id": grant_id})
        return Grant(**row) if row else None

    async def revoke_grant(self, grant_id: str, at: datetime,
                           event: Event | None = None) -> bool:
        def revoke(conn: sa.Connection) -> bool:
            if not revoke_grants(conn, [grant_id], at):
                return False
            if event is not None:
                prepared.insert(conn, events, _values(event))
            return True
        return await self._write(revoke)

    async def reissue_grant(self, old_id: str, grant: Grant, refresh: RefreshToken,
                            at: datetime) -> bool:
        in_org = grant.organization_id is not None

        def reissue(conn: sa.Connection) -> bool:
            # The user first, FOR SHARE: a deletion or an erasure under way (which
            # holds the row) is waited for, and a deleted user gets no new grant. Else
            # an erasure's revocation, which sees only the grants of its snapshot,
            # would miss this one and tell no app.
            live = conn.execute(sa.select(users.c.deleted_at).where(
                users.c.id == grant.user_id).with_for_update(read=True)).first()
            if live is None or live.deleted_at is not None:
                return False
            # PostgreSQL: the roles before the grant, in the order an organization's
            # deletion locks them (the other order could deadlock with it).
            if in_org and not _holds_role(conn, grant):
                return False
            # The conditional revocation decides: on PostgreSQL a concurrent one waits
            # for this row and then finds it revoked; SQLite writes one at a time.
            if not revoke_grants(conn, [old_id], at):
                return False
            prepared.insert(conn, grants, _values(grant))
            prepared.insert(conn, refresh_tokens, _values(refresh))
            return True
        return await self._write_unless(reissue)

    # refresh tokens

    async def create_refresh_token(self, token: RefreshToken) -> bool:
        def create(conn: sa.Connection) -> bool:
            # Under the grant's row lock, like rotation: a revocation of the grant (a
            # replayed code) either comes first and is seen, or waits and sees this row.
            grant = prepared.rows(conn, _LOCK_GRANT, {"id": token.grant_id})
            if not grant or grant[0]["revoked_at"] is not None:
                return False
            prepared.insert(conn, refresh_tokens, _values(token))
            return True
        return await self._write(create)

    async def get_refresh_token(self, digest: bytes) -> RefreshToken | None:
        row = await self._one(select_by(refresh_tokens, "digest"), {"digest": digest})
        return RefreshToken(**row) if row else None

    async def get_refresh_family(
        self, digest: bytes
    ) -> tuple[RefreshToken, Grant, User] | None:
        row = await self._one(_FAMILY, {"digest": digest})
        if row is None:
            return None

        def part(prefix: str) -> dict[str, Any]:
            return {k[2:]: v for k, v in row.items() if k.startswith(prefix)}

        return RefreshToken(**part("r_")), Grant(**part("g_")), User(**part("u_"))

    async def rotate_refresh_token(
        self, digest: bytes, new: RefreshToken, at: datetime,
        on_reuse: Callable[[], Event] | None = None,
    ) -> RotateResult:
        def rotate(conn: sa.Connection) -> RotateResult:
            # Lock the family's grant row first: every writer of a family (rotation,
            # reuse revocation) then takes its locks in the same order (grant, tokens),
            # so concurrent refreshes queue instead of deadlocking on PostgreSQL.
            prepared.rows(conn, _LOCK_GRANT, {"id": new.grant_id})
            if prepared.run(conn, _USE_REFRESH, {"token": digest, "at": at}) == 1:
                prepared.insert(conn, refresh_tokens, _values(new))
                return "rotated"
            row = conn.execute(
                sa.select(refresh_tokens.c.used_at, refresh_tokens.c.grant_id)
                .where(refresh_tokens.c.digest == digest)
            ).first()
            if row is not None and row.used_at is not None:
                # Reuse of a rotated token: the family is compromised.
                if not revoke_grants(conn, [row.grant_id], at):
                    return "replayed"
                if on_reuse is not None:
                    prepared.insert(conn, events, _values(on_reuse()))
                return "reused"
            return "invalid"
        return await self._write(rotate)

    # access token revocation

    async def revoke_access_token(self, jti: str, expires_at: datetime,
                                  event: Event | None = None) -> bool:
        def revoke(conn: sa.Connection) -> None:
            prepared.insert(conn, revoked_access_tokens, {"jti": jti, "expires_at": expires_at})
            if event is not None:
                prepared.insert(conn, events, _values(event))
        try:
            await self._write(revoke)
        except IntegrityError:  # already revoked
            return False
        return True

    async def is_revoked(self, jti: str, grant_id: str | None) -> bool:
        """True if the access token ``jti`` or its grant has been revoked (or purged)."""
        query = _REVOKED_IN_GRANT if grant_id else _REVOKED
        params = {"jti": jti, "grant_id": grant_id}
        return await self._lookup(lambda conn: bool(prepared.rows(conn, query, params)))

    # sign-in throttling

    async def get_throttles(self, keys: list[str]) -> list[Throttle]:
        return await self._lookup(lambda conn: _throttles(conn, keys))

    async def get_login(self, login: str, keys: list[str], account_prefix: str,
                        ) -> tuple[User | None, list[Throttle]]:
        def read(conn: sa.Connection) -> tuple[User | None, list[Throttle]]:
            found = prepared.rows(conn, BY_LOGIN, {"login": fold(login)})
            user = User(**found[0]) if found else None
            return user, _throttles(conn, [*keys, account_prefix + user.id] if user else keys)
        return await self._lookup(read)

    async def record_failure(self, key: str, at: datetime, lock_after: int,
                             lock_until: datetime, restart_before: datetime | None = None,
                             ) -> Throttle:
        """Count one failure atomically; lock the key once it reaches ``lock_after``. An
        ended lock (or a count begun before ``restart_before``) starts over, in the same
        statement, so two instances cannot both restart it."""
        insert = (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(
            login_throttle)
        row = login_throttle.c
        restart = sa.and_(row.locked_until.is_not(None), row.locked_until <= at)
        if restart_before is not None:  # a lock, even a long one, is kept to its end
            restart = sa.or_(restart, sa.and_(row.locked_until.is_(None),
                                              row.first_failure_at < restart_before))
        failures = sa.case((restart, 1), else_=row.failures + 1)
        stmt = insert.values(key=key, failures=1, last_failure_at=at, first_failure_at=at,
                             locked_until=lock_until if lock_after <= 1 else None)
        stmt = stmt.on_conflict_do_update(
            index_elements=[row.key],
            set_={
                "failures": failures,
                "last_failure_at": at,
                "first_failure_at": sa.case((restart, at), else_=row.first_failure_at),
                "locked_until": sa.case((failures >= lock_after, lock_until), (restart, None),
                                        else_=row.locked_until),
            },
        )

        def record(conn: sa.Connection) -> Throttle:
            conn.execute(stmt)
            return Throttle(**conn.execute(
                sa.select(login_throttle).where(login_throttle.c.key == key)).mappings().one())
        return await self._write(record)

    async def clear_throttle(self, key: str) -> None:
        await self.clear_throttles([key])

    async def clear_throttles(self, keys: list[str]) -> None:
        await self._write(lambda conn: conn.execute(
            login_throttle.delete().where(login_throttle.c.key.in_(keys))))


# Built once: composing a statement costs more than running it on SQLite.
_CONSUME_CODE = (authorization_codes.update()
                 .where(authorization_codes.c.digest == sa.bindparam("code"),
                        authorization_codes.c.consumed_at.is_(None),
                        authorization_codes.c.client_id == sa.bindparam("client"),
                        authorization_codes.c.expires_at > sa.bindparam("at"))
                 .values(consumed_at=sa.bindparam("at")))
_LOCK_GRANT = (sa.select(grants.c.revoked_at).where(grants.c.id == sa.bindparam("id"))
               .with_for_update())
_USE_REFRESH = (refresh_tokens.update()
                .where(refresh_tokens.c.digest == sa.bindparam("token"),
                       refresh_tokens.c.used_at.is_(None), refresh_tokens.c.revoked_at.is_(None),
                       refresh_tokens.c.expires_at > sa.bindparam("at"))
                .values(used_at=sa.bindparam("at")))
_REVOKED = sa.select(revoked_access_tokens.c.jti).where(
    revoked_access_tokens.c.jti == sa.bindparam("jti"))
# Revoked unless the grant is there and live. A grant is stored before any token naming
# it is issued, so one that is gone was purged: its tokens count as revoked even if a
# purging host's clock ran fast.
_REVOKED_IN_GRANT = _REVOKED.union_all(
    sa.select(sa.literal("grant", sa.String)).where(~sa.exists().where(
        grants.c.id == sa.bindparam("grant_id"), grants.c.revoked_at.is_(None))))
BY_LOGIN = sa.select(users).where(sa.or_(
    sa.func.lower(users.c.username) == sa.bindparam("login"),
    sa.func.lower(users.c.email) == sa.bindparam("login")))
_FAMILY = (
    sa.select(*[c.label("r_" + c.name) for c in refresh_tokens.c],
              *[c.label("g_" + c.name) for c in grants.c],
              *[c.label("u_" + c.name) for c in users.c])
    .select_from(refresh_tokens.join(grants, grants.c.id == refresh_tokens.c.grant_id)
                 .join(users, users.c.id == refresh_tokens.c.user_id))
    .where(refresh_tokens.c.digest == sa.bindparam("digest"))
)


@functools.cache
def _throttles_of(count: int) -> sa.Select[Any]:
    # A statement per number of keys (a sign-in has two or three): an expanding IN is
    # rewritten on every execution.
    return sa.select(login_throttle).where(
        login_throttle.c.key.in_([sa.bindparam(f"k{i}") for i in range(count)]))


def _throttles(conn: sa.Connection, keys: list[str]) -> list[Throttle]:
    if not keys:
        return []
    found = prepared.rows(conn, _throttles_of(len(keys)), {f"k{i}": k for i, k in enumerate(keys)})
    return [Throttle(**row) for row in found]


def end_user_sessions(conn: sa.Connection, user_id: str, at: datetime,
                      keep_session: str | None = None) -> int:
    """End a user's sessions but ``keep_session`` and revoke all their grants."""
    _hold_user(conn, user_id)
    kept = () if keep_session is None else (login_sessions.c.id != keep_session,)
    done = conn.execute(
        login_sessions.update()
        .where(login_sessions.c.user_id == user_id, login_sessions.c.revoked_at.is_(None), *kept)
        .values(revoked_at=at)
    )
    revoked = revoke_grants(conn, sa.select(grants.c.id).where(grants.c.user_id == user_id),
                            at, tell=True)
    return int(done.rowcount or 0) + revoked


def _hold_user(conn: sa.Connection, user_id: Any) -> None:
    """PostgreSQL: lock the user's row (``FOR NO KEY UPDATE``) before revoking their
    grants. A grant being made (a login, a reissue) holds it ``FOR SHARE``: this waits
    for it, and the revocation's statements then see the new grant. Without the lock
    they ran on a snapshot taken before it committed, and a reissue racing a logout or
    a sign-out everywhere left a live grant."""
    conn.execute(sa.select(users.c.id).where(users.c.id == user_id)
                 .with_for_update(key_share=True))


def _queue_logouts(conn: sa.Connection, revoked: Sequence[sa.Row[Any, Any, Any]],
                   at: datetime) -> None:
    """Queue a back-channel logout for each (client, user, session) of the grants this
    transaction ``revoked``, for the clients with a logout URI."""
    told = set(conn.execute(sa.select(clients.c.client_id).where(
        clients.c.client_id.in_({row.client_id for row in revoked}),
        clients.c.backchannel_logout_uri.is_not(None), clients.c.deleted_at.is_(None))
    ).scalars()) if revoked else set()
    notices = sorted({(row.client_id, row.user_id, row.session_id or "") for row in revoked
                      if row.client_id in told})
    if notices:
        conn.execute(logout_notices.insert(), [
            {"client_id": client_id, "user_id": user_id, "session_id": session_id or None,
             "created_at": at, "attempts": 0, "next_attempt_at": at}
            for client_id, user_id, session_id in notices])


def _holds_role(conn: sa.Connection, grant: Grant) -> bool:
    """Whether the grant's user holds a role in its organization. On PostgreSQL the
    role found stays locked (``FOR KEY SHARE``) until the transaction ends: a deletion
    of the organization (which locks its roles ``FOR UPDATE`` first) either waits and
    then revokes what this transaction stored, or went first and this finds no role.
    On SQLite, call it once the write lock is taken (after a write)."""
    query = (sa.select(roles.c.id).join(user_roles, user_roles.c.role_id == roles.c.id)
             .where(user_roles.c.user_id == grant.user_id,
                    user_roles.c.organization_id == grant.organization_id)
             .limit(1).with_for_update(read=True, key_share=True, of=roles))
    return conn.execute(query).first() is not None


def revoke_grants(conn: sa.Connection, ids: Any, at: datetime, *, tell: bool = False) -> int:
    """Revoke grants and every refresh token they issued (access tokens carry the
    grant id, so they are seen as revoked too); returns how many grants. With ``tell``
    (sessions ended), queue back-channel logouts for exactly the grants revoked here."""
    update = (grants.update().where(grants.c.id.in_(ids), grants.c.revoked_at.is_(None))
              .values(revoked_at=at))
    if tell:
        told = (grants.c.client_id, grants.c.user_id, grants.c.session_id)
        if conn.dialect.name == "sqlite":
            # No UPDATE ... RETURNING before SQLite 3.35 (RHEL 9 ships 3.34). Exact all
            # the same: a write transaction holds the one write lock from its start
            # (``SQLiteThread``), so nobody revokes a grant between this read and the
            # update.
            revoked = conn.execute(sa.select(*told).where(
                grants.c.id.in_(ids), grants.c.revoked_at.is_(None))).all()
            conn.execute(update)
        else:
            revoked = conn.execute(update.returning(*told)).all()
        _queue_logouts(conn, revoked, at)
        count = len(revoked)
    else:
        count = int(conn.execute(update).rowcount or 0)
    conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.grant_id.in_(ids), refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return count
