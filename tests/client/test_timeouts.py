"""Every request the SDK sends has the configured timeout, including the token and
discovery requests sent from inside an ``httpx2.Auth`` flow (httpx2 puts its
client's timeout only on the request given to ``send``). A real socket server that
never answers the token endpoint stands in for a stalled provider."""

from __future__ import annotations

import asyncio
import builtins
import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from bastion import AsyncClient, Client, TimeoutError, TokenSet

#: Generous: a hang is what is tested, not how fast the timeout fires.
DEADLINE = 30.0


class StallingProvider:
    """Answers discovery; accepts token requests and never answers them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except builtins.TimeoutError:  # bastion's TimeoutError is narrower
                continue
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            data += chunk
        path = data.split(b" ", 2)[1].decode()
        if path.startswith("/.well-known/"):
            body = json.dumps({
                "issuer": self.url, "token_endpoint": self.url + "/token",
                "authorization_endpoint": self.url + "/authorize",
                "jwks_uri": self.url + "/jwks"}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            conn.close()
        else:
            self.held.append(conn)  # stalled: read, never answered

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join()
        for conn in self.held:
            conn.close()


@pytest.fixture
def stalled() -> Iterator[StallingProvider]:
    provider = StallingProvider()
    yield provider
    provider.close()


def finishes(call: Callable[[], Any]) -> BaseException | None:
    """What ``call`` raised; fails the test if it is still running at the deadline."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert outcome, "the call hung past its timeout"
    return outcome[0]


OPTIONS = {"client_id": "app", "client_secret": "s" * 32, "timeout": 0.5, "retries": 0}
EXPIRED = TokenSet(access_token="old", refresh_token="r-1",
                   expires_at=datetime.fromtimestamp(1, UTC))


def test_sync_token_fetched_inside_the_auth_flow_times_out(stalled: StallingProvider) -> None:
    with Client(stalled.url, **OPTIONS) as client:
        assert isinstance(finishes(lambda: client.request("GET", "/api/thing")), TimeoutError)
        auth = client.token_auth(EXPIRED)
        with httpx2.Client(auth=auth, timeout=None) as http:  # an app's own client
            assert isinstance(finishes(lambda: http.get(stalled.url + "/api/thing")),
                              httpx2.ReadTimeout)


def test_async_token_fetched_inside_the_auth_flow_times_out(stalled: StallingProvider) -> None:
    async def calls() -> None:
        async with AsyncClient(stalled.url, **OPTIONS) as client:
            with pytest.raises(TimeoutError):
                await client.request("GET", "/api/thing")
            with pytest.raises(TimeoutError):
                await client.request("GET", "/api/thing", auth=client.token_auth(EXPIRED))

    assert finishes(lambda: asyncio.run(calls())) is None


def test_a_stalled_token_request_does_not_block_other_threads_forever(
    stalled: StallingProvider,
) -> None:
    with Client(stalled.url, **OPTIONS) as client:
        outcomes = []
        threads = [threading.Thread(target=lambda: outcomes.append(
            finishes(lambda: client.request("GET", "/api/thing")))) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(outcomes) == 3 and all(isinstance(o, TimeoutError) for o in outcomes)
