"""Housekeeping: deleting the rows that no longer decide anything, so each table stays
the size of what is live rather than of everything ever issued (a refresh adds a row,
a login two or three).

Each instance purges every ``housekeeping_interval`` seconds; ``bastion purge`` does it
once. Rows go in batches, each batch its own short transaction, so requests go on
between them; what a row still decides is in ``Storage.purge``'s ``Cutoffs``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from datetime import UTC, datetime, timedelta

from bastion.server.metrics import PURGED, PURGES
from bastion.server.services.throttle import FORGET_AFTER
from bastion.server.settings import Settings
from bastion.server.storage.base import Cutoffs, Storage

log = logging.getLogger("bastion.housekeeping")

# Longer than any access token lives (``access_token_ttl`` is at most a day), with the
# verifier's leeway: a grant's row must outlive its access tokens.
KEEP_EXPIRED = timedelta(days=1, hours=1)
KEEP_MAIL = timedelta(days=7)  # sent or given up: kept a while for an operator to look at
BATCH = 500
FIRST_WITHIN = 300.0  # seconds after start: deployments may restart more often than hourly
_random = secrets.SystemRandom()


def cutoffs(settings: Settings, now: datetime) -> Cutoffs:
    retention = settings.event_retention_days
    return Cutoffs(
        now=now,
        expired_before=now - KEEP_EXPIRED,
        throttles_before=now - FORGET_AFTER,  # older counts no longer count, unless locked
        mail_before=now - KEEP_MAIL,
        events_before=None if retention is None else now - timedelta(days=retention),
        sessions_before=now - timedelta(seconds=settings.session_ttl) - KEEP_EXPIRED,
    )


async def purge(storage: Storage, settings: Settings, now: datetime | None = None,
                batch: int = BATCH) -> dict[str, int]:
    """Delete everything due (``cutoffs``) in batches; how many rows of each kind went."""
    due = cutoffs(settings, now or datetime.now(UTC))
    gone: collections.Counter[str] = collections.Counter()
    while True:
        done = await storage.purge(due, batch)
        gone.update(done)
        if max(done.values(), default=0) < batch:
            break
        await asyncio.sleep(0)  # requests get the database between batches
    # Last: the codes and refresh tokens just deleted may have been a grant's last.
    after: tuple[datetime, str] | None = None
    while True:
        count, after = await storage.purge_grants(due.expired_before, after, batch)
        gone["grants"] += count
        if after is None:
            break
        await asyncio.sleep(0)
    return {kind: count for kind, count in gone.items() if count}


class Housekeeper:
    """Runs ``purge`` in the background, at moments spread over instances."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage, self.settings = storage, settings
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.settings.housekeeping_interval > 0:
            self._task = asyncio.create_task(self._run(), name="bastion-housekeeping")

    async def _run(self) -> None:
        interval = float(self.settings.housekeeping_interval)
        await asyncio.sleep(_random.uniform(0, min(interval, FIRST_WITHIN)))
        while True:
            try:
                gone = await purge(self.storage, self.settings)
            except Exception:  # the database may be briefly away; the next round retries
                PURGES.labels("failed").inc()
                log.exception("housekeeping failed")
            else:
                PURGES.labels("done").inc()
                for kind, count in gone.items():
                    PURGED.labels(kind).inc(count)
                if gone:
                    log.info("housekeeping deleted %s", ", ".join(
                        f"{count} {kind}" for kind, count in sorted(gone.items())))
            await asyncio.sleep(interval * _random.uniform(0.9, 1.1))

    async def close(self) -> None:
        """Stop (a purge cut short loses nothing: the next one does the rest)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
