"""Operations against the real process: health, readiness, metrics, workers,
forwarded headers, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import signal
from typing import Any

import httpx2
import pytest

from support import ServerProcess, running_server, wait_until


def test_health_and_readiness(bastion_server: ServerProcess) -> None:
    assert httpx2.get(bastion_server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx2.get(bastion_server.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "keys": "ok"}


def test_readiness_fails_when_the_sqlite_file_is_deleted_or_replaced(tmp_path) -> None:
    # SQLite writes on to the file it has open: once that is unlinked, everything is
    # lost at the next start, so the instance must leave service (and say why).
    with running_server(tmp_path, None) as server:
        assert httpx2.get(server.url + "/readyz").status_code == 200
        database = server.data_dir / "bastion.db"
        kept = database.rename(server.data_dir / "kept.db")
        ready = httpx2.get(server.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == (
            "the database file was deleted; restart the server after restoring it")
        database.write_bytes(kept.read_bytes())  # a copy is another file
        ready = httpx2.get(server.url + "/readyz")
        assert ready.status_code == 503 and "was replaced" in ready.json()["checks"]["database"]
        kept.rename(database)  # the very file it has open, back in place
        assert httpx2.get(server.url + "/readyz").status_code == 200


def test_metrics_count_requests_tokens_and_login_failures(bastion_server) -> None:
    auth = (bastion_server.client_id, bastion_server.client_secret)
    for _ in range(3):
        r = httpx2.post(bastion_server.url + "/oauth/token", auth=auth,
                        data={"grant_type": "client_credentials"})
        assert r.status_code == 200
    httpx2.get(bastion_server.url + "/no/such/page")
    text = httpx2.get(bastion_server.url + "/metrics").text
    tokens = re.search(r'bastion_tokens_issued_total\{grant_type="client_credentials"\} (\S+)',
                       text)
    assert tokens and float(tokens.group(1)) >= 3
    assert re.search(r'bastion_http_requests_total\{endpoint="/oauth/token",method="POST",'
                     r'status="200"\} \S+', text)
    assert 'endpoint="other"' in text  # unknown paths share one label
    assert "bastion_http_request_duration_seconds_bucket" in text
    assert "/no/such/page" not in text


def test_two_workers_serve_and_add_up_their_metrics(tmp_path) -> None:
    with running_server(tmp_path, None, "--workers", "2") as server:
        app = server.create_client("--name", "w", "--grant-type", "client_credentials")
        auth = (str(app["client_id"]), str(app["client_secret"]))

        async def burst() -> list[int]:
            async with httpx2.AsyncClient() as http:
                calls = [http.post(server.url + "/oauth/token", auth=auth,
                                   data={"grant_type": "client_credentials"}) for _ in range(40)]
                return [r.status_code for r in await asyncio.gather(*calls)]

        assert asyncio.run(burst()) == [200] * 40
        text = httpx2.get(server.url + "/metrics").text
        total = re.search(r'bastion_tokens_issued_total\{grant_type="client_credentials"\} (\S+)',
                          text)
        assert total and float(total.group(1)) == 40.0


def test_two_workers_write_one_sqlite_file_at_once_and_lose_nothing(tmp_path) -> None:
    """Each worker writes on its event loop while the lock is free and waits on its
    storage thread when the other worker (or the CLI) holds it."""
    with running_server(tmp_path, None, "--workers", "2", password_hash_memory_kib="8192",
                        password_hash_time_cost="1") as server:
        app = server.create_client("--name", "w", "--grant-type", "password",
                                   "--grant-type", "refresh_token", "--scope", "openid")
        auth = (str(app["client_id"]), str(app["client_secret"]))
        done = server.cli("users", "create", "--username", "pat", "--email", "pat@example.com",
                          "--password-stdin", stdin="a long enough password")
        assert done.returncode == 0, done.stderr

        async def logins() -> list[int]:
            async with httpx2.AsyncClient(timeout=60) as http:
                calls = [http.post(server.url + "/oauth/token", auth=auth, data={
                    "grant_type": "password", "username": "pat",
                    "password": "a long enough password", "scope": "openid"})
                    for _ in range(60)]
                return [r.status_code for r in await asyncio.gather(*calls)]

        async def with_cli_writes() -> list[int]:  # a third process writes meanwhile
            others = [asyncio.to_thread(server.cli, "clients", "create", "--name", f"c{i}",
                                        "--grant-type", "client_credentials")
                      for i in range(3)]
            codes, *created = await asyncio.gather(logins(), *others)
            assert all(c.returncode == 0 for c in created)
            return codes

        assert asyncio.run(with_cli_writes()) == [200] * 60
        assert audit_events(server, "login.success")["count"] == 60


@pytest.mark.parametrize(("trusted", "expected"), [("[]", "127.0.0.1"),
                                                   ('["127.0.0.1"]', "203.0.113.9")])
def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path, trusted, expected):
    with running_server(tmp_path, None, trusted_proxies=trusted,
                        password_hash_memory_kib="8192", password_hash_time_cost="1") as server:
        app = server.create_client("--name", "p", "--grant-type", "password", "--scope", "openid")
        auth = (str(app["client_id"]), str(app["client_secret"]))
        r = httpx2.post(server.url + "/oauth/token", auth=auth,
                        headers={"X-Forwarded-For": "203.0.113.9"},
                        data={"grant_type": "password", "username": "nobody",
                              "password": "wrong password"})
        assert r.status_code == 400
        assert audit_events(server, "login.failure")["items"][0]["ip"] == expected


def test_sigterm_lets_in_flight_requests_finish(tmp_path) -> None:
    with running_server(tmp_path, None) as server:
        app = server.create_client("--name", "slow", "--grant-type", "password")
        password = secrets.token_urlsafe(16)
        server.cli("users", "create", "--username", "u", "--email", "u@example.com",
                   "--password-stdin", stdin=password)
        auth = (str(app["client_id"]), str(app["client_secret"]))

        async def logins() -> list[int]:
            # Password logins cost an argon2id hash each: 12 of them keep the server busy.
            async with httpx2.AsyncClient(timeout=60) as http:
                calls = [asyncio.ensure_future(http.post(
                    server.url + "/oauth/token", auth=auth,
                    data={"grant_type": "password", "username": "u", "password": password}))
                    for _ in range(12)]
                await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
                assert server.proc is not None
                server.proc.send_signal(signal.SIGTERM)  # the rest are in flight
                return [r.status_code for r in await asyncio.gather(*calls)]

        assert asyncio.run(logins()) == [200] * 12
        assert server.proc is not None
        wait_until(lambda: server.proc.poll() is not None, timeout=30, what="the server to exit")
        # uvicorn re-raises SIGTERM after its graceful shutdown
        assert server.proc.returncode in (0, -signal.SIGTERM)
        log = server.log()
        assert "Application shutdown complete" in log  # the lifespan closed the pool
        assert "Traceback" not in log


def audit_events(server: ServerProcess, action: str) -> dict[str, Any]:
    """The audit events of one action, read through the admin API."""
    admin = server.create_client("--name", "audit", "--grant-type", "client_credentials",
                                 "--scope", "bastion:admin")
    token = httpx2.post(server.url + "/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(str(admin["client_id"]), str(admin["client_secret"]))).json()
    events: dict[str, Any] = httpx2.get(
        server.url + "/api/v1/events", params={"action": action},
        headers={"Authorization": "Bearer " + token["access_token"]}).json()
    return events


def test_the_quick_starts_demo_prints_working_credentials_once(tmp_path, sign_in) -> None:
    """``bastion serve --demo`` (what ``./scripts/serve`` runs): a client and a user,
    printed on the first start only, that complete a login; a deleted demo client is
    not made again (client ids are never reused)."""
    from types import SimpleNamespace

    from bastion import Client

    with running_server(tmp_path, None, "--demo") as server:
        log = server.log()
        secret = re.search(r"demo client: client_id=demo client_secret=(\S+)", log)
        password = re.search(r"demo user: +username=demo password=(\S+)", log)
        assert secret and password, log
        with Client(url=server.url, client_id="demo", client_secret=secret.group(1),
                    redirect_uri="http://127.0.0.1:5000/callback",
                    state_key=secrets.token_urlsafe(32)) as app:
            assert app.client_credentials("read").scope == "read"
            state, url = app.start_authorization("openid profile")
            demo = SimpleNamespace(username="demo", password=password.group(1))
            tokens = app.finish_authorization_response(sign_in(url, demo), expected_state=state)
            assert app.userinfo(tokens)["preferred_username"] == "demo"
    with running_server(tmp_path, None, "--demo") as server:
        log = server.log()
        assert "exists (its secret was shown when created)" in log
        assert secret.group(1) not in log and password.group(1) not in log
        assert server.cli("clients", "delete", "demo").returncode == 0
    with running_server(tmp_path, None, "--demo") as server:
        assert "'demo' was deleted; it is not made again" in server.log()
        assert httpx2.get(server.url + "/healthz").status_code == 200


def test_a_websocket_handshake_is_a_plain_request_logged_redacted(tmp_path) -> None:
    """Bastion has no WebSocket routes: an Upgrade is answered as a plain request (here
    the link page's 400 for a token it does not know), so its query goes through the
    access log's redaction (the server's own WebSocket lines printed it whole, access
    log or not)."""
    import socket

    with running_server(tmp_path, None, "--access-log") as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(b"GET /login/link?token=WSLEAK123&code=WSCODE HTTP/1.1\r\n"
                         b"Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 400 ")
        wait_until(lambda: "/login/link?token=***" in server.log(), what="the access line")
        assert "WSLEAK123" not in server.log() and "WSCODE" not in server.log()


def test_json_logs_tie_each_line_to_its_request_in_every_worker(tmp_path) -> None:
    """``log_format=json`` with two workers and the access log: every line of the log is
    one JSON object; a request's access line and the warning it caused (a refresh token
    used twice) carry the id sent back as X-Request-ID; query values stay redacted."""
    with running_server(tmp_path, None, "--workers", "2", "--access-log",
                        log_format="json") as server:
        app = server.create_client("--name", "logs", "--grant-type", "password",
                                   "--grant-type", "refresh_token", "--scope", "openid")
        auth = (str(app["client_id"]), str(app["client_secret"]))
        password = secrets.token_urlsafe(18)
        assert server.cli("users", "create", "--username", "lee", "--email", "lee@example.com",
                          "--password-stdin", stdin=password).returncode == 0
        tokens = httpx2.post(server.url + "/oauth/token", auth=auth, data={
            "grant_type": "password", "username": "lee", "password": password,
            "scope": "openid"}).json()
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert httpx2.post(server.url + "/oauth/token", auth=auth, data=refresh).is_success
        reused = httpx2.post(server.url + "/oauth/token", auth=auth, data=refresh,
                             headers={"X-Request-ID": "trace-reuse-1"})
        assert reused.status_code == 400 and reused.headers["x-request-id"] == "trace-reuse-1"
        page = httpx2.get(server.url + "/oauth/authorize?client_id=nobody&state=s3cr3t")
        page_id = page.headers["x-request-id"]

        def logged() -> list[dict[str, Any]] | None:
            lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
            ids = {line["request_id"] for line in lines}
            return lines if {"trace-reuse-1", page_id} <= ids else None

        lines = wait_until(logged, what="both requests' lines")
        reuse = [line for line in lines if line["request_id"] == "trace-reuse-1"]
        assert {line["logger"] for line in reuse} == {"bastion.tokens", "uvicorn.access"}
        assert any("presented again" in line["message"] and line["level"] == "WARNING"
                   for line in reuse)
        (access,) = [line for line in lines if line["request_id"] == page_id]
        assert "state=***" in access["message"] and "s3cr3t" not in server.log()
        assert tokens["refresh_token"] not in server.log()
