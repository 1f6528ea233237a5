"""``middleware.IssuerPath``: an issuer with a path is served under that path (and
without it, behind a proxy that strips it); a redirect to one of Bastion's own pages
stays under it. The real server and the SDK: ``e2e/test_issuer_path.py``."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from bastion.server.middleware import IssuerPath

METADATA = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


class Echo:
    """An app that answers the path it was given, and redirects where asked."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        location = dict(httpx2.QueryParams(scope["query_string"].decode())).get("to")
        headers = [(b"content-type", b"text/plain")]
        if location:
            headers.append((b"location", location.encode()))
        body = f"{scope['path']} {scope['raw_path'].decode()}".encode()
        await send({"type": "http.response.start", "status": 303 if location else 200,
                    "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def seen(path: str, issuer_path: str = "/t%C3%A9nant") -> httpx2.Response:
    app = IssuerPath(Echo(), issuer_path, METADATA)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="http://id.example") as http:
        return await http.get(path)


@pytest.mark.parametrize(("path", "inner"), [
    ("/t%C3%A9nant/oauth/token", "/oauth/token /oauth/token"),  # as in the issuer URL
    ("/t%c3%a9nant/oauth/token", "/oauth/token /oauth/token"),  # spelled otherwise
    ("/t%C3%A9nant", "/ /"),
    ("/oauth/token", "/oauth/token /oauth/token"),  # a proxy stripped the path
    ("/.well-known/oauth-authorization-server/t%C3%A9nant",  # RFC 8414 section 3.1
     "/.well-known/oauth-authorization-server /.well-known/oauth-authorization-server"),
    ("/t%C3%A9nantx/oauth/token", "/ténantx/oauth/token /t%C3%A9nantx/oauth/token"),
])
async def test_requests_under_the_issuers_path_are_served_without_it(path: str,
                                                                     inner: str) -> None:
    assert (await seen(path)).text == inner


@pytest.mark.parametrize(("to", "location"), [
    ("/login", "/t%C3%A9nant/login"),  # one of Bastion's pages: under the path
    ("https://app.example/cb?code=x", "https://app.example/cb?code=x"),  # an app's
    ("//evil.example/x", "//evil.example/x"),  # never made; not turned into a path
])
async def test_redirects_to_bastions_own_pages_stay_under_the_path(to: str,
                                                                   location: str) -> None:
    r = await seen("/t%C3%A9nant/x?" + str(httpx2.QueryParams({"to": to})))
    assert r.headers["location"] == location
