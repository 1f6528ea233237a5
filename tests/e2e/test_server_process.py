"""``bastion serve`` as a real process, on SQLite and on PostgreSQL, over HTTP.

Tokens are verified with a third-party library (joserfc) against the served JWKS.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from support import ServerProcess, wait_until


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> ServerProcess:
    name = "bastion_server" if request.param == "sqlite" else "bastion_server_pg"
    return request.getfixturevalue(name)


def get_token(server: ServerProcess, **data: str) -> httpx2.Response:
    return httpx2.post(server.url + "/oauth/token",
                       data={"grant_type": "client_credentials", **data},
                       auth=(server.client_id, server.client_secret))


def verify(server: ServerProcess, token: str) -> jwt.Token:
    keys = KeySet.import_key_set(httpx2.get(server.url + "/.well-known/jwks.json").json())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": server.url},
                          aud={"essential": True, "value": server.url},
                          exp={"essential": True}).validate(decoded.claims)
    return decoded


def test_discovery(server: ServerProcess) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        meta = httpx2.get(server.url + path).json()
        assert meta["issuer"] == server.url
        assert meta["token_endpoint"] == server.url + "/oauth/token"
        assert httpx2.get(meta["jwks_uri"]).status_code == 200


def test_client_credentials_token_verifies_with_a_third_party_library(server) -> None:
    r = get_token(server, scope="read")
    assert r.status_code == 200, r.text
    token = verify(server, r.json()["access_token"])
    assert token.header["typ"] == "at+jwt"
    assert token.claims["client_id"] == server.client_id
    assert token.claims["scope"] == "read"


@pytest.mark.parametrize(("kwargs", "status", "error"), [
    ({"auth": ("nobody", "wrong"), "data": {"grant_type": "client_credentials"}},
     401, "invalid_client"),
    ({"data": {"grant_type": "client_credentials", "scope": "admin"}}, 400, "invalid_scope"),
    ({"data": {"grant_type": "magic"}}, 400, "unsupported_grant_type"),
    ({"data": {}}, 400, "invalid_request"),
    ({"content": b"x=" + b"a" * 200_000,
      "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400, "invalid_request"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}},
     400, "invalid_request"),
])
def test_error_answers(server: ServerProcess, kwargs, status, error) -> None:
    kwargs = {"auth": (server.client_id, server.client_secret), **kwargs}
    r = httpx2.post(server.url + "/oauth/token", **kwargs)
    assert r.status_code == status
    assert r.json()["error"] == error
    if status == 401:
        assert "Basic" in r.headers["www-authenticate"]


def test_private_keys_are_encrypted_at_rest(bastion_server: ServerProcess) -> None:
    db = (bastion_server.data_dir / "bastion.db").read_bytes()
    assert b"PRIVATE KEY" not in db
    assert (bastion_server.data_dir / "secret_key").exists()


def test_a_rotated_key_keeps_old_tokens_verifiable(server: ServerProcess) -> None:
    old = get_token(server).json()["access_token"]
    old_kid = verify(server, old).header["kid"]
    before = {k["kid"] for k in httpx2.get(server.url + "/.well-known/jwks.json").json()["keys"]}
    done = server.cli("keys", "rotate")
    assert done.returncode == 0, done.stderr
    # The next keys are published at once ...
    kids = {k["kid"] for k in httpx2.get(server.url + "/.well-known/jwks.json").json()["keys"]}
    assert old_kid in kids and before < kids
    # ... and used for signing once the instance's key cache expires (cache_ttl).
    def new_token() -> str | None:
        token = get_token(server).json()["access_token"]
        return token if verify(server, token).header["kid"] != old_kid else None
    new = wait_until(new_token, timeout=30, interval=0.2, what="the rotated key to sign")
    assert verify(server, new).header["kid"] in before  # published before it signed
    assert verify(server, old).claims["client_id"] == server.client_id


def raw_exchange(server: ServerProcess, request: bytes) -> bytes:
    """Send raw bytes to the server and read until it closes the connection."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_http_keep_alive_pipelining_and_close_over_a_raw_socket(
        bastion_server: ServerProcess) -> None:
    # bastion serve sends each response in one piece (bastion.server.http_protocol):
    # pipelined requests still get whole answers in order, and "connection: close" gets
    # the whole answer before the close.
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    received = raw_exchange(bastion_server, health + b"\r\n" + health
                            + b"Connection: close\r\n\r\n")
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 2
    for answer in answers:
        assert answer.startswith(b"200 OK\r\n")
        assert answer.endswith(b"\r\n\r\n{\"status\":\"ok\"}")
    assert b"connection: close" in answers[1].lower()


def test_a_websocket_upgrade_is_answered_as_a_plain_request(
        bastion_server: ServerProcess) -> None:
    # No WebSocket is spoken (ws=none): the route answers, here the token endpoint's
    # 405 to a GET, and no connection is upgraded.
    received = raw_exchange(bastion_server, (
        b"GET /oauth/token HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"))
    assert received.startswith(b"HTTP/1.1 405 ") and b"Use POST." in received
    assert httpx2.get(bastion_server.url + "/healthz").status_code == 200
