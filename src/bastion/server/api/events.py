"""The audit trail, newest first, filterable."""

from __future__ import annotations

from fastapi import Query, Request

from bastion.server.api import cursors, times
from bastion.server.api.common import (
    Limit,
    Offset,
    Who,
    api_router,
    context,
    require_admin,
)
from bastion.server.api.schemas import EventList, EventOut
from bastion.server.storage.base import EventFilter

router = api_router("/api/v1/events", "events")


@router.get("", summary="List audit events")
async def list_events(
    request: Request, who: Who, limit: Limit = 50, offset: Offset = 0,
    action: str | None = Query(None, max_length=64, examples=["login.failure"]),
    actor: str | None = Query(None, max_length=64, description="A user id or client id."),
    target: str | None = Query(None, max_length=200),
    client_id: str | None = Query(None, max_length=64),
    since: str | None = Query(None, pattern=times.RFC3339, description="Events at or after "
                              "this time (RFC 3339).", examples=["2026-11-22T06:00:00Z"]),
    until: str | None = Query(None, pattern=times.RFC3339, description="Events before this "
                              "time (RFC 3339)."),
    after: str | None = Query(None, max_length=200, pattern=cursors.PATTERN,
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
        where["since"] = times.parse("since", since)
    if until:
        where["until"] = times.parse("until", until)
    items, total = await context(request).storage.list_events(
        where, limit, offset, after=cursors.parse(after), count=count)
    last = items[-1] if len(items) == limit else None
    return EventList(items=[EventOut.of(e) for e in items], count=total,
                     next=cursors.cursor(last.at, last.id) if last else None)
