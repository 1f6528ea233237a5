"""The account page: edit username and email, change password, see and end sessions,
download what is kept about oneself.

It relies on the Bastion session (no token or secret in its URL); without one it
shows the sign-in form first. ``return_to`` is honoured only when it is a
registered redirect URI of ``client_id``; anything else is ignored.

Changing the email or the password needs the current password unless the session
signed in within ``FRESH_LOGIN``. A new email takes effect through a link sent to it,
confirmed in a browser signed in to the account, and the old address is told once it
has. A new password ends every other session
and revokes every grant of the user; this browser stays signed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from bastion.server.api.export_schemas import download
from bastion.server.context import Context
from bastion.server.endpoints._query import page_form
from bastion.server.endpoints.authorize import login_page
from bastion.server.middleware import acts_on_get, request_ip
from bastion.server.models import LoginSession, User
from bastion.server.pages import csrf_ok, form_page, known_to, render, session_of
from bastion.server.services import audit, links, login, outbox, sessions
from bastion.server.services import users as user_service
from bastion.server.services.errors import RateLimited, ServiceError
from bastion.server.text import fold, storable

router = APIRouter(tags=["pages"])
ACCOUNT_PATH = "/account"
acts_on_get(ACCOUNT_PATH + "/export")  # records user.export
FRESH_LOGIN = timedelta(minutes=5)  # a password or email change needs no current password
_NOTICES = {
    "profile": "Your profile is saved.",
    "email": "We sent a confirmation link to your new address.",
    "password": "Your password is changed.",
    "session": "That session is signed out.",
}


async def _return_to(ctx: Context, client_id: str, return_to: str) -> tuple[str, str] | None:
    """(url, client name) when ``return_to`` is registered for ``client_id``."""
    client = await ctx.clients.get(client_id) if client_id else None
    if client is None or return_to not in client.redirect_uris:
        return None
    return return_to, client.name


def _keep(source: dict[str, str]) -> dict[str, str]:
    """``client_id`` and ``return_to`` to carry along; text no database can store (a
    NUL from the query string) counts as absent: it would fail the client lookup."""
    return {k: str(source[k]) for k in ("client_id", "return_to")
            if source.get(k) and storable(str(source[k]))}


async def _page(ctx: Context, request: Request, session: LoginSession, user: User,
                keep: dict[str, str], notice: str = "", error: str = "",
                status: int = 200) -> Response:
    back = await _return_to(ctx, keep.get("client_id", ""), keep.get("return_to", ""))
    own = await ctx.storage.list_sessions(user.id)
    return form_page(ctx, request, "account.html", status, signed_in=True, user=user, keep=keep,
                     notice=notice, error=error, sessions=own, current_id=session.id,
                     back_url=back[0] if back else "", back_name=back[1] if back else "",
                     needs_current=datetime.now(UTC) - session.auth_time > FRESH_LOGIN,
                     reauth_url=ACCOUNT_PATH + "?" + urlencode({**keep, "reauth": "1"}))


def _after(keep: dict[str, str], done: str) -> Response:
    return RedirectResponse(ACCOUNT_PATH + "?" + urlencode({**keep, "done": done}), 303)


async def _current(ctx: Context, request: Request) -> tuple[LoginSession, User] | None:
    return await sessions.current(ctx.storage, ctx.settings, ctx.signer,
                                  session_of(ctx, request))


@router.get(ACCOUNT_PATH, include_in_schema=False)
async def account(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    keep = _keep(dict(request.query_params))
    current = await _current(ctx, request)
    if current is None or request.query_params.get("reauth"):
        # reauth: a fresh sign-in (a password or an emailed link) stands in for the
        # current password, which an account made by a sign-up link never had
        return login_page(ctx, request, None, "", next_url=ACCOUNT_PATH + (
            "?" + urlencode(keep) if keep else ""))
    notice = _NOTICES.get(request.query_params.get("done", ""), "")
    return await _page(ctx, request, *current, keep, notice=notice)


@router.get(ACCOUNT_PATH + "/export", include_in_schema=False)
async def export(request: Request) -> Response:
    """The signed-in user's data, as ``GET /api/v1/users/{id}/export`` answers it: a
    download, started from this page only (a browser says where a request came from:
    another site's link must not make people download their data, or fill the audit
    trail)."""
    ctx: Context = request.app.state.ctx
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return RedirectResponse(ACCOUNT_PATH, 303)
    current = await _current(ctx, request)
    if current is None:
        return login_page(ctx, request, None, "", next_url=ACCOUNT_PATH)
    user = current[1]
    export = await user_service.export_user(ctx.storage, user.id)
    await audit.record(ctx.storage, _who(user, request), "user.export", user.id)
    return download(export)


@dataclass
class _Posted:
    """A checked account form: the signed-in session and user, and what to keep."""

    form: dict[str, str]
    keep: dict[str, str]
    session: LoginSession
    user: User


async def _posted(ctx: Context, request: Request) -> _Posted | Response:
    """The form if it comes from a signed-in session with a valid CSRF token; else the
    answer to give (back to the account page, or the page with an error)."""
    form = await page_form(request)
    keep, current = _keep(form or {}), await _current(ctx, request)
    if current is None:
        return RedirectResponse(ACCOUNT_PATH, 303)
    if form is None or not csrf_ok(ctx, request, form.get("csrf_token"), signed_in=True):
        return await _page(ctx, request, *current, keep, status=400,
                           error="This form has expired. Please try again.")
    return _Posted(form, keep, *current)


def _who(user: User, request: Request) -> audit.Actor:
    return audit.Actor(user.id, "user", None, request_ip(request))


async def _reauthenticated(ctx: Context, request: Request, posted: _Posted,
                           missing: str) -> str | None:
    """``None`` when the session signed in within ``FRESH_LOGIN`` or the form carries
    the right current password; else the error to show (``missing`` when it has none)."""
    if datetime.now(UTC) - posted.session.auth_time <= FRESH_LOGIN:
        return None
    if posted.user.password_hash is None:
        return "Your account has no password yet: sign in again to set one without it."
    current_password = posted.form.get("current_password", "")
    if not current_password:
        return missing
    try:
        await login.authenticate(ctx.storage, ctx.passwords, ctx.settings, posted.user.username,
                                 current_password, request_ip(request),
                                 known=known_to(ctx, request))
    except login.LoginFailed:
        return "The current password is not right."
    except login.TooManyAttempts as exc:
        return str(exc)
    return None


@router.post(ACCOUNT_PATH + "/profile", include_in_schema=False)
async def save_profile(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    posted = await _posted(ctx, request)
    if isinstance(posted, Response):
        return posted
    form, keep, session, user = posted.form, posted.keep, posted.session, posted.user
    username, email = form.get("username", "").strip(), form.get("email", "").strip()
    new_email = bool(email) and fold(email) != fold(user.email)
    if new_email:
        refused = await _reauthenticated(ctx, request, posted, "Enter your current password to "
                                         "change your email, or sign in again.")
        if refused:
            return await _page(ctx, request, session, user, keep, error=refused, status=400)
        if ctx.outbox.busy():  # before anything changes: all or nothing
            page = await _page(ctx, request, session, user, keep, error=outbox.BUSY, status=503)
            page.headers["Retry-After"] = str(outbox.BUSY_RETRY_AFTER)
            return page
    done = "profile"
    new_username = bool(username) and username != user.username
    try:  # all or nothing: both are checked before either changes
        if new_username:
            user_service.check_username(username)
            await user_service.check_username_free(ctx.storage, username, user.id)
        if new_email:  # (counts against the address's link budget: last)
            email = await links.check_email_change(ctx.storage, ctx.settings, user=user,
                                                   new_email=email, ip=request_ip(request))
        if new_username:
            user = await user_service.update_user(ctx.storage, ctx.passwords, user.id,
                                                  username=username)
            await audit.record(ctx.storage, _who(user, request), "account.username", user.id,
                               **user_service.audited(user, names=("username",)))
        if new_email:  # mailed after the answer: it must not show whether it is taken
            work = await links.send_email_change(ctx.storage, ctx.settings, user=user,
                                                 new_email=email)
            if work is not None:
                ctx.outbox.after_answer(work)
            done = "email"
    except RateLimited as exc:
        page = await _page(ctx, request, session, user, keep, error=str(exc), status=429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except ServiceError as exc:
        return await _page(ctx, request, session, user, keep, error=str(exc), status=400)
    return _after(keep, done)


@router.post(ACCOUNT_PATH + "/password", include_in_schema=False)
async def change_password(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    posted = await _posted(ctx, request)
    if isinstance(posted, Response):
        return posted
    form, keep, session, user = posted.form, posted.keep, posted.session, posted.user
    refused = await _reauthenticated(ctx, request, posted, "Enter your current password.")
    if refused:
        return await _page(ctx, request, session, user, keep, error=refused, status=400)
    try:  # ends every other session and revokes every grant; this browser stays signed in
        await user_service.update_user(ctx.storage, ctx.passwords, user.id,
                                       password=form.get("new_password", ""),
                                       keep_session=session.id)
    except ServiceError as exc:
        return await _page(ctx, request, session, user, keep, error=str(exc), status=400)
    ctx.outbox.poke()  # back-channel logouts
    await audit.record(ctx.storage, _who(user, request), "account.password", user.id)
    return _after(keep, "password")


@router.post(ACCOUNT_PATH + "/sessions/revoke", include_in_schema=False)
async def revoke_session(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    posted = await _posted(ctx, request)
    if isinstance(posted, Response):
        return posted
    form, keep, user = posted.form, posted.keep, posted.user
    target = await ctx.storage.get_session(form.get("session_id", ""))
    if target is not None and target.user_id == user.id:  # only one's own sessions
        await sessions.end(ctx.storage, target.id)
        ctx.outbox.poke()  # back-channel logouts
        await audit.record(ctx.storage, _who(user, request), "account.session.revoke", user.id)
    return _after(keep, "session")


@router.get(links.EMAIL_CHANGE_PATH, include_in_schema=False)
async def confirm_email_page(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    token = request.query_params.get("token", "")
    found = await links.peek(ctx.storage, token, "email_change")
    if found is None:
        return _bad_email_link(ctx)
    user = await _owner(ctx, request, found.user_id)
    if isinstance(user, Response):
        return user
    return form_page(ctx, request, "message.html", title="Confirm your email",
                     message=f"Make {found.email} the email address of your account "
                     f"{user.username}?", form_action=links.EMAIL_CHANGE_PATH,
                     button="Confirm", hidden={"token": token})


async def _owner(ctx: Context, request: Request, user_id: str | None) -> User | Response:
    """The signed-in user if the link is theirs; else the page to show. Only the
    account's own browser may confirm: else anyone could ask for someone else's
    address, and its owner's click would give them that address, verified."""
    current = await _current(ctx, request)  # (a deleted user has no session)
    if current is not None and current[1].id == user_id:
        return current[1]
    owner = await ctx.storage.get_user(user_id) if user_id else None
    if owner is None or owner.deleted_at is not None:
        return _bad_email_link(ctx)
    message = ("This link changes the email address of an account. Sign in to that "
               "account in this browser, then open the link from your email again.")
    if current is not None:
        message = (f"This link is for another account than {current[1].username}, the one "
                   "signed in here. Sign out, or open it in a browser signed in to that "
                   "account.")
    return render(ctx, "message.html", 403, title="Sign in to confirm", error=True,
                  message=message, link_url=ACCOUNT_PATH, link_text="Go to your account")


def _bad_email_link(ctx: Context) -> Response:
    return render(ctx, "message.html", 400, title="This link cannot be used", error=True,
                  message="This confirmation link is invalid, has expired or was already used.")


@router.post(links.EMAIL_CHANGE_PATH, include_in_schema=False)
async def confirm_email(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    form = await page_form(request)
    if form is None or not csrf_ok(ctx, request, form.get("csrf_token")):
        return render(ctx, "message.html", 400, title="This form has expired", error=True,
                      message="Open the link from your email again.")
    token = form.get("token", "")
    found = await links.peek(ctx.storage, token, "email_change")
    if found is None:
        return _bad_email_link(ctx)
    owner = await _owner(ctx, request, found.user_id)  # checked before the link is spent
    if isinstance(owner, Response):
        return owner
    spent = await links.use(ctx.storage, token, "email_change")
    used, before = spent if spent is not None else (None, None)
    if used is None or before is None or before.deleted_at is not None:
        return _bad_email_link(ctx)
    try:
        user = await user_service.update_user(ctx.storage, ctx.passwords, before.id,
                                              email=used.email, email_verified=True)
    except ServiceError as exc:
        return render(ctx, "message.html", 400, title="Cannot change the email", error=True,
                      message=str(exc))
    await links.send_email_changed(ctx.storage, ctx.settings, user=user, old_email=before.email)
    ctx.outbox.poke()
    await audit.record(ctx.storage, _who(user, request), "account.email", user.id,
                       **user_service.audited(user, names=("email",)))
    return render(ctx, "message.html", title="Email changed",
                  message=f"Your email address is now {user.email}.")
