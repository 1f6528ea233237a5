"""Sending mail: SMTP (aiosmtplib) in production, the log in development.

Requests never send mail themselves: they put it in the outbox
(``services.outbox``), and the outbox worker sends it with retries.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Protocol

import aiosmtplib
import idna

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


def a_labels(address: str) -> str:
    """``address`` with its domain as IDNA 2008 A-labels (``bücher.example`` is
    ``xn--bcher-kva.example``): any SMTP server takes those, few without SMTPUTF8 the
    Unicode form. Never Python's IDNA 2003 codec, which maps ``faß.de`` to ``fass.de``,
    another domain with another owner."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True, transitional=False).decode()}"
    except idna.IDNAError:  # no A-label form: sent as it is, where SMTPUTF8 carries it
        return address


def _domain(sender: str) -> str:
    """The domain of the sender's address, in ASCII, for the Message-ID."""
    domain = a_labels(parseaddr(sender)[1]).rpartition("@")[2].rstrip(".")
    return domain if domain and domain.isascii() else "bastion.invalid"


class Undeliverable(Exception):
    """The SMTP server refused the recipient or the message for good: no retry can
    change it, so the outbox gives up at once."""


# Refusals for good, by their enhanced status code (RFC 3463, RFC 7505): the
# recipient's address (5.1.1-5.1.4, 5.1.6, 5.1.10: no such mailbox or domain, bad
# syntax, moved, a null MX), a disabled mailbox (5.2.1), the content (5.6.x) or its size
# (5.3.4). Others, the sender's address (5.1.7, 5.1.8: `mail_from`, often refused at RCPT
# or DATA), a policy (5.7.x: relaying denied, sender not allowed) or no code at all, may
# be the relay's settings, which an operator may fix within the hour of retries.
_FOR_GOOD = re.compile(r"\s*5\.(1\.(1|2|3|4|6|10)|2\.1|6\.\d{1,3}|3\.4)\b")


def _for_good(code: int, text: str) -> bool:
    return code >= 500 and _FOR_GOOD.match(text) is not None


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
        mail = dataclasses.replace(mail, to=a_labels(mail.to))
        name, address = parseaddr(s.mail_from)
        sender = a_labels(address)
        try:
            await aiosmtplib.send(
                message(mail, formataddr((name, sender)) if name else sender),
                sender=sender,
                recipients=[mail.to],
                hostname=s.smtp_host,
                port=s.smtp_port,
                use_tls=s.smtp_tls == "tls",
                start_tls=s.smtp_tls == "starttls",
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                timeout=s.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(_for_good(r.code, r.message) for r in exc.recipients):
                raise Undeliverable(f"recipient refused: {exc.recipients[0]}") from exc
            raise
        except aiosmtplib.SMTPDataError as exc:
            if _for_good(exc.code, exc.message):
                raise Undeliverable(f"message refused: {exc}") from exc
            raise
        except aiosmtplib.SMTPNotSupported as exc:
            if mail.to.isascii():  # then it is the sender's: the settings, retried
                raise
            raise Undeliverable(f"the SMTP server cannot carry this address: {exc}") from exc


class LogMailer:
    """Development only: prints the message, loudly, instead of sending it."""

    async def send(self, mail: OutgoingMail) -> None:
        log.warning("DEVELOPMENT MAIL (not sent; set BASTION_SMTP_HOST) to %s: %s\n%s",
                    mail.to, mail.subject, mail.text)


def mailer(settings: Settings) -> Mailer:
    # The same test as the production check and the development warning.
    return LogMailer() if settings.smtp_host is None else SMTPMailer(settings)
