"""The one place errors become HTTP answers.

OAuth endpoints answer RFC 6749 section 5.2 JSON; the REST API answers RFC 9457
problem JSON. A server error is logged with its cause and described to the caller
only as ``server_error``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import JSONResponse, Response

from bastion.oauth.errors import OAuthError, ServerError

log = logging.getLogger("bastion")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error_parts(exc: BaseException) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the RFC 6749 error for ``exc``."""
    if not isinstance(exc, OAuthError):
        log.error("unhandled error", exc_info=exc)
        exc = ServerError()
    elif isinstance(exc, ServerError) and exc.__cause__ is not None:
        log.error("server error", exc_info=exc.__cause__)
    headers = {**NO_STORE, **exc.headers, "Content-Type": "application/json"}
    return exc.status_code or 400, headers, json.dumps(exc.to_dict()).encode()


def oauth_error_response(exc: BaseException) -> Response:
    status, headers, body = oauth_error_parts(exc)
    return Response(body, status_code=status, headers=headers)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")
