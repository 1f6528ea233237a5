"""Opaque cursors for keyset paging: where one page ended, for the next to start after.
Unlike an offset, a cursor neither skips nor repeats an item when items before it are
added or deleted between pages."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from bastion.server.services.errors import InvalidInput

_KEY = re.compile(r"[0-9A-Za-z._-]{1,64}")  # the ids Bastion gives (no NUL, no '|')
#: What every cursor is made of (unpadded base64url), and what a 422 says of another.
PATTERN = r"^[A-Za-z0-9_-]*$"
RULE = "not a cursor this API gave: pass the `next` of a listing"


def cursor(created_at: datetime, key: str) -> str:
    raw = f"{created_at.isoformat()}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse(value: str | None, field: str = "after") -> tuple[datetime, str] | None:
    """The (creation time, id) a cursor names; ``InvalidInput`` if this API gave none
    like it."""
    if not value:
        return None
    at: datetime | None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        stamp, key = text.split("|", 1)
        parsed = datetime.fromisoformat(stamp)
        at = parsed.astimezone(UTC) if parsed.tzinfo is not None else None  # in range in UTC
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        at, key = None, ""
    if at is None or not _KEY.fullmatch(key):
        raise InvalidInput(field, RULE)
    return at, key
