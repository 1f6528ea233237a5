"""A fake OAuth provider behind ``httpx2.MockTransport``, and test doubles of the shells."""

from __future__ import annotations

import base64
import functools
import inspect
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio.from_thread
import httpx2
import pytest

from bastion import AsyncClient, Client
from bastion.client._api import Namespace
from bastion.client._flight import Flight
from bastion.oauth.jose import PrivateKey

ISSUER = "https://id.example/tenant"
CLIENT_ID = "svc client"  # a space, to prove RFC 6749 2.3.1 form-encoding
CLIENT_SECRET = "s3cr:t/+%"
STATE_KEY = "a state key for tests, 32+ bytes long"
REDIRECT_URI = "https://app.example/cb"
#: RSA keys are slow to make: one for the whole run.
ID_KEY = PrivateKey.generate("id-1", "RS256")

Handler = Callable[[httpx2.Request], httpx2.Response]


class FakeProvider:
    """Serves discovery, JWKS, token, introspection and revocation like a real OP.

    ``overrides[path]`` takes a list of responses (or exceptions) served first,
    one per request, before the default behaviour resumes.
    """

    def __init__(self) -> None:
        self.key = PrivateKey.generate("key-1", "ES256")
        self.id_key = ID_KEY
        self.jwks_keys = [self.key, self.id_key]
        self.metadata: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": ISSUER + "/oauth/authorize",
            "token_endpoint": ISSUER + "/oauth/token",
            "jwks_uri": ISSUER + "/jwks",
            "introspection_endpoint": ISSUER + "/oauth/introspect",
            "revocation_endpoint": ISSUER + "/oauth/revoke",
            "userinfo_endpoint": ISSUER + "/oauth/userinfo",
            "end_session_endpoint": ISSUER + "/oauth/logout",
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
        }
        self.calls: Counter[str] = Counter()
        self.requests: list[httpx2.Request] = []
        self.overrides: dict[str, list[httpx2.Response | Exception]] = {}
        self.expires_in = 300
        self.issued = 0
        #: The nonce the next ID token carries (tests copy it from the login URL).
        self.nonce: str | None = None
        #: Claims merged into the next ID tokens (``None`` values remove a claim).
        self.id_claims: dict[str, Any] = {}
        #: Scope granted by the code and password grants.
        self.user_scope = "openid profile"
        #: Send a new ID token with each refresh too (OIDC Core 12.2).
        self.refresh_id_token = False

    def id_token(self, access_token: str) -> str:
        from bastion.client.id_token import at_hash

        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "user-1",
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "nonce": self.nonce,
            "at_hash": at_hash(access_token, self.id_key.alg),
            **self.id_claims,
        }
        key = claims.pop("_key", self.id_key)
        return key.sign({k: v for k, v in claims.items() if v is not None}, typ="JWT")

    def path(self, url: str) -> str:
        return httpx2.URL(url).path

    def sign(self, key: PrivateKey | None = None, typ: str = "at+jwt", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "sub": "svc",
            "aud": ISSUER,
            "client_id": CLIENT_ID,
            "scope": "read write",
            "iat": now,
            "exp": now + 300,
            "jti": "j1",
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return (key or self.key).sign(body, typ=typ)

    @staticmethod
    def form(request: httpx2.Request) -> dict[str, str]:
        return dict(parse_qsl(request.content.decode()))

    @staticmethod
    def basic(request: httpx2.Request) -> tuple[str, str] | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.calls[path] += 1
        self.requests.append(request)
        queued = self.overrides.get(path)
        if queued:
            item = queued.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        if path == "/tenant/.well-known/openid-configuration":
            return httpx2.Response(200, json=self.metadata)
        if path == "/tenant/jwks":
            return httpx2.Response(200, json={"keys": [k.public_jwk() for k in self.jwks_keys]})
        if path == "/tenant/oauth/token":
            self.issued += 1
            form = self.form(request)
            body: dict[str, Any] = {
                "access_token": self.sign(jti=f"t{self.issued}"),
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "scope": form.get("scope", "read write"),
            }
            grant = form.get("grant_type")
            if grant == "refresh_token":
                body["refresh_token"] = f"rotated-refresh-{self.issued}"
                if self.refresh_id_token:
                    body["id_token"] = self.id_token(body["access_token"])
            if grant in ("authorization_code", "password"):
                body["refresh_token"] = f"refresh-{self.issued}"
                body["scope"] = form.get("scope", self.user_scope)
                if "openid" in body["scope"].split():
                    body["id_token"] = self.id_token(body["access_token"])
            return httpx2.Response(200, json=body)
        if path == "/tenant/oauth/userinfo":
            if request.headers.get("authorization", "").startswith("Bearer "):
                return httpx2.Response(200, json={"sub": "user-1", "preferred_username": "ann"})
            return httpx2.Response(
                401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        if path.startswith("/tenant/api/v1/users/") and request.method == "DELETE":
            return httpx2.Response(204)
        if path == "/tenant/oauth/introspect":
            return httpx2.Response(200, json={"active": True, "client_id": CLIENT_ID})
        if path == "/tenant/oauth/revoke":
            return httpx2.Response(200)
        if path == "/tenant/api/thing":
            if request.headers.get("authorization", "").startswith("Bearer "):
                return httpx2.Response(200, json={"ok": True})
            return httpx2.Response(401)
        return httpx2.Response(404, json={"title": "Not Found", "status": 404, "detail": path})


class Blocking:
    """An ``AsyncClient`` whose coroutine methods are run through a portal."""

    def __init__(self, client: AsyncClient, portal: anyio.from_thread.BlockingPortal) -> None:
        self._client = client
        self._portal = portal
        self.sleeps: list[float] = []

        async def record(seconds: float) -> None:
            self.sleeps.append(seconds)

        client._sleep = record  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *args, **kwargs: self._portal.call(
                functools.partial(attr, *args, **kwargs)
            )
        if isinstance(attr, Namespace):  # client.users and the like
            return _BlockingNamespace(attr, self._portal)
        if name == "iterate":  # an async iterator: drained in the portal's loop
            async def drain(*args: Any, **kwargs: Any) -> list[Any]:
                return [item async for item in attr(*args, **kwargs)]
            return lambda *args, **kwargs: iter(self._portal.call(
                functools.partial(drain, *args, **kwargs)))
        return attr

    def __repr__(self) -> str:
        return repr(self._client)


class _BlockingNamespace(Blocking):
    def __init__(self, target: Any, portal: anyio.from_thread.BlockingPortal) -> None:
        self._client, self._portal = target, portal

    def with_token(self, token: Any) -> Any:
        return _BlockingNamespace(self._client.with_token(token), self._portal)


class SyncClient(Client):
    """``Client`` recording its back-off waits instead of sleeping."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sleeps: list[float] = []
        self._sleep = self.sleeps.append  # type: ignore[method-assign]


# -- concurrency helpers: events, never sleeps --------------------------------------


class Gate:
    """A transport handler that holds the answer at ``path`` (once ``skip`` earlier
    requests there went through) until ``followers`` callers wait for that flight."""

    def __init__(self, provider: FakeProvider, path: str, followers: int = 1,
                 skip: int = 0) -> None:
        self.provider, self.path, self.skip = provider, path, skip
        self.needed, self.count = followers, 0
        self.lock = threading.Lock()
        self.leader_in, self.followed = threading.Event(), threading.Event()

    def follow(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.needed:
                self.followed.set()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == self.path and self.provider.calls[self.path] >= self.skip:
            self.leader_in.set()
            assert self.followed.wait(10), "the followers never waited"
        return self.provider(request)


def watch_followers(monkeypatch: pytest.MonkeyPatch, on_follow: Callable[[], None]) -> None:
    """Call ``on_follow`` each time a caller starts waiting for someone's flight."""
    original = Flight.event

    def event(self: Flight, make: Any) -> Any:
        made = original(self, make)
        if made is not None:
            on_follow()
        return made

    monkeypatch.setattr(Flight, "event", event)


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``target`` in a thread; the list gets its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome
