"""The token endpoint (RFC 6749 section 3.2), as a lean ASGI app.

This is the server's hot path, so it skips the framework: it reads a bounded
form body, authenticates the client, dispatches to the grant from the registry
and writes JSON. Every failure is an RFC 6749 error; nothing here answers 500
except a real server fault, and that without detail.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from bastion.oauth.errors import (
    InvalidRequest,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from bastion.server.checks.client_auth import authenticate_client
from bastion.server.context import Context
from bastion.server.errors import oauth_error_parts
from bastion.server.grants import GRANTS

_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]
_MAX_FIELDS = 50


class BodyTooLarge(InvalidRequest):
    default_description = "The request body is too large."


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise InvalidRequest("Malformed Content-Length.") from None
            if declared > limit:
                raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The client disconnected.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_form(headers: dict[bytes, bytes], body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; repeated parameters are an
    error (RFC 6749 section 3.2)."""
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type != b"application/x-www-form-urlencoded":
        raise InvalidRequest("Send the parameters as application/x-www-form-urlencoded.")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
            max_num_fields=_MAX_FIELDS, errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("Malformed form body.") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise InvalidRequest(f"Parameter {key!r} is repeated.")
        if "\x00" in value:
            raise InvalidRequest(f"Parameter {key!r} is malformed.")
        form[key] = value
    # RFC 6749 section 3.1: parameters sent without a value are treated as omitted.
    return {k: v for k, v in form.items() if v != ""}


class TokenEndpoint:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _send(send, 405, [(b"allow", b"POST"), *_JSON_HEADERS],
                        b'{"error":"invalid_request","error_description":"Use POST."}')
            return
        try:
            body = await self.handle(scope, receive)
        except Exception as exc:  # every failure becomes an RFC 6749 answer
            status, headers, payload = oauth_error_parts(exc)
            await _send(send, status,
                        [(k.lower().encode(), v.encode()) for k, v in headers.items()], payload)
            return
        await _send(send, 200, _JSON_HEADERS, json.dumps(body).encode())

    async def handle(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        headers = dict(scope["headers"])
        body = await read_body(scope, receive, self.ctx.settings.max_body_bytes)
        form = parse_form(headers, body)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise InvalidRequest("Missing grant_type.")
        grant = GRANTS.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType(f"Unsupported grant_type {grant_type[:40]!r}.")
        authorization = headers.get(b"authorization")
        client = await authenticate_client(
            self.ctx.clients, authorization.decode("latin-1") if authorization else None, form
        )
        if grant_type not in client.grant_types:
            raise UnauthorizedClient(f"This client may not use {grant_type}.")
        return await grant.handle(self.ctx, client, form)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
