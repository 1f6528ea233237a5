"""When to retry, and how long to wait: decisions only, the shells do the sleeping.

- A request that never reached the server (connect error, pool timeout) may
  always be retried.
- A request that may have been processed is retried only if it is idempotent:
  GET/HEAD/OPTIONS/PUT/DELETE, or a POST the caller marks safe (introspection
  and revocation are). A token request is never repeated once it may have been
  received: it could mint a second token, or burn a single-use code.
- Responses 429/502/503/504 are retried for idempotent methods (GET, PUT...),
  never for a POST: a token, login, passwordless or revocation request has a
  user waiting on it, so its 429 is raised at once as ``RateLimited`` with
  ``retry_after`` and the caller decides whether to wait (sleeping here would
  hold that user, and any caller sharing the request, for up to ``max_wait``
  seconds per retry).
- A request resent after an attempt that may have been applied (its answer lost,
  or a 502/504 from a proxy) carries ``MAYBE_APPLIED``: a DELETE answered 404
  then has done its work (see ``_admin.api_flow``).
- Waits grow exponentially with "full jitter" and honour ``Retry-After``;
  a ``Retry-After`` longer than ``max_wait`` is not waited for.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx2

from ._responses import retry_after_seconds

__all__ = [
    "IDEMPOTENT_METHODS", "MAYBE_APPLIED", "TOKEN_REQUEST_IN_FLIGHT", "RetryPolicy", "mark_resend",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Exceptions raised before any byte of the request left this process.
NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)
#: Answers of a proxy whose upstream may have handled the request.
MAYBE_APPLIED_STATUSES = frozenset({502, 504})
#: Extension of a request resent after an attempt that may have been applied.
MAYBE_APPLIED = "bastion.maybe_applied"
#: Extension of a request while an auth flow sends a token request for it: the token
#: request itself (see ``_auth``).
TOKEN_REQUEST_IN_FLIGHT = "bastion.token_request_in_flight"


def mark_resend(request: httpx2.Request, failure: Exception | int) -> None:
    """Note, before ``request`` is sent again, whether ``failure`` (an exception
    or a status code) may have come after the server applied it."""
    if isinstance(failure, int):
        if failure in MAYBE_APPLIED_STATUSES:
            request.extensions[MAYBE_APPLIED] = True
    elif not isinstance(failure, NOT_SENT):
        request.extensions[MAYBE_APPLIED] = True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    #: The longest ``Retry-After`` we are willing to wait for.
    max_wait: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def _backoff(self, attempt: int) -> float:
        # "Full jitter": uniform in [0, cap], so many clients do not retry in step.
        cap = min(self.max_backoff, self.backoff * (2.0**attempt))
        return cap * self.jitter()

    def after_error(self, error: Exception, attempt: int, *, idempotent: bool) -> float | None:
        """Seconds to wait before retrying after a transport error, or ``None``."""
        if attempt >= self.retries or not isinstance(error, httpx2.TransportError):
            return None
        if isinstance(error, NOT_SENT) or idempotent:
            return self._backoff(attempt)
        return None

    def after_response(
        self,
        status_code: int,
        headers: Mapping[str, str],
        attempt: int,
        *,
        method: str,
        now: float,
    ) -> float | None:
        """Seconds to wait before sending ``method`` again after this response, or ``None``."""
        if attempt >= self.retries or status_code not in RETRY_STATUSES:
            return None
        if method not in IDEMPOTENT_METHODS:
            return None
        hinted = retry_after_seconds(headers, now)
        if hinted is None:
            return self._backoff(attempt)
        if hinted > self.max_wait:
            return None
        return max(hinted, self._backoff(attempt))
