"""One stored address, one SMTP recipient: an email address is a single plain addr-spec
(the service and the REST schema agree), and a mail's envelope names exactly that
address, over real SMTP (aiosmtpd), never what a parser reads into its To header."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from bastion.server.api.schemas import Email
from bastion.server.context import Context
from bastion.server.services import outbox, users
from bastion.server.services.errors import AlreadyExists, InvalidInput
from bastion.server.services.users import check_email
from bastion.server.settings import Settings
from support import ISSUER, Mailbox, free_port

# each of these reads as more than one mailbox, a display name or a broken header
REFUSED = ["postmaster,attacker@evil.example", "alice@example.com,", "a@example.com;root",
           "a@example.com>,root", "x(@evil.example", '"x@example.com', "a@[127.0.0.1]",
           "a:b@example.com", "a\\b@example.com", "a b@example.com", "a@example..com",
           "a@example.com.", "Eve <eve@evil.example>"]
ACCEPTED = ["alice@example.com", "Bob+Tag@Example.com", ".dot@example.com", "_x@example.com",
            "o'neil@example.com", "ärne@example.com", "bob@bücher.example"]


@pytest.mark.parametrize("address", REFUSED)
def test_an_address_list_is_refused_by_the_service_and_the_schema(address: str) -> None:
    with pytest.raises(InvalidInput):
        check_email(address)
    with pytest.raises(ValidationError):
        TypeAdapter(Email).validate_python(address)


@pytest.mark.parametrize("address", ACCEPTED)
def test_plain_addresses_pass_both(address: str) -> None:
    assert check_email(address) == address.lower()
    assert TypeAdapter(Email).validate_python(address) == address


@pytest.mark.parametrize("typed", ["x@exa\u00admple.com", "x@exa\u200bmple.com",
                                   "x@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
                                   "x@example\u3002com"])
def test_a_domain_is_stored_as_mail_delivers_to_it(typed: str) -> None:
    """A soft hyphen, a zero-width space, wide letters, an ideographic full stop: mail
    (UTS 46, as ``mail.a_labels`` sends it) goes to ``x@example.com``."""
    assert check_email(typed) == "x@example.com"


async def test_an_address_mail_delivers_to_another_users_mailbox_is_theirs(
        ctx: Context) -> None:
    """``x@exa\u00admple.com`` was a second account, its links (which verify it) going
    to the mailbox of ``x@example.com``."""
    await users.create_user(ctx.storage, ctx.passwords, username="x1", email="x@example.com",
                            password=None)
    with pytest.raises(AlreadyExists):
        await users.create_user(ctx.storage, ctx.passwords, username="x2",
                                email="X@Exa\u00admple.com", password=None)


class EnvelopeBox(Mailbox):
    """A mailbox that also keeps each message's envelope recipients."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[list[str]] = []
        self.senders: list[str] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(list(envelope.rcpt_tos))
        self.senders.append(envelope.mail_from)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp() -> Iterator[EnvelopeBox]:
    from aiosmtpd.controller import Controller

    box = EnvelopeBox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def settings(tmp_path: Path, smtp: EnvelopeBox) -> Settings:  # the conftest's ctx uses it
    return Settings(data_dir=tmp_path, issuer=ISSUER, secret_key="k" * 40,
                    smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls="none",
                    password_hash_memory_kib=8192, password_hash_time_cost=1)


async def test_the_envelope_names_the_stored_address_alone(ctx: Context,
                                                            smtp: EnvelopeBox) -> None:
    await ctx.outbox.stop()  # sent here, not by the background worker
    await outbox.enqueue(ctx.storage, ctx.outbox.seal, "bob+tag@example.com", "hello", "sign_in",
                         link="L",
                         client_name="", expires_in="15 minutes")
    assert await outbox.send_due(ctx.storage, ctx.outbox.mailer, ctx.outbox.seal) == 1
    assert smtp.envelopes == [["bob+tag@example.com"]]
    assert smtp.messages[0]["To"] == "bob+tag@example.com"


async def test_a_domain_beyond_ascii_goes_as_a_labels_and_a_local_part_is_given_up(
        ctx: Context) -> None:
    """An SMTP server without SMTPUTF8: the Unicode domain failed every attempt for an
    hour; its A-labels go. A local part beyond ASCII cannot go: given up at once."""
    from aiosmtpd.controller import Controller

    from bastion.server.mail import SMTPMailer

    await ctx.outbox.stop()
    box = EnvelopeBox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(),
                            enable_SMTPUTF8=False)
    controller.start()
    try:
        sender = "B\u00fccher <no-reply@b\u00fccher.example>"
        mailer = SMTPMailer(ctx.settings.model_copy(update={
            "smtp_port": controller.port, "mail_from": sender}))
        mails = [await outbox.enqueue(ctx.storage, ctx.outbox.seal, to, "hello", "sign_in",
                                      link="L", client_name="", expires_in="15 minutes")
                 for to in ("bob@b\u00fccher.example", "bob@fa\u00df.de", "\u00e4rne@example.com")]
        assert await outbox.send_due(ctx.storage, mailer, ctx.outbox.seal) == 2
    finally:
        controller.stop()
    # IDNA 2008: Python's own codec (IDNA 2003) made fass.de of fa\u00df.de, another domain
    assert box.envelopes == [["bob@xn--bcher-kva.example"], ["bob@xn--fa-hia.de"]]
    assert box.senders == ["no-reply@xn--bcher-kva.example"] * 2
    assert box.messages[0]["To"] == "bob@xn--bcher-kva.example"
    assert "no-reply@xn--bcher-kva.example" in box.messages[0]["From"]
    assert box.messages[0]["Message-ID"].endswith("@xn--bcher-kva.example>")
    refused = await ctx.storage.get_mail(mails[2].id)  # type: ignore[union-attr]
    assert refused is not None and refused.failed_at is not None and refused.attempts == 1


async def test_mail_queued_for_an_address_list_goes_to_nobody(ctx: Context,
                                                              smtp: EnvelopeBox) -> None:
    """Mail queued (or an address stored) before lists were refused: the To header
    would make it one message to each mailbox; it is not sent at all."""
    await ctx.outbox.stop()
    mail = await outbox.enqueue(ctx.storage, ctx.outbox.seal, "postmaster,attacker@evil.example",
                                "hello",
                                "sign_in", link="L", client_name="", expires_in="15 minutes")
    assert await outbox.send_due(ctx.storage, ctx.outbox.mailer, ctx.outbox.seal) == 0
    assert smtp.envelopes == [] and smtp.messages == []
    stored = await ctx.storage.get_mail(mail.id)
    assert stored is not None and stored.sent_at is None
    assert "not an email address" in str(stored.last_error)
