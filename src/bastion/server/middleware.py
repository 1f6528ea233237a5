"""ASGI middleware in front of every route: the client's address as Bastion stores
it, the size limit of REST API bodies, and HEAD wherever GET is served.

``ClientAddress`` makes ``scope["client"]`` hold an address that fits where it is
stored (the audit log's ``ip``, throttle keys): an IP address in its canonical form,
or, for anything else a proxy header or a server may have put there, the first
``MAX_IP_LENGTH`` characters.

``ApiBodyLimit`` reads a REST API body (``/api/``) before any route sees it and
refuses one over ``max_api_body_bytes`` with 413 problem JSON: a declared
Content-Length over the limit is refused without reading, a streamed body as soon
as it grows past it. So no body is held in memory beyond the limit, even before
authentication.

``HeadAsGet`` answers HEAD as GET without the body (RFC 9110 section 9.3.2: HEAD is
served wherever GET is). Starlette adds HEAD to its own GET routes, but FastAPI's
routes take only the methods they name, and the lean endpoints are POST only. Not
where a GET does something (issues a code, ends a session, records an export): a
link checker's HEAD must not, and gets the 405 of a method not served.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
from urllib.parse import quote, unquote

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.oauth.errors import InvalidRequest
from bastion.server.endpoints._form import BodyTooLarge, read_body
from bastion.server.errors import problem
from bastion.server.services.audit import MAX_IP_LENGTH

API_PREFIX = "/api/"


@functools.lru_cache(maxsize=4096)  # parsing costs ~20 µs a request; clients repeat
def client_ip(host: str) -> str:
    """``host`` as stored: a canonical IP address, else cut to ``MAX_IP_LENGTH``."""
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    return host[:MAX_IP_LENGTH]


def request_ip(request: HTTPConnection) -> str | None:
    """The client's address as ``ClientAddress`` left it; ``None`` without one."""
    return request.client.host if request.client else None


class ClientAddress:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if client and isinstance(client[0], str):
            host = client_ip(client[0])
            if host != client[0]:  # in place: the middleware outside reads the route
                scope["client"] = (host, client[1])  # the app sets, and logs the address
        await self.app(scope, receive, send)


class ApiBodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.limit)
        except BodyTooLarge:
            await problem(413, "Content Too Large", f"The request body is larger than "
                          f"{self.limit} bytes.")(scope, receive, send)
            return
        except InvalidRequest as exc:  # a malformed Content-Length, or the client left
            await problem(400, "Bad Request", exc.description)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


#: The paths whose GET acts, each declared beside its route (``acts_on_get``).
_ACTING_GETS: list[re.Pattern[str]] = []


def acts_on_get(path: str) -> None:
    """Declare that a GET at ``path`` (a route's, ``{parameters}`` and all) does
    something: issues a code, ends a session, records an export. HEAD there is a 405."""
    _ACTING_GETS.append(re.compile("[^/]+".join(
        re.escape(part) for part in re.split(r"\{[^}/]+\}", path))))


def head_served(path: str) -> bool:
    """Whether HEAD is answered as GET at ``path`` (a path GET is served at)."""
    return not any(acting.fullmatch(path) for acting in _ACTING_GETS)


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or not head_served(
                scope["path"]):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":  # its Content-Length stays: GET's
                message = {**message, "body": b""}
            await send(message)

        inner = {**scope, "method": "GET"}
        await self.app(inner, receive, headers_only)
        if "route" in inner:  # the metrics count a HEAD under its route, as its GET
            scope["route"] = inner["route"]


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the body already read, then waits as before (for
    the disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class IssuerPath:
    """Serves an issuer with a path (``https://id.example.com/tenant-a``) under it.

    A request for ``/tenant-a/oauth/token`` is handled as ``/oauth/token``, and one
    without the path too (a proxy in front that strips it). RFC 8414 section 3.1
    places such an issuer's metadata at ``/.well-known/oauth-authorization-server/
    tenant-a``, which is served as well. A redirect to one of Bastion's own pages
    (a ``Location`` that is a path) gets the issuer's path in front, so the browser
    stays under it.
    """

    def __init__(self, app: ASGIApp, path: str, metadata: tuple[str, ...]) -> None:
        # ``path`` as in the issuer URL (percent-encoded); requests' paths are decoded.
        self.app, self.path = app, unquote(path)
        self._prefix = path.encode()
        self._metadata = {well_known + self.path: well_known for well_known in metadata}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        inner = None
        if path.startswith(self.path) and path[len(self.path):][:1] in ("", "/"):
            inner = path[len(self.path):] or "/"
        elif path in self._metadata:
            inner = self._metadata[path]
        if inner is not None:
            raw = scope.get("raw_path") or b""
            cut = raw[len(self._prefix):] if raw.startswith(self._prefix) else b""
            scope = {**scope, "path": inner,
                     "raw_path": cut if cut[:1] == b"/" else quote(inner).encode()}

        async def send_under_path(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    (name, self._prefix + value if name == b"location" and value[:1] == b"/"
                     and value[:2] != b"//" else value)
                    for name, value in message.get("headers", [])]}
            await send(message)

        await self.app(scope, receive, send_under_path)
