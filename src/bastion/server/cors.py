"""Cross-origin requests from browser apps (single-page apps with a public client).

A browser app signs users in with the authorization code flow and PKCE, then calls
the token, revocation and UserInfo endpoints from its own origin. None of these
reads a cookie: the code, the refresh token or the bearer token is the only
authority, and no answer allows credentials. So:

- discovery, the JWKS and UserInfo may be read from any origin (``*``);
- the token and revocation endpoints answer a browser only on an origin of the
  calling client's registered redirect URIs (the "web origins" of other servers,
  derived; OAuth 2.0 for Browser-Based Apps, section 6.1): another site cannot drive
  a client from its visitors' browsers;
- preflights of these paths are answered for any origin: the client is not known
  until the request itself, whose answer decides what the browser may read;
- the hosted pages and the REST API send no CORS headers at all.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.server.models import Client

#: Readable from any page; a 401's challenge too (the app learns to sign in again).
ANY_ORIGIN = [(b"access-control-allow-origin", b"*"),
              (b"access-control-expose-headers", b"WWW-Authenticate")]
VARY = (b"vary", b"Origin")
_MAX_AGE = b"600"


_DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=4096)
def _origins(uris: tuple[str, ...]) -> frozenset[str]:
    """The web origins of redirect URIs, as a browser serializes them (RFC 6454): lower
    case, no user part, no default port, IPv6 in brackets."""
    out = set()
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            continue  # a private-use scheme (a native app) has no web origin
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = "" if parts.port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{parts.port}"
        out.add(f"{parts.scheme}://{host}{port}".lower())
    return frozenset(out)


def client_headers(client: Client | None, origin: bytes | None) -> list[tuple[bytes, bytes]]:
    """The CORS headers of a token or revocation answer: the origin echoed if it is
    one of ``client``'s, and ``Vary: Origin`` whenever a browser sent one."""
    if origin is None:
        return []
    if client is not None and origin.decode("latin-1").lower() in _origins(
            client.redirect_uris):
        return [(b"access-control-allow-origin", origin), VARY]
    return [VARY]


class Cors:
    """Answers preflights of ``methods`` (path -> allowed methods) and marks answers
    of ``public`` paths readable from any origin; the form endpoints add their own
    per-client header (``client_headers``)."""

    def __init__(self, app: ASGIApp, methods: dict[str, bytes], public: frozenset[str]) -> None:
        self.app, self.methods, self.public = app, methods, public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.methods:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":  # the token endpoint's POSTs skip this
            headers = dict(scope["headers"])
            origin = headers.get(b"origin")
            if origin is not None and b"access-control-request-method" in headers:
                await self._preflight(send, origin, self.methods[scope["path"]])
                return
        if scope["path"] not in self.public:
            await self.app(scope, receive, send)
            return
        # Marked whether or not this request came from a page: a shared cache may give
        # the stored answer to one that did.

        async def readable(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *ANY_ORIGIN]
            await send(message)

        await self.app(scope, receive, readable)

    @staticmethod
    async def _preflight(send: Send, origin: bytes, methods: bytes) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", methods),
            (b"access-control-allow-headers", b"Authorization, Content-Type"),
            (b"access-control-max-age", _MAX_AGE),
            VARY,
        ]})
        await send({"type": "http.response.body", "body": b""})
