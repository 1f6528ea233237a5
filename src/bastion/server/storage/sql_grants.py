"""Sessions, authorization codes, grants (token families), refresh tokens, revoked
access tokens and sign-in throttling on SQLAlchemy (mixed into SQLStorage)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.server.models import (
    AuthorizationCode,
    Grant,
    LoginSession,
    RefreshToken,
    Throttle,
    User,
)
from bastion.server.storage.base import Conflict, RotateResult
from bastion.server.storage.sql_base import SQLBase
from bastion.server.storage.sql_base import values as _values
from bastion.server.storage.tables import (
    authorization_codes,
    grants,
    login_sessions,
    login_throttle,
    refresh_tokens,
    revoked_access_tokens,
    users,
)


class GrantsMixin(SQLBase):
    # login sessions

    async def create_session(self, session: LoginSession) -> None:
        await self._insert(login_sessions, _values(session))

    async def get_session(self, session_id: str) -> LoginSession | None:
        row = await self._one(sa.select(login_sessions).where(login_sessions.c.id == session_id))
        return LoginSession(**row) if row else None

    async def list_sessions(self, user_id: str) -> list[LoginSession]:
        now = datetime.now(UTC)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(login_sessions).where(
                login_sessions.c.user_id == user_id, login_sessions.c.revoked_at.is_(None),
                login_sessions.c.expires_at > now).order_by(login_sessions.c.created_at.desc())
            )).mappings()
            return [LoginSession(**row) for row in rows]

    async def revoke_session(self, session_id: str, at: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                login_sessions.update()
                .where(login_sessions.c.id == session_id, login_sessions.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            ids = sa.select(grants.c.id).where(grants.c.session_id == session_id)
            await _revoke_grants(conn, ids, at)

    async def revoke_user_sessions(self, user_id: str, at: datetime) -> int:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                login_sessions.update()
                .where(login_sessions.c.user_id == user_id, login_sessions.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            ids = sa.select(grants.c.id).where(grants.c.user_id == user_id)
            revoked = await _revoke_grants(conn, ids, at)
        return int(done.rowcount or 0) + revoked

    # authorization codes and grants

    async def create_code(self, code: AuthorizationCode, grant: Grant) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(grants.insert().values(_values(grant)))
            await conn.execute(authorization_codes.insert().values(_values(code)))

    async def consume_code(
        self, digest: bytes, at: datetime
    ) -> tuple[AuthorizationCode | None, bool]:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                authorization_codes.update()
                .where(authorization_codes.c.digest == digest,
                       authorization_codes.c.consumed_at.is_(None))
                .values(consumed_at=at)
            )
            row = (await conn.execute(
                sa.select(authorization_codes).where(authorization_codes.c.digest == digest)
            )).mappings().first()
        return (AuthorizationCode(**row) if row else None), done.rowcount == 1

    async def create_grant(self, grant: Grant, refresh: RefreshToken | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(grants.insert().values(_values(grant)))
            if refresh is not None:
                await conn.execute(refresh_tokens.insert().values(_values(refresh)))

    async def get_grant(self, grant_id: str) -> Grant | None:
        row = await self._one(sa.select(grants).where(grants.c.id == grant_id))
        return Grant(**row) if row else None

    async def revoke_grant(self, grant_id: str, at: datetime) -> None:
        async with self.engine.begin() as conn:
            await _revoke_grants(conn, [grant_id], at)

    # refresh tokens

    async def create_refresh_token(self, token: RefreshToken) -> None:
        await self._insert(refresh_tokens, _values(token))

    async def get_refresh_token(self, digest: bytes) -> RefreshToken | None:
        row = await self._one(sa.select(refresh_tokens).where(refresh_tokens.c.digest == digest))
        return RefreshToken(**row) if row else None

    async def get_refresh_family(
        self, digest: bytes
    ) -> tuple[RefreshToken, Grant, User] | None:
        r, g, u = refresh_tokens, grants, users
        query = (sa.select(*[c.label("r_" + c.name) for c in r.c],
                           *[c.label("g_" + c.name) for c in g.c],
                           *[c.label("u_" + c.name) for c in u.c])
                 .select_from(r.join(g, g.c.id == r.c.grant_id).join(u, u.c.id == r.c.user_id))
                 .where(r.c.digest == digest))
        row = await self._one(query)
        if row is None:
            return None

        def part(prefix: str) -> dict[str, Any]:
            return {k[2:]: v for k, v in row.items() if k.startswith(prefix)}

        return RefreshToken(**part("r_")), Grant(**part("g_")), User(**part("u_"))

    async def rotate_refresh_token(
        self, digest: bytes, new: RefreshToken, at: datetime
    ) -> RotateResult:
        async with self.engine.begin() as conn:
            # Lock the family's grant row first: every writer of a family (rotation,
            # reuse revocation) then takes its locks in the same order (grant, tokens),
            # so concurrent refreshes queue instead of deadlocking on PostgreSQL.
            await conn.execute(
                sa.select(grants.c.id).where(grants.c.id == new.grant_id).with_for_update()
            )
            done = await conn.execute(
                refresh_tokens.update()
                .where(refresh_tokens.c.digest == digest, refresh_tokens.c.used_at.is_(None),
                       refresh_tokens.c.revoked_at.is_(None), refresh_tokens.c.expires_at > at)
                .values(used_at=at)
            )
            if done.rowcount == 1:
                await conn.execute(refresh_tokens.insert().values(_values(new)))
                return "rotated"
            row = (await conn.execute(
                sa.select(refresh_tokens.c.used_at, refresh_tokens.c.grant_id)
                .where(refresh_tokens.c.digest == digest)
            )).first()
            if row is not None and row.used_at is not None:
                # Reuse of a rotated token: the family is compromised.
                await _revoke_grants(conn, [row.grant_id], at)
                return "reused"
            return "invalid"

    # access token revocation

    async def revoke_access_token(self, jti: str, expires_at: datetime) -> None:
        with contextlib.suppress(Conflict):  # already revoked
            await self._insert(revoked_access_tokens, {"jti": jti, "expires_at": expires_at})

    async def is_revoked(self, jti: str, grant_id: str | None) -> bool:
        """True if the access token ``jti`` or its grant has been revoked."""
        query: sa.Select[Any] = sa.select(revoked_access_tokens.c.jti).where(
            revoked_access_tokens.c.jti == jti)
        if grant_id:
            query = query.union_all(
                sa.select(grants.c.id).where(grants.c.id == grant_id,
                                             grants.c.revoked_at.is_not(None))
            )  # type: ignore[assignment]
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    # sign-in throttling

    async def get_throttles(self, keys: list[str]) -> list[Throttle]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(login_throttle).where(login_throttle.c.key.in_(keys))
            )).mappings()
            return [Throttle(**row) for row in rows]

    async def record_failure(self, key: str, at: datetime, lock_after: int,
                             lock_until: datetime) -> Throttle:
        """Count one failure atomically; lock the key once it reaches ``lock_after``."""
        insert = (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(
            login_throttle)
        failures = login_throttle.c.failures + 1
        stmt = insert.values(key=key, failures=1, last_failure_at=at, locked_until=None)
        stmt = stmt.on_conflict_do_update(
            index_elements=[login_throttle.c.key],
            set_={
                "failures": failures,
                "last_failure_at": at,
                "locked_until": sa.case((failures >= lock_after, lock_until),
                                        else_=login_throttle.c.locked_until),
            },
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
            row = (await conn.execute(
                sa.select(login_throttle).where(login_throttle.c.key == key))).mappings().one()
        return Throttle(**row)

    async def clear_throttle(self, key: str) -> None:
        await self.clear_throttles([key])

    async def clear_throttles(self, keys: list[str]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(login_throttle.delete().where(login_throttle.c.key.in_(keys)))


async def _revoke_grants(conn: AsyncConnection, ids: Any, at: datetime) -> int:
    """Revoke grants and every refresh token they issued (access tokens carry the
    grant id, so they are seen as revoked too)."""
    done = await conn.execute(
        grants.update().where(grants.c.id.in_(ids), grants.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    await conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.grant_id.in_(ids), refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return int(done.rowcount or 0)
