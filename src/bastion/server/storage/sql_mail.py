"""The mail outbox and single-use emailed tokens on SQLAlchemy (mixed into SQLStorage)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.server.models import OneTimeToken, OutgoingMail
from bastion.server.storage.tables import one_time_tokens, outbox

_CLAIM_SECONDS = 120  # a claimed message not settled by then is taken again


class MailMixin:
    engine: AsyncEngine

    async def enqueue_mail(self, mail: OutgoingMail) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(outbox.insert().values(
                id=mail.id, to=mail.to, subject=mail.subject, text=mail.text, html=mail.html,
                created_at=mail.created_at, attempts=0, next_attempt_at=mail.created_at))

    async def claim_mail(self, now: datetime, limit: int = 10) -> list[OutgoingMail]:
        """Due messages, claimed for this worker (several instances never send one twice
        while a claim holds)."""
        claimable = sa.and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None),
                            outbox.c.next_attempt_at <= now,
                            sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now))
        claimed: list[OutgoingMail] = []
        async with self.engine.begin() as conn:
            ids = (await conn.execute(sa.select(outbox.c.id).where(claimable)
                                      .order_by(outbox.c.next_attempt_at).limit(limit))).scalars()
            for mail_id in list(ids):
                done = await conn.execute(outbox.update().where(outbox.c.id == mail_id, claimable)
                                          .values(claimed_until=now + timedelta(
                                              seconds=_CLAIM_SECONDS)))
                if done.rowcount != 1:
                    continue  # another instance took it
                row = (await conn.execute(sa.select(outbox).where(outbox.c.id == mail_id))
                       ).mappings().one()
                claimed.append(OutgoingMail(
                    id=row["id"], to=row["to"], subject=row["subject"], text=row["text"],
                    html=row["html"], created_at=row["created_at"], attempts=row["attempts"],
                    next_attempt_at=row["next_attempt_at"]))
        return claimed

    async def mail_sent(self, mail_id: str, at: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(outbox.update().where(outbox.c.id == mail_id).values(
                sent_at=at, claimed_until=None, text="", html="", attempts=outbox.c.attempts + 1))

    async def mail_failed(self, mail_id: str, error: str, retry_at: datetime | None,
                          at: datetime) -> None:
        """Record a failed attempt; ``retry_at`` None gives up (and erases the body)."""
        values: dict[str, object] = {"attempts": outbox.c.attempts + 1, "claimed_until": None,
                                     "last_error": error[:500], "next_attempt_at": retry_at}
        if retry_at is None:
            values.update(failed_at=at, text="", html="")
        async with self.engine.begin() as conn:
            await conn.execute(outbox.update().where(outbox.c.id == mail_id).values(**values))

    async def get_mail(self, mail_id: str) -> OutgoingMail | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(outbox).where(outbox.c.id == mail_id))
                   ).mappings().first()
        if row is None:
            return None
        return OutgoingMail(**{k: v for k, v in row.items() if k != "claimed_until"})

    async def create_one_time_token(self, token: OneTimeToken) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(one_time_tokens.insert().values(
                {f: getattr(token, f) for f in OneTimeToken.__dataclass_fields__}))

    async def get_one_time_token(self, digest: bytes) -> OneTimeToken | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(one_time_tokens).where(
                one_time_tokens.c.digest == digest))).mappings().first()
        return OneTimeToken(**row) if row else None

    async def use_one_time_token(self, digest: bytes, at: datetime) -> OneTimeToken | None:
        """Mark the token used if it is unused and unexpired; None if it was not."""
        async with self.engine.begin() as conn:
            done = await conn.execute(one_time_tokens.update().where(
                one_time_tokens.c.digest == digest, one_time_tokens.c.used_at.is_(None),
                one_time_tokens.c.expires_at > at).values(used_at=at))
            if done.rowcount != 1:
                return None
            row = (await conn.execute(sa.select(one_time_tokens).where(
                one_time_tokens.c.digest == digest))).mappings().one()
        return OneTimeToken(**row)
