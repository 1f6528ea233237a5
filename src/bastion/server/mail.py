"""Sending mail: SMTP (aiosmtplib) in production, the log in development.

Requests never send mail themselves: they put it in the outbox
(``services.outbox``), and the outbox worker sends it with retries.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Protocol

import aiosmtplib

from bastion.server.models import OutgoingMail
from bastion.server.services.users import check_email
from bastion.server.settings import Settings

log = logging.getLogger("bastion.mail")


class Mailer(Protocol):
    async def send(self, mail: OutgoingMail) -> None:
        """Deliver or raise; the outbox retries on any exception."""


def message(mail: OutgoingMail, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    # RFC 5322 3.6 asks for both; some receivers refuse mail without a Message-ID, and
    # one made of the mail's id lets them drop a resend (delivery is at least once).
    created = mail.created_at
    msg["Date"] = format_datetime(created if created.tzinfo else created.replace(tzinfo=UTC))
    msg["Message-ID"] = f"<{mail.id}@{_domain(sender)}>"
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    return msg


def _ascii_domain(address: str) -> str:
    """``address`` with its domain as IDNA A-labels (``bücher.example`` is
    ``xn--bcher-kva.example``): any SMTP server takes those, few without SMTPUTF8 the
    Unicode form."""
    local, _, domain = address.rpartition("@")
    try:
        return address if domain.isascii() else f"{local}@{domain.encode('idna').decode()}"
    except UnicodeError:  # no IDNA form: sent as it is, for a server with SMTPUTF8
        return address


def _domain(sender: str) -> str:
    """The domain of the sender's address, in ASCII, for the Message-ID."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    try:
        return domain.encode("idna").decode("ascii") if domain else "bastion.invalid"
    except UnicodeError:
        return "bastion.invalid"


class Undeliverable(Exception):
    """The SMTP server refused the recipient or the message for good (a 5xx reply to
    RCPT or DATA): no retry can change it, so the outbox gives up at once."""


class SMTPMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, mail: OutgoingMail) -> None:
        s = self.settings
        assert s.smtp_host is not None
        # The envelope names the one stored address: left to itself aiosmtplib would
        # take it from the parsed To header, where "a@b.c,root" is two mailboxes.
        # Checked again for mail queued (or addresses stored) before that was refused.
        check_email(mail.to)
        mail = dataclasses.replace(mail, to=_ascii_domain(mail.to))
        try:
            await aiosmtplib.send(
                message(mail, s.mail_from),
                recipients=[mail.to],
                hostname=s.smtp_host,
                port=s.smtp_port,
                use_tls=s.smtp_tls == "tls",
                start_tls=s.smtp_tls == "starttls",
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                timeout=s.smtp_timeout,
            )
        # (A 5xx to the login or to MAIL FROM is the relay's settings, which an operator
        # may fix within the hour of retries: retried as any other failure.)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(r.code >= 500 for r in exc.recipients):
                raise Undeliverable(f"recipient refused: {exc.recipients[0]}") from exc
            raise
        except aiosmtplib.SMTPDataError as exc:
            if exc.code >= 500:
                raise Undeliverable(f"message refused: {exc}") from exc
            raise
        except aiosmtplib.SMTPNotSupported as exc:  # a local part beyond ASCII, no SMTPUTF8
            raise Undeliverable(f"the SMTP server cannot carry this address: {exc}") from exc


class LogMailer:
    """Development only: prints the message, loudly, instead of sending it."""

    async def send(self, mail: OutgoingMail) -> None:
        log.warning("DEVELOPMENT MAIL (not sent; set BASTION_SMTP_HOST) to %s: %s\n%s",
                    mail.to, mail.subject, mail.text)


def mailer(settings: Settings) -> Mailer:
    # The same test as the production check and the development warning.
    return LogMailer() if settings.smtp_host is None else SMTPMailer(settings)
