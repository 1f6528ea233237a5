"""uvicorn's HTTP/1.1 protocol (httptools) with each response sent in one piece.

uvicorn writes a response's status line and headers, then its body, each straight
to the socket: two sends and two TCP segments per response, and two wake-ups for
the reader. Here what the protocol writes during one pass of the event loop is
held and sent together when the pass ends, so a response that is ready at once
(every answer Bastion gives) leaves in one send. A streamed body still goes out as
it comes, one send per pass. Measured in ``bench/README.md`` (Token introspection).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A connection's transport whose writes wait for the end of the loop pass."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def flush(self) -> None:
        if not self._held:
            return
        data = b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()  # a response followed by "connection: close" is still sent
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (extra info, reading control, abort, ...) is the transport's.
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """Pass to uvicorn as ``http=`` (``bastion.server.http_protocol:HttpProtocol``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = cast(asyncio.Transport, CoalescingTransport(transport, self.loop))
