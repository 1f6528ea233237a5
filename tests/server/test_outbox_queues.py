"""The outbox worker drains each queue in a task of its own: an app's back-channel
logout endpoint that hangs does not hold up sign-in mail (real SMTP, real HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_backchannel import signed_in

from bastion.server.context import Context
from bastion.server.services import backchannel, outbox
from bastion.server.settings import Settings
from support import ISSUER, Mailbox, logout_receiver, smtp_server


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
                             minutes=15)
        ctx.outbox.poke()
        (mail,) = await asyncio.to_thread(box.wait_for, 1)
        assert mail["Subject"] == "Sign in" and receiver.forms.empty()  # still held

        receiver.release()
        await asyncio.to_thread(receiver.next)  # and the logout goes through after all
