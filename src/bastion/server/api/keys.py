"""Signing keys: list them (no private part), rotate them.

A rotation activates each use's next key, which has been in the JWKS since the
last rotation, so relying parties that cache the JWKS already know it, and
publishes a new next key. Retired keys stay published until their tokens expire.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from bastion.server.api.client_schemas import KeyList, KeyOut
from bastion.server.api.common import ERRORS, Who, actor, context, require_admin
from bastion.server.api.problems import ApiError
from bastion.server.keys import KeyDecryptionError, rotate
from bastion.server.services import audit

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], responses=ERRORS)


async def _listing(request: Request) -> KeyList:
    keys = await context(request).storage.signing_keys()
    items = [KeyOut.of(k) for k in sorted(keys, key=lambda k: (k.use, k.created_at))]
    return KeyList(items=items, count=len(items))


@router.get("", summary="List the signing keys")
async def list_keys(request: Request, who: Who) -> KeyList:
    require_admin(who)
    return await _listing(request)


@router.post("/rotate", summary="Rotate the signing keys of both uses")
async def rotate_keys(request: Request, who: Who) -> KeyList:
    require_admin(who)
    ctx = context(request)
    try:
        kids = await rotate(ctx.storage, ctx.settings)
    except KeyDecryptionError as exc:
        raise ApiError(409, "Conflict", str(exc)) from None
    await ctx.keys.reload()  # this instance signs with them at once; others within cache_ttl
    await audit.record(ctx.storage, actor(who, request), "keys.rotate", None, kids=kids)
    return await _listing(request)
