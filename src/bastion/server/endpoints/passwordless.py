"""Passwordless sign-in by emailed link.

- ``POST /login/link/request``: the login page's "Email me a sign-in link" form.
- ``POST /oauth/passwordless``: the same for first-party apps (client-authenticated
  form, with the authorization request's parameters; a confidential client's calls
  are rate limited per client, not per IP: they all come from its server).
- ``GET /login/link?token=...``: a confirmation page (mail scanners that prefetch
  links must not use them up); its button POSTs the token, which signs the user in
  and completes the pending authorization request.

The answer to a request never says whether the address has an account.
"""

from __future__ import annotations

import re
import secrets as _secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from bastion.oauth.errors import InvalidRequest, OAuthError, SlowDown, TemporarilyUnavailable
from bastion.server.checks.authorization import (
    AFTER_REDIRECT,
    BEFORE_REDIRECT,
    AuthorizationRequest,
)
from bastion.server.context import Context
from bastion.server.endpoints._form import FormEndpoint
from bastion.server.endpoints._query import page_form, single_params
from bastion.server.endpoints.authorize import error_page, login_page, other_than_hinted
from bastion.server.endpoints.login import local_page, login_target, signed_in
from bastion.server.grants._request import TokenRequest
from bastion.server.middleware import request_ip
from bastion.server.models import User
from bastion.server.pages import csrf_ok, form_page, known_to, render, session_of
from bastion.server.services import audit, links, outbox, sessions, users
from bastion.server.services.errors import (
    AlreadyExists,
    InvalidInput,
    RateLimited,
    ServiceError,
)
from bastion.server.text import duration, fold

router = APIRouter(tags=["pages"])
PASSWORDLESS_PATH = "/oauth/passwordless"
_SENT = ("If an account can sign in with that address, a sign-in link is on its way. "
         "It works once, for {expires_in}.")


@router.post("/login/link/request", include_in_schema=False)
async def request_link_page(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    form = await page_form(request)
    if form is None:  # without a readable form there is no sign-in to show again
        return error_page(ctx, InvalidRequest("This form has expired. Please sign in again."))
    # For an authorization request (``continue``), or for Bastion's own account page
    # (``next``), which a user with no password reaches only this way.
    query, next_url = form.get("continue", ""), local_page(form.get("next", "")) or ""
    req: AuthorizationRequest | None = None
    if not next_url:
        try:
            req = AuthorizationRequest(single_params(query))
            for check in BEFORE_REDIRECT:
                await check(req, ctx.clients)
            for after in AFTER_REDIRECT:
                after(req)
        except OAuthError as exc:
            return error_page(ctx, exc)

    def again(error: str, status: int) -> Response:
        return login_page(ctx, request, req, query if req else "", error=error,
                          status=status, next_url=next_url)
    if not csrf_ok(ctx, request, form.get("csrf_token")):
        return again("This form has expired. Please try again.", 400)
    if ctx.outbox.busy():
        page = again(outbox.BUSY, 503)
        page.headers["Retry-After"] = str(outbox.BUSY_RETRY_AFTER)
        return page
    try:
        work = await links.send_sign_in_link(
            ctx.storage, ctx.settings, email=form.get("email", ""),
            client=req.client if req else None, authorize_query=query, next_url=next_url,
            ip=request_ip(request),
            known=known_to(ctx, request))
    except InvalidInput:
        return again("Enter a valid email address.", 400)
    except RateLimited as exc:
        page = again(str(exc), 429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    ctx.outbox.after_answer(work)
    return render(ctx, "message.html", title="Check your email", message=_SENT.format(
        expires_in=duration(ctx.settings.sign_in_link_ttl)))


async def request_link_api(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    form = dict(request.form)
    email = form.pop("email", None)
    if not email:
        raise InvalidRequest("Missing email.")
    if form.setdefault("client_id", request.client.client_id) != request.client.client_id:
        raise InvalidRequest("client_id differs from the authenticated client.")
    form.pop("client_secret", None)
    req = AuthorizationRequest(form)
    for check in BEFORE_REDIRECT:
        await check(req, ctx.clients)
    for after in AFTER_REDIRECT:
        after(req)
    if ctx.outbox.busy():
        raise TemporarilyUnavailable(outbox.BUSY, headers={
            "Retry-After": str(outbox.BUSY_RETRY_AFTER)})
    try:
        work = await links.send_sign_in_link(
            ctx.storage, ctx.settings, email=email, client=request.client,
            authorize_query=urlencode(form), ip=request.client_ip, back_channel=True)
    except InvalidInput as exc:
        raise InvalidRequest(str(exc)) from None
    except RateLimited as exc:
        raise SlowDown(str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    ctx.outbox.after_answer(work)
    return {"status": "accepted", "expires_in": ctx.settings.sign_in_link_ttl}


def endpoint(ctx: Context) -> FormEndpoint:
    return FormEndpoint(ctx, request_link_api)


def _invalid(ctx: Context) -> Response:
    return render(ctx, "message.html", 400, title="This link cannot be used", error=True,
                  message="This sign-in link is invalid, has expired or was already used. "
                  "Go back to the app and ask for a new one.")


@router.get(links.SIGN_IN_PATH, include_in_schema=False)
async def link_page(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    token = request.query_params.get("token", "")
    link = await links.peek(ctx.storage, token, "sign_in")
    if link is None:
        return _invalid(ctx)
    # Say whose link it is: one someone else requested for their own account and sent
    # here would sign this browser in as them (login CSRF).
    message = f"Continue to sign in as {link.email}."
    current = await sessions.current(ctx.storage, ctx.settings, ctx.signer,
                                     session_of(ctx, request))
    if current is not None and fold(current[1].email) != link.email:
        message += (f" This browser is signed in as {current[1].username}; it will be signed"
                    f" in as {link.email} instead.")
    return form_page(ctx, request, "message.html", title="Sign in", message=message,
                     form_action=links.SIGN_IN_PATH, button="Continue",
                     hidden={"token": token})


async def _signup(ctx: Context, email: str, client_id: str | None, ip: str | None) -> User:
    # a username starts with a letter or digit: ".bob@" or "_x@" must not refuse
    base = re.sub(r"[^A-Za-z0-9_.+-]", "", email.split("@")[0]).strip("_.+-")[:40] or "user"
    for _ in range(5):
        try:
            user = await users.create_user(ctx.storage, ctx.passwords, username=base,
                                           email=email, password=None, email_verified=True)
        except AlreadyExists as exc:
            if exc.field == "email":
                existing = await ctx.storage.get_user_by_login(email)
                if existing is not None:
                    return existing
            base = f"{base[:40]}{_secrets.randbelow(10_000)}"
        else:
            actor = audit.Actor(user.id, "user", client_id, ip)
            await audit.record(ctx.storage, actor, "user.create", user.id, via="passwordless",
                               **users.audited(user))
            return user
    raise InvalidInput("username", "could not choose a free username")


@router.post(links.SIGN_IN_PATH, include_in_schema=False)
async def use_link(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    form = await page_form(request)
    if form is None or not csrf_ok(ctx, request, form.get("csrf_token")):
        return render(ctx, "message.html", 400, title="This form has expired", error=True,
                      message="Open the link from your email again.")
    spent = await links.use(ctx.storage, form.get("token", ""), "sign_in")
    if spent is None:
        return _invalid(ctx)
    used, user = spent  # the user as the spend read them: their password then
    if not used.user_id:
        try:
            user = await _signup(ctx, used.email, used.client_id, request_ip(request))
        except ServiceError as exc:  # a page, not the REST API's JSON problem
            return render(ctx, "message.html", 400, title="Cannot create your account",
                          error=True, message=f"{exc}. Go back to the app and ask for a new link.")
    if user is None or user.deleted_at is not None:
        return _invalid(ctx)
    if fold(user.email) != fold(used.email):  # mailed to an address no longer theirs
        return _invalid(ctx)
    if not used.user_id:  # a sign-up: its link and mail are theirs now (erasure finds them)
        await ctx.storage.adopt_signup(user.id, user.email)
    if user.email_verified_at is None:  # they opened a link mailed to it: it is theirs
        await ctx.storage.verify_email(user.id, user.email, datetime.now(UTC))
    try:
        req, target = await login_target(ctx, str(used.payload.get("authorize", "")),
                                          str(used.payload.get("next", "")))
    except OAuthError as exc:  # e.g. the client was removed meanwhile
        return error_page(ctx, exc)
    success = audit.event(audit.Actor(user.id, "user", used.client_id, request_ip(request)),
                          "login.success", user.id, method="link")
    answer = await other_than_hinted(ctx, req, user.id)
    # A new password (which cancels the links mailed before it) committed after the
    # spend: the session is not stored. (A sign-up's user is new: nothing to race.)
    return await signed_in(ctx, request, user, target, success, answer=answer,
                           password_checked=bool(used.user_id)) or _invalid(ctx)
