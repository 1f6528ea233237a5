"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

The session ends and its grants are revoked; the cookie is cleared. That holds for a
session that has expired as well: it no longer signs anyone in, but the grants made in
it live on (refresh tokens) until a logout ends them and tells their clients. The browser
goes back to ``post_logout_redirect_uri`` only if it exactly matches one the
client registered, and the client is known from ``client_id`` or a valid
``id_token_hint``. The user confirms first (a CSRF-protected form) unless the hint
is one we issued for the signed-in user and session (section 2 of the spec), so a
third-party page cannot sign people out, not even with an ID token of its own.

The request may come by GET or, as the spec requires too, by POST (a form without our
CSRF token). A cross-site POST carries no session cookie (``SameSite=Lax``), so the
session the hint names cannot be seen: the confirmation form is shown, and its
same-site POST ends the session.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from bastion.oauth.errors import OAuthError
from bastion.server.context import Context
from bastion.server.endpoints._query import oauth_params, page_fields, single_params
from bastion.server.middleware import acts_on_get, request_ip
from bastion.server.models import LoginSession, User
from bastion.server.pages import (
    cookie_options,
    csrf_ok,
    form_page,
    render,
    session_cookie,
    session_of,
)
from bastion.server.services import audit, sessions
from bastion.server.services.id_tokens import check_hint

router = APIRouter(tags=["oauth"])
LOGOUT_PATH = "/oauth/logout"
acts_on_get(LOGOUT_PATH)  # ends a session, for a hint naming it
Current = tuple[LoginSession, User]


def _names(claims: dict[str, Any], current: Current | None) -> bool:
    """Whether the hint is for the signed-in user and this session. An ID token without
    ``sid`` (the password grant's) belongs to no browser session: the user confirms."""
    if current is None:
        return True  # nobody to sign out; only the way back is at stake
    session, user = current
    # (an ID token issued before sids were hashed carries the session's id)
    return claims.get("sub") == user.id and claims.get("sid") in (sessions.public_sid(session.id),
                                                                   session.id)


Hint = tuple[dict[str, Any] | None, bool]  # see check_hint


def _client_id(params: dict[str, str], hint: Hint) -> str | None:
    """The client to send the browser back to, if any (RP-Initiated Logout 1.0 section
    2): the hint's audience, or ``client_id`` when it agrees. A hint that fails
    validation may not be used, nor may the redirect it came with (section 4); one
    signed by a key no longer published (kept since before a rotation) is no hint."""
    claims, failed = hint
    if failed:
        return None
    hinted = None if claims is None else str(claims["aud"])
    client_id = params.get("client_id") or hinted
    return None if hinted and client_id != hinted else client_id


async def _logout(ctx: Context, request: Request, params: dict[str, str], hint: Hint,
                  current: Current | None) -> Response:
    client_id = _client_id(params, hint)
    if current is not None:
        await sessions.end(ctx.storage, current[0].id)
        ctx.outbox.poke()  # back-channel logouts to the session's clients
        ip = request_ip(request)
        await audit.record(ctx.storage, audit.Actor(current[1].id, "user", client_id, ip),
                           "logout", current[1].id)
    client = await ctx.clients.get(client_id) if client_id else None
    target = params.get("post_logout_redirect_uri")
    response: Response
    if client is not None and target and target in client.post_logout_redirect_uris:
        query = {"state": params["state"]} if "state" in params else {}
        sep = "&" if "?" in target else "?"
        response = RedirectResponse(target + (sep + urlencode(query) if query else ""), 303)
    else:
        response = render(ctx, "message.html", title="Signed out",
                          message="You are signed out.", link_url="/account",
                          link_text="Sign in again")
    response.delete_cookie(session_cookie(ctx), **cookie_options(ctx))
    return response


async def _current(ctx: Context, request: Request) -> Current | None:
    # Expired sessions too: their grants live on until a logout ends them.
    return await sessions.named(ctx.storage, ctx.signer, session_of(ctx, request, earlier=True))


@router.get(LOGOUT_PATH, summary="RP-initiated logout", response_class=Response)
async def logout(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    try:
        params = single_params(request.url.query)
    except OAuthError as exc:
        return _refused(ctx, exc.description)
    return await _requested(ctx, request, params, posted=False)


def _refused(ctx: Context, message: str) -> Response:
    return render(ctx, "message.html", 400, title="Cannot sign out", error=True, message=message)


async def _requested(ctx: Context, request: Request, params: dict[str, str], *,
                     posted: bool) -> Response:
    """A logout the client asked for: at once for a hint naming the signed-in user and
    session, else once the user confirms."""
    hint = await check_hint(ctx.keys, ctx.settings, params.get("id_token_hint"))
    claims = hint[0]
    if claims is not None:
        current = await _current(ctx, request)
        # By POST, no session may only mean the cookie stayed behind (cross-site).
        if (current is not None or not posted) and _names(claims, current):
            return await _logout(ctx, request, params, hint, current)
    return form_page(ctx, request, "message.html", title="Sign out?",
                     message="Do you want to sign out of Bastion?", form_action=LOGOUT_PATH,
                     button="Sign out", hidden=params)


@router.post(LOGOUT_PATH, summary="RP-initiated logout by POST, or its confirmation form",
             response_class=Response, responses={303: {"description": "Back to the client"},
                                                 400: {"description": "Expired form"}})
async def logout_confirmed(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    fields = await page_fields(request)
    form = dict(fields or ())
    if fields is not None and "csrf_token" not in form:  # the client's own form
        try:
            params = oauth_params(fields)
        except OAuthError as exc:
            return _refused(ctx, exc.description)
        return await _requested(ctx, request, params, posted=True)
    if not csrf_ok(ctx, request, form.get("csrf_token")):  # (an unreadable form: no token)
        return _refused(ctx, "This form has expired. Please try again.")
    params = {k: v for k, v in form.items() if k != "csrf_token"}
    hint = await check_hint(ctx.keys, ctx.settings, params.get("id_token_hint"))
    return await _logout(ctx, request, params, hint, await _current(ctx, request))
