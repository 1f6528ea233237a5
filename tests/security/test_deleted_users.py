"""A soft-deleted user (``deleted_at`` set) can no longer sign in, and nothing issued
before the deletion keeps working."""

from __future__ import annotations

from security_helpers import (
    Env,
    authorize_url,
    exchange,
    get_code,
    location_params,
    login_form,
    oauth_error,
    post_login,
)


async def test_deleted_user_cannot_sign_in_on_the_login_page(env: Env) -> None:
    await env.delete_user(env.user.id)
    r = await post_login(env.http, await login_form(env.http, authorize_url(env.web.client_id)))
    assert r.status_code == 401
    assert "Incorrect username or password." in r.text  # says no more than for a typo


async def test_deleted_user_cannot_use_the_password_grant(env: Env) -> None:
    await env.delete_user(env.user.id)
    assert oauth_error(await env.password_grant()) == "invalid_grant"


async def test_deleted_users_refresh_token_fails(env: Env) -> None:
    tokens = (await env.password_grant(scope="openid")).json()
    await env.delete_user(env.user.id)
    assert oauth_error(await env.refresh(tokens["refresh_token"])) == "invalid_grant"


async def test_deleted_users_refresh_token_from_the_code_flow_fails(env: Env) -> None:
    tokens = (await exchange(env, await get_code(env))).json()
    await env.delete_user(env.user.id)
    assert oauth_error(await env.refresh(tokens["refresh_token"])) == "invalid_grant"


async def test_deleted_users_access_token_is_refused(env: Env) -> None:
    tokens = (await env.password_grant(scope="openid")).json()
    await env.delete_user(env.user.id)
    r = await env.userinfo(tokens["access_token"])
    assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]
    assert await env.introspect(tokens["access_token"]) == {"active": False}


async def test_deleted_users_access_token_is_refused_by_the_rest_api(env: Env) -> None:
    token = (await env.password_grant(scope="openid")).json()["access_token"]
    headers = {"Authorization": "Bearer " + token}
    assert (await env.http.get("/api/v1/users/me", headers=headers)).status_code == 200
    await env.delete_user(env.user.id)  # deleted_at only: the grant is left live
    assert (await env.http.get("/api/v1/users/me", headers=headers)).status_code == 401


async def test_deleted_users_session_no_longer_signs_in(env: Env) -> None:
    await get_code(env)
    await env.delete_user(env.user.id)
    r = await env.http.get(authorize_url(env.web.client_id, prompt="none"))
    assert location_params(r)["error"] == "login_required"


async def test_code_issued_before_the_deletion_cannot_be_exchanged(env: Env) -> None:
    code = await get_code(env)
    await env.delete_user(env.user.id)
    assert oauth_error(await exchange(env, code)) == "invalid_grant"


async def test_deleted_users_refresh_token_is_inactive_on_introspection(env: Env) -> None:
    tokens = (await env.password_grant(scope="openid")).json()
    await env.delete_user(env.user.id)
    assert await env.introspect(tokens["refresh_token"]) == {"active": False}
