"""Signing keys: list them (no private part), rotate them, withdraw a leaked one.

A rotation activates each use's next key, which has been in the JWKS since the
last rotation, so relying parties that cache the JWKS already know it, and
publishes a new next key. Retired keys stay published until their tokens expire.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from bastion.server.api.client_schemas import KeyList, KeyOut
from bastion.server.api.common import (
    Who,
    actor,
    api_router,
    context,
    require_admin,
)
from bastion.server.api.problems import ApiError
from bastion.server.context import Context
from bastion.server.keys import KeyDecryptionError, rotate, withdraw
from bastion.server.services import audit

router = api_router("/api/v1/keys", "keys")


async def _listing(request: Request) -> KeyList:
    keys = await context(request).storage.signing_keys()
    items = [KeyOut.of(k) for k in sorted(keys, key=lambda k: (k.use, k.created_at))]
    return KeyList(items=items, count=len(items))


@router.get("", summary="List the signing keys")
async def list_keys(request: Request, who: Who) -> KeyList:
    require_admin(who)
    return await _listing(request)


async def _change(request: Request, who: Who, action: str, target: str | None,
                  work: Callable[[Context], Awaitable[list[str]]]) -> KeyList:
    """Run a key change, then load the keys here at once (other instances: within
    cache_ttl), record it, and answer with the keys as they are after."""
    require_admin(who)
    ctx = context(request)
    try:
        kids = await work(ctx)
    except KeyDecryptionError as exc:  # keys stored under another secret key
        raise ApiError(409, "Conflict", str(exc)) from None
    await ctx.keys.reload()
    await audit.record(ctx.storage, actor(who, request), action, target, kids=kids)
    return await _listing(request)


@router.post("/rotate", summary="Rotate the signing keys of both uses")
async def rotate_keys(request: Request, who: Who) -> KeyList:
    return await _change(request, who, "keys.rotate", None,
                         lambda ctx: rotate(ctx.storage, ctx.settings))


@router.post("/{kid}/withdraw", summary="Take a key out of service at once (a leaked key)")
async def withdraw_key(kid: str, request: Request, who: Who) -> KeyList:
    """The key leaves the JWKS and every token it signed stops verifying here (on other
    instances within cache_ttl; at relying parties when they fetch the JWKS again). The
    key that signs is replaced by its use's next key first."""
    return await _change(request, who, "keys.withdraw", kid,
                         lambda ctx: withdraw(ctx.storage, ctx.settings, kid))
