"""The REST API calls and passwordless/account calls on ``MockTransport``, sync and
async (``make_client``): the admin token's cache and renewal, request shapes,
error mapping, and answers outside the contract."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sdk_fakes import ISSUER, FakeProvider

from bastion import (
    BadRequest,
    ConfigurationError,
    Conflict,
    EndpointNotAdvertised,
    Forbidden,
    InvalidRequest,
    InvalidToken,
    NotFound,
    Page,
    ProtocolError,
    RateLimited,
    TokenSet,
    Unauthorized,
)

USER = {"id": "u1", "username": "ann", "email": "ann@example.com", "is_administrator": False,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "deleted_at": None}
ROLE = {"id": "r1", "organization_id": "o1", "name": "editor",
        "permissions": ["b", "a"], "created_at": "2026-01-01T00:00:00Z"}


def problem(status: int, detail: str = "nope", **headers: str) -> httpx2.Response:
    body = {"type": "about:blank", "title": "T", "status": status, "detail": detail}
    return httpx2.Response(status, json=body, headers=headers)


def api_path(path: str) -> str:
    return "/tenant/api/v1" + path


def token_requests(provider: FakeProvider) -> list[httpx2.Request]:
    return [r for r in provider.requests if r.url.path == "/tenant/oauth/token"]


def test_admin_token_is_fetched_once_and_renewed_after_401(make_client: Any,
                                                           provider: FakeProvider) -> None:
    client = make_client()
    provider.overrides[api_path("/users/u1")] = [
        httpx2.Response(200, json=USER), httpx2.Response(200, json=USER),
        problem(401), httpx2.Response(200, json=USER), problem(401), problem(401),
    ]
    assert client.users.get("u1").username == "ann"
    assert client.users.get("u1").email == "ann@example.com"
    assert len(token_requests(provider)) == 1  # cached
    form = provider.form(token_requests(provider)[0])
    assert form == {"grant_type": "client_credentials", "scope": "bastion:admin"}
    assert client.users.get("u1").id == "u1"  # 401: a new token, sent once more
    assert len(token_requests(provider)) == 2
    with pytest.raises(Unauthorized):  # a second 401 stands
        client.users.get("u1")
    assert len(token_requests(provider)) == 3


def test_a_users_token_is_sent_as_is(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    provider.overrides[api_path("/users/me")] = [httpx2.Response(200, json=USER)]
    provider.overrides[api_path("/users")] = [problem(403)]
    assert client.users.me("user-at").id == "u1"
    assert provider.requests[-1].headers["authorization"] == "Bearer user-at"
    with pytest.raises(Forbidden):
        client.users.with_token(TokenSet(access_token="t2")).search()
    assert provider.requests[-1].headers["authorization"] == "Bearer t2"
    assert token_requests(provider) == []
    with pytest.raises(ConfigurationError):
        client.users.me("")


def test_request_shapes(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    page = {"items": [USER], "count": 7}
    provider.overrides[api_path("/users")] = [httpx2.Response(200, json=page)]
    found = client.users.search("a b", 5, 10, include_deleted=True)
    assert isinstance(found, Page) and found.total == 7 and found[0].id == "u1"
    assert dict(provider.requests[-1].url.params) == {
        "limit": "5", "offset": "10", "q": "a b", "include_deleted": "true"}
    provider.overrides[api_path("/organizations/a/b/roles/r 1/permissions")] = [
        httpx2.Response(200, json=ROLE)]
    role = client.roles.remove_permissions("a/b", "r 1", ["x", "y"])
    assert role.permissions == ("a", "b")
    sent = provider.requests[-1]
    assert sent.method == "DELETE" and sent.url.params.get_list("permission") == ["x", "y"]
    assert sent.url.raw_path.startswith(b"/tenant/api/v1/organizations/a%2Fb/roles/r%201/")
    provider.overrides[api_path("/organizations/o1/users/u1/roles")] = [
        httpx2.Response(200, json={"items": [ROLE], "count": 1, "tokens": {
            "access_token": "new", "token_type": "Bearer", "expires_in": 60,
            "refresh_token": "r2"}})]
    mine = TokenSet(access_token="old", refresh_token="r1", client=None)
    result = client.users.update_roles("o1", "u1", add=role, remove="viewer", reissue=mine)
    assert json.loads(provider.requests[-1].content) == {
        "add": ["r1"], "remove": ["viewer"], "reissue": {"refresh_token": "r1"}}
    assert result.roles[0].name == "editor" and result.tokens is not None
    assert result.tokens.access_token == "new" and result.tokens.refresh_token == "r2"


def test_iterate_follows_the_cursors(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    second = {**USER, "id": "u2"}
    provider.overrides[api_path("/users")] = [
        httpx2.Response(200, json={"items": [USER], "count": None, "next": "c1"}),
        httpx2.Response(200, json={"items": [second], "count": None, "next": "c2"}),
        httpx2.Response(200, json={"items": [], "count": None, "next": None}),
    ]
    assert [u.id for u in client.users.iterate("a", page_size=1)] == ["u1", "u2"]
    first, then, last = (dict(r.url.params) for r in provider.requests[-3:])
    assert first == {"limit": "1", "offset": "0", "q": "a", "include_deleted": "false",
                     "count": "false"}
    assert then == {**first, "after": "c1"} and last == {**first, "after": "c2"}
    assert repr(Page([1], 3, "c")) == "Page([1], total=3, next_cursor='c')"
    event = {"id": "e1", "at": "2026-11-23T17:00:00Z", "action": "user.create",
             "actor": None, "actor_type": "system", "target": "u1", "client_id": None,
             "ip": None, "detail": {}}
    provider.overrides[api_path("/events")] = [
        httpx2.Response(200, json={"items": [event], "count": None, "next": "c1"}),
        httpx2.Response(200, json={"items": [], "count": None}),
    ]
    assert [e.id for e in client.events.iterate(target="u1", page_size=1)] == ["e1"]
    assert dict(provider.requests[-1].url.params) == {
        "limit": "1", "offset": "0", "target": "u1", "after": "c1", "count": "false"}


def test_iterate_refuses_a_walk_that_would_end_early_or_never(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    full = {"items": [USER, {**USER, "id": "u2"}], "count": 9}
    for answers, message in (
            ([full], "no cursor"),  # a server that ignores after=: not 2 users and done
            ([{**full, "next": 7}], "no cursor"),
            ([{**full, "next": "c"}, {**full, "next": "c"}], "twice")):
        provider.overrides[api_path("/users")] = [
            httpx2.Response(200, json=answer) for answer in answers]
        with pytest.raises(ProtocolError, match=message):
            list(client.users.iterate(page_size=2))


def test_errors_are_mapped(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    cases = [(400, BadRequest), (422, BadRequest), (404, NotFound), (409, Conflict),
             (403, Forbidden)]
    for status, cls in cases:
        provider.overrides[api_path("/organizations")] = [problem(status, "the detail")]
        with pytest.raises(cls) as caught:
            client.organizations.create("acme")
        assert caught.value.status_code == status
        assert caught.value.error_description == "the detail"
    provider.overrides[api_path("/organizations/o1/roles")] = [
        httpx2.Response(401, json={"type": "about:blank", "title": "Invalid token", "status": 401,
                                   "detail": "expired", "error": "invalid_token"}),
        httpx2.Response(401, json={"error": "invalid_token"}),
    ]
    with pytest.raises(InvalidToken):
        client.roles.list("o1")


def test_answers_outside_the_contract(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    provider.overrides[api_path("/users")] = [httpx2.Response(200, json={"items": "x"})]
    with pytest.raises(ProtocolError):
        client.users.search()
    provider.overrides[api_path("/users/count")] = [httpx2.Response(200, json={"count": True})]
    with pytest.raises(ProtocolError):
        client.users.count()
    provider.overrides[api_path("/organizations/o1/roles")] = [
        httpx2.Response(200, json={"items": [{**ROLE, "permissions": "a"}], "count": 1})]
    with pytest.raises(ProtocolError):
        client.roles.list("o1")
    provider.overrides[api_path("/events")] = [
        httpx2.Response(200, json={"items": [{"id": "e"}], "count": 1})]
    with pytest.raises(ProtocolError):
        client.events.list()
    provider.overrides[api_path("/organizations/o1/users/u1/roles")] = [
        httpx2.Response(200, json={"items": [], "count": 0})]
    with pytest.raises(ProtocolError):  # asked to reissue, no tokens came back
        client.users.update_roles("o1", "u1", reissue="r1")
    provider.overrides[api_path("/organizations/o1/users/u1/roles")] = [
        httpx2.Response(200, json={"items": [], "count": 0, "tokens": None})]
    # null: the change left the user without a role there, so none were issued ("r1"
    # may have been spent by the answer above: another token)
    assert client.users.update_roles("o1", "u1", reissue="r2").tokens is None
    for member in ({"roles": []}, {"user": {"username": "x"}}, {"user": USER, "roles": "a"},
                   {"user": USER, "roles": [1]}, {"user": USER}):
        provider.overrides[api_path("/organizations/o1/users")] = [
            httpx2.Response(200, json={"items": [member], "count": 1})]
        with pytest.raises(ProtocolError):
            client.organizations.members("o1")


@pytest.mark.parametrize(("call", "path"), [
    (lambda c: c.roles.delete("acme", ".."), "/organizations/acme/roles/%2E%2E"),
    (lambda c: c.users.get("."), "/users/%2E"),
    (lambda c: c.revoke_all(user_id=".."), "/users/%2E%2E/sessions"),
])
def test_dot_segments_are_sent_escaped(make_client: Any, provider: FakeProvider, call: Any,
                                       path: str) -> None:
    """The URL parser removes "." and ".." and the segment before: deleting a role named
    ".." deleted its organization, and a user "." read the user listing."""
    provider.overrides[api_path(path)] = [problem(404)]
    with contextlib.suppress(NotFound):
        call(make_client())
    assert provider.requests[-1].url.raw_path.partition(b"?")[0] == api_path(path).encode()


def test_an_answer_naming_no_user_is_a_protocol_error(make_client: Any,
                                                      provider: FakeProvider) -> None:
    provider.overrides[api_path("/users/u2")] = [
        httpx2.Response(200, json={"items": [], "count": 0})]
    with pytest.raises(ProtocolError, match="no sub or id"):
        make_client().users.get("u2")


def test_organization_request_shapes(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    org = {"id": "o1", "name": "acme", "created_at": "2026-11-23T08:00:00Z"}
    provider.overrides[api_path("/organizations/a b")] = [
        httpx2.Response(200, json={**org, "name": "new"}), httpx2.Response(204)]
    assert client.organizations.rename("a b", "new").name == "new"
    sent = provider.requests[-1]
    assert sent.method == "PATCH" and json.loads(sent.content) == {"name": "new"}
    client.organizations.delete("a b", force=True)
    sent = provider.requests[-1]
    assert sent.method == "DELETE" and dict(sent.url.params) == {"force": "true"}
    provider.overrides[api_path("/organizations/o1/users")] = [httpx2.Response(200, json={
        "items": [{"user": USER, "roles": ["viewer", "editor"]}], "count": 9})]
    members = client.organizations.members("o1", 5, 10, include_deleted=True)
    assert members.total == 9 and members[0].user.id == "u1"
    assert members[0].roles == ("editor", "viewer")
    assert dict(provider.requests[-1].url.params) == {
        "limit": "5", "offset": "10", "include_deleted": "true"}
    provider.overrides[api_path("/users/u1/organizations")] = [
        httpx2.Response(200, json={"items": [org], "count": 3})]
    orgs = client.users.organizations("u1", limit=1)
    assert orgs.total == 3 and orgs[0].name == "acme"
    assert dict(provider.requests[-1].url.params) == {"limit": "1", "offset": "0"}


def test_bad_arguments_fail_before_sending(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    with pytest.raises(ConfigurationError):
        client.users.get("")
    with pytest.raises(ConfigurationError):
        client.users.update("u1")
    with pytest.raises(ConfigurationError):
        client.roles.add_permissions("o1", "r1", [""])
    with pytest.raises(ConfigurationError):
        client.users.update_roles("o1", "u1", reissue=TokenSet(access_token="no refresh"))
    with pytest.raises(ConfigurationError):
        client.users.attach_roles("o1", "u1", 42)
    assert provider.requests == []


def passwordless(provider: FakeProvider, *responses: httpx2.Response) -> None:
    provider.metadata["passwordless_endpoint"] = ISSUER + "/oauth/passwordless"
    provider.metadata["account_endpoint"] = ISSUER + "/account"
    provider.overrides["/tenant/oauth/passwordless"] = list(responses)


def test_start_passwordless(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(redirect_uri="https://app.example/cb", state_key="k" * 32, retries=0)
    passwordless(
        provider,
        httpx2.Response(200, json={"status": "accepted", "expires_in": 900}),
        httpx2.Response(429, json={"error": "slow_down", "error_description": "wait"},
                        headers={"Retry-After": "3540"}),
        httpx2.Response(400, json={"error": "invalid_request", "error_description": "email"}),
        httpx2.Response(200, json={"status": "maybe"}),
    )
    state = client.start_passwordless(" ann@example.com ", organization="acme")
    sent = provider.requests[-1]
    form = provider.form(sent)
    assert sent.headers["authorization"].startswith("Basic ")  # client-authenticated
    assert form["email"] == "ann@example.com" and form["state"] == state
    assert form["code_challenge_method"] == "S256" and form["organization"] == "acme"
    assert form["nonce"] and form["scope"] == "openid" and "code_verifier" not in form
    with pytest.raises(RateLimited) as caught:
        client.start_passwordless("ann@example.com")
    assert caught.value.retry_after == 3540 and caught.value.error_code == "slow_down"
    with pytest.raises(InvalidRequest):
        client.start_passwordless("ann@example.com")
    with pytest.raises(ProtocolError):
        client.start_passwordless("ann@example.com")
    with pytest.raises(ConfigurationError):
        client.start_passwordless("  ")


def test_passwordless_and_account_need_the_endpoints(make_client: Any) -> None:
    client = make_client(redirect_uri="https://app.example/cb", state_key="k" * 32)
    with pytest.raises(EndpointNotAdvertised):
        client.start_passwordless("ann@example.com")
    with pytest.raises(EndpointNotAdvertised):
        client.edit_profile_url()


def test_edit_profile_url(make_client: Any, provider: FakeProvider) -> None:
    passwordless(provider)
    client = make_client()
    url = client.edit_profile_url(return_to="https://app.example/cb?x=1")
    assert url == (ISSUER + "/account?client_id=svc+client"
                   "&return_to=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1")
    assert "s3cr" not in url and "Bearer" not in url


CLIENT = {"client_id": "c/1", "name": "Shop", "is_public": False,
          "redirect_uris": ["https://shop.example/cb"], "post_logout_redirect_uris": [],
          "grant_types": ["authorization_code"], "scopes": [], "created_at": "2026-01-01T00:00:00Z",
          "previous_secret_expires_at": None}
KEY = {"kid": "k1", "alg": "ES256", "use": "access", "status": "active",
       "created_at": "2026-01-01T00:00:00Z", "activated_at": "2026-01-01T00:00:00Z",
       "retired_at": None}


def test_client_and_key_calls(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    provider.overrides[api_path("/clients")] = [
        httpx2.Response(201, json={**CLIENT, "client_secret": "s3cret"})]
    made = client.clients.create("Shop", redirect_uris="https://shop.example/cb",
                                 grant_types=["authorization_code"])
    assert json.loads(provider.requests[-1].content) == {
        "name": "Shop", "is_public": False, "redirect_uris": ["https://shop.example/cb"],
        "post_logout_redirect_uris": [], "grant_types": ["authorization_code"], "scopes": []}
    assert made.client_secret == "s3cret" and "s3cret" not in repr(made)
    assert made.created_at is not None and made.created_at.tzinfo

    provider.overrides[api_path("/clients/c/1")] = [httpx2.Response(200, json=CLIENT)]
    client.clients.update(made, scopes="read")  # by object: its id, percent-encoded
    sent = provider.requests[-1]
    assert sent.method == "PATCH" and sent.url.raw_path == b"/tenant/api/v1/clients/c%2F1"
    assert json.loads(sent.content) == {"scopes": ["read"]}  # nothing else is changed

    provider.overrides[api_path("/clients/c/1/secret")] = [
        httpx2.Response(200, json={**CLIENT, "client_secret": "new",
                                   "previous_secret_expires_at": "2026-01-01T01:00:00Z"})] * 2
    rotated = client.clients.rotate_secret("c/1", keep_old_for=timedelta(hours=1))
    assert json.loads(provider.requests[-1].content) == {"keep_old_for": 3600}
    client.clients.rotate_secret("c/1", keep_old_for=0.25)  # rounded up: still kept
    assert json.loads(provider.requests[-1].content) == {"keep_old_for": 1}
    assert rotated.previous_secret_expires_at is not None

    provider.overrides[api_path("/clients/c/1")] = [httpx2.Response(204)]
    assert client.clients.delete("c/1") is None
    assert provider.requests[-1].method == "DELETE"

    provider.overrides[api_path("/keys/rotate")] = [
        httpx2.Response(200, json={"items": [KEY], "count": 1})]
    keys = client.keys.rotate()
    assert keys.total == 1 and keys[0].status == "active" and keys[0].retired_at is None
    provider.overrides[api_path("/keys/k 1/withdraw")] = [
        httpx2.Response(200, json={"items": [KEY], "count": 1})]
    assert client.keys.withdraw("k 1")[0].kid == "k1"
    sent = provider.requests[-1]
    assert sent.method == "POST" and sent.url.raw_path == b"/tenant/api/v1/keys/k%201/withdraw"


def test_client_and_key_answers_outside_the_contract(make_client: Any,
                                                    provider: FakeProvider) -> None:
    client = make_client()
    for answer in ({**CLIENT, "client_id": None}, {**CLIENT, "redirect_uris": "x"},
                   {**CLIENT, "scopes": [1]}):
        provider.overrides[api_path("/clients/c1")] = [httpx2.Response(200, json=answer)]
        with pytest.raises(ProtocolError):
            client.clients.get("c1")
    provider.overrides[api_path("/keys")] = [
        httpx2.Response(200, json={"items": [{**KEY, "status": None}], "count": 1})]
    with pytest.raises(ProtocolError):
        client.keys.list()


def test_client_calls_refuse_bad_arguments_before_sending(make_client: Any,
                                                          provider: FakeProvider) -> None:
    client = make_client()
    for call in (lambda: client.clients.get(""), lambda: client.clients.delete(None),
                 lambda: client.clients.rotate_secret("c1", keep_old_for=-1),
                 lambda: client.clients.rotate_secret("c1", keep_old_for="60"),
                 lambda: client.clients.rotate_secret("c1", keep_old_for=float("inf")),
                 lambda: client.clients.rotate_secret("c1", keep_old_for=float("nan")),
                 lambda: client.clients.create("x", redirect_uris=[""]),
                 lambda: client.clients.update("c1", grant_types=[3])):
        with pytest.raises(ConfigurationError):
            call()
    assert provider.requests == []


def test_email_verified_is_read_only_from_a_json_boolean() -> None:
    from bastion import User

    assert User.from_claims({"sub": "u1", "email_verified": True}).email_verified is True
    assert User.from_claims({"sub": "u1", "email_verified": False}).email_verified is False
    assert User.from_claims({"sub": "u1", "email_verified": "true"}).email_verified is None
    assert User.from_claims({"sub": "u1"}).email_verified is None  # not shared
