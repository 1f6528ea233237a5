"""Token endpoint grants, one module each, dispatched from ``GRANTS``.

Every grant has the same shape: ``GRANT_TYPE``, the ``PARAMETERS`` it reads, and
``handle(ctx, TokenRequest) -> dict`` returning the token response body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bastion.server.context import Context
from bastion.server.grants import authorization_code, client_credentials, password, refresh_token
from bastion.server.grants._request import TokenRequest

Handler = Callable[[Context, TokenRequest], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Grant:
    grant_type: str
    parameters: frozenset[str]
    handle: Handler


def _grant(module: Any) -> Grant:
    return Grant(module.GRANT_TYPE, frozenset(module.PARAMETERS), module.handle)


GRANTS: dict[str, Grant] = {
    g.grant_type: g
    for g in map(_grant, (authorization_code, refresh_token, client_credentials, password))
}
