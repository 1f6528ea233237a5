"""Shared pieces of the REST routers: errors documented once, paging, the actor."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from bastion.server.api.auth import Principal, principal
from bastion.server.api.bodies import JsonBodyRoute
from bastion.server.api.problems import ApiError
from bastion.server.context import Context
from bastion.server.middleware import request_ip
from bastion.server.services.audit import Actor
from bastion.server.text import storable

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid, expired or revoked token", **PROBLEM},
    403: {"description": "The token may not do this (needs an administrator)", **PROBLEM},
    404: {"description": "No such resource", **PROBLEM},
    409: {"description": "Conflicts with existing data (e.g. a name already taken)", **PROBLEM},
    422: {"description": "Invalid input; the detail names the field", **PROBLEM},
}

Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")]
Who = Annotated[Principal, Depends(principal)]


def no_nul_in_path(request: Request) -> None:
    """No stored name or id holds a NUL or a lone surrogate (and databases refuse them
    in queries), so a path naming one names nothing: 404, before any query."""
    for name, value in request.path_params.items():
        if not storable(str(value)):
            raise ApiError(404, "Not Found", f"No {name} with that value.")


def api_router(prefix: str, tag: str) -> APIRouter:
    """A router of the REST API: its errors documented, a path naming a NUL a 404, and
    a JSON body that cannot be read a 422 saying why."""
    return APIRouter(prefix=prefix, tags=[tag], responses=ERRORS, route_class=JsonBodyRoute,
                     dependencies=[Depends(no_nul_in_path)])


def changes(body: BaseModel) -> dict[str, Any]:
    """A PATCH body's fields as given; null, which would read as "no change" and yet
    be reported as one, is refused."""
    given = body.model_dump(exclude_unset=True)
    if nulls := sorted(name for name, value in given.items() if value is None):
        rule = "must not be null (leave a field out to keep it)"
        raise ApiError(422, "Invalid input", f"{', '.join(nulls)}: {rule}",
                       errors=[{"field": name, "message": rule} for name in nulls])
    return given


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise ApiError(403, "Forbidden", "This needs an administrator token with the "
                       "bastion:admin scope (an administrator user's, or a client's own), "
                       "from a client registered with that scope. An administrator signs in "
                       "through such a client, asking for it.")


def actor(who: Principal, request: Request) -> Actor:
    ip = request_ip(request)
    if who.user is not None:
        return Actor(who.user.id, "user", who.client_id, ip)
    return Actor(who.client_id, "client", who.client_id, ip)
