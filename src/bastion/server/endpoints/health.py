"""Health: ``/healthz`` says the process runs; ``/readyz`` that it can serve (database
reachable, migrations current, signing keys loaded). ``/metrics`` for Prometheus."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from bastion.server.context import Context
from bastion.server.metrics import exposition
from bastion.server.storage import migrate

router = APIRouter(tags=["operations"])
READY_TIMEOUT = 5.0  # seconds


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database, migrations and keys",
            responses={503: {"description": "Not ready; the body says what is missing"}})
async def readyz(request: Request) -> JSONResponse:
    ctx: Context = request.app.state.ctx
    checks: dict[str, str] = {}
    try:  # a database that does not answer must not hold the probe (and a connection)
        async with asyncio.timeout(READY_TIMEOUT):
            await ctx.storage.ping()
            checks["database"] = "ok"
            engine = getattr(ctx.storage, "engine", None)
            current = await migrate.current_revision(engine) if engine is not None else None
        head = migrate.head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current}, expected {head}"
    except TimeoutError:
        checks["database"] = f"no answer within {READY_TIMEOUT:g} s"
    except Exception as exc:  # any failure means not ready; say which
        checks.setdefault("database", f"unreachable: {type(exc).__name__}")
    if not ctx.keys.loaded():
        checks["keys"] = "not loaded"
    else:
        checks["keys"] = "ok" if ctx.keys.reload_error is None else "reload failed (see the log)"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503,
                        headers={"Cache-Control": "no-store"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
