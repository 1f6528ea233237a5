"""High-level ``Event``: the audit trail (admin changes, sign-ins, failed
sign-ins, sign-outs, token revocations), newest first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._shared import Bound, parse_datetime, shared_async_client, shared_client
from .exceptions import ProtocolError

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client
    from .paging import Page

__all__ = ["Event"]


def _optional(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) else None


@dataclass(slots=True)
class Event(Bound):
    """One audit event. ``actor`` is a user id (``actor_type`` "user") or a client
    id ("client"); ``target`` what was acted on; ``detail`` the rest."""

    id: str
    at: datetime
    action: str
    actor: str | None = None
    actor_type: str | None = None
    target: str | None = None
    client_id: str | None = None
    ip: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    client: Client | AsyncClient | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(
        cls, body: Mapping[str, Any], client: Client | AsyncClient | None = None
    ) -> Event:
        at = parse_datetime(body.get("at"))
        event_id, action, detail = body.get("id"), body.get("action"), body.get("detail")
        if at is None or not isinstance(event_id, str) or not isinstance(action, str):
            raise ProtocolError("The API's answer is not an event.")
        return cls(
            event_id,
            at,
            action,
            _optional(body, "actor"),
            _optional(body, "actor_type"),
            _optional(body, "target"),
            _optional(body, "client_id"),
            _optional(body, "ip"),
            detail if isinstance(detail, dict) else {},
            client,
        )

    @classmethod
    def list(
        cls,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        using: str | None = None,
    ) -> Page[Event]:
        """Events matching every filter given, newest first; ``since`` is inclusive,
        ``until`` exclusive (naive datetimes are taken as UTC)."""
        return shared_client(using).events.list(
            action, actor, target, client_id, since, until, limit, offset
        )

    @classmethod
    def iterate(
        cls,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
        using: str | None = None,
    ) -> Iterator[Event]:
        """Every matching event, newest first, a page at a time (by cursor)."""
        return shared_client(using).events.iterate(
            action, actor, target, client_id, since, until, page_size
        )

    @classmethod
    def aiterate(
        cls,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
        using: str | None = None,
    ) -> AsyncIterator[Event]:
        """``async for event in Event.aiterate(...)``."""
        return shared_async_client(using).events.iterate(
            action, actor, target, client_id, since, until, page_size
        )

    @classmethod
    async def alist(
        cls,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        using: str | None = None,
    ) -> Page[Event]:
        return await shared_async_client(using).events.list(
            action, actor, target, client_id, since, until, limit, offset
        )
