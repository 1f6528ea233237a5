"""Errors that mirror OAuth 2.0 error codes, shared by the SDK and the server.

The server raises these classes and serializes them in one place; the SDK
rebuilds the same classes from the server's error JSON (``from_response``).

Hierarchy::

    BastionError
     └── OAuthError                     error, status_code, description
          ├── InvalidRequest            invalid_request           400
          ├── InvalidClient             invalid_client            401
          ├── InvalidGrant              invalid_grant             400
          ├── UnauthorizedClient        unauthorized_client       400
          ├── UnsupportedGrantType      unsupported_grant_type    400
          ├── UnsupportedResponseType   unsupported_response_type 400
          ├── InvalidScope              invalid_scope             400
          ├── AccessDenied              access_denied             403
          ├── InvalidToken              invalid_token             401  (RFC 6750)
          ├── InsufficientScope         insufficient_scope        403  (RFC 6750)
          ├── LoginRequired             login_required            400  (OIDC)
          ├── SlowDown                  slow_down                 429
          ├── TemporarilyUnavailable    temporarily_unavailable   503
          └── ServerError               server_error              500

RFC 6749 section 5.2: https://www.rfc-editor.org/rfc/rfc6749#section-5.2
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "ERRORS_BY_CODE",
    "AccessDenied",
    "BastionError",
    "InsufficientScope",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "LoginRequired",
    "OAuthError",
    "ServerError",
    "SlowDown",
    "TemporarilyUnavailable",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "error_class",
]

# RFC 6749 section 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_UNSAFE_DESCRIPTION = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')


class BastionError(Exception):
    """The root of every error Bastion raises, in the SDK and in the server."""

    status_code: int | None = None
    #: The ``X-Request-ID`` of the answer the SDK built this error from, to find the
    #: request in the provider's logs; ``None`` when there was none (and in the server).
    request_id: str | None = None

    def __init__(self, message: str = "", *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __str__(self) -> str:
        text = super().__str__()
        if not self.request_id:
            return text
        found = f"(request id {self.request_id})"
        return f"{text} {found}" if text else found  # no leading space after no message

    def __reduce__(self) -> tuple[Any, ...]:
        # ``args`` hold the finished message, not what the subclasses' ``__init__``
        # takes: calling it again would wrap the message twice. Rebuild without it.
        return _rebuilt, (type(self), self.args), self.__dict__

    def __copy__(self) -> BastionError:
        """Rebuilt as unpickling does, but with notes and headers of its own (a note
        added to the copy does not show on the original) and the chained exceptions
        kept. The traceback is not: it tells where the original was raised."""
        own = _rebuilt(type(self), self.args)
        state = dict(self.__dict__)
        for name in _OWN_IN_A_COPY:
            if isinstance(value := state.get(name), list | dict):
                state[name] = value.copy()
        own.__setstate__(state)
        own.__cause__, own.__context__ = self.__cause__, self.__context__
        own.__suppress_context__ = self.__suppress_context__
        return own


#: Mutable attributes a copy gets its own of (``add_note``'s list, OAuth ``headers``).
_OWN_IN_A_COPY = ("__notes__", "headers")


def _rebuilt(cls: type[BastionError], args: tuple[Any, ...]) -> BastionError:
    """An unpickled error: ``args`` as they were; ``__setstate__`` adds the rest."""
    error = cls.__new__(cls)
    error.args = args
    return error


_NOT_ALLOWED = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class OAuthError(BastionError):
    """An OAuth error response: ``error``, ``error_description`` and an HTTP status.

    ``description`` is public: it is sent to the caller. Internal detail belongs in
    the exception's ``__cause__`` or the log, never in the description.
    """

    error: ClassVar[str] = "invalid_request"
    default_status: ClassVar[int] = 400
    default_description: ClassVar[str] = ""

    def __init__(
        self,
        description: str | None = None,
        *,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        text = description if description is not None else self.default_description
        self.description = _UNSAFE_DESCRIPTION.sub("?", text)
        self.headers = dict(headers or {})
        # An error code the server sent that this library has no class for.
        self.error_code = error or self.error
        super().__init__(
            f"{self.error_code}: {self.description}" if self.description else self.error_code,
            status_code=status_code if status_code is not None else self.default_status,
        )

    @property
    def error_description(self) -> str:
        """The RFC 6749 name for ``description`` (the SDK's errors share it)."""
        return self.description

    def to_dict(self) -> dict[str, str]:
        body = {"error": self.error_code}
        if self.description:
            # RFC 6749 section 5.2 allows printable ASCII but '"' and '\\'; a description
            # that echoes a request value may hold anything.
            body["error_description"] = _NOT_ALLOWED.sub("?", self.description)
        return body


class InvalidRequest(OAuthError):
    error = "invalid_request"
    default_description = "The request is missing a parameter or is malformed."


class InvalidClient(OAuthError):
    error = "invalid_client"
    default_status = 401
    default_description = "Client authentication failed."


class InvalidGrant(OAuthError):
    error = "invalid_grant"
    default_description = "The grant is invalid, expired or revoked."


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    default_description = "The client may not use this grant type."


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    default_description = "The grant type is not supported."


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"
    default_description = "The response type is not supported."


class InvalidScope(OAuthError):
    error = "invalid_scope"
    default_description = "The requested scope is invalid or not allowed for this client."


class AccessDenied(OAuthError):
    error = "access_denied"
    default_status = 403
    default_description = "Access denied."


class InvalidToken(OAuthError):
    error = "invalid_token"
    default_status = 401
    default_description = "The token is invalid, expired or revoked."


class InsufficientScope(OAuthError):
    error = "insufficient_scope"
    default_status = 403
    default_description = "The token lacks a required scope."


class LoginRequired(OAuthError):
    error = "login_required"
    default_description = "The user must log in."


class SlowDown(OAuthError):
    error = "slow_down"
    default_status = 429
    default_description = "Too many requests; slow down."


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    default_status = 503
    default_description = "The service is temporarily unavailable."
    #: Seconds to wait before trying again, from the answer's ``Retry-After`` (SDK).
    retry_after: float | None = None


class ServerError(OAuthError):
    error = "server_error"
    default_status = 500
    default_description = "The server could not complete the request."


ERRORS_BY_CODE: dict[str, type[OAuthError]] = {
    cls.error: cls
    for cls in (
        InvalidRequest,
        InvalidClient,
        InvalidGrant,
        UnauthorizedClient,
        UnsupportedGrantType,
        UnsupportedResponseType,
        InvalidScope,
        AccessDenied,
        InvalidToken,
        InsufficientScope,
        LoginRequired,
        SlowDown,
        TemporarilyUnavailable,
        ServerError,
    )
}


def error_class(code: str) -> type[OAuthError]:
    """The class for an OAuth ``error`` code; unknown codes map to ``OAuthError``."""
    return ERRORS_BY_CODE.get(code, OAuthError)


def from_body(body: Mapping[str, Any], status_code: int) -> OAuthError:
    """Rebuild an error from an RFC 6749 error body (used by the SDK)."""
    code = str(body.get("error", "server_error"))
    description = body.get("error_description")
    cls = error_class(code)
    return cls(
        str(description) if description is not None else None,
        status_code=status_code,
        error=code,
    )
