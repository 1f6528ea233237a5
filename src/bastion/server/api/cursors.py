"""Opaque cursors for keyset paging: where one page ended, for the next to start after.
Unlike an offset, a cursor neither skips nor repeats an item when items before it are
added or deleted between pages."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from bastion.server.services.errors import InvalidInput


def cursor(created_at: datetime, key: str) -> str:
    raw = f"{created_at.isoformat()}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse(value: str | None, field: str = "after") -> tuple[datetime, str] | None:
    """The (creation time, id) a cursor names; ``InvalidInput`` if this API gave none
    like it."""
    if not value:
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        stamp, key = text.split("|", 1)
        at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        at, key = None, ""
    if at is None or at.tzinfo is None or not key:
        raise InvalidInput(field, "not a cursor this API gave: pass the `next` of a listing")
    return at, key
