"""uvicorn's protocol with each response sent in one piece (``bastion serve`` uses it;
every end-to-end test goes through it)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from bastion.server.http_protocol import CoalescingTransport, HttpProtocol


class Recorder(asyncio.Transport):
    """A socket's transport that keeps what is written, one entry per send."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.sends.append(bytes(data))  # even when closed: the tests check that none come

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"6")]})
    await send({"type": "http.response.body", "body": b"abc", "more_body": True})
    await asyncio.sleep(0.01)  # the rest comes later: what is ready goes out meanwhile
    await send({"type": "http.response.body", "body": b"def"})


async def until(check: Any) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the response never came")


async def serve(app: Any, request: bytes) -> tuple[Recorder, HttpProtocol]:
    config = Config(app, http=HttpProtocol, lifespan="off", log_config=None)
    config.load()
    protocol = HttpProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = Recorder()
    protocol.connection_made(transport)
    protocol.data_received(request)
    return transport, protocol


async def test_a_response_leaves_in_one_send() -> None:
    sent, protocol = await serve(answer, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await until(lambda: sent.sends)
    await asyncio.sleep(0.05)  # nothing else follows
    assert len(sent.sends) == 1
    assert sent.sends[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert sent.sends[0].endswith(b"\r\n\r\nhello")
    assert not sent.closed  # kept alive for the next request
    protocol.data_received(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
    await until(lambda: len(sent.sends) == 2)
    assert sent.sends[1].endswith(b"hello")
    protocol.connection_lost(None)


async def test_connection_close_sends_the_response_before_closing() -> None:
    sent, protocol = await serve(answer, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await until(lambda: sent.closed)
    assert len(sent.sends) == 1
    assert b"connection: close" in sent.sends[0].lower()
    assert sent.sends[0].endswith(b"hello")
    protocol.connection_lost(None)


async def test_a_streamed_body_goes_out_as_it_comes() -> None:
    sent, protocol = await serve(stream, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await until(lambda: b"".join(sent.sends).endswith(b"abcdef"))
    assert len(sent.sends) == 2
    assert sent.sends[0].endswith(b"\r\n\r\nabc")  # headers and the first part together
    assert sent.sends[1] == b"def"
    protocol.connection_lost(None)


async def test_writes_wait_for_the_end_of_the_loop_pass() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"one ")
    transport.write(bytearray(b"two"))
    assert raw.sends == []
    await asyncio.sleep(0)
    assert raw.sends == [b"one two"]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 50000)  # the transport's own

    transport.write(b"last")
    transport.close()
    assert raw.sends == [b"one two", b"last"]
    assert raw.closed
    await asyncio.sleep(0)  # the pending flush finds nothing left to send
    assert raw.sends == [b"one two", b"last"]


async def test_nothing_is_written_to_a_transport_that_is_closing() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"late")
    raw.close()  # the peer went away meanwhile
    await asyncio.sleep(0)
    assert raw.sends == []
