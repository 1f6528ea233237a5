"""Text that every backend can store and every page can show back, and counts as
people read them.

PostgreSQL refuses a NUL in text, and neither asyncpg nor SQLite's driver can send
a lone surrogate (a string that is not encodable as UTF-8), so input holding either
is refused where it enters: OAuth parameters, hosted forms, REST bodies and paths.
"""

from __future__ import annotations

import unicodedata

import idna


def storable(text: str) -> bool:
    """Whether ``text`` holds no NUL and encodes as UTF-8."""
    return "\x00" not in text and utf8(text)


def utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: Python decodes other bytes (in the
    environment, argv, and in the C locale stdin) to lone surrogates, which cannot be
    encoded again, and which the database refuses with a traceback."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def fold(text: str) -> str:
    """The one form of every spelling of a login or an email address: lower case and
    NFC, so ``Ärne``, ``ärne`` and ``a`` + U+0308 ``rne`` are one. Emails are stored
    folded because SQLite's ``lower()`` folds only ASCII: its unique index and its
    lookups could not tell ``Ärne@`` from ``ärne@``."""
    folded = text.lower()
    return folded if folded.isascii() else unicodedata.normalize("NFC", folded)


def mail_domain(address: str) -> str:
    """``address`` with its domain as mail delivers to it (UTS 46 mapping, as
    ``mail.a_labels`` sends it): a soft hyphen or a zero-width space is dropped, wide
    letters and an ideographic full stop are ASCII. Else ``x@exa\u00admple.com`` was
    an address of its own, whose links (and a verified account) went to the mailbox of
    ``x@example.com``."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
    except idna.IDNAError:  # no mapping: mail sends it as it is (see ``a_labels``)
        return address
    return f"{local}@{fold(mapped)}"


def plural(number: int, unit: str) -> str:
    """``number`` with its ``unit`` (a regular English noun): "1 minute", "2 minutes"."""
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def duration(seconds: int) -> str:
    """A span of whole seconds as people say it: "15 minutes", "1 minute and 30 seconds"."""
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return plural(rest, "second")
    if not rest:
        return plural(minutes, "minute")
    return f"{plural(minutes, 'minute')} and {plural(rest, 'second')}"
