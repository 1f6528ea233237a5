"""The audit trail: who did what to what, when, through which client, from where."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bastion.server.models import Event
from bastion.server.storage.base import Storage

log = logging.getLogger("bastion.audit")

MAX_IP_LENGTH = 64  # the width of events.ip

ActorType = Literal["user", "client", "anonymous", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    id: str | None
    type: ActorType
    client_id: str | None = None
    ip: str | None = None


ANONYMOUS = Actor(None, "anonymous")
SYSTEM = Actor(None, "system")


def event(actor: Actor, action: str, target: str | None = None, **detail: Any) -> Event:
    """An audit event, for storage calls that write it with what it records."""
    # A target can be what someone typed (a failed login): keep it storable.
    target = target.replace("\x00", "\ufffd") if target else target
    # The app stores client addresses short already (middleware.ClientAddress); a caller
    # with an address of its own must not overflow the column either.
    ip = actor.ip[:MAX_IP_LENGTH] if actor.ip else actor.ip
    return Event(id=str(uuid.uuid4()), at=datetime.now(UTC), action=action, actor=actor.id,
                 actor_type=actor.type, target=target, client_id=actor.client_id,
                 ip=ip, detail=detail)


async def record(storage: Storage, actor: Actor, action: str, target: str | None = None,
                 **detail: Any) -> None:
    entry = event(actor, action, target, **detail)
    try:
        await storage.add_event(entry)
    except Exception:  # the action happened; a lost audit row must be loud, not fatal
        # Not the target: for a failed sign-in it is the login as typed (personal data,
        # and whatever a caller sent, line breaks too).
        log.exception("could not record audit event %s by %s %s", action, actor.type,
                      actor.id or actor.ip or "-")
