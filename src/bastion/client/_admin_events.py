"""The I/O-free flow for Bastion's audit trail (``/events``), newest first."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ._admin import Token, api_flow, body, page, page_params
from ._base import BaseClient, Flow
from .events import Event
from .paging import Page

__all__ = ["list_events_flow"]


def list_events_flow(
    core: BaseClient,
    filters: Mapping[str, str | datetime | None],
    limit: int = 50,
    offset: int = 0,
    token: Token | None = None,
    after: str | None = None,
    count: bool = True,
) -> Flow[Page[Event]]:
    """Events newest first; ``filters``: action, actor, target, client_id, since, until;
    ``after``: a page's ``next_cursor``, for the (older) page that follows it; ``count``
    False: the server counts nothing (``total`` is then the page's length)."""
    params = page_params(limit, offset, **filters, after=after,
                         count=None if count else False)
    response = yield from api_flow(core, "GET", "/events", token=token, params=params)
    return page(core, body(response), Event.from_json)
