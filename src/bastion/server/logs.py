"""Logging that keeps secrets out and ties lines to their request.

- Request lines have their query values redacted (a sign-in link's token, a code, a
  state) before the access log writes them.
- Every line a request causes carries its id (``request_id``): the caller's
  ``X-Request-ID`` when it is a plain token, else a new one; the answer sends it back
  (``RequestId``), so an operator can find a user's failed request by the id they got.
- ``log_format = "json"`` writes one JSON object per line, for log collectors.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_QUERY = re.compile(r"\?([^\s]*)")
#: A parameter's name that is shown: short and plain. A longer one, or a part without
#: '=' (``?token%3D...``, ``?<token>``: a link a scanner re-encoded), may be a secret.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,31}")
#: Query parameters whose values are no secret and tell an operator what was asked
#: (which client, which flow); every other value is written as ``***``.
SHOWN = frozenset({"client_id", "response_type", "response_mode", "prompt", "scope",
                   "code_challenge_method", "limit", "offset", "count", "include_deleted"})
#: What a caller's X-Request-ID may be; anything else is replaced (no log injection).
_GIVEN_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
log = logging.getLogger("bastion")


def redact(text: str) -> str:
    return _QUERY.sub(lambda m: "?" + "&".join(map(_redacted, m.group(1).split("&"))), text)


def _redacted(part: str) -> str:
    name, given, _ = part.partition("=")
    if not given or not _NAME.fullmatch(name):
        return "***" if part else part
    return part if name in SHOWN else name + "=***"


class RedactQuery(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access records carry (client, method, path with query, version, status)
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = redact(str(args[2]))
            record.args = tuple(args)
        return True


class WithRequestId(logging.Filter):
    """Adds ``record.request_id``: the id of the request being served, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the
    traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def json_lines() -> None:
    """The CLI's own logging (outside uvicorn) as JSON lines."""
    handler = logging.StreamHandler()
    handler.addFilter(WithRequestId())
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def uvicorn_log_config(log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging setup (also in each worker process): the access log redacted,
    every line with its request id, Bastion's own loggers included, text or JSON."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {}).update({
        "redact_query": {"()": RedactQuery}, "request_id": {"()": WithRequestId}})
    config["handlers"]["access"].setdefault("filters", []).append("redact_query")
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("request_id")
    if log_format == "json":
        for name in ("default", "access"):
            config["formatters"][name] = {"()": JsonFormatter}
    else:
        config["formatters"]["default"]["fmt"] = "%(levelprefix)s [%(request_id)s] %(message)s"
        config["formatters"]["access"]["fmt"] = (
            '%(levelprefix)s [%(request_id)s] %(client_addr)s - "%(request_line)s" '
            "%(status_code)s")
    config["loggers"]["bastion"] = {"handlers": ["default"], "level": "INFO",
                                    "propagate": False}
    return config


class RequestId:
    """Sets the request's id for its log lines and sends it back as ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = (given.decode("ascii") if _GIVEN_ID.fullmatch(given)
                      else secrets.token_hex(8))
        token = REQUEST_ID.set(request_id)
        started = False

        async def tagged(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        except Exception:
            # Logged here, with the id the answer carries: the server would log it
            # after the id is reset, and the cause could not be told from its report.
            # The path quoted again: uvicorn decoded it, and a %0A would forge a line.
            log.exception("unhandled error in %s %s", scope["method"], quote(scope["path"]))
            if not started:  # (the app answers its own 500 first, as a rule)
                await tagged({"type": "http.response.start", "status": 500,
                              "headers": [(b"content-type", b"text/plain")]})
                await tagged({"type": "http.response.body", "body": b"Internal Server Error"})
        finally:
            REQUEST_ID.reset(token)
