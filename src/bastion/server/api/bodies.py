"""JSON request bodies of the REST API: one that cannot be read is a 422 saying why.

FastAPI itself answers a body that ``json.loads`` finds malformed with a 422 naming
the place, but one that is not UTF-8, nests deeper than the parser goes or holds an
integer of more digits than Python converts with a bare 400 ("There was an error
parsing the body") raised from the parser's exception.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException


def unreadable(error: BaseException | None) -> str | None:
    """Why ``json.loads`` could not read a body, from what it raised (``None`` if that
    is not one of the failures it has besides a malformed document)."""
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8: byte {error.object[error.start]:#04x} at offset {error.start}"
    if isinstance(error, RecursionError):
        return "arrays and objects nested too deeply to read"
    if isinstance(error, ValueError) and "integer string conversion" in str(error):
        return f"a number of more than {sys.get_int_max_str_digits()} digits"
    return None


class JsonBodyRoute(APIRoute):
    """A route whose body, when it cannot be read, is said to be not valid JSON as a
    malformed one is (``problems.validation_handler``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handle(request)
            except HTTPException as exc:
                reason = unreadable(exc.__cause__) if exc.status_code == 400 else None
                if reason is None:
                    raise
                raise RequestValidationError([{
                    "type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
                    "input": {}, "ctx": {"error": reason}}]) from exc.__cause__

        return route
