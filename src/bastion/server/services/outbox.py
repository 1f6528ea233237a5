"""The outbox: mail is stored first, then sent by a background worker with retries.

A request only inserts a row, so a slow or broken SMTP server never holds it up,
and nothing is lost if the process stops: another instance (or the next start)
sends what is due. Failed attempts back off exponentially (30 s doubling, at most
an hour); after ``MAX_ATTEMPTS`` the message is marked failed and logged as an error.
A message past its ``expires_at`` (its link no longer works) is settled unsent.

Delivery is at least once, not exactly once. A worker claims one message at a time
for two minutes and bounds its whole send by ``SEND_SECONDS``, well inside the claim,
and records the result only if its claim still holds, so instances do not send a
message twice while they run. But a process that stops between the SMTP server
accepting a message and the row being marked sent leaves the claim to expire, and the
message is sent again.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import functools
import logging
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import Counter

from bastion.server.keys import aead_for
from bastion.server.mail import Mailer, Undeliverable
from bastion.server.metrics import MAIL
from bastion.server.models import OutgoingMail
from bastion.server.storage.base import Storage
from bastion.server.text import plural

log = logging.getLogger("bastion.mail")
Q = TypeVar("Q", bound="Queued")

MAX_ATTEMPTS = 8
BATCH = 10  # messages one ``send_due`` sends at most (each claimed just before its send)
SEND_SECONDS = 60.0  # one whole send (every SMTP step); below the storage's 120 s claim
POLL_SECONDS = 5.0
AFTER_ANSWER_SECONDS = (0.05, 1.0)  # when work handed over by a request starts
_random = secrets.SystemRandom()  # a delay an observer cannot predict
#: Pieces of such work waiting at once before requests for more are refused as busy
#: (``busy``): accepted work is never dropped but at shutdown.
MAX_HANDED = 1000
BUSY_RETRY_AFTER = 5  # seconds, the Retry-After of a request refused as busy
BUSY = "Too many emails are waiting to go out. Please try again in a few seconds."
STOP_SECONDS = 10.0
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parents[1] / "pages" / "templates" / "mail"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
)


class Seal:
    """AES-GCM for the bodies of queued mail, which hold sign-in and email-change links:
    the tokens are stored as digests everywhere else, so a reader of the database or a
    backup must not find them here either. The key comes from ``BASTION_SECRET_KEY``;
    the mail's id is bound in, so a body cannot be moved to another mail."""

    PREFIX = "sealed:v1:"

    def __init__(self, secret_key: bytes) -> None:
        self._aead = aead_for(secret_key, b"bastion outbox v1")

    def close(self, mail: OutgoingMail) -> OutgoingMail:
        return dataclasses.replace(mail, text=self._close(mail.id, mail.text),
                                   html=self._close(mail.id, mail.html))

    def open(self, mail: OutgoingMail) -> OutgoingMail:
        """The mail with readable bodies (bodies stored unsealed pass as they are)."""
        return dataclasses.replace(mail, text=self._open(mail.id, mail.text),
                                   html=self._open(mail.id, mail.html))

    def _close(self, mail_id: str, body: str) -> str:
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, body.encode(), mail_id.encode())
        return self.PREFIX + base64.urlsafe_b64encode(sealed).decode()

    def _open(self, mail_id: str, body: str) -> str:
        if not body.startswith(self.PREFIX):
            return body
        blob = base64.urlsafe_b64decode(body[len(self.PREFIX):])
        try:
            return self._aead.decrypt(blob[:12], blob[12:], mail_id.encode()).decode()
        except InvalidTag:
            raise SealError("the mail cannot be decrypted: BASTION_SECRET_KEY is not the "
                            "one it was queued with") from None


class SealError(Exception):
    pass


@functools.lru_cache(maxsize=4)
def seal_for(secret_key: bytes) -> Seal:
    return Seal(secret_key)


def render(template: str, **values: object) -> tuple[str, str]:
    """The plain-text and HTML bodies of a mail template."""
    return (_templates.get_template(f"{template}.txt").render(**values),
            _templates.get_template(f"{template}.html").render(**values))


async def enqueue(storage: Storage, seal: Seal, to: str, subject: str, template: str, *,
                  user_id: str | None = None, expires_at: datetime | None = None,
                  **values: object) -> OutgoingMail | None:
    """Queue a mail about ``user_id`` (if any), its bodies sealed; returns it as stored,
    or None if that user is deleted (or erased): nothing is queued. A mail whose link
    stops working at ``expires_at`` is not sent after that."""
    text, html = render(template, **values)
    mail = seal.close(OutgoingMail(id=str(uuid.uuid4()), to=to, subject=subject, text=text,
                                   html=html, created_at=datetime.now(UTC), user_id=user_id,
                                   expires_at=expires_at))
    return mail if await storage.enqueue_mail(mail) else None


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


class Queued(Protocol):
    """What ``deliver_due`` needs of a queued item (mail, a logout notice)."""

    @property
    def attempts(self) -> int: ...
    @property
    def claimed_until(self) -> datetime | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Queue(Generic[Q]):
    """One delivery queue: how to claim, send and settle its items."""

    #: Claim one due item (a list of at most one), none of whose lane is in the set.
    claim: Callable[[datetime, frozenset[str]], Awaitable[list[Q]]]
    send: Callable[[Q], Awaitable[bool]]  # False: nothing to send any more (settled as sent)
    sent: Callable[[Q, datetime, datetime], Awaitable[bool]]  # item, at, claimed_until
    failed: Callable[[Q, str, datetime | None, datetime, datetime], Awaitable[bool]]
    describe: Callable[[Q], str]  # for logs: no secrets
    outcomes: Counter  # labelled sent / skipped / retried / given_up
    log: logging.Logger
    #: Sends the worker runs at once, each for another lane (``lane``: the receiver),
    #: so a receiver that hangs holds up one send, not the others' items.
    lanes: int = 1
    lane: Callable[[Q], str] = lambda _item: ""


async def deliver_due(queue: Queue[Q], stopping: Callable[[], bool] = lambda: False) -> int:
    """Send what is due now, one claimed item at a time, up to ``BATCH`` or until
    ``stopping()``; returns how many were sent."""
    return (await _deliver_batch(queue, stopping))[1]


async def _deliver_batch(queue: Queue[Q], stopping: Callable[[], bool]) -> tuple[int, int]:
    """``deliver_due``: how many were claimed, and how many sent."""
    claims = sent = 0
    while claims < BATCH and not stopping():
        claimed = await queue.claim(datetime.now(UTC), frozenset())
        if not claimed:
            break
        claims += 1
        sent += await deliver(queue, claimed[0])
    return claims, sent


async def deliver(queue: Queue[Q], item: Q) -> int:
    """Send one claimed item and settle it; 1 if it went. A failure is retried with
    ``backoff`` until ``MAX_ATTEMPTS``; the reason is kept."""
    assert item.claimed_until is not None
    what = queue.describe(item)
    try:
        async with asyncio.timeout(SEND_SECONDS):
            posted = await queue.send(item)
    except Exception as exc:  # retried unless refused for good; the reason is kept
        attempts = item.attempts + 1
        now = datetime.now(UTC)
        final = isinstance(exc, Undeliverable) or attempts >= MAX_ATTEMPTS
        retry = None if final else now + backoff(attempts)
        reason = f"{type(exc).__name__}: {exc}"
        queue.outcomes.labels("given_up" if retry is None else "retried").inc()
        if retry is None:
            queue.log.error("giving up on %s after %s: %s", what, plural(attempts, "attempt"),
                            reason)
        else:
            queue.log.warning("%s failed (attempt %d), retrying at %s: %s", what,
                              attempts, retry.isoformat(), reason)
        if not await queue.failed(item, reason, retry, now, item.claimed_until):
            queue.log.warning("%s: claim lost before its failure was recorded", what)
        return 0
    # (counted whether or not its claim still held)
    queue.outcomes.labels("sent" if posted else "skipped").inc()
    if await queue.sent(item, datetime.now(UTC), item.claimed_until):
        return int(posted)
    # another instance took it after the claim expired: it may go twice
    queue.log.warning("%s was sent after its claim expired", what)
    return 0


def mail_queue(storage: Storage, mailer: Mailer, seal: Seal) -> Queue[OutgoingMail]:
    async def send(mail: OutgoingMail) -> bool:
        if mail.expires_at is not None and mail.expires_at <= datetime.now(UTC):
            # a dead link only confuses; the id alone, as the body holds the link
            log.warning("mail %s expired before it could be sent: not sending it", mail.id)
            return False
        await mailer.send(seal.open(mail))
        return True

    return Queue(
        claim=lambda now, _busy: storage.claim_mail(now, limit=1),
        send=send,
        sent=lambda mail, at, claim: storage.mail_sent(mail.id, at, claimed_until=claim),
        failed=lambda mail, reason, retry, at, claim: storage.mail_failed(
            mail.id, reason, retry, at, claimed_until=claim),
        describe=lambda mail: f"mail {mail.id} to {mail.to}", outcomes=MAIL, log=log)


async def send_due(storage: Storage, mailer: Mailer, seal: Seal) -> int:
    """Send the mail due now; returns how many were sent."""
    return await deliver_due(mail_queue(storage, mailer, seal))


class OutboxWorker:
    """Delivers mail (and the ``others`` queues: back-channel logouts) in the background,
    each queue in a task of its own, so a slow app endpoint never holds up mail: woken
    at once by ``poke`` after a request queues something, and every ``POLL_SECONDS``
    for retries and what other instances queued."""

    def __init__(self, storage: Storage, mailer: Mailer, seal: Seal,
                 others: tuple[Queue[Any], ...] = ()) -> None:
        self.storage, self.mailer, self.seal = storage, mailer, seal
        self.queues: tuple[Queue[Any], ...] = (mail_queue(storage, mailer, seal), *others)
        self._wakes = [asyncio.Event() for _ in self.queues]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Work handed over by requests, with when it is due (see ``after_answer``).
        self._handed: collections.deque[tuple[float, Coroutine[Any, Any, object]]] = \
            collections.deque()
        self._handler: asyncio.Task[None] | None = None
        self._current: Coroutine[Any, Any, object] | None = None
        self._closing = False

    def poke(self) -> None:
        for wake in self._wakes:
            wake.set()

    def busy(self) -> bool:
        """Whether requests that hand work over must be refused for now (503): the
        backlog is full. Asked before the work is made (its link stored, an older link
        cancelled), so a request is refused whole or its mail is queued."""
        return len(self._handed) >= MAX_HANDED

    def after_answer(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work``, which queues mail, in the background, then send what it queued.

        It starts at a random moment within ``AFTER_ANSWER_SECONDS``: never before the
        answer has left (the transport flushes on the loop's next turns, and on SQLite
        the work would not yield before it is done), and not at a moment tied to the
        request, so neither its answer nor one sent right after it shows what the work
        found (with the per-address limit, a handful of tries an hour). Work runs one
        piece at a time, in the order it was handed over. The backlog may pass
        ``MAX_HANDED`` by the requests that found it not ``busy`` meanwhile."""
        if self._closing:
            work.close()
            log.error("mail not queued: stopping")
            return
        due = asyncio.get_running_loop().time() + _random.uniform(*AFTER_ANSWER_SECONDS)
        self._handed.append((due, work))
        if self._handler is None or self._handler.done():
            self._handler = asyncio.create_task(self._run_handed(), name="bastion-handed")

    async def _run_handed(self) -> None:
        loop = asyncio.get_running_loop()
        while self._handed:
            due, work = self._handed[0]
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._handed.popleft()
            self._current = work
            try:  # bounded, so one stuck call does not hold up everyone's links
                async with asyncio.timeout(SEND_SECONDS):
                    await work
            except Exception:  # that one mail is lost; the next ones go on
                log.exception("queuing mail after an answer failed")
            else:
                self.poke()
            finally:
                self._current = None

    async def settled(self) -> None:
        """Wait for the work handed to ``after_answer`` so far."""
        while (handler := self._handler) is not None and not handler.done():
            await asyncio.wait({handler})
        self._drop_handed()  # what a cancelled handler left

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(queue, wake), name="bastion-outbox")
                       for queue, wake in zip(self.queues, self._wakes, strict=True)]

    async def close(self) -> None:
        """Before the storage closes: finish the work handed over (cancelled after
        ``STOP_SECONDS``) and refuse more, then ``stop``."""
        self._closing = True  # work handed over from now on would outlive the storage
        try:
            await asyncio.wait_for(self.settled(), STOP_SECONDS)
        except TimeoutError:
            dropped = len(self._handed) + (self._current is not None)
            log.error("stopping: dropped %d mail(s) not yet queued", dropped)
            if self._handler is not None:
                self._handler.cancel()
                await asyncio.gather(self._handler, return_exceptions=True)
            self._drop_handed()
        await self.stop()

    def _drop_handed(self) -> None:
        for _, work in self._handed:
            work.close()  # never started: no "never awaited" warning
        self._handed.clear()

    async def stop(self) -> None:
        """Let a send in progress finish (its connection goes back to the pool), then
        stop sending; cancel only if it takes longer than ``STOP_SECONDS``."""
        if not self._tasks:
            return
        self._stopping = True
        self.poke()
        _, pending = await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, queue: Queue[Any], wake: asyncio.Event) -> None:
        if queue.lanes > 1:
            return await self._run_lanes(queue, wake)
        while not self._stopping:
            claims = 0
            try:
                claims, _ = await _deliver_batch(queue, lambda: self._stopping)
            except Exception:  # the database may be briefly away; try again later
                queue.log.exception("outbox worker failed; retrying")
            if self._stopping:
                return
            if claims == BATCH:  # a backlog (an outage, a restart): on without a pause
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_SECONDS)
            wake.clear()

    async def _run_lanes(self, queue: Queue[Any], wake: asyncio.Event) -> None:
        """Up to ``queue.lanes`` sends at once, never two for one lane: one poller
        claims, each send runs in a task of its own and wakes the poller when done."""
        running: dict[asyncio.Task[int], str] = {}  # each send and its lane

        def done(task: asyncio.Task[int]) -> None:
            running.pop(task, None)
            wake.set()
            if not task.cancelled() and task.exception() is not None:
                queue.log.error("outbox worker failed; retrying", exc_info=task.exception())

        try:
            while not self._stopping:
                try:
                    while len(running) < queue.lanes and not self._stopping:
                        claimed = await queue.claim(datetime.now(UTC),
                                                    frozenset(running.values()))
                        if not claimed:
                            break
                        task = asyncio.create_task(deliver(queue, claimed[0]),
                                                   name="bastion-outbox-send")
                        running[task] = queue.lane(claimed[0])
                        task.add_done_callback(done)
                except Exception:  # the database may be briefly away; try again later
                    queue.log.exception("outbox worker failed; retrying")
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL_SECONDS)
                wake.clear()
        except asyncio.CancelledError:  # ``stop`` ran out of patience: so do the sends
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)  # before the storage goes
            raise
        await asyncio.gather(*running, return_exceptions=True)  # stopping: let them finish
