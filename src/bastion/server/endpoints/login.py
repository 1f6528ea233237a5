"""The login form's POST: check CSRF and the password, start a session, and go back
to the authorization request that asked for the sign-in."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from bastion.oauth.errors import OAuthError
from bastion.server.checks.authorization import BEFORE_REDIRECT, AuthorizationRequest
from bastion.server.context import Context
from bastion.server.endpoints._query import single_params
from bastion.server.endpoints.authorize import AUTHORIZE_PATH, error_page, login_page
from bastion.server.pages import cookie_options, csrf_ok, render
from bastion.server.services import audit, login, sessions

router = APIRouter(tags=["pages"])


@router.post("/login", summary="Sign in (the hosted login form posts here)",
             response_class=Response, include_in_schema=False)
async def login_submit(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    form = await request.form()
    query = str(form.get("continue") or "")
    try:
        params = single_params(query)
        req = AuthorizationRequest(params)
        for check in BEFORE_REDIRECT:
            await check(req, ctx.clients)
    except OAuthError as exc:
        return error_page(ctx, exc)
    if not csrf_ok(ctx, request, form.get("csrf_token")):
        return login_page(ctx, request, req, query, status=400,
                          error="This form has expired. Please sign in again.")
    username, password = form.get("login"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return login_page(ctx, request, req, query, status=400,
                          error="Enter your username or email and your password.")
    ip = request.client.host if request.client else None
    client_id = req.client.client_id if req.client else None
    who = audit.Actor(None, "anonymous", client_id, ip)
    try:
        user = await login.authenticate(ctx.storage, ctx.passwords, ctx.settings,
                                        username[:320], password[:1024], ip)
    except login.TooManyAttempts as exc:
        await audit.record(ctx.storage, who, "login.throttled", username[:200])
        page = login_page(ctx, request, req, query, error=str(exc), status=429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except login.LoginFailed as exc:
        await audit.record(ctx.storage, who, "login.failure", username[:200], method="form")
        return login_page(ctx, request, req, query, error=str(exc), status=401)
    await audit.record(ctx.storage, audit.Actor(user.id, "user", client_id, ip),
                       "login.success", user.id, method="form")
    _session, cookie = await sessions.start(ctx.storage, ctx.settings, ctx.signer, user,
                                            request.headers.get("user-agent", ""))
    # The sign-in just happened, so prompt=login is satisfied.
    if params.get("prompt") == "login":
        del params["prompt"]
    response = RedirectResponse(AUTHORIZE_PATH + "?" + urlencode(params), status_code=303)
    response.set_cookie(sessions.COOKIE, cookie, max_age=ctx.settings.session_ttl,
                        **cookie_options(ctx))
    return response


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    current = await sessions.current(ctx.storage, ctx.signer, request.cookies.get(sessions.COOKIE))
    if current is None:
        return render(ctx, "message.html", title="Bastion", message="You are not signed in.")
    return render(ctx, "message.html", title="Bastion",
                  message=f"You are signed in as {current[1].username}.")
