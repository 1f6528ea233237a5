"""The SQLAlchemy (async, Core) storage backend, for SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bastion.server.models import (
    AuthorizationCode,
    Client,
    Grant,
    LoginSession,
    RefreshToken,
    SigningKey,
    Throttle,
    User,
)
from bastion.server.storage.base import Conflict, RotateResult
from bastion.server.storage.conflicts import conflict
from bastion.server.storage.sql_directory import DirectoryMixin
from bastion.server.storage.sql_mail import MailMixin
from bastion.server.storage.tables import (
    authorization_codes,
    clients,
    grants,
    login_sessions,
    login_throttle,
    refresh_tokens,
    revoked_access_tokens,
    signing_keys,
    users,
)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite has one write lock, and writers that find
        # it taken sleep and retry rather than queue; one connection makes this
        # process's transactions queue in order instead (p99 of refreshes: 1 s -> 0.2 s).
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1,
                                     max_overflow=0, pool_timeout=60)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # asyncpg prepares statements; a generic plan for the trigram search ignores the search
    # text and can read every index entry, so each execution is planned for its values.
    # No pre-ping (it costs three round trips per checkout); connections are recycled
    # instead, and one broken by a database restart is discarded on its first error.
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=300,
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
    )


def _user(row: Mapping[str, Any]) -> User:
    return User(**row)


def _client(row: Mapping[str, Any]) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        is_public=row["is_public"],
        secret_digest=row["secret_digest"],
        redirect_uris=tuple(row["redirect_uris"]),
        grant_types=tuple(row["grant_types"]),
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        post_logout_redirect_uris=tuple(row["post_logout_redirect_uris"]),
    )


class SQLStorage(DirectoryMixin, MailMixin):
    """``Storage`` on an ``AsyncEngine``. Every method is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _insert(self, table: sa.Table, values: dict[str, Any]) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(table.insert().values(**values))
        except IntegrityError as exc:
            raise conflict(exc) from None

    async def _one(self, query: sa.Select[Any]) -> Mapping[str, Any] | None:
        async with self.engine.connect() as conn:
            row: Mapping[str, Any] | None = (await conn.execute(query)).mappings().first()
        return row

    # users

    async def create_user(self, user: User) -> None:
        await self._insert(users, {f: getattr(user, f) for f in User.__dataclass_fields__})

    async def get_user(self, user_id: str) -> User | None:
        row = await self._one(sa.select(users).where(users.c.id == user_id))
        return _user(row) if row else None

    async def get_user_by_login(self, login: str) -> User | None:
        key = login.lower()
        row = await self._one(
            sa.select(users).where(
                sa.or_(sa.func.lower(users.c.username) == key, sa.func.lower(users.c.email) == key)
            )
        )
        return _user(row) if row else None

    # clients

    async def create_client(self, client: Client) -> None:
        values = {f: getattr(client, f) for f in Client.__dataclass_fields__}
        for f in ("redirect_uris", "grant_types", "scopes", "post_logout_redirect_uris"):
            values[f] = list(values[f])
        values["created_at"] = client.created_at or datetime.now(UTC)
        await self._insert(clients, values)

    async def get_client(self, client_id: str) -> Client | None:
        row = await self._one(sa.select(clients).where(clients.c.client_id == client_id))
        return _client(row) if row else None

    # signing keys

    async def rotate_signing_key(self, key: SigningKey) -> None:
        values = {f: getattr(key, f) for f in SigningKey.__dataclass_fields__}
        # A concurrent rotation trips the one-active-key index; the retry then
        # retires the key it committed.
        for attempt in range(10):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        signing_keys.update()
                        .where(signing_keys.c.use == key.use, signing_keys.c.retired_at.is_(None))
                        .values(retired_at=key.created_at)
                    )
                    await conn.execute(signing_keys.insert().values(values))
                return
            except IntegrityError:
                if attempt == 9:
                    raise

    async def signing_keys(self) -> list[SigningKey]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.kid)
                )
            ).mappings()
            return [SigningKey(**row) for row in rows]

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

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def _values(record: Any) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__dataclass_fields__}


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


def open_storage(url: str, *, pool_size: int = 10) -> SQLStorage:
    return SQLStorage(create_engine(url, pool_size=pool_size))
