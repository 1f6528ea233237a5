"""The audit trail, newest first, filterable."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request

from bastion.server.api.common import ERRORS, Limit, Offset, Who, context, require_admin
from bastion.server.api.schemas import EventList, EventOut
from bastion.server.storage.base import EventFilter

router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=ERRORS)


@router.get("", summary="List audit events")
async def list_events(
    request: Request, who: Who, limit: Limit = 50, offset: Offset = 0,
    action: str | None = Query(None, max_length=64, examples=["login.failure"]),
    actor: str | None = Query(None, max_length=64, description="A user id or client id."),
    target: str | None = Query(None, max_length=200),
    client_id: str | None = Query(None, max_length=64),
    since: datetime | None = Query(None, description="Events at or after this time."),
    until: datetime | None = Query(None, description="Events before this time."),
) -> EventList:
    require_admin(who)
    where: EventFilter = {}
    for key, value in (("action", action), ("actor", actor), ("target", target),
                       ("client_id", client_id)):
        if value:
            where[key] = value  # type: ignore[literal-required]
    if since:
        where["since"] = since
    if until:
        where["until"] = until
    items, count = await context(request).storage.list_events(where, limit, offset)
    return EventList(items=[EventOut.of(e) for e in items], count=count)
