"""Hosted pages: server-rendered Jinja2, no external assets, CSRF-protected forms."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from bastion.server.context import Context
from bastion.server.models import User
from bastion.server.services import sessions
from bastion.server.text import fold

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)
CSRF_COOKIE = "bastion_csrf"
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # No form-action: browsers apply it to the redirects after a POST, and sign-in
    # forms end in a redirect to the client's own origin.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def csrf_cookie(ctx: Context) -> str:
    return ctx.settings.cookie_name(CSRF_COOKIE)


def session_cookie(ctx: Context) -> str:
    return ctx.settings.cookie_name(sessions.COOKIE)


def sent_cookie(request: Request, name: str) -> str | None:
    """The cookie ``name`` this browser sent; None if none, or more than one: another
    host of the site can add one of a name (cookie tossing, unless the name is
    ``__Host-``), and there is no telling which is this server's."""
    header = "; ".join(request.headers.getlist("cookie"))
    if header.count(name) > 1 and sum(
            part.split("=", 1)[0].strip() == name for part in header.split(";")) > 1:
        return None
    return request.cookies.get(name)


def session_of(ctx: Context, request: Request, *, earlier: bool = False) -> str | None:
    """The session cookie this browser sent, if any. With ``earlier`` (for a logout,
    so that it still ends that session) a cookie of an earlier release's name counts
    too: without the prefix of an https issuer or the tag of the issuer's path. Only
    there, as another host of the site can set a cookie of such a name."""
    named = sent_cookie(request, session_cookie(ctx))
    if named is not None or not earlier:
        return named
    for name in _earlier_names(ctx, sessions.COOKIE):
        if (value := sent_cookie(request, name)) is not None:
            return value
    return None


def _earlier_names(ctx: Context, base: str) -> list[str]:
    names = [base + ctx.settings.cookie_suffix, base]
    return [n for n in dict.fromkeys(names) if n != ctx.settings.cookie_name(base)]


KNOWN_COOKIE = "bastion_known"
KNOWN_SECONDS = 400 * 86400  # the longest a browser keeps a cookie
_KNOWN_MARKS = 5  # accounts one browser is remembered for (a shared computer)
_MARK = re.compile(r"[A-Za-z0-9_-]{43}")  # a Signer.mac: SHA-256, base64url


def known_marks(ctx: Context, request: Request) -> list[str]:
    """The marks of the addresses this browser has signed in with (``mark_known``).
    Anything not shaped as a mark is dropped: ``compare_digest`` refuses non-ASCII
    text, and a 500 there would tell which logins name an account."""
    value = sent_cookie(request, ctx.settings.cookie_name(KNOWN_COOKIE)) or ""
    if len(value) > 512:
        return []
    return [m for m in value.split(".") if _MARK.fullmatch(m)][:_KNOWN_MARKS]


def known_to(ctx: Context, request: Request) -> Callable[[str], bool] | None:
    """Whether this browser has signed in with an address (folded), told by its marks
    in constant time; None when it has none."""
    marks = known_marks(ctx, request)
    if not marks:
        return None

    def knows(email: str) -> bool:
        mark = ctx.signer.mac("known-browser", email)
        return any(secrets.compare_digest(mark, given) for given in marks)
    return knows


def mark_known(ctx: Context, request: Request, response: Response, user: User) -> None:
    """Remember in this browser that it signed in to the account of ``user``'s address:
    a stranger's requests for that address's links cannot then use up the budget this
    browser asks within (``links.send_sign_in_link``), and no lookup is needed to tell.
    The mark is a MAC: the cookie names no address."""
    mark = ctx.signer.mac("known-browser", fold(user.email))
    marks = [mark, *(m for m in known_marks(ctx, request) if m != mark)][:_KNOWN_MARKS]
    response.set_cookie(ctx.settings.cookie_name(KNOWN_COOKIE), ".".join(marks),
                        max_age=KNOWN_SECONDS, **cookie_options(ctx))


def cookie_options(ctx: Context) -> dict[str, Any]:
    return {"httponly": True, "samesite": "lax", "path": ctx.settings.issuer_path or "/",
            "secure": ctx.settings.issuer_url.startswith("https://")}


def _headers(ctx: Context, headers: dict[str, str]) -> dict[str, str]:
    # An https issuer's pages are never to be loaded over http again (SSL stripping of
    # the sign-in form); a year, as browsers' preload lists ask.
    if ctx.settings.issuer_url.startswith("https://"):
        return {**headers, "Strict-Transport-Security": "max-age=31536000"}
    return headers


def render(ctx: Context, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _env.get_template(template).render(issuer=ctx.settings.issuer_url,
                                              base=ctx.settings.issuer_path, **values)
    return HTMLResponse(html, status_code=status, headers=_headers(ctx, _PAGE_HEADERS))


def csrf_token(ctx: Context, request: Request, *, signed_in: bool = False) -> tuple[str, str]:
    """(cookie value, form token): the form token is a MAC of the cookie, so a forged
    form needs the victim's cookie and the server's key. A ``signed_in`` form's (one
    that changes the signed-in account) covers the session cookie too: shown before
    the browser signed in again (another tab, maybe another account), it is refused."""
    cookie = sent_cookie(request, csrf_cookie(ctx)) or secrets.token_urlsafe(24)
    return cookie, ctx.signer.mac("csrf", _csrf_input(ctx, request, cookie, signed_in))


def csrf_ok(ctx: Context, request: Request, token: object, *, signed_in: bool = False) -> bool:
    cookie = sent_cookie(request, csrf_cookie(ctx))
    if not cookie or not isinstance(token, str):
        return False
    return ctx.signer.matches("csrf", _csrf_input(ctx, request, cookie, signed_in), token)


def _csrf_input(ctx: Context, request: Request, cookie: str, signed_in: bool) -> str:
    if not signed_in:  # e.g. a logout asked cross-site (no session cookie) and confirmed
        return cookie
    return cookie + "\n" + (session_of(ctx, request) or "")  # no cookie holds a newline


def form_page(ctx: Context, request: Request, template: str, status: int = 200, *,
              signed_in: bool = False, **values: Any) -> Response:
    """Render a page with a form, setting the CSRF cookie its token belongs to."""
    cookie, token = csrf_token(ctx, request, signed_in=signed_in)
    response = render(ctx, template, status, csrf_token=token, **values)
    response.set_cookie(csrf_cookie(ctx), cookie, **cookie_options(ctx))
    return response


_SUBMIT = 'document.getElementById("answer").submit()'
_SUBMIT_HASH = base64.b64encode(hashlib.sha256(_SUBMIT.encode()).digest()).decode()
_FORM_POST_HEADERS = {
    **_PAGE_HEADERS,
    # Only this page's own script runs: the one line that posts the form.
    "Content-Security-Policy": _PAGE_HEADERS["Content-Security-Policy"]
    + f"; script-src 'sha256-{_SUBMIT_HASH}'",
}


def form_post(ctx: Context, action: str, fields: dict[str, str]) -> HTMLResponse:
    """OAuth 2.0 Form Post Response Mode: a page that posts ``fields`` to ``action``
    (the client's verified redirect URI) as soon as it loads."""
    html = _env.get_template("form_post.html").render(
        issuer=ctx.settings.issuer_url, action=action, fields=fields, script=_SUBMIT)
    return HTMLResponse(html, headers=_headers(ctx, _FORM_POST_HEADERS))
