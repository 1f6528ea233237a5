"""Test helpers: free ports, a throwaway PostgreSQL cluster, the real server process."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx2

BASTION = [sys.executable, "-m", "bastion.cli"]
ISSUER = "https://id.example.test"  # the in-process app's issuer (tests/server)
# Its pages' cookies: an https issuer at the root gives them the __Host- prefix.
SESSION_COOKIE = "__Host-bastion_session"
CSRF_COOKIE = "__Host-bastion_csrf"
KNOWN_COOKIE = "__Host-bastion_known"


@dataclass
class App:
    """The in-process server app and an httpx2 client for it (tests/server)."""

    http: httpx2.AsyncClient
    ctx: Any
    client_id: str
    client_secret: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value (readiness, not timing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


async def await_until(predicate: Callable[[], Awaitable[T | None]], within: float = 30.0,
                      interval: float = 0.05, what: str = "condition") -> T:
    """``wait_until`` for a coroutine predicate, without blocking the event loop."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


# -- PostgreSQL ---------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else None


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields the admin URL
    (database 'postgres'). Raises ``LookupError`` if the binaries are missing."""
    if not _pg_bin("initdb"):
        raise LookupError("PostgreSQL server binaries not installed")
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = tempfile.mkdtemp(prefix="bastion-pg-")
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    data, port = os.path.join(base, "data"), free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)

    try:
        run(str(_pg_bin("initdb")), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync",
            "-E", "UTF8", "--locale=C.UTF-8")
        run(str(_pg_bin("pg_ctl")), "-D", data, "-l", os.path.join(base, "log"), "-w", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c max_connections=200 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off", "start")
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(_pg_bin("pg_ctl")), "-D", data, "-m", "immediate", "-w",
                        "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


async def create_database(admin_url: str, name: str) -> str:
    """A new empty database on the cluster of ``admin_url``; returns its URL."""
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("+asyncpg", ""))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


# -- the real server process ----------------------------------------------------


def cli(
    *args: str, env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASTION, *args], env=dict(env), input=stdin, capture_output=True,
                          text=True, timeout=120)


@dataclass
class ServerProcess:
    url: str
    database_url: str
    data_dir: Path
    env: dict[str, str]
    client_id: str = ""
    client_secret: str = ""
    admin_client_id: str = ""
    admin_client_secret: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return cli(*args, env=self.env, stdin=stdin)

    def create_client(self, *args: str) -> dict[str, object]:
        done = self.cli("clients", "create", "--json", *args)
        assert done.returncode == 0, done.stderr
        created: dict[str, object] = json.loads(done.stdout)
        return created

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""


def server_env(data_dir: Path, database_url: str | None = None, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_DATA_DIR"] = str(data_dir)
    if database_url:
        env["BASTION_DATABASE_URL"] = database_url
    for key, value in settings.items():
        env[f"BASTION_{key.upper()}"] = value
    return env


@contextmanager
def running_server(
    data_dir: Path, database_url: str | None = None, *args: str, port: int | None = None,
    **settings: str
) -> Iterator[ServerProcess]:
    """``bastion serve`` as a real process on a free loopback port (or ``port``, for an
    issuer that names it), ready when yielded."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = server_env(data_dir, database_url, **settings)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*BASTION, "serve", "--port", str(port), *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(url=url, database_url=database_url or "", data_dir=data_dir, env=env,
                           proc=proc, log_path=log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.log()}")
        try:
            meta = httpx2.get(url + "/.well-known/openid-configuration", timeout=1)
            return meta.status_code == 200
        except httpx2.TransportError:
            return False

    try:
        wait_until(ready, timeout=60, what="the server to answer")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the hosted login form, driven over plain HTTP --------------------------------

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def hidden_fields(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in _HIDDEN.findall(html)}


async def sign_in(http: httpx2.AsyncClient, authorize_url: str, login: str,
                  password: str) -> httpx2.Response:
    """GET the authorization URL, fill the login form, and return the answer that
    follows (normally the 303 back to the client's redirect URI)."""
    page = await http.get(authorize_url)
    if page.status_code != 200 or "<form" not in page.text:
        return page
    fields = hidden_fields(page.text)
    posted = await http.post("/login", data={**fields, "login": login, "password": password})
    if posted.status_code != 303:
        return posted
    return await http.get(posted.headers["location"])


def callback_params(response: httpx2.Response) -> dict[str, str]:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


# -- a real SMTP server (aiosmtpd) ---------------------------------------------------


class Mailbox:
    """Collects what the SMTP server receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        msg = message_from_bytes(envelope.original_content or envelope.content,
                                 policy=policy.default)
        self.messages.append(msg)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int = 1, timeout: float = 20.0) -> list[Any]:
        wait_until(lambda: len(self.messages) >= count, timeout=timeout, what="mail")
        return self.messages

    @staticmethod
    def link(msg: Any) -> str:
        body = msg.get_body(preferencelist=("plain",)).get_content()
        match = re.search(r"https?://\S+token=[A-Za-z0-9_\-]+", body)
        assert match, body
        return match.group(0)


@contextmanager
def smtp_server() -> Iterator[tuple[str, int, Mailbox]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield "127.0.0.1", controller.port, box
    finally:
        controller.stop()


async def empty_store_url(request: Any, tmp_path: Path, name: str) -> str:
    """A new, empty database on the backend ``request.param`` names."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"
    admin = request.getfixturevalue("pg_admin_url")
    return await create_database(admin, f"{name}_{uuid.uuid4().hex[:12]}")


# -- a relying party's back-channel logout endpoint ------------------------------------


class LogoutReceiver:
    """A real HTTP server taking back-channel logout POSTs on 127.0.0.1: each form is
    queued for ``next``; ``answers`` are the statuses of the next POSTs (then 200)."""

    def __init__(self) -> None:
        self.forms: queue.Queue[dict[str, str]] = queue.Queue()
        self.answers: list[int] = []
        self.location = ""  # sent with a 3xx answer
        #: While set, each POST waits (after ``arrived`` is set) until ``hold`` clears.
        self.hold = threading.Event()
        self.arrived = threading.Event()
        self.received = 0  # POSTs that arrived
        self._count = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                form["content-type"] = self.headers.get("Content-Type", "")
                with receiver._count:
                    receiver.received += 1
                receiver.arrived.set()
                if receiver.hold.is_set():
                    receiver._released.wait(timeout=120)
                status = receiver.answers.pop(0) if receiver.answers else 200
                if status == 200:
                    receiver.forms.put(form)
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self._httpd.server_address[1]}/backchannel-logout"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def next(self, timeout: float = 30.0) -> str:
        """The logout token of the next POST answered 200 (waits for it)."""
        form = self.forms.get(timeout=timeout)
        assert form["content-type"] == "application/x-www-form-urlencoded", form
        return form["logout_token"]

    def release(self) -> None:
        """Let the POSTs held by ``hold`` go on (and later ones through)."""
        self.hold.clear()
        self._released.set()
        self._released = threading.Event()  # for a later hold

    def close(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def logout_receiver() -> Iterator[LogoutReceiver]:
    receiver = LogoutReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
