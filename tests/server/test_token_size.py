"""No access token is handed out that Bastion and the SDK would refuse (over
``MAX_TOKEN_LENGTH``): a client's scopes are bounded when it is registered, and every
grant signs its token before it stores anything for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from api_helpers import PASSWORD, Api

from bastion.oauth import pkce
from bastion.oauth.jose import MAX_TOKEN_LENGTH, PrivateKey
from bastion.server.models import Client
from bastion.server.services import rbac, secrets
from bastion.server.services.clients import MAX_SCOPE_LENGTH, create_client
from bastion.server.services.errors import InvalidInput
from bastion.server.services.tokens import issue_access_token
from bastion.server.settings import MAX_ISSUER_LENGTH
from bastion.server.storage.tables import grants, refresh_tokens
from support import callback_params, sign_in

TOO_LONG = f"over the {MAX_TOKEN_LENGTH} that Bastion and its SDK accept"


def _scopes(length: int) -> list[str]:
    """Scopes of 200 characters or fewer that come to ``length`` joined by spaces."""
    out: list[str] = []
    while (left := length - len(" ".join(out)) - (1 if out else 0)) > 0:
        out.append(f"s{len(out):03}".ljust(min(left, 200), "x"))
    assert len(" ".join(out)) == length
    return out


def _permissions_at_the_budget() -> dict[str, list[str]]:
    """``roles`` and ``permissions`` of exactly ``rbac.CLAIMS_BUDGET`` bytes."""
    claims = {"roles": ["r" * 100], "permissions": [f"p{i:03}:" + "x" * 190 for i in range(40)]}
    claims["permissions"][-1] += "y" * (rbac.CLAIMS_BUDGET - rbac.claims_size(claims))
    assert rbac.claims_size(claims) == rbac.CLAIMS_BUDGET
    return claims


class _Keys:
    def __init__(self, alg: str) -> None:
        self.key = PrivateKey.generate(f"access-20260101-{'f' * 8}", alg)

    async def signer(self, use: str) -> PrivateKey:
        return self.key


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS256", "PS256", "EdDSA"])
async def test_the_largest_token_a_registration_allows_fits(settings, alg: str) -> None:
    """The most scope a client may register, the most roles a user may hold, the
    longest client id, and the longest issuer: still accepted."""
    settings = settings.model_copy(update={"issuer": "https://" + "i" * (MAX_ISSUER_LENGTH - 8)})
    scope = " ".join(_scopes(MAX_SCOPE_LENGTH))
    issued = await issue_access_token(
        _Keys(alg), settings, subject=str(uuid.uuid4()), client_id="c" * 64,  # type: ignore[arg-type]
        scope=scope, extra={"gid": "g" * 24, "org": str(uuid.uuid4()),
                            **_permissions_at_the_budget()})
    assert len(issued.token) <= MAX_TOKEN_LENGTH


async def test_a_client_cannot_register_more_scope_than_a_token_can_carry(api: Api) -> None:
    http = api.app.http
    r = await http.post("/api/v1/clients", json={
        "name": "wide", "grant_types": ["client_credentials"],
        "scopes": _scopes(MAX_SCOPE_LENGTH + 1)})
    assert r.status_code == 422, r.text[:300]
    assert f"over the {MAX_SCOPE_LENGTH} a token can carry" in r.json()["detail"]
    r = await http.post("/api/v1/clients", json={
        "name": "wide", "grant_types": ["client_credentials"], "scopes": _scopes(MAX_SCOPE_LENGTH)})
    assert r.status_code == 201, r.text[:300]
    r = await http.patch(f"/api/v1/clients/{r.json()['client_id']}",
                         json={"scopes": [*_scopes(MAX_SCOPE_LENGTH), "one-more"]})
    assert r.status_code == 422 and "register fewer or shorter scopes" in r.json()["detail"]
    with pytest.raises(InvalidInput, match="over the 2048"):  # the CLI's path
        await create_client(api.app.ctx.storage, name="cli", grant_types=["client_credentials"],
                            scopes=_scopes(MAX_SCOPE_LENGTH + 1))


async def _wide_client(api: Api, is_public: bool = False, **kwargs) -> tuple[Client, str]:
    """A client registered, before the bound, with about 6 KB of scopes."""
    plain = secrets.new_secret()
    client = Client(client_id=uuid.uuid4().hex, name="wide", is_public=is_public,
                    secret_digest=None if is_public else secrets.digest(plain),
                    scopes=("openid", *_scopes(6000)), created_at=datetime.now(UTC), **kwargs)
    await api.app.ctx.storage.create_client(client)
    return client, plain


async def _member(api: Api, name: str, permissions: int) -> str:
    """A user ``name`` of acme whose role there carries ``permissions`` of 190
    characters (40: near the claims budget); the role's URL."""
    http = api.app.http
    user = (await http.post("/api/v1/users", json={
        "username": name, "email": f"{name}@example.com", "password": PASSWORD})).json()
    await http.post("/api/v1/organizations", json={"name": "acme"})
    r = await http.post("/api/v1/organizations/acme/roles", json={
        "name": "staff", "permissions": [f"p{i:03}:" + "x" * 185 for i in range(permissions)]})
    assert r.status_code == 201, r.text[:300]
    r = await http.post(f"/api/v1/organizations/acme/users/{user['id']}/roles",
                        json={"add": ["staff"]})
    assert r.status_code == 200, r.text[:300]
    return user["id"]


async def _count(api: Api, table: sa.Table, client_id: str) -> int:
    async with api.app.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
        return (await conn.execute(sa.select(sa.func.count()).select_from(table)
                                   .where(table.c.client_id == client_id))).scalar_one()


async def test_a_password_sign_in_never_gets_a_token_too_long_to_use(api: Api) -> None:
    http = api.app.http
    await _member(api, "max", 40)
    client, secret = await _wide_client(api, grant_types=("password", "refresh_token"))
    sign_in_ = {"grant_type": "password", "username": "max", "password": PASSWORD,
                "organization": "acme"}
    r = await http.post("/oauth/token", auth=(client.client_id, secret), data=sign_in_)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text[:300]
    assert TOO_LONG in r.json()["error_description"]
    assert "ask for fewer scopes" in r.json()["error_description"]
    assert await _count(api, grants, client.client_id) == 0  # nothing left to refresh
    assert await _count(api, refresh_tokens, client.client_id) == 0
    r = await http.post("/oauth/token", auth=(client.client_id, secret),
                        data={**sign_in_, "scope": "openid"})  # fewer scopes: it fits
    assert r.status_code == 200, r.text[:300]
    r = await http.get("/oauth/userinfo", headers={
        "Authorization": "Bearer " + r.json()["access_token"]})
    assert r.status_code == 200, r.text[:300]


async def test_a_refresh_or_reissue_never_mints_a_token_too_long_to_use(api: Api) -> None:
    http = api.app.http
    user_id = await _member(api, "max", 5)
    client, secret = await _wide_client(api, grant_types=("password", "refresh_token"))
    tokens = (await http.post("/oauth/token", auth=(client.client_id, secret), data={
        "grant_type": "password", "username": "max", "password": PASSWORD,
        "organization": "acme"})).json()
    assert len(tokens["access_token"]) < MAX_TOKEN_LENGTH
    role = "/api/v1/organizations/acme/roles/staff/permissions"
    grown = [f"q{i:03}:" + "x" * 185 for i in range(35)]  # 40 in all: within the budget
    assert (await http.post(role, json={"permissions": grown})).status_code == 200
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    r = await http.post("/oauth/token", auth=(client.client_id, secret), data=refresh)
    assert r.status_code == 400 and TOO_LONG in r.json()["error_description"], r.text[:300]
    url = f"/api/v1/organizations/acme/users/{user_id}/roles"
    r = await http.post(url, json={"reissue": {"refresh_token": tokens["refresh_token"]}})
    assert r.status_code == 400, r.text[:300]
    assert "no tokens were issued" in r.json()["detail"] and TOO_LONG in r.json()["detail"]
    # Nothing was spent: once the role is trimmed, the same refresh token works.
    r = await http.delete(role, params=[("permission", p) for p in grown])
    assert r.status_code == 200, r.text[:300]
    r = await http.post("/oauth/token", auth=(client.client_id, secret), data=refresh)
    assert r.status_code == 200, r.text[:300]


async def test_a_code_exchange_never_gets_a_token_too_long_to_use(api: Api) -> None:
    http = api.app.http
    await _member(api, "max", 40)
    client, _ = await _wide_client(api, is_public=True,
                                   grant_types=("authorization_code", "refresh_token"),
                                   redirect_uris=("https://spa.example/cb",))
    verifier = pkce.new_verifier()
    url = "/oauth/authorize?" + "&".join([
        "response_type=code", f"client_id={client.client_id}",
        "redirect_uri=https://spa.example/cb", "organization=acme",
        f"code_challenge={pkce.challenge(verifier)}", "code_challenge_method=S256"])
    del http.headers["Authorization"]
    code = callback_params(await sign_in(http, url, "max", PASSWORD))["code"]
    r = await http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": client.client_id,
        "redirect_uri": "https://spa.example/cb", "code_verifier": verifier})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text[:300]
    assert TOO_LONG in r.json()["error_description"]
    assert await _count(api, refresh_tokens, client.client_id) == 0
    async with api.app.ctx.storage.engine.connect() as conn:  # type: ignore[attr-defined]
        revoked = (await conn.execute(sa.select(grants.c.revoked_at).where(
            grants.c.client_id == client.client_id))).scalars().all()
    assert len(revoked) == 1 and revoked[0] is not None  # the code is spent: no more use


async def test_a_client_token_too_long_to_use_is_refused_as_too_much_scope(api: Api) -> None:
    """A client's own token carries no roles: "invalid_grant" with advice about them was
    the wrong answer for a client registered with too many scopes."""
    plain = secrets.new_secret()
    client = Client(client_id=uuid.uuid4().hex, name="widest", is_public=False,
                    secret_digest=secrets.digest(plain), scopes=tuple(_scopes(13000)),
                    grant_types=("client_credentials",), created_at=datetime.now(UTC))
    await api.app.ctx.storage.create_client(client)
    r = await api.app.http.post("/oauth/token", auth=(client.client_id, plain),
                                data={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope", r.text[:300]
    assert "ask for fewer scopes" in r.json()["error_description"]
    r = await api.app.http.post("/oauth/token", auth=(client.client_id, plain), data={
        "grant_type": "client_credentials", "scope": _scopes(13000)[0]})
    assert r.status_code == 200, r.text[:300]
