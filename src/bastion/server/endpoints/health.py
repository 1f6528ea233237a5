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
from bastion.server.storage.base import Unusable

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
    # A database that does not answer must not hold the probe. The check itself is not
    # cancelled but left to finish: cancelling a call queued for SQLite's storage thread
    # would let the next call use the connection while the thread still does.
    check = asyncio.ensure_future(_database(ctx))
    check.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        current = await asyncio.wait_for(asyncio.shield(check), READY_TIMEOUT)
        checks["database"] = "ok"
        head = migrate.head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current}, expected {head}"
    except TimeoutError:
        checks["database"] = f"no answer within {READY_TIMEOUT:g} s"
    except Unusable as exc:
        checks["database"] = str(exc)
    except Exception as exc:  # any failure means not ready; say which
        checks.setdefault("database", f"unreachable: {type(exc).__name__}")
    checks["keys"] = "ok" if ctx.keys.loaded() else "not loaded"
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {"status": "ok" if ready else "unavailable", "checks": checks}
    if ctx.keys.reload_error:  # every instance shares it: failing them all would not help
        body["warning"] = f"signing keys not loaded: {ctx.keys.reload_error}"
    return JSONResponse(body,
                        status_code=200 if ready else 503,
                        headers={"Cache-Control": "no-store"})


async def _database(ctx: Context) -> str | None:
    """Ping the database; its migration revision."""
    await ctx.storage.ping()
    engine = getattr(ctx.storage, "engine", None)
    return await migrate.current_revision(engine) if engine is not None else None


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
