"""The authorization endpoint (RFC 6749 section 4.1; OAuth 2.1; RFC 9207 ``iss``).

Checks run from the table in ``checks.authorization``. With a live session the
code is issued at once (unless ``prompt=login``); without one the login page is
shown, or ``login_required`` is returned for ``prompt=none``. An ``id_token_hint``
(an ID token we issued to this client) names the user the app expects: a session of
another user counts as none (OpenID Connect Core 1.0 section 3.1.2.2).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from bastion.oauth.errors import AccessDenied, InvalidRequest, LoginRequired, OAuthError
from bastion.server.checks.authorization import (
    AFTER_REDIRECT,
    BEFORE_REDIRECT,
    SIGN_IN_PROMPTS,
    AuthorizationRequest,
)
from bastion.server.checks.scope import for_user
from bastion.server.context import Context
from bastion.server.endpoints._form import parse_form, read_body
from bastion.server.endpoints._query import single_params
from bastion.server.middleware import acts_on_get
from bastion.server.models import LoginSession
from bastion.server.pages import form_page, form_post, render, session_cookie, session_of
from bastion.server.services import sessions
from bastion.server.services.authorization import issue_code, member_organization
from bastion.server.services.id_tokens import hint_claims

router = APIRouter(tags=["oauth"])
AUTHORIZE_PATH = "/oauth/authorize"
acts_on_get(AUTHORIZE_PATH)  # issues a code to a signed-in browser
_MAX_BODY = 64 * 1024  # a request is a few kB; it goes on as a URL after a sign-in


def redirect_to_client(ctx: Context, req: AuthorizationRequest, params: dict[str, str]) -> Response:
    params = {**params, "iss": ctx.settings.issuer_url}
    if req.state is not None:
        params["state"] = req.state
    if req.response_mode == "form_post":
        return form_post(ctx, req.redirect_uri, params)
    sep = "&" if "?" in req.redirect_uri else "?"
    return RedirectResponse(req.redirect_uri + sep + urlencode(params), status_code=303,
                            headers={"Cache-Control": "no-store"})


def error_page(ctx: Context, exc: OAuthError) -> Response:
    return render(ctx, "message.html", 400, title="Cannot sign in", error=True,
                  message=exc.description)


def login_page(ctx: Context, request: Request, req: AuthorizationRequest | None, query: str,
               error: str | None = None, status: int = 200, next_url: str = "",
               expected: str = "", typed: str = "") -> Response:
    """The sign-in form, for an authorization request (``query``) or for one of
    Bastion's own pages (``next_url``); ``expected``: the username an id_token_hint
    names, prefilled unless the request gives a login_hint; ``typed``: the login of a
    refused attempt, prefilled before either."""
    hint = typed or (req.params.get("login_hint", "") or expected if req else "")
    return form_page(ctx, request, "login.html", status, continue_query=query, error=error,
                     next_url=next_url, login_hint=hint,
                     client_name=req.client.name if req and req.client else "")


def _param(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string"}}


def _too_old(session: LoginSession, max_age: int | None) -> bool:
    """OpenID Connect Core 3.1.2.1: past ``max_age`` the user must sign in again."""
    if max_age is None:
        return False
    return (datetime.now(UTC) - session.auth_time).total_seconds() > max_age


_PARAMETERS = [
    _param("response_type", "Only `code`.", True),
    _param("client_id", "A registered client.", True),
    _param("redirect_uri", "One of the client's redirect URIs, exactly; optional when it has "
           "one, unless the scope asks for openid."),
    _param("scope", "Space-separated; default: the client's registered scopes."),
    _param("state", "Returned unchanged."),
    _param("nonce", "Put in the ID token."),
    _param("code_challenge", "PKCE S256 challenge; required for public clients."),
    _param("code_challenge_method", "`S256` (plain is refused)."),
    _param("prompt", "`none`, `login`, `select_account` (both show the form) or `consent` "
           "(met by the sign-in: Bastion asks no consent of registered clients)."),
    _param("max_age", "Seconds since the sign-in after which the user must sign in again."),
    _param("login_hint", "Prefills the login form."),
    _param("organization", "An organization (id or name) whose roles the tokens carry."),
    _param("id_token_hint", "An ID token issued to this client (expired is fine): the user "
           "the app expects. A session of another user counts as none (with prompt=none: "
           "login_required)."),
    _param("response_mode", "`query` (the default), or `form_post`: the answer is posted to "
           "the redirect URI by a self-submitting form, which keeps the code out of URLs."),
]


@router.get(AUTHORIZE_PATH, summary="Authorization endpoint (code flow with PKCE)",
            response_class=Response, openapi_extra={"parameters": _PARAMETERS},
            responses={200: {"description": "The login page, or the form that posts the "
                                            "answer back (response_mode=form_post)"},
                       303: {"description": "Back to the client, with a code or an error"},
                       400: {"description": "Unknown client or redirect URI: an error page"}})
async def authorize(request: Request) -> Response:
    return await _authorize(request.app.state.ctx, request, request.url.query)


@router.post(AUTHORIZE_PATH, summary="Authorization endpoint, the parameters in a form",
             response_class=Response, openapi_extra={"requestBody": {"content": {
                 "application/x-www-form-urlencoded": {"schema": {
                     "type": "object", "required": ["response_type", "client_id"],
                     "properties": {p["name"]: {"type": "string", "description": p[
                         "description"]} for p in _PARAMETERS}}}}}},
             responses={200: {"description": "The login page, or the form that posts the "
                                             "answer back (response_mode=form_post)"},
                        303: {"description": "Back to the client, with a code or an error"},
                        400: {"description": "Unknown client or redirect URI, or a "
                                             "malformed form: an error page"}})
async def authorize_posted(request: Request) -> Response:
    """OpenID Connect Core 3.1.2.1: GET and POST. The form's parameters are then
    handled as a query (the login page carries them on as one)."""
    ctx: Context = request.app.state.ctx
    try:
        body = await read_body(request.scope, request.receive, _MAX_BODY)
        params = parse_form(dict(request.scope["headers"]), body)
    except OAuthError as exc:
        return error_page(ctx, exc)
    if (request.headers.get("sec-fetch-site") == "cross-site"
            and session_cookie(ctx) not in request.cookies):
        # An app's page on another site posted this, so the SameSite=Lax session cookie
        # stayed behind: post it again from this origin, which brings it along.
        return form_post(ctx, ctx.settings.issuer_url + AUTHORIZE_PATH, params)
    return await _authorize(ctx, request, urlencode(params))


async def _authorize(ctx: Context, request: Request, query: str) -> Response:
    try:
        req = AuthorizationRequest(single_params(query))
        for check in BEFORE_REDIRECT:
            await check(req, ctx.clients)
    except OAuthError as exc:
        return error_page(ctx, exc)
    try:
        for after in AFTER_REDIRECT:
            after(req)
    except OAuthError as exc:
        return redirect_to_client(ctx, req, exc.to_dict())
    hinted = None
    if "id_token_hint" in req.params:
        claims = await hint_claims(ctx.keys, ctx.settings, req.params["id_token_hint"])
        if claims is None or claims["aud"] != req.params["client_id"]:
            return redirect_to_client(ctx, req, InvalidRequest(
                "id_token_hint is not an ID token this server issued to this client."
            ).to_dict())
        hinted = claims["sub"]
    current = await sessions.current(ctx.storage, ctx.settings, ctx.signer,
                                     session_of(ctx, request))
    if current is not None and hinted is not None and current[1].id != hinted:
        current = None  # another user is signed in here: the app asked for the hinted one
    if current is None or req.prompt & SIGN_IN_PROMPTS or _too_old(current[0], req.max_age):
        return await _sign_in_first(ctx, request, req, query, hinted)
    session, user = current
    assert req.client is not None
    org_id = None
    if "organization" in req.params:
        org_id = await member_organization(ctx.storage, user.id, req.params["organization"])
        if org_id is None:
            return redirect_to_client(ctx, req, AccessDenied(
                "The user is not a member of that organization.").to_dict())
    code = await issue_code(
        ctx.storage, ctx.settings, client=req.client, session=session,
        redirect_uri=req.redirect_uri, scope=for_user(req.scope, user, "scope" in req.params),
        nonce=req.params.get("nonce"),
        code_challenge=req.params.get("code_challenge"), organization_id=org_id,
        redirect_uri_sent="redirect_uri" in req.params,
    )
    if code is None:  # the session ended meanwhile (a sign-out, a new password)
        return await _sign_in_first(ctx, request, req, query, hinted)
    return redirect_to_client(ctx, req, {"code": code})


async def other_than_hinted(ctx: Context, req: AuthorizationRequest | None,
                            user_id: str) -> Response | None:
    """The answer when the user who just signed in for ``req`` is not the one its
    ``id_token_hint`` names: ``login_required`` (OpenID Connect Core 3.1.2.1), where
    the request would show the form again and again. ``None`` otherwise: the request
    goes on (a hint it cannot use gets its own error there)."""
    if req is None or "id_token_hint" not in req.params:
        return None
    claims = await hint_claims(ctx.keys, ctx.settings, req.params["id_token_hint"])
    if claims is None or claims["sub"] == user_id:
        return None
    try:
        for after in AFTER_REDIRECT:
            after(req)
    except OAuthError:
        return None
    return redirect_to_client(ctx, req, LoginRequired(
        "The user signed in with another account than the one id_token_hint names."
    ).to_dict())


async def _sign_in_first(ctx: Context, request: Request, req: AuthorizationRequest,
                         query: str, hinted: str | None) -> Response:
    """The answer when the user must sign in: the login page, or ``login_required``."""
    if "none" in req.prompt:
        return redirect_to_client(ctx, req, LoginRequired().to_dict())
    expected = await ctx.storage.get_user(hinted) if hinted is not None else None
    return login_page(ctx, request, req, query,
                      expected=expected.username if expected is not None else "")
