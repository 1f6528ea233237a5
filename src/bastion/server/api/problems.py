"""RFC 9457 problem details for the REST API."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from bastion.oauth.errors import OAuthError
from bastion.server.api.schemas import PATTERN_RULES
from bastion.server.errors import problem
from bastion.server.middleware import head_served
from bastion.server.services.errors import AlreadyExists, Erased, InUse, InvalidInput, NotFound


class ApiError(Exception):
    """``errors``: the fields at fault, each ``{"field", "message"}``, as a validation
    error gives them."""

    def __init__(self, status: int, title: str, detail: str,
                 headers: dict[str, str] | None = None,
                 errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}
        self.errors = errors


async def api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    extra = {} if exc.errors is None else {"errors": exc.errors}
    response = problem(exc.status, exc.title, exc.detail, **extra)
    response.headers.update(exc.headers)
    return response


def oauth_problem(exc: OAuthError) -> Response:
    """An OAuth error (e.g. a bad Bearer token) raised on a REST route."""
    status = exc.status_code or 400
    response = problem(status, exc.error_code.replace("_", " ").capitalize(), exc.description,
                       error=exc.error_code)
    response.headers.update(exc.headers)
    return response


def _error(e: dict[str, Any]) -> dict[str, str]:
    if e.get("type") == "json_invalid":  # its loc ends in a character offset, not a field
        reason = (e.get("ctx") or {}).get("error", "")
        offset = (e.get("loc") or (None,))[-1]
        if reason.endswith(" at") and isinstance(offset, int):  # "Invalid control character at"
            reason += f" character {offset}"
        return {"field": "body", "message": f"not valid JSON ({reason})" if reason
                else "not valid JSON"}
    if e.get("loc") == ("body",) and isinstance(e.get("input"), bytes):
        # FastAPI passes the bytes on unread when the Content-Type is not a JSON one.
        return {"field": "body", "message": "must be JSON, sent with Content-Type: "
                "application/json"}
    if e.get("loc") == ("body",) and e.get("type") in ("model_attributes_type", "dict_type"):
        return {"field": "body", "message": "must be a JSON object"}  # not [], "x" or 1
    message = str(e.get("msg", ""))
    if e.get("type") == "string_pattern_mismatch":
        message = PATTERN_RULES.get(str((e.get("ctx") or {}).get("pattern")), message)
    return {"field": ".".join(str(p) for p in e.get("loc", ())[1:]) or "body",
            "message": message}


async def validation_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [_error(e) for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "Malformed request."
    return problem(422 if errors else 400, "Invalid request", detail, errors=errors)


def allowed_methods(request: Request) -> str:
    """Every method the request's path is served with (Starlette names only the
    first route's methods when several routes share a path). A path spelled out by a
    route (``/users/count``) is that route's, not a value of a parameter
    (``/users/{user_id}``)."""
    matched = [route for route in request.app.state.routes
               if route.matches({**request.scope, "method": ""})[0] != Match.NONE]
    literal = [route for route in matched if not getattr(route, "param_convertors", None)]
    methods = {method for route in literal or matched for method in route.methods}
    if "GET" in methods and head_served(request.scope["path"]):  # middleware.HeadAsGet
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = problem(exc.status_code, str(exc.detail), str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["Allow"] = allowed_methods(request)
    return response


_SERVICE_STATUS = ((NotFound, 404, "Not Found"), (AlreadyExists, 409, "Conflict"),
                   (InUse, 409, "Conflict"), (Erased, 409, "Conflict"),
                   (InvalidInput, 422, "Invalid input"))


async def service_error_handler(_request: Request, exc: Exception) -> Response:
    for cls, status, title in _SERVICE_STATUS:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, InvalidInput | AlreadyExists):
                extra["field"] = exc.field
            if isinstance(exc, InvalidInput):  # the shape of a validation error's too
                extra["errors"] = [{"field": exc.field, "message": exc.message}]
            return problem(status, title, str(exc), **extra)
    return problem(400, "Bad Request", str(exc))
