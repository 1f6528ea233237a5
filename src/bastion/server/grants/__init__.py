"""Token endpoint grants, one module each, dispatched from ``GRANTS``.

Every grant has the same shape: ``GRANT_TYPE``, the ``PARAMETERS`` it reads, and
``handle(ctx, client, form) -> dict`` returning the token response body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bastion.server.context import Context
from bastion.server.grants import client_credentials
from bastion.server.models import Client

Handler = Callable[[Context, Client, Mapping[str, str]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Grant:
    grant_type: str
    parameters: frozenset[str]
    handle: Handler


def _grant(module: Any) -> Grant:
    return Grant(module.GRANT_TYPE, frozenset(module.PARAMETERS), module.handle)


GRANTS: dict[str, Grant] = {g.grant_type: g for g in (_grant(client_credentials),)}
