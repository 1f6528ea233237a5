"""The REST API for OAuth clients and signing keys, in process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import jwt
import pytest
from api_helpers import PASSWORD, Api

from bastion.server.services import secrets
from bastion.server.services.clients import rotate_secret, secret_generation
from bastion.server.services.tokens import issue_access_token
from bastion.server.services.users import create_user
from bastion.server.storage.tables import clients

WEB = {"name": "Shop", "redirect_uris": ["https://shop.example/cb"]}


async def _own_token_answer(api: Api, client_id: str, secret: str) -> httpx2.Response:
    return await api.app.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                   auth=(client_id, secret), headers={"Authorization": ""})


async def token_for(api: Api, client_id: str, secret: str) -> int:
    return (await _own_token_answer(api, client_id, secret)).status_code


async def own_token(api: Api, client_id: str, secret: str) -> str:
    """A client-credentials access token of the client, got with ``secret``."""
    return str((await _own_token_answer(api, client_id, secret)).json()["access_token"])


async def active(api: Api, token: str) -> bool:
    """Introspection's ``active`` for ``token``."""
    r = await api.app.http.post("/oauth/introspect", data={"token": token},
                                auth=(api.web_id, api.web_secret), headers={"Authorization": ""})
    return bool(r.json()["active"])


async def new_worker(api: Api) -> tuple[str, str]:
    """A new confidential client: its id and secret."""
    made = (await api.app.http.post("/api/v1/clients", json={"name": "Worker"})).json()
    return made["client_id"], made["client_secret"]


async def test_a_token_of_the_previous_secret_minted_after_its_overlap_is_refused(
        api: Api) -> None:
    # What an instance whose copy of the client predates the overlap's end may mint:
    # its sgen names the previous secret, whose time is up.
    cid, secret = await new_worker(api)
    await rotate_secret(api.app.ctx.storage, cid, keep_old_for=600)
    async with api.app.ctx.storage.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(clients.update().where(clients.c.client_id == cid).values(
            previous_secret_expires_at=datetime.now(UTC) - timedelta(seconds=5)))
    api.app.ctx.clients.forget(cid)
    ctx = api.app.ctx
    minted = await issue_access_token(
        ctx.keys, ctx.settings, subject=cid, client_id=cid, scope="",
        extra={"sgen": secret_generation(secrets.digest(secret))})
    assert not await active(api, minted.token)


async def test_only_an_administrator_manages_clients_and_keys(api: Api) -> None:
    http = api.app.http
    await create_user(api.app.ctx.storage, api.app.ctx.passwords, username="bob",
                      email="bob@example.com", password=PASSWORD)
    user = api.bearer(await api.user_token("bob"))
    for method, path in [("GET", "/api/v1/clients"), ("POST", "/api/v1/clients"),
                         ("GET", f"/api/v1/clients/{api.web_id}"),
                         ("PATCH", f"/api/v1/clients/{api.web_id}"),
                         ("POST", f"/api/v1/clients/{api.web_id}/secret"),
                         ("DELETE", f"/api/v1/clients/{api.web_id}"),
                         ("GET", "/api/v1/keys"), ("POST", "/api/v1/keys/rotate")]:
        json = WEB if method in ("POST", "PATCH") and "secret" not in path else None
        r = await http.request(method, path, headers=user, json=json)
        assert r.status_code == 403, (method, path, r.text)
        r = await http.request(method, path, headers={"Authorization": ""}, json=json)
        assert r.status_code == 401, (method, path)
    assert await api.app.ctx.storage.get_client(api.web_id) is not None


async def test_a_registered_client_shows_its_secret_once_and_stores_a_digest(api: Api) -> None:
    http = api.app.http
    r = await http.post("/api/v1/clients", json={"name": "Worker",
                                                 "grant_types": ["client_credentials"]})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created.pop("client_secret")
    assert created["is_public"] is False and created["grant_types"] == ["client_credentials"]
    stored = await api.app.ctx.storage.get_client(created["client_id"])
    assert stored is not None and stored.secret_digest == secrets.digest(secret)
    fetched = (await http.get(f"/api/v1/clients/{created['client_id']}")).json()
    assert fetched == created and "client_secret" not in fetched
    listing = (await http.get("/api/v1/clients", params={"limit": 100})).json()
    assert created in listing["items"] and listing["count"] == len(listing["items"])
    assert secret not in (await http.get("/api/v1/events")).text
    assert await token_for(api, created["client_id"], secret) == 200

    public = (await http.post("/api/v1/clients", json={**WEB, "is_public": True})).json()
    assert public["client_secret"] is None
    assert public["grant_types"] == ["authorization_code", "refresh_token"]


@pytest.mark.parametrize(("body", "needle"), [
    ({"name": "x", "redirect_uris": ["http://shop.example/cb"]}, "https"),
    ({"name": "x", "redirect_uris": ["https://shop.example/cb#frag"]}, "fragment"),
    ({"name": "x", "grant_types": ["authorization_code"]}, "redirect URI"),
    ({"name": "x", "is_public": True, "grant_types": ["client_credentials"]}, "public"),
    ({"name": "x", "grant_types": ["implicit"]}, "grant_types"),
    ({"name": "x", "scopes": ["a\"b"]}, "scope"),
    ({"name": " "}, "name"),
    ({"name": "x", "client_secret": "mine"}, "client_secret"),
    ({"name": "x\u0000"}, "name"),
    # shown in the text of sign-in mail: a line of its own there could set a link
    ({"name": "App\n\nhttps://evil.example/login"}, "one line"),
    ({"name": "App\u2028x"}, "one line"),
    ({"name": "Pay\u202eelgoog"}, "one line"),  # a bidi override reverses what follows
    # it defaulted to client_credentials, and the error named that grant
    ({"name": "x", "is_public": True}, "authorization_code needs at least one redirect URI"),
    ({"name": "x", "is_public": 0}, "is_public"),  # a JSON boolean, not one coerced
])
async def test_bad_registrations_name_the_field(api: Api, body, needle) -> None:
    r = await api.app.http.post("/api/v1/clients", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert needle in r.text


async def test_a_name_stored_before_the_rules_may_be_sent_back_unchanged(api: Api) -> None:
    """A client whose name has a tab (stored before names were one line) is updated by
    a tool that sends the whole client back: only a new name is checked."""
    http = api.app.http
    created = (await http.post("/api/v1/clients", json={"name": "Worker"})).json()
    async with api.app.ctx.storage.engine.begin() as conn:
        await conn.execute(clients.update().where(
            clients.c.client_id == created["client_id"]).values(name="Old\tname"))
    path = f"/api/v1/clients/{created['client_id']}"
    r = await http.patch(path, json={"name": "Old\tname", "scopes": ["read"]})
    assert r.status_code == 200 and r.json()["scopes"] == ["read"], r.text
    assert (await http.patch(path, json={"name": "New\tname"})).status_code == 422


async def test_an_update_changes_what_is_given_and_applies_at_once(api: Api) -> None:
    http = api.app.http
    created = (await http.post("/api/v1/clients", json=WEB)).json()
    path = f"/api/v1/clients/{created['client_id']}"
    query = {"response_type": "code", "client_id": created["client_id"],
             "redirect_uri": "https://shop.example/new", "code_challenge": "x" * 43,
             "code_challenge_method": "S256", "scope": "openid"}
    assert (await http.get("/oauth/authorize", params=query)).status_code == 400
    r = await http.patch(path, json={"redirect_uris": ["https://shop.example/new"],
                                     "name": "Shop 2"})
    assert r.status_code == 200, r.text
    assert r.json()["redirect_uris"] == ["https://shop.example/new"]
    assert r.json()["name"] == "Shop 2" and r.json()["grant_types"] == created["grant_types"]
    # the cached copy was dropped: the new URI is accepted, the old one refused
    assert (await http.get("/oauth/authorize", params=query)).status_code != 400
    old = {**query, "redirect_uri": "https://shop.example/cb"}
    assert (await http.get("/oauth/authorize", params=old)).status_code == 400

    for body, needle in [({"redirect_uris": []}, "redirect URI"),
                         ({"grant_types": []}, "grant_types"),
                         ({"is_public": True}, "is_public")]:
        r = await http.patch(path, json=body)
        assert r.status_code == 422 and needle in r.text, r.text
    assert (await http.get(path)).json()["redirect_uris"] == ["https://shop.example/new"]
    assert (await http.patch("/api/v1/clients/nope", json={"name": "x"})).status_code == 404
    events = (await http.get("/api/v1/events", params={"action": "client.update"})).json()
    assert events["items"][0]["target"] == created["client_id"]


async def test_a_new_secret_ends_the_old_one_at_once_or_after_the_overlap(api: Api) -> None:
    http = api.app.http
    created = (await http.post("/api/v1/clients", json={"name": "Worker"})).json()
    cid, first = created["client_id"], created["client_secret"]
    path = f"/api/v1/clients/{cid}/secret"

    r = await http.post(path, json={"keep_old_for": 3600})
    assert r.status_code == 200, r.text
    second = r.json()["client_secret"]
    assert second and second != first
    until = datetime.fromisoformat(r.json()["previous_secret_expires_at"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    assert await token_for(api, cid, first) == 200  # both work during the overlap
    assert await token_for(api, cid, second) == 200

    # past the overlap, the old secret is refused
    storage = api.app.ctx.storage
    await storage.update_client(cid, lambda c: {"previous_secret_expires_at": datetime.now(UTC)})
    api.app.ctx.clients.forget(cid)
    assert await token_for(api, cid, first) == 401
    assert await token_for(api, cid, second) == 200
    shown = (await http.get(f"/api/v1/clients/{cid}")).json()
    assert shown["previous_secret_expires_at"] is None  # ended: only the new one works

    third = (await http.post(path)).json()  # no body: the old secret ends at once
    assert third["previous_secret_expires_at"] is None
    assert await token_for(api, cid, second) == 401
    assert await token_for(api, cid, third["client_secret"]) == 200

    public = (await http.post("/api/v1/clients", json={**WEB, "is_public": True})).json()
    r = await http.post(f"/api/v1/clients/{public['client_id']}/secret")
    assert r.status_code == 422 and "public" in r.text
    for wrong in (8 * 24 * 3600, -1, "60", True, 1.5):
        r = await http.post(path, json={"keep_old_for": wrong})
        assert r.status_code == 422 and "keep_old_for" in r.text, wrong
    assert (await http.post("/api/v1/clients/nope/secret")).status_code == 404
    log = (await http.get("/api/v1/events", params={"target": cid})).text
    assert "client.secret.rotate" in log and third["client_secret"] not in log


async def test_deleting_a_client_ends_every_token_it_holds(api: Api) -> None:
    http, ctx = api.app.http, api.app.ctx
    await create_user(ctx.storage, ctx.passwords, username="carol", email="carol@example.com",
                      password=PASSWORD)
    user_tokens = await api.user_token("carol")  # through the "web" client
    other = (await http.post("/api/v1/clients", json={"name": "Resource server"})).json()
    introspector = (other["client_id"], other["client_secret"])

    async def active(token: str) -> bool:
        r = await http.post("/oauth/introspect", data={"token": token}, auth=introspector,
                            headers={"Authorization": ""})
        return bool(r.json()["active"])

    assert await active(user_tokens["access_token"])
    assert await active(api.admin["access_token"])
    r = await http.delete(f"/api/v1/clients/{api.web_id}")
    assert r.status_code == 204
    assert await ctx.storage.get_client(api.web_id) is None
    assert not await active(user_tokens["access_token"])
    refreshed = await http.post("/oauth/token", auth=(api.web_id, api.web_secret), data={
        "grant_type": "refresh_token", "refresh_token": user_tokens["refresh_token"]},
        headers={"Authorization": ""})
    assert refreshed.status_code == 401 and refreshed.json()["error"] == "invalid_client"
    userinfo = await http.get("/oauth/userinfo", headers=api.bearer(user_tokens))
    assert userinfo.status_code == 401
    # again: a retried DELETE is answered the same, recorded once; an unknown id is 404
    assert (await http.delete(f"/api/v1/clients/{api.web_id}")).status_code == 204
    assert (await http.delete("/api/v1/clients/never")).status_code == 404
    r = await http.post("/api/v1/clients", json={"name": "x", "grant_types": ["password"]})
    assert r.json()["client_id"] != api.web_id

    # a client's own token (no grant) dies with it too: the admin client deletes itself
    admin_id = jwt.decode(api.admin["access_token"], options={"verify_signature": False})[
        "client_id"]
    assert (await http.delete(f"/api/v1/clients/{admin_id}")).status_code == 204
    assert not await active(api.admin["access_token"])
    assert (await http.get("/api/v1/clients")).status_code == 401
    events = await ctx.storage.list_events({"action": "client.delete"}, 10, 0)
    assert sorted(e.target or "" for e in events[0]) == sorted([api.web_id, admin_id])


async def test_keys_are_listed_without_private_parts_and_rotate(api: Api) -> None:
    http = api.app.http
    before = (await http.get("/api/v1/keys")).json()
    assert before["count"] == 4  # an active and a next key for each use
    assert {(k["use"], k["status"]) for k in before["items"]} == {
        ("access", "active"), ("access", "next"), ("id", "active"), ("id", "next")}
    assert all(set(k) == {"kid", "alg", "use", "status", "created_at", "activated_at",
                          "retired_at"} for k in before["items"])
    waiting = {k["use"]: k["kid"] for k in before["items"] if k["status"] == "next"}

    r = await http.post("/api/v1/keys/rotate")
    assert r.status_code == 200, r.text
    after = {k["kid"]: k for k in r.json()["items"]}
    assert all(after[kid]["status"] == "active" for kid in waiting.values())
    assert sum(k["status"] == "retired" for k in after.values()) == 2
    assert sum(k["status"] == "next" for k in after.values()) == 2
    # this instance signs with the new keys at once, and the JWKS shows them
    token = (await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                             auth=(api.app.client_id, api.app.client_secret),
                             headers={"Authorization": ""})).json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == waiting["access"]
    published = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
    assert set(after) <= published
    # the admin token signed with the retired key still works
    assert (await http.get("/api/v1/keys")).status_code == 200
    events = (await http.get("/api/v1/events", params={"action": "keys.rotate"})).json()
    assert events["items"][0]["detail"]["kids"] == [waiting["access"], waiting["id"]]


async def test_a_code_of_a_deleted_client_cannot_be_exchanged(api: Api) -> None:
    from bastion.oauth import pkce
    from support import callback_params, sign_in

    http, ctx = api.app.http, api.app.ctx
    await create_user(ctx.storage, ctx.passwords, username="dan", email="dan@example.com",
                      password=PASSWORD)
    spa = (await http.post("/api/v1/clients", json={**WEB, "is_public": True,
                                                    "scopes": ["openid"]})).json()
    verifier = pkce.new_verifier()
    url = "/oauth/authorize?" + "&".join([
        "response_type=code", f"client_id={spa['client_id']}", "scope=openid",
        "redirect_uri=https://shop.example/cb",
        f"code_challenge={pkce.challenge(verifier)}", "code_challenge_method=S256"])
    admin = http.headers.pop("Authorization")
    code = callback_params(await sign_in(http, url, "dan", PASSWORD))["code"]
    r = await http.delete(f"/api/v1/clients/{spa['client_id']}",
                          headers={"Authorization": admin})
    assert r.status_code == 204
    r = await http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": spa["client_id"],
        "redirect_uri": "https://shop.example/cb", "code_verifier": verifier})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_admin_rights_follow_the_clients_registration(api: Api) -> None:
    """A client's own token is an admin's only while the client holds bastion:admin: a
    token without the scope, or of a client that lost it, gets 403."""
    http = api.app.http
    plain = (await http.post("/api/v1/clients", json={"name": "Plain", "scopes": ["read"]}
                             )).json()
    r = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(plain["client_id"], plain["client_secret"]),
                        headers={"Authorization": ""})
    plain_token = {"Authorization": "Bearer " + r.json()["access_token"]}
    for path in ("/api/v1/clients", "/api/v1/keys"):
        assert (await http.get(path, headers=plain_token)).status_code == 403

    second = (await http.post("/api/v1/clients", json={"name": "Ops",
                                                       "scopes": ["bastion:admin"]})).json()
    r = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(second["client_id"], second["client_secret"]),
                        headers={"Authorization": ""})
    ops = {"Authorization": "Bearer " + r.json()["access_token"]}
    assert (await http.get("/api/v1/keys", headers=ops)).status_code == 200
    await http.patch(f"/api/v1/clients/{second['client_id']}", json={"scopes": ["read"]})
    assert (await http.get("/api/v1/keys", headers=ops)).status_code == 403


async def test_an_immediate_rotation_ends_the_clients_own_tokens_an_overlap_does_not(
    api: Api,
) -> None:
    http = api.app.http
    cid, first = await new_worker(api)
    before = await own_token(api, cid, first)
    overlap = (await http.post(f"/api/v1/clients/{cid}/secret", json={"keep_old_for": 600})
               ).json()
    assert await active(api, before)  # a planned rotation: tokens live on
    in_overlap = await own_token(api, cid, first)  # the old secret, still good
    during = await own_token(api, cid, overlap["client_secret"])
    assert await active(api, in_overlap)
    # A second overlap while the first runs: the first secret ends now, the second is kept.
    third = (await http.post(f"/api/v1/clients/{cid}/secret", json={"keep_old_for": 600})
             ).json()
    assert await token_for(api, cid, first) == 401
    assert await token_for(api, cid, overlap["client_secret"]) == 200
    assert await token_for(api, cid, third["client_secret"]) == 200
    assert not await active(api, before) and not await active(api, in_overlap)  # the first's
    assert await active(api, during)

    leaked = (await http.post(f"/api/v1/clients/{cid}/secret")).json()  # ends them
    assert await active(api, await own_token(api, cid, leaked["client_secret"]))
    assert not await active(api, during)  # in the rotation's very second too


async def test_a_token_got_with_a_secret_a_stale_cache_still_held_ends_with_it(
    api: Api,
) -> None:
    # Another instance (or the CLI) rotated the secret: this one's cache still holds the
    # old record for up to cache_ttl and takes the old secret. The token it mints then
    # must end once the rotation is seen, not live on for its whole ttl.
    cid, secret = await new_worker(api)
    assert await token_for(api, cid, secret) == 200  # cached now
    await rotate_secret(api.app.ctx.storage, cid)  # not through this instance
    token = await own_token(api, cid, secret)  # the stale cache takes the old secret
    api.app.ctx.clients.forget(cid)  # its ttl has passed (or: any other instance)
    assert not await active(api, token)


async def test_a_stale_cache_accepts_a_token_got_with_the_new_secret_elsewhere(
    api: Api,
) -> None:
    cid, secret = await new_worker(api)
    assert await token_for(api, cid, secret) == 200  # cached now
    new = await rotate_secret(api.app.ctx.storage, cid, keep_old_for=600)  # elsewhere
    assert new.client.secret_digest is not None
    ctx = api.app.ctx
    minted = await issue_access_token(  # as the instance that saw the rotation would
        ctx.keys, ctx.settings, subject=cid, client_id=cid, scope="",
        extra={"sgen": secret_generation(new.client.secret_digest)})
    assert await active(api, minted.token)


async def test_patch_refuses_nulls_and_an_empty_patch_changes_nothing(api: Api) -> None:
    http = api.app.http
    made = (await http.post("/api/v1/clients", json=WEB)).json()
    path = f"/api/v1/clients/{made['client_id']}"
    r = await http.patch(path, json={"name": None, "scopes": None})
    assert r.status_code == 422 and "name, scopes: must not be null" in r.text
    r = await http.patch(path, json={})
    assert r.status_code == 200 and r.json()["name"] == "Shop"
    events = (await http.get("/api/v1/events", params={"action": "client.update"})).json()
    assert events["count"] == 0


async def test_answers_that_carry_a_secret_are_not_cached(api: Api) -> None:
    http = api.app.http
    made = await http.post("/api/v1/clients", json={"name": "Worker"})
    rotated = await http.post(f"/api/v1/clients/{made.json()['client_id']}/secret")
    for r in (made, rotated):
        assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"


async def test_a_withdrawn_key_leaves_the_jwks_and_its_tokens_stop_working(api: Api) -> None:
    http = api.app.http
    token = api.admin["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]  # the access key that signs now
    assert (await http.get("/api/v1/keys")).status_code == 200
    r = await http.post(f"/api/v1/keys/{kid}/withdraw")
    assert r.status_code == 200, r.text
    after = r.json()["items"]
    assert kid not in {k["kid"] for k in after}
    assert {(k["use"], k["status"]) for k in after} >= {
        ("access", "active"), ("access", "next"), ("id", "active"), ("id", "next")}
    published = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
    assert kid not in published
    # every token it signed is refused here at once: the admin token that asked, too
    assert (await http.get("/api/v1/keys")).status_code == 401
    r = await http.post("/oauth/introspect", data={"token": token},
                        auth=(api.web_id, api.web_secret), headers={"Authorization": ""})
    assert r.json() == {"active": False}
    fresh = (await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                             auth=(api.app.client_id, api.app.client_secret),
                             headers={"Authorization": ""})).json()["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] != kid
    assert kid not in str(api.app.ctx.keys._decrypted)  # its private key is forgotten
    events = await api.app.ctx.storage.list_events({"action": "keys.withdraw"}, 10, 0)
    assert [e.target for e in events[0]] == [kid]


async def test_withdrawing_an_unknown_key_is_404(api: Api) -> None:
    r = await api.app.http.post("/api/v1/keys/access-nope/withdraw")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


async def test_after_a_leak_of_every_key_none_of_them_signs_or_verifies(api: Api) -> None:
    """The procedure of docs/deployment.md: withdraw the next keys (each is replaced by a
    new one), then the keys that sign (each is replaced by that new next key), then the
    retired keys still published."""
    http = api.app.http
    assert (await http.post("/api/v1/keys/rotate")).status_code == 200  # retired keys too
    before = (await http.get("/api/v1/keys")).json()["items"]
    leaked = {k["kid"] for k in before}
    assert {k["status"] for k in before} == {"active", "next", "retired"}
    for status in ("next", "active", "retired"):
        for kid in [k["kid"] for k in before if k["status"] == status]:
            r = await http.post(f"/api/v1/keys/{kid}/withdraw")
            if r.status_code == 401:  # the admin token was signed by a withdrawn key
                token = (await http.post("/oauth/token", data={
                    "grant_type": "client_credentials"}, auth=await admin_credentials(api),
                    headers={"Authorization": ""})).json()["access_token"]
                http.headers["Authorization"] = "Bearer " + token
                r = await http.post(f"/api/v1/keys/{kid}/withdraw")
            assert r.status_code == 200, r.text
    after = (await http.get("/api/v1/keys")).json()["items"]
    assert not leaked & {k["kid"] for k in after}
    assert sorted((k["use"], k["status"]) for k in after) == [
        ("access", "active"), ("access", "next"), ("id", "active"), ("id", "next")]
    published = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
    assert not leaked & published


async def admin_credentials(api: Api) -> tuple[str, str]:
    """The admin client's id and a new secret for it (its first was not kept)."""
    admin_id = jwt.decode(api.admin["access_token"], options={"verify_signature": False})[
        "client_id"]
    new = await rotate_secret(api.app.ctx.storage, admin_id)
    api.app.ctx.clients.forget(admin_id)
    assert new.client_secret
    return admin_id, new.client_secret
