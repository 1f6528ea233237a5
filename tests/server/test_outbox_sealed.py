"""Queued mail is sealed at rest: its bodies hold sign-in and email-change links, whose
tokens are stored only as digests everywhere else. Delivered over real SMTP (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion.server.context import Context
from bastion.server.models import OutgoingMail
from bastion.server.services import outbox
from bastion.server.settings import Settings
from support import ISSUER, Mailbox, free_port

TOKEN = "s3cr3t-link-token-0123456789"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture
def settings(tmp_path: Path, smtp: tuple[Mailbox, int]) -> Settings:  # for conftest's ctx
    return Settings(data_dir=tmp_path, issuer=ISSUER, secret_key="k" * 40,
                    smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_tls="none",
                    password_hash_memory_kib=8192, password_hash_time_cost=1)


async def queue(ctx: Context, seal: outbox.Seal) -> OutgoingMail:
    return await outbox.enqueue(ctx.storage, seal, "ann@example.com", "Your sign-in link",
                                "sign_in", link=f"{ISSUER}/login/link?token={TOKEN}",
                                client_name="App", expires_in="15 minutes")


async def test_a_queued_link_is_unreadable_in_the_database_and_delivered_whole(
        ctx: Context, smtp: tuple[Mailbox, int]) -> None:
    await ctx.outbox.stop()  # sent here, not by the background worker
    mail = await queue(ctx, ctx.outbox.seal)
    stored = await ctx.storage.get_mail(mail.id)
    assert stored is not None
    for body in (stored.text, stored.html):
        assert body.startswith(outbox.Seal.PREFIX) and TOKEN not in body
    assert await outbox.send_due(ctx.storage, ctx.outbox.mailer, ctx.outbox.seal) == 1
    [message] = smtp[0].wait_for(1)
    assert Mailbox.link(message).endswith(f"token={TOKEN}")
    assert TOKEN in message.get_body(preferencelist=("html",)).get_content()


async def test_mail_sealed_under_another_secret_key_is_not_sent(
        ctx: Context, smtp: tuple[Mailbox, int]) -> None:
    await ctx.outbox.stop()
    mail = await queue(ctx, outbox.Seal(b"another secret key, not this server's"))
    assert await outbox.send_due(ctx.storage, ctx.outbox.mailer, ctx.outbox.seal) == 0
    stored = await ctx.storage.get_mail(mail.id)
    assert stored is not None and stored.sent_at is None
    assert "BASTION_SECRET_KEY" in str(stored.last_error) and smtp[0].messages == []


async def test_mail_queued_unsealed_by_an_older_release_is_still_sent(
        ctx: Context, smtp: tuple[Mailbox, int]) -> None:
    await ctx.outbox.stop()
    await ctx.storage.enqueue_mail(OutgoingMail(
        id="m-old", to="ann@example.com", subject="Hi", text="plain text", html="<p>plain</p>",
        created_at=datetime.now(UTC)))
    assert await outbox.send_due(ctx.storage, ctx.outbox.mailer, ctx.outbox.seal) == 1
    assert smtp[0].wait_for(1)[0].get_body(preferencelist=("plain",)).get_content().strip() \
        == "plain text"
