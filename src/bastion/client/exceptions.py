"""Every error the SDK raises. Nothing from httpx2 or the JOSE layer escapes.

Hierarchy::

    BastionError                       message, status_code
     ├── ConfigurationError            a bad, unknown or missing option (named)
     │    └── EndpointNotAdvertised    the provider's metadata lacks an endpoint
     ├── InvalidStateError             a bad, expired or mismatched OAuth state
     ├── ProtocolError                 the provider answered outside the standard
     ├── TransportError                no usable HTTP response (DNS, TLS, reset...)
     │    └── TimeoutError             the request timed out
     ├── OAuthError                    error, error_description, status_code
     │    ├── InvalidRequest  InvalidClient  InvalidGrant  InvalidScope
     │    ├── UnauthorizedClient  UnsupportedGrantType  AccessDenied
     │    ├── InvalidToken  InsufficientScope  LoginRequired  SlowDown
     │    ├── TemporarilyUnavailable   503 from any endpoint
     │    └── ServerError              other 5xx from any endpoint
     └── APIError                      an HTTP error that is not OAuth error JSON:
          ├── BadRequest               400, 422   (problem JSON, RFC 9457)
          ├── Unauthorized             401
          ├── Forbidden                403
          ├── NotFound                 404
          ├── Conflict                 409
          └── RateLimited              429, with ``retry_after`` in seconds

Errors built from a response carry the server's ``error_code`` (OAuth ``error``
or the problem ``type``), ``error_description`` (``error_description`` or the
problem ``detail``), ``status_code`` and ``request_id`` (its ``X-Request-ID``, also
at the end of ``str()``; ``None`` when absent). Every error pickles and copies with
its message and attributes. Messages never contain tokens or
secrets: only what the server chose to say publicly, and our own wording.
"""

from __future__ import annotations

import builtins
from typing import ClassVar

from bastion.oauth.errors import (
    AccessDenied,
    BastionError,
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    LoginRequired,
    OAuthError,
    ServerError,
    SlowDown,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
)

__all__ = [
    "APIError",
    "AccessDenied",
    "BadRequest",
    "BastionError",
    "ConfigurationError",
    "Conflict",
    "EndpointNotAdvertised",
    "Forbidden",
    "InsufficientScope",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidStateError",
    "InvalidToken",
    "LoginRequired",
    "NotFound",
    "OAuthError",
    "ProtocolError",
    "RateLimited",
    "ServerError",
    "SlowDown",
    "TemporarilyUnavailable",
    "TimeoutError",
    "TransportError",
    "Unauthorized",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
]


class ConfigurationError(BastionError):
    """An option is unknown, missing or has the wrong type; the message names it."""


class EndpointNotAdvertised(ConfigurationError):
    """The call needs an endpoint the provider's metadata does not list."""


class InvalidStateError(BastionError):
    """An OAuth ``state`` that is malformed, forged, expired or not the expected one."""


class ProtocolError(BastionError):
    """The provider answered in a way the standards do not allow (not JSON, ...)."""


class TransportError(BastionError):
    """No usable response: the connection failed, broke or the URL is unusable.

    ``sent`` is false when the request surely never reached the provider (no
    connection could be made), so it changed nothing there.
    """

    sent: bool = True


class TimeoutError(TransportError, builtins.TimeoutError):
    """The request did not complete within the configured timeout."""


class APIError(BastionError):
    """An HTTP error response that is not OAuth error JSON (e.g. problem JSON).
    ``errors``: the fields a 422 refused, as ``(field, message)`` pairs named as the
    request names them (``"redirect_uris"``, ``"scopes.0"``), to show beside a form's
    fields; empty when the answer names none."""

    default_status: ClassVar[int] = 400
    errors: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        description: str = "",
        *,
        status_code: int | None = None,
        error: str | None = None,
        title: str | None = None,
    ) -> None:
        self.error_description = description
        self.error_code = error or "about:blank"
        self.title = title
        status = status_code if status_code is not None else self.default_status
        super().__init__(
            f"{status} {title or type(self).__name__}"
            + (f": {description}" if description else ""),
            status_code=status,
        )


class BadRequest(APIError):
    default_status = 400


class Unauthorized(APIError):
    default_status = 401


class Forbidden(APIError):
    default_status = 403


class NotFound(APIError):
    default_status = 404


class Conflict(APIError):
    default_status = 409


class RateLimited(APIError):
    """Too many requests. ``retry_after`` is the server's hint in seconds, if any."""

    default_status = 429

    def __init__(
        self,
        description: str = "",
        *,
        status_code: int | None = None,
        error: str | None = None,
        title: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description, status_code=status_code, error=error, title=title)
        self.retry_after = retry_after


#: Status codes with a class of their own; other 4xx are plain ``APIError``.
API_ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: BadRequest,
    429: RateLimited,
}
