"""RFC 3339 times in query parameters (the audit trail's ``since`` and ``until``)."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

from bastion.server.services.errors import InvalidInput

# RFC 3339 date-time: a date, a time and an offset; nothing looser (no bare numbers).
RFC3339 = (r"^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3])"
           r":([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
RULE = "an RFC 3339 date and time, such as 2026-11-22T06:00:00Z"


def parse(name: str, value: str) -> datetime:
    """An RFC 3339 time the pattern admitted. Python's datetime cannot hold a few of
    them (year 0, a leap second, 31 February): those are taken at the nearest
    instant it can hold, so every documented value is accepted."""
    match = re.fullmatch(RFC3339, value)
    if match is None:
        raise InvalidInput(name, RULE)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    year = max(year, 1)
    day = min(day, calendar.monthrange(year, month)[1])
    fraction = int((match.group(7) or ".0")[1:].ljust(6, "0")[:6])
    offset = match.group(8)
    zone = UTC if offset in ("Z", "z") else timezone(
        timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])) * (-1 if offset[0] == "-"
                                                                        else 1))
    try:
        return datetime(year, month, day, hour, minute, min(second, 59), fraction,
                        zone).astimezone(UTC)
    except OverflowError:  # beyond what datetime holds once in UTC: the nearest end
        return (datetime.min if year < 5000 else datetime.max).replace(tzinfo=UTC)
