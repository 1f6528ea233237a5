"""The I/O-free core of Bastion's REST API (``/api/v1``): one request, and
reading its answer (objects, pages of items, counts).

The API takes a bearer token: by default this client's own client-credentials
token with scope ``bastion:admin``, fetched on first use, kept on the core and
fetched again shortly before it expires or once when the API answers 401; or,
with ``token=``, a user's access token (an administrator's, or a user acting on
their own account). Errors are the problem JSON the server sends, mapped to
``BadRequest``, ``Unauthorized``, ``Forbidden``, ``NotFound``, ``Conflict``...

The flows per resource build on ``api_flow``: ``_admin_users`` (users and a
user's roles), ``_admin_orgs`` (organizations, roles and permissions) and
``_admin_events`` (audit events). Each takes the shared core and returns a
flow, like ``BaseClient``'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2

from ._arguments import expect, number
from ._base import BaseClient, Flow
from ._responses import json_object
from ._retry import MAYBE_APPLIED
from .exceptions import ConfigurationError, ProtocolError
from .paging import Page
from .tokens import TokenSet, authorization_header

__all__ = [
    "ADMIN_SCOPE",
    "Token",
    "api_flow",
    "authorization",
    "body",
    "page",
    "page_params",
    "segment",
]

ADMIN_SCOPE = "bastion:admin"
API_PREFIX = "/api/v1"
#: A user's access token (or their ``TokenSet``) to call the API as them.
Token = str | TokenSet

T = TypeVar("T")


def segment(value: object, what: str) -> str:
    """One path segment: an id or name (or an object with ``id``), percent-encoded."""
    value = getattr(value, "id", value)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string")
    if not value.strip("."):  # "." or "..": the URL parser would remove it and what
        return "%2E" * len(value)  # precedes it (RFC 3986 5.2.4), naming another resource
    return quote(value, safe="")


def authorization(
    token: Token, refusal: str = "token must be an access token (str or TokenSet)"
) -> str:
    """The ``Authorization`` header value for an access token or ``TokenSet``."""
    if isinstance(token, TokenSet):
        return token.authorization
    if not isinstance(token, str) or not token:
        raise ConfigurationError(refusal)
    return authorization_header(token)


_ADMIN_TOKEN = ("admin_token",)


def _usable_admin_token(core: BaseClient, stale: TokenSet | None) -> TokenSet | None:
    admin = core.admin_token
    if admin is None or admin is stale:
        return None
    return None if admin.expires_within(core.admin_margin, core.clock()) else admin


def _admin_token_flow(core: BaseClient, stale: TokenSet | None) -> Flow[TokenSet]:
    """A new admin token: one fetch for every caller that finds none usable."""
    usable = functools.partial(_usable_admin_token, core, stale)
    flight, lead = core.flights.join(_ADMIN_TOKEN, usable)
    if not lead:
        followed: TokenSet = yield from core.follow(flight)
        return followed
    fetch = core.client_credentials_flow(ADMIN_SCOPE)
    return (yield from core.lead(_ADMIN_TOKEN, flight, fetch, keep=core.keep_admin_token))


def api_flow(
    core: BaseClient,
    method: str,
    path: str,
    *,
    token: Token | None = None,
    params: Any = None,
    json: Any = None,
    removes: bool = False,
    revokes_token: bool = False,
) -> Flow[httpx2.Response]:
    """Send one API request; raise the mapped error for an error answer.

    ``removes``: the request deletes what its path names, so a 404 to a resend
    after an attempt that may have been applied means that attempt deleted it.
    ``revokes_token``: the request revokes the ``token`` it is sent with, so a 401
    to such a resend means that attempt did it.
    """
    metadata = yield from core.metadata_flow()
    url = metadata.issuer.rstrip("/") + API_PREFIX + path

    def request(authorization: str) -> httpx2.Request:
        headers = {"Accept": "application/json", "Authorization": authorization}
        return core.request(method, url, params=params, json=json, headers=headers)

    if token is not None:
        response = yield request(authorization(token))
    else:
        stale: TokenSet | None = None
        while True:
            admin = _usable_admin_token(core, stale)
            if admin is None:
                admin = yield from _admin_token_flow(core, stale)
            response = yield request(admin.authorization)
            if response.status_code != 401 or stale is not None:
                break
            stale = admin  # revoked, or the keys rotated: one more try with a new token
    done = {404} if removes else set()
    if revokes_token and token is not None:
        done.add(401)
    if response.status_code in done and MAYBE_APPLIED in response.request.extensions:
        return response  # done by the attempt whose answer was lost
    core.raise_for_response(response)
    return response


def body(response: httpx2.Response) -> dict[str, Any]:
    return json_object(response.content)


def page(
    core: BaseClient,
    answer: Mapping[str, Any],
    make: Callable[..., T],
) -> Page[T]:
    """The ``items`` of a listing, each made with ``make(item, client=...)``;
    ``.total`` is the answer's ``count`` (else the number of items)."""
    items, count = answer.get("items"), answer.get("count")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ProtocolError("The API's answer has no list of items.")
    total = count if isinstance(count, int) and not isinstance(count, bool) else len(items)
    cursor = answer.get("next")
    return Page([make(item, client=core.owner) for item in items], total,
                cursor if isinstance(cursor, str) and cursor else None)


def page_params(limit: int, offset: int, **extra: object) -> dict[str, Any]:
    """A listing's query: ``limit``, ``offset`` and the filters given, each checked
    for its type (``limit="5"`` went out as is, ``query=5`` as "5")."""
    params: dict[str, Any] = {"limit": number(limit, "limit"),
                              "offset": number(offset, "offset")}
    for name, value in extra.items():
        expect(value, str | bool | datetime | None,
               f"{'query' if name == 'q' else name} must be a string, a bool or a datetime")
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            params[name] = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        elif value is not None and value != "":
            params[name] = value
    return params
