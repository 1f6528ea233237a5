"""Reading responses without I/O: JSON bodies, ``Retry-After`` and error mapping.

An error response becomes one exception class (see ``exceptions``):

1. a 503 or other 5xx -> ``TemporarilyUnavailable`` / ``ServerError``;
2. a 429 -> ``RateLimited`` with ``retry_after``;
3. an OAuth error body (RFC 6749 section 5.2, ``{"error": ...}``, described by its
   ``error_description`` or, in problem JSON with an ``error``, its ``detail``) -> the
   class for its code, or a ``WWW-Authenticate: Bearer error=...`` challenge (RFC 6750
   section 3) -> the class for that code;
4. anything else (problem JSON per RFC 9457, or no JSON) -> the ``APIError``
   subclass for the status.

Each carries the answer's ``X-Request-ID`` as ``request_id``.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from bastion.oauth.errors import ServerError, TemporarilyUnavailable, from_body

from .exceptions import API_ERRORS_BY_STATUS, APIError, BastionError, ProtocolError, RateLimited

__all__ = ["error_from_response", "json_object", "retry_after_seconds"]

_CHALLENGE_ERROR = re.compile(r'error="([a-z_]+)"')
_CHALLENGE_DESCRIPTION = re.compile(r'error_description="([^"]*)"')
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Longest server-supplied text we copy into an exception message.
_MAX_TEXT = 300


def json_object(content: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``ProtocolError``."""
    try:
        value = json.loads(content)
    # RecursionError: a few kilobytes of nested brackets.
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("The provider's response is not JSON.") from None
    if not isinstance(value, dict):
        raise ProtocolError("The provider's response is not a JSON object.")
    return value


def _maybe_json(content: bytes) -> dict[str, Any] | None:
    try:
        return json_object(content)
    except ProtocolError:
        return None


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or HTTP-date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which isdigit() accepts
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # an HTTP-date is GMT by definition
            return None
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _text(value: Any) -> str | None:
    return value[:_MAX_TEXT] if isinstance(value, str) else None


def error_from_response(
    status_code: int, headers: Mapping[str, str], content: bytes, now: float
) -> BastionError:
    """The exception for an error response (status >= 400), with its request id."""
    error = _error(status_code, headers, content, now)
    given = headers.get("x-request-id", "")
    # Only a plain token, as the server takes from callers: it ends up in logs.
    error.request_id = given if _REQUEST_ID.fullmatch(given) else None
    return error


def _error(
    status_code: int, headers: Mapping[str, str], content: bytes, now: float
) -> BastionError:
    body = _maybe_json(content) or {}
    oauth_code = body.get("error") if isinstance(body.get("error"), str) else None
    if status_code == 429:
        detail = _text(body.get("error_description")) or _text(body.get("detail")) or ""
        return RateLimited(
            detail,
            status_code=429,
            error=oauth_code or _text(body.get("type")),
            title=_text(body.get("title")),
            retry_after=retry_after_seconds(headers, now),
        )
    if status_code >= 500:
        reason = _text(body.get("error_description")) or _text(body.get("detail"))
        if status_code != 503:
            return ServerError(reason, status_code=status_code)
        unavailable = TemporarilyUnavailable(reason, status_code=status_code)
        unavailable.retry_after = retry_after_seconds(headers, now)
        return unavailable
    if oauth_code is not None:  # Bastion's REST API adds "error" to problem JSON
        description = _text(body.get("error_description")) or _text(body.get("detail"))
        return from_body({**body, "error_description": description}, status_code)
    challenge = headers.get("www-authenticate", "")
    match = _CHALLENGE_ERROR.search(challenge)
    if match is not None:
        described = _CHALLENGE_DESCRIPTION.search(challenge)
        return from_body(
            {"error": match.group(1), "error_description": described and described.group(1)},
            status_code,
        )
    api_cls = API_ERRORS_BY_STATUS.get(status_code, APIError)
    error = api_cls(
        _text(body.get("detail")) or "",
        status_code=status_code,
        error=_text(body.get("type")),
        title=_text(body.get("title")),
    )
    error.errors = _field_errors(body.get("errors"))
    return error


def _field_errors(given: Any) -> tuple[tuple[str, str], ...]:
    """Problem JSON's ``errors``, ``[{"field", "message"}]``; what is not so is left out."""
    if not isinstance(given, list):
        return ()
    return tuple((field, message) for item in given[:100] if isinstance(item, dict)
                 and (field := _text(item.get("field"))) is not None
                 and (message := _text(item.get("message"))) is not None)
