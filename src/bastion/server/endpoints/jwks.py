"""The JSON Web Key Set: every public key whose tokens may still be valid."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bastion.server.endpoints.discovery import JWKS_PATH
from bastion.server.keys import JWKS_MAX_AGE

router = APIRouter(tags=["discovery"])


@router.get(JWKS_PATH, summary="Public signing keys (RFC 7517)")
async def jwks(request: Request) -> JSONResponse:
    body = await request.app.state.ctx.keys.jwks()
    # Short caching: clients refetch on an unknown kid anyway.
    return JSONResponse(body, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})
