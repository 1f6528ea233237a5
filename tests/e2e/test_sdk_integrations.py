"""``require_token`` protecting a small FastAPI app, with tokens from the real server.

Client-credentials tokens exercise scopes; for permissions, an organization, a
role with permissions and a user are made through the REST API (admin token),
and the user's password-grant token for that organization carries them.
The app is called in-process; only the SDK's JWKS fetch goes to the server.
No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
"""

import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Depends, FastAPI, WebSocket

from bastion import AsyncClient, configure
from bastion.client.integrations.fastapi import Principal, aclose_clients, require_token
from support import ServerProcess


class CountingTransport(httpx2.AsyncHTTPTransport):
    """A real transport that counts what the SDK sends to the provider."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


def protected_app(sdk: AsyncClient | None) -> FastAPI:
    """Routes guarded by ``sdk``, or by the configured connection when ``None``."""
    app = FastAPI()
    Reader = Annotated[Principal, Depends(require_token(scopes=["read"], client=sdk))]
    Writer = Annotated[Principal, Depends(require_token(scopes="read write", client=sdk))]
    Editor = Annotated[Principal, Depends(require_token(permissions=["posts:write"], client=sdk))]

    @app.get("/orders")
    async def orders(user: Reader) -> dict[str, Any]:
        return {"subject": user.subject, "client_id": user.client_id}

    @app.post("/orders")
    async def order(user: Writer) -> dict[str, Any]:
        return {"scopes": sorted(user.scopes)}

    @app.post("/posts")
    async def publish(user: Editor) -> dict[str, Any]:
        return {"subject": user.subject, "org": user.org, "roles": list(user.roles)}

    @app.websocket("/feed")
    async def feed(websocket: WebSocket, user: Reader) -> None:
        await websocket.accept()
        await websocket.send_json({"subject": user.subject})
        await websocket.close()

    return app


@pytest.fixture
def counting() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
async def sdk(
    bastion_server: ServerProcess, counting: CountingTransport
) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(url=bastion_server.url, transport=counting) as client:
        yield client


@pytest.fixture
async def api(sdk: AsyncClient) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=protected_app(sdk))
    async with httpx2.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def access_token(server: ServerProcess, scope: str) -> str:
    async with AsyncClient(
        url=server.url, client_id=server.client_id, client_secret=server.client_secret
    ) as app:
        return (await app.client_credentials(scope=scope)).access_token


async def test_scopes_with_client_credentials_tokens(
    api: httpx2.AsyncClient, counting: CountingTransport, bastion_server: ServerProcess
) -> None:
    reader = await access_token(bastion_server, "read")
    writer = await access_token(bastion_server, "read write")

    response = await api.get("/orders", headers=bearer(reader))
    assert response.status_code == 200
    assert response.json() == {
        "subject": bastion_server.client_id,
        "client_id": bastion_server.client_id,
    }
    response = await api.post("/orders", headers=bearer(writer))
    assert response.status_code == 200 and response.json() == {"scopes": ["read", "write"]}

    response = await api.post("/orders", headers=bearer(reader))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="The token lacks scope: write.", scope="read write"'
    )
    response = await api.get("/orders")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    tampered = reader[:-4] + ("AAAA" if not reader.endswith("AAAA") else "BBBB")
    response = await api.get("/orders", headers=bearer(tampered))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]

    # Discovery and the JWKS once; then every request is verified locally.
    assert len(counting.paths) == 2 and "jwks" in counting.paths[-1], counting.paths


async def post(http: httpx2.AsyncClient, path: str, body: Any) -> Any:
    """A REST API call that must succeed; its JSON."""
    response = await http.post("/api/v1" + path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_permissions_from_an_organization_token(
    api: httpx2.AsyncClient, bastion_server: ServerProcess
) -> None:
    name = "shop-" + secrets.token_hex(4)
    username, password = "u" + secrets.token_hex(5), secrets.token_urlsafe(18)
    reader_name = "r" + secrets.token_hex(5)
    async with AsyncClient(
        url=bastion_server.url,
        client_id=bastion_server.admin_client_id,
        client_secret=bastion_server.admin_client_secret,
    ) as admin:
        admin_token = (await admin.client_credentials(scope="bastion:admin")).access_token
    async with httpx2.AsyncClient(base_url=bastion_server.url, headers=bearer(admin_token)) as http:
        org = await post(http, "/organizations", {"name": name})
        await post(
            http,
            f"/organizations/{name}/roles",
            {"name": "editor", "permissions": ["posts:read", "posts:write"]},
        )
        await post(
            http,
            f"/organizations/{name}/roles",
            {"name": "viewer", "permissions": ["posts:read"]},
        )
        ids = {}
        for login, role in ((username, "editor"), (reader_name, "viewer")):
            user = await post(
                http,
                "/users",
                {"username": login, "email": f"{login}@example.com", "password": password},
            )
            await post(http, f"/organizations/{name}/users/{user['id']}/roles", {"add": [role]})
            ids[login] = user["id"]

    registered = bastion_server.create_client(
        "--name", "integrations " + name, "--grant-type", "password", "--scope", "read"
    )
    async with AsyncClient(
        url=bastion_server.url,
        client_id=str(registered["client_id"]),
        client_secret=str(registered["client_secret"]),
    ) as app:
        editor = await app.login_password(username, password, organization=name)
        viewer = await app.login_password(reader_name, password, organization=name)
        outside = await app.login_password(username, password)

    response = await api.post("/posts", headers=bearer(editor.access_token))
    assert response.status_code == 200
    assert response.json() == {"subject": ids[username], "org": org["id"], "roles": ["editor"]}
    for token in (viewer, outside):  # the wrong role; no organization at all
        response = await api.post("/posts", headers=bearer(token.access_token))
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == (
            'Bearer realm="api", error="insufficient_scope", '
            'error_description="The token lacks permission: posts:write."'
        )


async def test_a_configured_connection(bastion_server: ServerProcess) -> None:
    configure(default={"url": bastion_server.url})
    try:
        transport = httpx2.ASGITransport(app=protected_app(None))
        async with httpx2.AsyncClient(transport=transport, base_url="http://api.test") as http:
            token = await access_token(bastion_server, "read")
            for _ in range(3):
                assert (await http.get("/orders", headers=bearer(token))).status_code == 200
            assert (await http.post("/orders", headers=bearer(token))).status_code == 403
    finally:
        await aclose_clients()
        configure()


async def handshake(app: FastAPI, token: str | None) -> list[dict[str, Any]]:
    """What the app sends to a websocket client opening ``/feed`` (as uvicorn drives it)."""
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws",
             "http_version": "1.1", "path": "/feed", "raw_path": b"/feed", "root_path": "",
             "query_string": b"", "headers": headers, "client": ("127.0.0.1", 5000),
             "server": ("api.test", 80), "subprotocols": [], "state": {}}
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_websocket_route(sdk: AsyncClient, bastion_server: ServerProcess) -> None:
    """The dependency took a ``Request``, which FastAPI gives HTTP routes only: every
    websocket handshake failed with 500, a valid token's too."""
    app = protected_app(sdk)
    sent = await handshake(app, await access_token(bastion_server, "read"))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert json.loads(sent[1]["text"]) == {"subject": bastion_server.client_id}
    for token in (None, "not-a-token"):  # refused before it is accepted
        sent = await handshake(app, token)
        assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]
    assert sent[0]["reason"] == "invalid_token"
