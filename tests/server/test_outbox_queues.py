"""The outbox worker drains each queue in a task of its own: an app's back-channel
logout endpoint that hangs does not hold up sign-in mail, nor the other apps' logouts
(real SMTP, real HTTP)."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_backchannel import signed_in

from bastion.server.context import Context
from bastion.server.mail import SMTPMailer
from bastion.server.models import Grant, LoginSession
from bastion.server.services import backchannel, outbox
from bastion.server.services.clients import create_client
from bastion.server.settings import Settings
from support import ISSUER, Mailbox, free_port, logout_receiver, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[str, int, Mailbox]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, smtp: tuple[str, int, Mailbox]) -> Settings:  # for ctx
    return Settings(data_dir=tmp_path, issuer=ISSUER, secret_key="k" * 40,
                    smtp_host=smtp[0], smtp_port=smtp[1], smtp_tls="none",
                    password_hash_memory_kib=8192, password_hash_time_cost=1,
                    housekeeping_interval=0)


async def test_mail_goes_out_while_a_logout_endpoint_hangs(
        ctx: Context, smtp: tuple[str, int, Mailbox], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backchannel, "POST_SECONDS", 600.0)  # hangs for the whole test
    monkeypatch.setattr(outbox, "SEND_SECONDS", 600.0)
    box = smtp[2]
    with logout_receiver() as receiver:
        receiver.hold.set()
        _, _, sid = await signed_in(ctx, receiver.uri)
        await ctx.storage.revoke_session(sid, datetime.now(UTC))
        ctx.outbox.poke()
        assert await asyncio.to_thread(receiver.arrived.wait, 30)  # the POST is in hand

        await outbox.enqueue(ctx.storage, ctx.outbox.seal, "ann@example.com", "Sign in",
                             "sign_in", link=f"{ISSUER}/login/link?token=t", client_name="App",
                             expires_in="15 minutes")
        ctx.outbox.poke()
        (mail,) = await asyncio.to_thread(box.wait_for, 1)
        assert mail["Subject"] == "Sign in" and receiver.forms.empty()  # still held

        receiver.release()
        await asyncio.to_thread(receiver.next)  # and the logout goes through after all


async def test_a_hanging_app_holds_up_only_its_own_logouts(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backchannel, "POST_SECONDS", 600.0)
    monkeypatch.setattr(outbox, "SEND_SECONDS", 600.0)
    with logout_receiver() as slow, logout_receiver() as fast:
        slow.hold.set()
        user_id, slow_id, _ = await signed_in(ctx, slow.uri)
        fast_client = await create_client(ctx.storage, name="Fast",
                                          redirect_uris=["https://fast.example/cb"],
                                          backchannel_logout_uri=fast.uri)
        now = datetime.now(UTC)
        await ctx.storage.create_session(LoginSession(
            id="sid-2", user_id=user_id, auth_time=now, expires_at=now + timedelta(hours=1),
            created_at=now, user_agent="test"))
        for grant_id, client_id, sid in (("g-slow-2", slow_id, "sid-2"),
                                         ("g-fast", fast_client.client.client_id, "sid-2")):
            await ctx.storage.create_grant(Grant(
                id=grant_id, client_id=client_id, user_id=user_id, session_id=sid,
                scope="openid", auth_time=now, created_at=now), None)
        await ctx.storage.revoke_user_sessions(user_id, now)  # 2 notices to slow, 1 to fast
        ctx.outbox.poke()

        assert await asyncio.to_thread(slow.arrived.wait, 30)
        assert await asyncio.to_thread(fast.next)  # while slow's endpoint hangs
        assert slow.received == 1  # one POST at a time to one app: its second waits
        slow.release()
        assert await asyncio.to_thread(slow.next) and await asyncio.to_thread(slow.next)
        assert slow.received == 2


async def test_stopping_cancels_a_hanging_post_and_leaves_no_task(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backchannel, "POST_SECONDS", 600.0)
    monkeypatch.setattr(outbox, "SEND_SECONDS", 600.0)
    monkeypatch.setattr(outbox, "STOP_SECONDS", 0.5)
    with logout_receiver() as receiver:
        receiver.hold.set()
        _, _, sid = await signed_in(ctx, receiver.uri)
        await ctx.storage.revoke_session(sid, datetime.now(UTC))
        ctx.outbox.poke()
        assert await asyncio.to_thread(receiver.arrived.wait, 30)
        sends = [t for t in asyncio.all_tasks() if t.get_name() == "bastion-outbox-send"]
        assert len(sends) == 1
        await ctx.outbox.stop()  # waits STOP_SECONDS, then cancels the send and awaits it
        assert sends[0].cancelled() and all(t.done() for t in ctx.outbox._tasks)


async def test_a_backlog_goes_out_without_a_pause_between_batches(
        ctx: Context, smtp: tuple[str, int, Mailbox], monkeypatch: pytest.MonkeyPatch) -> None:
    """After a batch the worker waited POLL_SECONDS even with more mail due: a backlog
    (an SMTP outage, a restart) drained at 10 mails in 5 s, and sign-in links expired
    in the queue."""
    monkeypatch.setattr(outbox, "POLL_SECONDS", 3600.0)  # only a poke wakes it
    count = outbox.BATCH * 2 + 5
    for n in range(count):
        await outbox.enqueue(ctx.storage, ctx.outbox.seal, f"u{n}@example.com", "Sign in",
                             "sign_in", link=f"{ISSUER}/login/link?token=t{n}",
                             client_name="App", expires_in="15 minutes")
    ctx.outbox.poke()
    assert len(await asyncio.to_thread(smtp[2].wait_for, count)) == count


async def test_mail_carries_a_date_and_its_own_message_id(
        ctx: Context, smtp: tuple[str, int, Mailbox]) -> None:
    """RFC 5322 3.6; some receivers refuse mail without a Message-ID."""
    queued = await outbox.enqueue(ctx.storage, ctx.outbox.seal, "ann@example.com",
                                  "Sign in", "sign_in", link=f"{ISSUER}/login/link?token=t",
                                  client_name="App", expires_in="15 minutes")
    assert queued is not None
    ctx.outbox.poke()
    (mail,) = await asyncio.to_thread(smtp[2].wait_for, 1)
    sent = email.utils.parsedate_to_datetime(mail["Date"])
    assert abs((sent - datetime.now(UTC)).total_seconds()) < 3600
    domain = ctx.settings.mail_from.rpartition("@")[2].rstrip(">")
    assert mail["Message-ID"] == f"<{queued.id}@{domain}>"


class _Refusing:
    """An SMTP server that refuses the recipient for good, or for now."""

    def __init__(self, reply: str) -> None:
        self.reply, self.asked = reply, 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.asked += 1
        return self.reply


@pytest.mark.parametrize(("reply", "retried"), [
    ("550 5.1.1 No such user here", False), ("450 4.2.1 Mailbox busy, try later", True),
    ("556 5.1.10 Recipient address has null MX", False),
    # the sender's address (mail_from), which Postfix refuses at RCPT by default
    ("550 5.1.8 <no-reply@x.example>: Sender address rejected: Domain not found", True),
    ("553 5.1.7 Bad sender address syntax", True),
    # the relay's settings (no login given), which may be fixed within the hour
    ("554 5.7.1 Relay access denied", True), ("550 Sender not allowed", True)])
async def test_a_recipient_refused_for_good_is_given_up_at_once(
        ctx: Context, reply: str, retried: bool) -> None:
    """A 5xx to RCPT was retried eight times over an hour like any failure."""
    from aiosmtpd.controller import Controller

    refusing = _Refusing(reply)
    controller = Controller(refusing, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        mailer = SMTPMailer(ctx.settings.model_copy(update={"smtp_port": controller.port}))
        queued = await outbox.enqueue(ctx.storage, ctx.outbox.seal, "ann@example.com",
                                      "Sign in", "sign_in", link=f"{ISSUER}/login/link?t=x",
                                      client_name="App", expires_in="15 minutes")
        assert queued is not None
        queue = outbox.mail_queue(ctx.storage, mailer, ctx.outbox.seal)
        assert await outbox.deliver_due(queue) == 0
    finally:
        controller.stop()
    mail = await ctx.storage.get_mail(queued.id)
    assert mail is not None and mail.attempts == 1 and refusing.asked == 1
    assert (mail.next_attempt_at is not None) == retried
    assert (mail.failed_at is not None) != retried
