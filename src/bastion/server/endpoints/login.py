"""The login form's POST: check CSRF and the password, start a session, and go back
to what asked for the sign-in: an authorization request, or an account page."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from bastion.oauth.errors import InvalidRequest, OAuthError
from bastion.server.checks.authorization import (
    BEFORE_REDIRECT,
    SIGN_IN_PROMPTS,
    AuthorizationRequest,
)
from bastion.server.context import Context
from bastion.server.endpoints._query import page_form, single_params
from bastion.server.endpoints.authorize import (
    AUTHORIZE_PATH,
    error_page,
    login_page,
    other_than_hinted,
)
from bastion.server.middleware import request_ip
from bastion.server.models import Event, User
from bastion.server.pages import (
    cookie_options,
    csrf_ok,
    known_to,
    mark_known,
    render,
    session_cookie,
    session_of,
)
from bastion.server.services import audit, login, sessions

router = APIRouter(tags=["pages"])
_LOCAL_PAGES = ("/account",)


def local_page(url: str) -> str | None:
    """``url`` if it is one of Bastion's own pages (a path, never another site)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("//", "\\")) or "\\" in url:
        return None
    return url if parts.path in _LOCAL_PAGES else None


async def login_target(ctx: Context, form_continue: str, form_next: str,
                       ) -> tuple[AuthorizationRequest | None, str]:
    """Where a sign-in goes next: (the authorization request or None, the URL).
    Raises ``OAuthError`` for an authorization request that cannot be honoured."""
    next_url = local_page(form_next) if form_next else None
    if next_url:
        return None, next_url
    params = single_params(form_continue)
    req = AuthorizationRequest(params)
    for check in BEFORE_REDIRECT:
        await check(req, ctx.clients)
    # The sign-in is happening now: it meets prompt=login/select_account and max_age.
    params.pop("max_age", None)
    prompt = " ".join(v for v in params.pop("prompt", "").split() if v not in SIGN_IN_PROMPTS)
    if prompt:
        params["prompt"] = prompt
    return req, AUTHORIZE_PATH + "?" + urlencode(params)


async def signed_in(ctx: Context, request: Request, user: User, url: str,
                    success: Event, *, password_checked: bool = False,
                    answer: Response | None = None) -> Response | None:
    """Start a session (a new id: no fixation), stored with the sign-in's audit event
    ``success``, and go on to ``url`` (or give ``answer``); None if the user was
    deleted, or (when the sign-in checked their password) given a new password,
    meanwhile."""
    started = await sessions.start(ctx.storage, ctx.settings, ctx.signer, user,
                                   request.headers.get("user-agent", ""), success,
                                   password_checked=password_checked)
    if started is None:
        return None
    _session, cookie = started
    response = answer or RedirectResponse(url, status_code=303)
    response.set_cookie(session_cookie(ctx), cookie, max_age=ctx.settings.session_ttl,
                        **cookie_options(ctx))
    mark_known(ctx, request, response, user)
    return response


@router.post("/login", summary="Sign in (the hosted login form posts here)",
             response_class=Response, include_in_schema=False)
async def login_submit(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    form = await page_form(request)
    if form is None:  # without a readable form there is no sign-in to show again
        return error_page(ctx, InvalidRequest("This form has expired. Please sign in again."))
    query, next_url = form.get("continue", ""), form.get("next", "")
    try:
        req, target = await login_target(ctx, query, next_url)
    except OAuthError as exc:
        return error_page(ctx, exc)
    next_url = "" if req else target

    def again(error: str, status: int, typed: str = "") -> Response:
        return login_page(ctx, request, req, query, error=error, status=status,
                          next_url=next_url, typed=typed)

    if not csrf_ok(ctx, request, form.get("csrf_token")):
        return again("This form has expired. Please sign in again.", 400)
    username, password = form.get("login"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return again("Enter your username or email and your password.", 400)
    ip = request_ip(request)
    client_id = req.client.client_id if req and req.client else None
    who = audit.Actor(None, "anonymous", client_id, ip)
    try:
        user = await login.authenticate(ctx.storage, ctx.passwords, ctx.settings,
                                        username, password, ip, known=known_to(ctx, request))
    except login.TooManyAttempts as exc:
        if login.first_refusal(ctx.storage, exc):
            await audit.record(ctx.storage, who, "login.throttled", login.tried(username))
        page = again(str(exc), 429, username[:320])
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except login.LoginFailed as exc:
        await audit.record(ctx.storage, who, "login.failure", login.tried(username), method="form")
        return again(str(exc), 401, username[:320])  # kept: a typo is likelier in the password
    success = audit.event(audit.Actor(user.id, "user", client_id, ip), "login.success",
                          user.id, method="form")
    answer = await other_than_hinted(ctx, req, user.id)
    return (await signed_in(ctx, request, user, target, success, password_checked=True,
                            answer=answer)
            or again(str(login.LoginFailed()), 401))


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    current = await sessions.current(ctx.storage, ctx.settings, ctx.signer,
                                  session_of(ctx, request))
    if current is None:
        return render(ctx, "message.html", title="Bastion", message="You are not signed in.",
                      link_url="/account", link_text="Sign in to your account")
    return RedirectResponse("/account", status_code=303)
