"""What the high-level models share: their clients, binding, and reading fields.

The models (``User``, ``Organization``, ``Role``, ``Event``) run their calls on a
client: the one an object was fetched with (it is *bound* to it, like a
``TokenSet``), or the shared client of the connection named by ``using``. Shared
clients are one per connection, and per event loop for async ones, so discovery,
keys and the admin token are fetched once; ``configure()`` starts afresh.

The shells are imported inside the functions: they import the models in turn.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._bound import BoundCopy
from ._config import Settings
from .connections import DEFAULT, current, get_settings
from .exceptions import ConfigurationError, ProtocolError

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._client import Client

__all__ = [
    "Bound",
    "aclose_shared",
    "async_client",
    "names",
    "parse_datetime",
    "shared_async_client",
    "shared_client",
    "sync_client",
]

_lock = threading.Lock()
_sync_clients: dict[str, tuple[Settings, Client]] = {}
_async_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, tuple[Settings, AsyncClient]]
] = weakref.WeakKeyDictionary()
#: Per loop, the generator closing its shared clients (``_closed_with_the_loop``), held
#: here as the loop holds its generators weakly; it holds the loop (its finalizer) until
#: it ends with it. A loop closed without ``shutdown_asyncgens`` stays held.
_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIterator[None]] = (
    weakref.WeakKeyDictionary())
#: The tasks starting them, until they have.
_starting: set[asyncio.Future[None]] = set()


def shared_client(using: str | None = None) -> Client:
    """The ``Client`` the models use for connection ``using``."""
    from ._client import Client

    name, settings = using or DEFAULT, get_settings(using)
    with _lock:
        known = _sync_clients.get(name)
        if known is not None and known[0] is settings:
            return known[1]
        client = Client(using=name)
        _sync_clients[name] = (settings, client)
        replaced = [_sync_clients.pop(n)[1] for n in _outdated(_sync_clients)]
    if known is not None:
        replaced.append(known[1])
    for old in replaced:  # objects fetched with it may still call it: close it with them
        weakref.finalize(old, old._http.close)
    return client


def _outdated(clients: Mapping[str, tuple[Settings, Any]]) -> list[str]:
    """The names whose connection ``configure()`` has since changed or dropped (a
    dropped one is asked for no more: its client would stay open for good)."""
    return [n for n, (settings, _) in clients.items() if current(n) is not settings]


def shared_async_client(using: str | None = None) -> AsyncClient:
    """The ``AsyncClient`` the models use for ``using`` in the running event loop."""
    from ._async_client import AsyncClient

    name, settings = using or DEFAULT, get_settings(using)
    loop = asyncio.get_running_loop()
    with _lock:
        clients = _async_clients.setdefault(loop, {})
        if loop not in _closers:  # one per loop: a second would close the clients made
            closer = _closers[loop] = _closed_with_the_loop()  # after aclose_clients()
            started = asyncio.ensure_future(closer.__anext__())  # to its yield
            _starting.add(started)  # (the loop holds tasks weakly)
            started.add_done_callback(_starting.discard)
        known = clients.get(name)
        if known is not None and known[0] is settings:
            return known[1]
        client = AsyncClient(using=name)  # a replaced one stays with objects fetched with it
        clients[name] = (settings, client)
    return client


async def _closed_with_the_loop() -> AsyncIterator[None]:
    """Parked for as long as the loop runs. ``asyncio.run`` (and anyio's runner) close
    the loop's async generators at its end while it still runs: this one then closes
    the loop's shared clients, their connections with them, which would otherwise keep
    the loop, and its sockets, alive (an app that never calls ``aclose_clients``)."""
    try:
        yield
    finally:
        _closers.pop(asyncio.get_running_loop(), None)  # it holds the loop: let it go
        await aclose_shared()


async def aclose_shared() -> None:
    """Close the shared async clients of the running event loop (at shutdown)."""
    loop = asyncio.get_running_loop()
    with _lock:
        clients = [client for _, client in _async_clients.pop(loop, {}).values()]
    for client in clients:
        await client.aclose()


def sync_client(bound: object, using: str | None, call: str) -> Client:
    """``using``'s client if named, else the bound one, else the default connection's."""
    from ._client import Client

    if using is not None or bound is None:
        return shared_client(using)
    if not isinstance(bound, Client):
        raise ConfigurationError(f"this object was fetched with an AsyncClient: use a{call}()")
    return bound


def async_client(bound: object, using: str | None, call: str) -> AsyncClient:
    from ._async_client import AsyncClient

    if using is not None or bound is None:
        return shared_async_client(using)
    if not isinstance(bound, AsyncClient):
        raise ConfigurationError(f"this object was fetched with a Client: use {call}()")
    return bound


class Bound(BoundCopy):
    """A dataclass with a ``client`` field: copies keep it, pickles leave it out."""

    __slots__ = ()


def required_text(body: Mapping[str, Any], name: str) -> str:
    """``body[name]``, a string, or ``ProtocolError``: an answer outside the contract."""
    value = body.get(name)
    if not isinstance(value, str):
        raise ProtocolError(f"The API's answer has no {name!r}.")
    return value


def parse_datetime(value: Any) -> datetime | None:
    """A timestamp (seconds) or ISO 8601 text as an aware ``datetime``, else ``None``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, ValueError, OSError):  # NaN, Infinity, 1e20...
            return None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def names(values: object, what: str) -> list[str]:
    """One name (or object with an ``id``) or several, as a list of strings.

    A lone string is one name, never its characters.
    """
    if isinstance(values, str) or hasattr(values, "id"):
        values = [values]
    if not isinstance(values, Iterable):
        raise ConfigurationError(f"{what} must be a string or a list of strings")
    out = []
    for value in values:
        value = getattr(value, "id", value)
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{what} must be non-empty strings")
        out.append(value)
    return out
