"""Lean ASGI endpoints for the client-authenticated OAuth form endpoints (token,
revocation, introspection): the hot paths, so they skip the framework.

Each reads a bounded ``application/x-www-form-urlencoded`` body, authenticates
the client (RFC 6749 section 2.3.1) and hands a ``FormRequest`` to its handler.
Every failure is an RFC 6749 error; a real server fault answers ``server_error``
without detail.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from bastion.oauth.errors import InvalidRequest
from bastion.server import cors
from bastion.server.checks.client_auth import authenticate_client
from bastion.server.context import Context
from bastion.server.endpoints._query import single_params
from bastion.server.errors import oauth_error_parts
from bastion.server.grants._request import TokenRequest

_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]

Handler = Callable[[Context, TokenRequest], Awaitable[dict[str, Any]]]


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
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The form body is not valid UTF-8.") from None
    return single_params(text)


@dataclass
class FormEndpoint:
    ctx: Context
    handler: Handler
    #: Check before client authentication (e.g. the grant type), so its error wins.
    precheck: Callable[[dict[str, str]], None] | None = None
    #: Answer browser apps on the client's origins (token, revocation: ``cors``).
    browser: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _send(send, 405, [(b"allow", b"POST"), *_JSON_HEADERS],
                        b'{"error":"invalid_request","error_description":"Use POST."}')
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin") if self.browser else None
        request: TokenRequest | None = None
        try:
            request = await self.authenticate(scope, receive, headers)
            body = await self.handler(self.ctx, request)
        except Exception as exc:  # every failure becomes an RFC 6749 answer
            status, extra, payload = oauth_error_parts(exc)
            await _send(send, status, [
                *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                *cors.client_headers(request.client if request else None, origin)],
                payload)
            return
        await _send(send, 200, [*_JSON_HEADERS, *cors.client_headers(request.client, origin)],
                    json.dumps(body).encode())

    async def authenticate(self, scope: Scope, receive: Receive,
                           headers: dict[bytes, bytes]) -> TokenRequest:
        body = await read_body(scope, receive, self.ctx.settings.max_body_bytes)
        form = parse_form(headers, body)
        if self.precheck:
            self.precheck(form)
        authorization = headers.get(b"authorization")
        client, secret = await authenticate_client(
            self.ctx.clients, authorization.decode("latin-1") if authorization else None, form
        )
        client_ip = scope["client"][0] if scope.get("client") else None
        return TokenRequest(client, form, client_ip, secret)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
