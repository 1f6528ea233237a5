"""``require_token`` (FastAPI) and ``BearerBackend`` (Starlette) in small apps.

Tokens are signed here (the fake provider's key) and the JWKS reaches the SDK
through ``MockTransport``; the apps are called in-process through ASGITransport.
No ``from __future__ import annotations``: FastAPI reads the routes' annotations,
which name dependencies built per test.
"""

import json
import pickle
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Depends, FastAPI
from sdk_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, FakeProvider
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion import AsyncClient, BastionError, ConfigurationError, User
from bastion.client.integrations.bearer import Guard, Principal, bearer_token, challenge
from bastion.client.integrations.fastapi import require_token
from bastion.client.integrations.starlette import BearerBackend, BearerPrincipal
from bastion.oauth.errors import InsufficientScope, InvalidToken
from bastion.oauth.jose import PrivateKey, b64url_encode

ORG_CLAIMS: dict[str, Any] = {
    "sub": "user-7",
    "scope": "openid read",
    "org": "org-1",
    "roles": ["editor"],
    "permissions": ["posts:read", "posts:write"],
}


@pytest.fixture
async def sdk(provider: FakeProvider) -> AsyncIterator[AsyncClient]:
    transport = httpx2.MockTransport(provider)
    async with AsyncClient(
        ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, transport=transport, retries=0
    ) as client:
        yield client


def fastapi_app(sdk: AsyncClient) -> FastAPI:
    app = FastAPI()
    Reader = Annotated[Principal, Depends(require_token(scopes=["read"], client=sdk))]
    Admin = Annotated[Principal, Depends(require_token(scopes="read admin", client=sdk))]
    Writer = Annotated[
        Principal, Depends(require_token(scopes=["read"], permissions=["posts:write"], client=sdk))
    ]
    Purger = Annotated[
        Principal,
        Depends(require_token(permissions="posts:write posts:delete", client=sdk, realm="blog")),
    ]

    @app.get("/me")
    async def me(
        user: Principal = Depends(require_token(client=sdk)),  # noqa: B008 - FastAPI's style
    ) -> dict[str, Any]:
        return {
            "subject": user.subject,
            "client_id": user.client_id,
            "scopes": sorted(user.scopes),
            "org": user.org,
            "roles": list(user.roles),
            "permissions": sorted(user.permissions),
        }

    @app.get("/orders")
    async def orders(user: Reader) -> dict[str, str]:
        return {"subject": user.subject}

    @app.get("/admin")
    async def admin(user: Admin) -> dict[str, str]:
        return {"subject": user.subject}

    @app.post("/posts")
    async def publish(user: Writer) -> dict[str, str | None]:
        return {"org": user.org}

    @app.delete("/posts")
    async def purge(user: Purger) -> dict[str, str]:
        return {"subject": user.subject}

    return app


@pytest.fixture
async def http(sdk: AsyncClient) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=fastapi_app(sdk))
    async with httpx2.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def alg_none(provider: FakeProvider) -> str:
    header = b64url_encode(json.dumps({"alg": "none", "typ": "at+jwt", "kid": "key-1"}).encode())
    signed = provider.sign()
    return f"{header}.{signed.split('.')[1]}."


# -- FastAPI: the dependency ------------------------------------------------------------


async def test_a_valid_token_yields_the_principal(
    http: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    response = await http.get("/me", headers=bearer(provider.sign(**ORG_CLAIMS)))
    assert response.status_code == 200
    assert response.json() == {
        "subject": "user-7",
        "client_id": CLIENT_ID,
        "scopes": ["openid", "read"],
        "org": "org-1",
        "roles": ["editor"],
        "permissions": ["posts:read", "posts:write"],
    }
    response = await http.get("/orders", headers=bearer(provider.sign()))  # Annotated form
    assert response.status_code == 200 and response.json() == {"subject": "svc"}


async def test_keys_are_fetched_once_then_no_request_per_call(
    http: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    for _ in range(5):
        assert (await http.get("/orders", headers=bearer(provider.sign()))).status_code == 200
    assert provider.calls["/tenant/jwks"] == 1
    assert sum(provider.calls.values()) == 2  # discovery and the JWKS, once


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwdw==", "Bearer", "Bearer   "])
async def test_no_bearer_token_is_a_challenge_without_error(
    http: httpx2.AsyncClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await http.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.json() == {"detail": "A Bearer access token is required."}


def _bad_tokens(provider: FakeProvider) -> dict[str, str]:
    now = int(time.time())
    signed = provider.sign()
    return {
        "malformed": "not-a-jwt",
        "expired": provider.sign(iat=now - 7200, exp=now - 3600),
        "wrong audience": provider.sign(aud="https://another-api.example"),
        "wrong issuer": provider.sign(iss="https://evil.example"),
        "alg none": alg_none(provider),
        "altered signature": signed[:-4] + ("AAAA" if not signed.endswith("AAAA") else "BBBB"),
        "unknown key": provider.sign(key=PrivateKey.generate("stranger", "ES256")),
        "not an access token": provider.sign(typ="JWT"),
        "no subject": provider.sign(sub=None),
    }


@pytest.mark.parametrize(
    "case",
    [
        "malformed",
        "expired",
        "wrong audience",
        "wrong issuer",
        "alg none",
        "altered signature",
        "unknown key",
        "not an access token",
        "no subject",
    ],
)
async def test_an_invalid_token_is_401_invalid_token(
    http: httpx2.AsyncClient, provider: FakeProvider, case: str
) -> None:
    response = await http.get("/orders", headers=bearer(_bad_tokens(provider)[case]))
    assert response.status_code == 401, case
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="api", error="invalid_token", error_description="')
    assert "scope=" not in challenge
    assert response.json()["detail"]  # a public description, never the token


async def test_the_description_says_why(http: httpx2.AsyncClient, provider: FakeProvider) -> None:
    now = int(time.time())
    response = await http.get("/me", headers=bearer(provider.sign(iat=now - 99, exp=now - 60)))
    assert response.headers["www-authenticate"] == (
        'Bearer realm="api", error="invalid_token", error_description="The token has expired."'
    )


async def test_a_missing_scope_is_403_insufficient_scope(
    http: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    response = await http.get("/admin", headers=bearer(provider.sign(scope="read write")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="The token lacks scope: admin.", scope="read admin"'
    )
    no_scope = provider.sign(scope=None)
    assert (await http.get("/orders", headers=bearer(no_scope))).status_code == 403


async def test_permissions_are_all_required(
    http: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    writer = provider.sign(**ORG_CLAIMS)
    response = await http.post("/posts", headers=bearer(writer))
    assert response.status_code == 200 and response.json() == {"org": "org-1"}

    reader = provider.sign(**{**ORG_CLAIMS, "permissions": ["posts:read"]})
    response = await http.post("/posts", headers=bearer(reader))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="The token lacks permission: posts:write.", scope="read"'
    )
    # Both are needed, and a route without scopes names none in its challenge.
    response = await http.delete("/posts", headers=bearer(writer))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="blog", error="insufficient_scope", '
        'error_description="The token lacks permission: posts:delete."'
    )
    no_claim = provider.sign(**{**ORG_CLAIMS, "permissions": None})
    assert (await http.post("/posts", headers=bearer(no_claim))).status_code == 403
    malformed = provider.sign(**{**ORG_CLAIMS, "permissions": "posts:write"})
    assert (await http.post("/posts", headers=bearer(malformed))).status_code == 403


async def test_unreachable_keys_are_503_without_challenge(
    http: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    provider.overrides["/tenant/jwks"] = [httpx2.Response(500)]
    response = await http.get("/orders", headers=bearer(provider.sign()))
    assert response.status_code == 503 and "www-authenticate" not in response.headers
    # The next request fetches the keys again.
    assert (await http.get("/orders", headers=bearer(provider.sign()))).status_code == 200


async def test_junk_is_401_and_costs_the_provider_nothing(
    http: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    """The keys were fetched for it first: with the provider down, junk got the fetch's
    503, and each piece of it cost the provider a request."""
    provider.overrides["/tenant/jwks"] = [httpx2.Response(500)]
    for junk in ("abc", "x.y.z", "a.b", "e30.e30.sig"):  # e30: {}, a header with no alg
        response = await http.get("/orders", headers=bearer(junk))
        assert response.status_code == 401, junk
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert provider.calls == {}


async def test_a_provider_refusing_its_keys_is_503_not_the_callers_fault(
    http: httpx2.AsyncClient, provider: FakeProvider
) -> None:
    """A 401 ``invalid_token`` on the JWKS (a proxy in front of the provider) was taken
    for a verdict on the caller's valid token: 401, with the proxy's text in it."""
    said = "proxy says: login required"
    provider.overrides["/tenant/jwks"] = [httpx2.Response(
        401, headers={"WWW-Authenticate": f'Bearer error="invalid_token", '
                      f'error_description="{said}"'},
        json={"error": "invalid_token", "error_description": said})]
    response = await http.get("/orders", headers=bearer(provider.sign()))
    assert response.status_code == 503 and "www-authenticate" not in response.headers
    assert said not in response.text
    assert (await http.get("/orders", headers=bearer(provider.sign()))).status_code == 200


DISCOVERY = "/tenant/.well-known/openid-configuration"


async def test_after_discovery_failed_each_load_is_one_request(provider: FakeProvider) -> None:
    """While the provider was down, every verification sent discovery with its retries
    and waited for them (31 s each against a provider that hung)."""
    transport = httpx2.MockTransport(provider)
    async with AsyncClient(ISSUER, transport=transport, retries=2) as sdk:
        provider.overrides[DISCOVERY] = [httpx2.Response(503) for _ in range(10)]
        with pytest.raises(BastionError):
            await sdk.verify_token(provider.sign())
        assert provider.calls[DISCOVERY] == 3  # the first load is retried
        for n in (4, 5):
            with pytest.raises(BastionError):
                await sdk.verify_token(provider.sign())
            assert provider.calls[DISCOVERY] == n
        provider.overrides[DISCOVERY] = []
        assert (await sdk.verify_token(provider.sign()))["sub"] == "svc"


async def test_a_token_naming_an_unknown_key_waits_for_one_request_only(
    provider: FakeProvider,
) -> None:
    """A refetch for an unknown (maybe forged) kid was sent with every retry, each
    waited for, and so were the requests following it: 31 s against a hung JWKS."""
    transport = httpx2.MockTransport(provider)
    async with AsyncClient(ISSUER, transport=transport, retries=2,
                           jwks_refresh_interval=0.0) as sdk:
        assert await sdk.verify_token(provider.sign())
        provider.overrides["/tenant/jwks"] = [httpx2.Response(503) for _ in range(10)]
        forged = provider.sign(key=PrivateKey.generate("forged", "ES256"))
        with pytest.raises(InvalidToken, match="unknown key"):
            await sdk.verify_token(forged)
        assert provider.calls["/tenant/jwks"] == 2  # the load, then one refetch
        assert await sdk.verify_token(provider.sign())  # the keys at hand go on


# -- FastAPI: a route answering with a user ----------------------------------------------


async def test_a_route_answers_with_user_to_dict_not_with_the_user(
    sdk: AsyncClient, provider: FakeProvider
) -> None:
    """``user.to_dict()`` is the user without tokens or client. The ``User`` itself is
    encoded by FastAPI with ``dataclasses.asdict``: bound to a client, it raises
    ``ConfigurationError`` naming ``to_dict`` (it raised a ``TypeError`` about a lock)."""
    tokens = await sdk.login_password("ann", "pw", "openid")
    claims = {**await sdk.userinfo(tokens), "created_at": "2026-01-02T03:04:05Z"}
    user = User.from_claims(claims, tokens, sdk)
    app = FastAPI()

    @app.get("/me")
    async def me() -> dict[str, Any]:
        return user.to_dict()

    @app.get("/user")
    async def whole():  # no annotation: FastAPI encodes it with jsonable_encoder
        return user

    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://app.test") as http:
        answer = await http.get("/me")
        assert answer.status_code == 200 and answer.json() == {
            "identifier": "user-1", "username": "ann", "email": None,
            "is_administrator": False, "created_at": "2026-01-02T03:04:05+00:00",
            "deleted_at": None, "updated_at": None, "email_verified": None, "erased_at": None}
        with pytest.raises(ConfigurationError, match=r"use its to_dict\(\)"):
            await http.get("/user")
    assert pickle.loads(pickle.dumps(user)).to_dict() == answer.json()  # noqa: S301


# -- the framework-free pieces ----------------------------------------------------------


def test_bearer_token_and_challenges() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer  abc ") == "abc"  # the scheme is case-insensitive
    assert challenge(None) == 'Bearer realm="api"'
    assert challenge(None, realm=None) == "Bearer"
    assert challenge(InvalidToken('bad "quote"\n'), realm='my "realm"') == (
        'Bearer realm="my ?realm?", error="invalid_token", error_description="bad ?quote??"'
    )
    assert challenge(InsufficientScope("x"), realm=None, scopes=["a", "b"]) == (
        'Bearer error="insufficient_scope", error_description="x", scope="a b"'
    )


def test_principal_from_claims() -> None:
    principal = Principal.from_claims({**ORG_CLAIMS, "roles": "editor"}, "the-token")
    assert principal.roles == ()  # a malformed list claim grants nothing
    assert principal.has_scopes("read", "openid") and not principal.has_scopes("write")
    assert principal.has_permissions("posts:write") and not principal.has_permissions("x")
    assert principal.token == "the-token" and "the-token" not in repr(principal)
    with pytest.raises(InvalidToken):
        Principal.from_claims({"sub": 7})


def test_client_or_using_not_both(sdk: AsyncClient) -> None:
    with pytest.raises(ConfigurationError):
        Guard(client=sdk, using="default")
    guard = Guard("read write", "a:b")
    assert guard.scopes == ("read", "write") and guard.permissions == ("a:b",)


def test_integrations_need_no_web_framework_until_asked() -> None:
    code = (
        "import sys\n"
        "for name in ('fastapi', 'starlette'): sys.modules[name] = None\n"
        "import bastion.client.integrations.bearer\n"
        "for name in ('fastapi', 'starlette'):\n"
        "    try:\n"
        "        __import__('bastion.client.integrations.' + name)\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == [
        "bastion.client.integrations.fastapi needs FastAPI; install it with: pip install fastapi",
        "bastion.client.integrations.starlette needs Starlette; install it with: "
        "pip install starlette",
    ]


# -- Starlette: the authentication backend ----------------------------------------------


def starlette_app(backend: BearerBackend) -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        user = request.user
        if not user.is_authenticated:
            return JSONResponse({"anonymous": True})
        assert isinstance(user, BearerPrincipal)
        return JSONResponse({"subject": user.identity, "scopes": request.auth.scopes})

    @requires("write")
    async def write(request: Request) -> JSONResponse:
        return JSONResponse({"subject": request.user.display_name})

    middleware = [Middleware(AuthenticationMiddleware, backend=backend, on_error=backend.on_error)]
    return Starlette(routes=[Route("/", whoami), Route("/write", write)], middleware=middleware)


async def call(app: Starlette, path: str, token: str | None = None) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://api.test") as http:
        return await http.get(path, headers=bearer(token) if token else {})


async def test_starlette_backend(sdk: AsyncClient, provider: FakeProvider) -> None:
    app = starlette_app(BearerBackend(scopes=["read"], client=sdk))
    response = await call(app, "/", provider.sign(scope="read"))
    assert response.json() == {"subject": "svc", "scopes": ["read"]}
    assert (await call(app, "/write", provider.sign(scope="read write"))).status_code == 200
    assert (await call(app, "/write", provider.sign(scope="read"))).status_code == 403

    response = await call(app, "/")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    response = await call(app, "/", "junk")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    response = await call(app, "/", provider.sign(scope="write"))
    assert response.status_code == 403
    assert response.headers["www-authenticate"].endswith(', scope="read"')


async def test_starlette_backend_with_anonymous_callers(
    sdk: AsyncClient, provider: FakeProvider
) -> None:
    app = starlette_app(BearerBackend(permissions="posts:read", client=sdk, allow_anonymous=True))
    assert (await call(app, "/")).json() == {"anonymous": True}
    assert (await call(app, "/", provider.sign(**ORG_CLAIMS))).status_code == 200
    assert (await call(app, "/", provider.sign())).status_code == 403  # no permissions
    assert (await call(app, "/", "junk")).status_code == 401  # a bad token is never anonymous



@pytest.mark.parametrize("leeway", [float("nan"), -1.0, float("inf")])
async def test_a_leeway_that_would_admit_expired_tokens_is_refused(
        sdk: AsyncClient, provider: FakeProvider, leeway: float) -> None:
    """``nan < 0`` is false: a NaN leeway passed every expiry check."""
    expired = provider.sign(exp=1, iat=0)
    with pytest.raises(ConfigurationError, match="leeway"):
        await sdk.verify_token(expired, leeway=leeway)
    with pytest.raises(ConfigurationError, match="leeway"):
        require_token(client=sdk, leeway=leeway)


@pytest.mark.parametrize("first", ["good", "junk"])
async def test_several_authorization_headers_are_a_bad_request(
        http: httpx2.AsyncClient, sdk: AsyncClient, provider: FakeProvider, first: str) -> None:
    """Which of two headers a proxy before the app read is anyone's guess (RFC 6750 3.1)."""
    tokens = {"good": provider.sign(), "junk": "junk"}
    headers = [("Authorization", f"Bearer {tokens[first]}"),
               ("Authorization", f"Bearer {tokens['junk' if first == 'good' else 'good']}")]
    challenge = ('Bearer realm="api", error="invalid_request", '
                 'error_description="Send one Authorization header, not several."')
    response = await http.get("/me", headers=headers)
    assert response.status_code == 400 and "one Authorization header" in response.text
    assert response.headers["www-authenticate"] == challenge  # RFC 6750 section 3
    app = starlette_app(BearerBackend(client=sdk))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://api.test") as client:
        response = await client.get("/", headers=headers)
    assert response.status_code == 400 and "one Authorization header" in response.text
    assert response.headers["www-authenticate"] == challenge
