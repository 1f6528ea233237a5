"""Domain errors. The HTTP layers and the CLI turn them into their own answers."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the domain refuses; ``str(exc)`` is a message a person can act on."""


class InvalidInput(ServiceError):
    """A value is malformed or not allowed; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message

    def named(self, field: str) -> InvalidInput:
        """The same error about ``field``: the request's name of what the service
        calls ``self.field`` (a query parameter ``permission`` for ``permissions``)."""
        return InvalidInput(field, self.message)


class AlreadyExists(ServiceError):
    """``field``: the request's field; ``what``: how to say it, when the field's name
    alone does not (an organization's ``name``)."""

    def __init__(self, field: str, value: str, what: str | None = None) -> None:
        super().__init__(f"{what or field} {value!r} is already taken")
        self.field = field


class NotFound(ServiceError):
    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"No {what} {key!r}.")
        self.what = what


class InUse(ServiceError):
    """Refused because something still depends on it (e.g. a role assigned to users)."""


class Erased(ServiceError):
    """The user's data was erased for good: nothing of theirs can change any more."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"User {user_id!r} was erased; their data is gone for good. "
                         "Create a new user instead.")


class RateLimited(ServiceError):
    """Too many attempts; ``retry_after`` says how many seconds to wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
