"""Housekeeping on SQLAlchemy (mixed into SQLStorage): deleting the rows that no
longer decide anything, in batches, by the indexes of ``tables.PURGE_INDEXES``."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bastion.server.storage.base import Cutoffs
from bastion.server.storage.sql_base import SQLBase
from bastion.server.storage.tables import (
    authorization_codes,
    events,
    grants,
    login_sessions,
    login_throttle,
    logout_notices,
    one_time_tokens,
    outbox,
    refresh_tokens,
    revoked_access_tokens,
    signing_keys,
)


def _doomed(c: Cutoffs) -> dict[str, tuple[sa.Column[Any], sa.ColumnElement[bool]]]:
    """Each kind's key and what makes a row of it deletable (grants: ``purge_grants``)."""
    gone = c.expired_before
    ungranted: sa.ColumnElement[bool] = ~sa.exists().where(
        grants.c.session_id == login_sessions.c.id, grants.c.revoked_at.is_(None))
    if c.sessions_before is not None:
        ungranted = sa.or_(login_sessions.c.created_at < c.sessions_before, ungranted)
    kinds: dict[str, tuple[sa.Column[Any], sa.ColumnElement[bool]]] = {
        "authorization_codes": (authorization_codes.c.digest,
                                authorization_codes.c.expires_at < gone),
        # A used token is kept to its expiry: presenting it until then revokes its
        # family (reuse detection).
        "refresh_tokens": (refresh_tokens.c.digest, refresh_tokens.c.expires_at < gone),
        "revoked_access_tokens": (revoked_access_tokens.c.jti,
                                  revoked_access_tokens.c.expires_at < gone),
        "one_time_tokens": (one_time_tokens.c.digest, one_time_tokens.c.expires_at < gone),
        # Kept while a grant made in it lives and its cookie may: a logout with that
        # cookie (which outlives an idle timeout) must still find it, to end those
        # grants and tell their apps.
        "login_sessions": (login_sessions.c.id, sa.and_(login_sessions.c.expires_at < gone,
                                                        ungranted)),
        # No longer in the JWKS (``keys.published``): a private key kept after that
        # could only leak.
        "signing_keys": (signing_keys.c.kid, signing_keys.c.retired_at < gone),
        "login_throttle": (login_throttle.c.key, sa.and_(
            login_throttle.c.last_failure_at < c.throttles_before,
            sa.or_(login_throttle.c.locked_until.is_(None),
                   login_throttle.c.locked_until <= c.now))),
        "outbox": (outbox.c.id, sa.and_(
            outbox.c.created_at < c.mail_before,
            sa.or_(outbox.c.sent_at < c.mail_before, outbox.c.failed_at < c.mail_before))),
        "logout_notices": (logout_notices.c.id, sa.and_(
            logout_notices.c.created_at < c.mail_before,
            sa.or_(logout_notices.c.sent_at < c.mail_before,
                   logout_notices.c.failed_at < c.mail_before))),
    }
    if c.events_before is not None:
        kinds["events"] = (events.c.id, events.c.at < c.events_before)
    return kinds


class PurgeMixin(SQLBase):
    async def purge(self, cutoffs: Cutoffs, limit: int) -> dict[str, int]:
        done: dict[str, int] = {}
        for kind, (key, deletable) in _doomed(cutoffs).items():
            # SKIP LOCKED (PostgreSQL): a row another instance is purging, or a request
            # is writing, is left to it rather than waited for.
            chosen = (sa.select(key).where(deletable).limit(limit)
                      .with_for_update(skip_locked=True))
            done[kind] = await self._write(
                functools.partial(_delete, sa.delete(key.table).where(key.in_(chosen))),
                may_wait=True)
        return done

    async def purge_grants(self, before: datetime, after: tuple[datetime, str] | None,
                           limit: int) -> tuple[int, tuple[datetime, str] | None]:
        # A page by the (created_at, id) index: whether a grant is still referred to is
        # no column of its own, so an unbounded scan for deletable ones would read every
        # live grant in one statement (and hold SQLite's write lock meanwhile).
        page = sa.select(grants.c.created_at, grants.c.id).where(grants.c.created_at < before)
        if after is not None:  # a row value, so the index is entered at ``after``
            page = page.where(sa.tuple_(grants.c.created_at, grants.c.id) > sa.tuple_(
                sa.literal(after[0], grants.c.created_at.type), sa.literal(after[1])))
        page = page.order_by(grants.c.created_at, grants.c.id).limit(limit)

        def purge(conn: sa.Connection) -> tuple[int, tuple[datetime, str] | None]:
            seen = conn.execute(page).all()
            if not seen:
                return 0, None
            chosen = (sa.select(grants.c.id).where(grants.c.id.in_([row.id for row in seen]),
                                                   _UNREFERENCED)
                      .with_for_update(skip_locked=True))
            done = _delete(sa.delete(grants).where(grants.c.id.in_(chosen)), conn)
            last = seen[-1]
            return done, ((last.created_at, last.id) if len(seen) == limit else None)
        return await self._write(purge, may_wait=True)


# Access tokens name their grant, which says whether they are revoked: a grant goes
# once its codes and refresh tokens have (``Cutoffs.expired_before`` is later than any
# access token it issued lives), and its session has ended or gone: a logout finds the
# apps to tell through the grants of its session (an app without refresh tokens too).
_UNREFERENCED = sa.and_(
    ~sa.exists().where(refresh_tokens.c.grant_id == grants.c.id),
    ~sa.exists().where(authorization_codes.c.grant_id == grants.c.id),
    ~sa.exists().where(login_sessions.c.id == grants.c.session_id,
                       login_sessions.c.revoked_at.is_(None)))


def _delete(stmt: sa.Delete, conn: sa.Connection) -> int:
    return int(conn.execute(stmt).rowcount or 0)
