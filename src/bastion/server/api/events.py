"""The audit trail, newest first, filterable."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

from fastapi import Query, Request

from bastion.server.api import cursors
from bastion.server.api.common import (
    Limit,
    Offset,
    Who,
    api_router,
    context,
    require_admin,
)
from bastion.server.api.problems import ApiError
from bastion.server.api.schemas import EventList, EventOut
from bastion.server.storage.base import EventFilter

# RFC 3339 date-time: a date, a time and an offset; nothing looser (no bare numbers).
RFC3339 = (r"^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3])"
           r":([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")


def parse_time(name: str, value: str) -> datetime:
    """An RFC 3339 time the pattern admitted. Python's datetime cannot hold a few of
    them (year 0, a leap second, 31 February): those are taken at the nearest
    instant it can hold, so every documented value is accepted."""
    match = re.fullmatch(RFC3339, value)
    if match is None:
        raise ApiError(422, "Invalid input", f"{name}: not an RFC 3339 date and time.")
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


router = api_router("/api/v1/events", "events")


@router.get("", summary="List audit events")
async def list_events(
    request: Request, who: Who, limit: Limit = 50, offset: Offset = 0,
    action: str | None = Query(None, max_length=64, examples=["login.failure"]),
    actor: str | None = Query(None, max_length=64, description="A user id or client id."),
    target: str | None = Query(None, max_length=200),
    client_id: str | None = Query(None, max_length=64),
    since: str | None = Query(None, pattern=RFC3339, description="Events at or after this "
                              "time (RFC 3339).", examples=["2026-11-22T06:00:00Z"]),
    until: str | None = Query(None, pattern=RFC3339, description="Events before this time "
                              "(RFC 3339)."),
    after: str | None = Query(None, max_length=200, pattern=r"^[A-Za-z0-9_-]*$",
                              description="Start after this cursor "
                              "(the `next` of the page before): pages neither skip nor "
                              "repeat events as new ones are recorded meanwhile. An "
                              "`offset` counts from there."),
    count: bool = Query(True, description="Count the matches over all pages; `false` "
                        "leaves `count` null and saves that work on every page of a walk."),
) -> EventList:
    require_admin(who)
    where: EventFilter = {}
    for key, value in (("action", action), ("actor", actor), ("target", target),
                       ("client_id", client_id)):
        if value:
            where[key] = value  # type: ignore[literal-required]
    if since:
        where["since"] = parse_time("since", since)
    if until:
        where["until"] = parse_time("until", until)
    items, total = await context(request).storage.list_events(
        where, limit, offset, after=cursors.parse(after), count=count)
    last = items[-1] if len(items) == limit else None
    return EventList(items=[EventOut.of(e) for e in items], count=total,
                     next=cursors.cursor(last.at, last.id) if last else None)
