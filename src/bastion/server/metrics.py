"""Prometheus metrics: requests by endpoint and status, latency, tokens issued by
grant, failed sign-ins, token reuse, mail, housekeeping, database pool use. Served at ``/metrics``.

With several workers (``bastion serve --workers N``) the CLI sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, and a scrape adds up every
live worker's figures.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("bastion_http_requests_total", "HTTP requests answered.",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("bastion_http_request_duration_seconds", "Time to answer a request.",
                    ["endpoint"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                           2.5, 5))
TOKENS = Counter("bastion_tokens_issued_total", "Token responses issued.", ["grant_type"])
LOGIN_FAILURES = Counter("bastion_login_failures_total", "Failed or throttled sign-ins.",
                         ["reason"])
TOKEN_REUSE = Counter("bastion_token_reuse_total", "Used refresh tokens and authorization "
                      "codes presented again (each revokes its token family).", ["token"])
MAIL = Counter("bastion_mail_total", "Mail sent, skipped (its link expired first), "
               "retried or given up on.", ["outcome"])
LOGOUTS = Counter("bastion_backchannel_logouts_total", "Back-channel logouts delivered, "
                  "skipped (the client went away), retried or given up on.", ["outcome"])
PURGED = Counter("bastion_purged_rows_total", "Rows deleted by housekeeping.", ["kind"])
PURGES = Counter("bastion_purges_total", "Background purges run.", ["outcome"])
DB_POOL = Gauge("bastion_db_pool_connections", "Database connections of this instance.",
                ["state"], multiprocess_mode="livesum")


def exposition() -> tuple[bytes, str]:
    """The text to serve at /metrics, across workers when there are several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def _endpoint(scope: Scope, known: frozenset[str]) -> str:
    path = scope["path"]
    if path in known:
        return str(path)
    route = scope.get("route")
    template = getattr(route, "path", None)
    # Unmatched paths share one label, so random URLs cannot grow the series.
    return str(template) if template else "other"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, known_paths: frozenset[str], pool: Any = None) -> None:
        self.app, self.known, self.pool = app, known_paths, pool
        self._pool_read = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = _endpoint(scope, self.known)
            REQUESTS.labels(endpoint, scope["method"], str(status)).inc()
            LATENCY.labels(endpoint).observe(time.perf_counter() - start)
            self._sample_pool(start)

    def _sample_pool(self, now: float) -> None:
        if self.pool is None or now - self._pool_read < 1.0:
            return
        self._pool_read = now
        checked_out = getattr(self.pool, "checkedout", None)
        size = getattr(self.pool, "size", None)
        if callable(checked_out) and callable(size):
            DB_POOL.labels("in_use").set(checked_out())
            DB_POOL.labels("size").set(size())
