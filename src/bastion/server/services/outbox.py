"""The outbox: mail is stored first, then sent by a background worker with retries.

A request only inserts a row, so a slow or broken SMTP server never holds it up,
and nothing is lost if the process stops: another instance (or the next start)
sends what is due. Failed attempts back off exponentially (30 s doubling, at most
an hour); after ``MAX_ATTEMPTS`` the message is marked failed and logged as an error.

Delivery is at least once, not exactly once. A worker claims one message at a time
for two minutes and bounds its whole send by ``SEND_SECONDS``, well inside the claim,
and records the result only if its claim still holds, so instances do not send a
message twice while they run. But a process that stops between the SMTP server
accepting a message and the row being marked sent leaves the claim to expire, and the
message is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from bastion.server.mail import Mailer
from bastion.server.models import OutgoingMail
from bastion.server.storage.base import Storage

log = logging.getLogger("bastion.mail")

MAX_ATTEMPTS = 8
BATCH = 10  # messages one ``send_due`` sends at most (each claimed just before its send)
SEND_SECONDS = 60.0  # one whole send (every SMTP step); below the storage's 120 s claim
POLL_SECONDS = 5.0
STOP_SECONDS = 10.0
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parents[1] / "pages" / "templates" / "mail"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
)


def render(template: str, **values: object) -> tuple[str, str]:
    """The plain-text and HTML bodies of a mail template."""
    return (_templates.get_template(f"{template}.txt").render(**values),
            _templates.get_template(f"{template}.html").render(**values))


async def enqueue(storage: Storage, to: str, subject: str, template: str,
                  **values: object) -> OutgoingMail:
    text, html = render(template, **values)
    mail = OutgoingMail(id=str(uuid.uuid4()), to=to, subject=subject, text=text, html=html,
                        created_at=datetime.now(UTC))
    await storage.enqueue_mail(mail)
    return mail


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


async def send_due(storage: Storage, mailer: Mailer) -> int:
    """Send what is due now; returns how many were sent."""
    sent = 0
    for _ in range(BATCH):
        claimed = await storage.claim_mail(datetime.now(UTC), limit=1)
        if not claimed:
            break
        mail = claimed[0]
        assert mail.claimed_until is not None
        try:
            async with asyncio.timeout(SEND_SECONDS):
                await mailer.send(mail)
        except Exception as exc:  # any failure is retried; the reason is kept
            attempts = mail.attempts + 1
            now = datetime.now(UTC)
            retry = now + backoff(attempts) if attempts < MAX_ATTEMPTS else None
            reason = f"{type(exc).__name__}: {exc}"
            if retry is None:
                log.error("giving up on mail %s to %s after %d attempts: %s", mail.id, mail.to,
                          attempts, reason)
            else:
                log.warning("mail %s to %s failed (attempt %d), retrying at %s: %s", mail.id,
                            mail.to, attempts, retry.isoformat(), reason)
            if not await storage.mail_failed(mail.id, reason, retry, now,
                                             claimed_until=mail.claimed_until):
                log.warning("mail %s: claim lost before its failure was recorded", mail.id)
        else:
            if await storage.mail_sent(mail.id, datetime.now(UTC),
                                       claimed_until=mail.claimed_until):
                sent += 1
            else:  # another instance took it after the claim expired: it may go twice
                log.warning("mail %s to %s was sent after its claim expired", mail.id, mail.to)
    return sent


class OutboxWorker:
    """Runs ``send_due`` in the background: woken at once by ``poke`` after a request
    enqueues mail, and every ``POLL_SECONDS`` for retries and other instances' mail."""

    def __init__(self, storage: Storage, mailer: Mailer) -> None:
        self.storage, self.mailer = storage, mailer
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def poke(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bastion-outbox")

    async def stop(self) -> None:
        """Let a send in progress finish (its connection goes back to the pool), then
        stop; cancel only if it takes longer than ``STOP_SECONDS``."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_SECONDS)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await send_due(self.storage, self.mailer)
            except Exception:  # the database may be briefly away; try again later
                log.exception("outbox worker failed; retrying")
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()
