"""The mail outbox, back-channel logouts to deliver, and single-use emailed tokens on
SQLAlchemy (mixed into SQLStorage)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import sqlalchemy as sa

from bastion.server.models import LogoutNotice, OneTimeToken, OutgoingMail, User
from bastion.server.storage.prepared import select_by
from bastion.server.storage.sql_base import SQLBase, values
from bastion.server.storage.tables import logout_notices, one_time_tokens, outbox, users

_CLAIM_SECONDS = 120  # a claimed message not settled by then is taken again
# (services.outbox.SEND_SECONDS bounds a send well below this)


def _failed(table: sa.Table, error: str, retry_at: datetime | None,
            at: datetime) -> dict[str, object]:
    """A failed attempt's columns; ``retry_at`` None gives up."""
    failed: dict[str, object] = {"attempts": table.c.attempts + 1, "claimed_until": None,
                                 "last_error": error[:500], "next_attempt_at": retry_at}
    if retry_at is None:
        failed["failed_at"] = at
    return failed


class MailMixin(SQLBase):
    async def enqueue_mail(self, mail: OutgoingMail) -> bool:
        return await self._insert(outbox, {
            "id": mail.id, "to": mail.to, "user_id": mail.user_id, "subject": mail.subject,
            "text": mail.text, "html": mail.html, "created_at": mail.created_at,
            "expires_at": mail.expires_at, "attempts": 0,
            "next_attempt_at": mail.created_at}, for_user=True)

    async def claim_mail(self, now: datetime, limit: int = 10) -> list[OutgoingMail]:
        """Due messages, claimed for this worker (several instances never send one twice
        while a claim holds). Each carries its ``claimed_until``: settling it with
        ``mail_sent``/``mail_failed`` only works while that claim is still the current one."""
        return [OutgoingMail(**row) for row in await self._claim(outbox, now, limit)]

    async def mail_sent(self, mail_id: str, at: datetime, *, claimed_until: datetime) -> bool:
        """Record the message sent, if this worker's claim (``claimed_until``) still holds."""
        return await self._settle(outbox, mail_id, claimed_until, {
            "sent_at": at, "claimed_until": None, "text": "", "html": "",
            # settled: out of the claim's index range (``_claim`` walked every sent row)
            "attempts": outbox.c.attempts + 1, "next_attempt_at": None})

    async def mail_failed(self, mail_id: str, error: str, retry_at: datetime | None,
                          at: datetime, *, claimed_until: datetime) -> bool:
        """Record a failed attempt, if this worker's claim still holds; ``retry_at`` None
        gives up (and erases the body)."""
        failed = _failed(outbox, error, retry_at, at)
        if retry_at is None:
            failed.update(text="", html="")
        return await self._settle(outbox, mail_id, claimed_until, failed)

    async def claim_logout_notices(self, now: datetime, limit: int = 10,
                                   skip_clients: Collection[str] = ()) -> list[LogoutNotice]:
        """Due back-channel logouts, claimed as ``claim_mail`` claims mail."""
        skip = [logout_notices.c.client_id.not_in(list(skip_clients))] if skip_clients else []
        return [LogoutNotice(**row)
                for row in await self._claim(logout_notices, now, limit, *skip)]

    async def logout_notice_sent(self, notice_id: int, at: datetime, *,
                                 claimed_until: datetime) -> bool:
        return await self._settle(logout_notices, notice_id, claimed_until, {
            "sent_at": at, "claimed_until": None, "attempts": logout_notices.c.attempts + 1,
            # settled: out of the claim's index range (``_claim`` walked every sent row)
            "next_attempt_at": None})

    async def logout_notice_failed(self, notice_id: int, error: str, retry_at: datetime | None,
                                   at: datetime, *, claimed_until: datetime) -> bool:
        return await self._settle(logout_notices, notice_id, claimed_until,
                                  _failed(logout_notices, error, retry_at, at))

    async def _claim(self, table: sa.Table, now: datetime, limit: int,
                     *where: sa.ColumnElement[bool]) -> list[sa.RowMapping]:
        """Claim up to ``limit`` due rows of a delivery queue (``outbox``,
        ``logout_notices``) that match ``where``, one by one, for ``_CLAIM_SECONDS``."""
        c = table.c
        claimable = sa.and_(c.sent_at.is_(None), c.failed_at.is_(None),
                            c.next_attempt_at <= now,
                            sa.or_(c.claimed_until.is_(None), c.claimed_until < now), *where)

        def claim(conn: sa.Connection) -> list[sa.RowMapping]:
            claimed: list[sa.RowMapping] = []
            ids = conn.execute(sa.select(c.id).where(claimable)
                               .order_by(c.next_attempt_at).limit(limit)).scalars()
            for row_id in list(ids):
                done = conn.execute(table.update().where(c.id == row_id, claimable)
                                    .values(claimed_until=now + timedelta(seconds=_CLAIM_SECONDS)))
                if done.rowcount != 1:
                    continue  # another instance took it
                claimed.append(conn.execute(sa.select(table).where(c.id == row_id)
                                            ).mappings().one())
            return claimed
        return await self._write(claim)

    async def _settle(self, table: sa.Table, row_id: object, claimed_until: datetime,
                      values: dict[str, object]) -> bool:
        c = table.c

        def settle(conn: sa.Connection) -> bool:
            done = conn.execute(table.update().where(
                c.id == row_id, c.claimed_until == claimed_until,
                c.sent_at.is_(None), c.failed_at.is_(None)).values(**values))
            return done.rowcount == 1
        return await self._write(settle)

    async def get_mail(self, mail_id: str) -> OutgoingMail | None:
        row = await self._one(select_by(outbox, "id"), {"id": mail_id})
        if row is None:
            return None
        return OutgoingMail(**row)

    async def create_one_time_token(self, token: OneTimeToken) -> bool:
        return await self._insert(one_time_tokens, values(token), for_user=True)

    async def get_one_time_token(self, digest: bytes) -> OneTimeToken | None:
        row = await self._one(select_by(one_time_tokens, "digest"), {"digest": digest})
        return OneTimeToken(**row) if row else None

    async def use_one_time_token(self, digest: bytes, at: datetime,
                                 ) -> tuple[OneTimeToken, User | None] | None:
        """Mark the token used if it is unused and unexpired, and read its user; None
        if it was not."""
        def use(conn: sa.Connection) -> tuple[OneTimeToken, User | None] | None:
            done = conn.execute(one_time_tokens.update().where(
                one_time_tokens.c.digest == digest, one_time_tokens.c.used_at.is_(None),
                one_time_tokens.c.expires_at > at).values(used_at=at))
            if done.rowcount != 1:
                return None
            token = OneTimeToken(**conn.execute(sa.select(one_time_tokens).where(
                one_time_tokens.c.digest == digest)).mappings().one())
            if token.user_id is None:
                return token, None
            row = conn.execute(sa.select(users).where(users.c.id == token.user_id)
                               ).mappings().first()
            return token, None if row is None else User(**row)
        return await self._write(use)

    async def adopt_signup(self, user_id: str, email: str) -> None:
        def adopt(conn: sa.Connection) -> None:
            conn.execute(one_time_tokens.update().where(
                one_time_tokens.c.user_id.is_(None), one_time_tokens.c.email == email
            ).values(user_id=user_id))
            conn.execute(outbox.update().where(outbox.c.user_id.is_(None), outbox.c.to == email)
                         .values(user_id=user_id))
        await self._write(adopt)

    async def cancel_one_time_tokens(self, user_id: str, purposes: Collection[str],
                                     at: datetime, emails: Collection[str] = ()) -> int:
        """Mark the user's unused tokens of these purposes used, and those of no user
        sent to ``emails``; returns how many."""
        return await self._write(lambda conn: cancel_tokens(conn, user_id, purposes, at,
                                                            emails))


def cancel_tokens(conn: sa.Connection, user_id: str, purposes: Collection[str], at: datetime,
                  emails: Collection[str] = ()) -> int:
    """``cancel_one_time_tokens`` in the transaction of ``conn``."""
    whose = one_time_tokens.c.user_id == user_id
    if emails:
        whose = sa.or_(whose, sa.and_(one_time_tokens.c.user_id.is_(None),
                                      one_time_tokens.c.email.in_(list(emails))))
    return int(conn.execute(one_time_tokens.update().where(
        whose, one_time_tokens.c.purpose.in_(list(purposes)),
        one_time_tokens.c.used_at.is_(None)).values(used_at=at)).rowcount)
