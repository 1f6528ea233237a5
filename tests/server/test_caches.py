"""The in-memory caches of clients and keys reload once per expiry, not once per
request that arrives while they reload."""

from __future__ import annotations

import asyncio
from typing import Any

from bastion.server.services.clients import ClientCache


class SlowStorage:
    def __init__(self) -> None:
        self.reads = 0
        self.release = asyncio.Event()

    async def get_client(self, client_id: str) -> Any:
        self.reads += 1
        await self.release.wait()
        return f"client {client_id}"


async def test_a_stale_client_is_reloaded_once_while_others_use_the_old_copy() -> None:
    storage = SlowStorage()
    cache = ClientCache(storage, ttl=0.0)  # type: ignore[arg-type]
    storage.release.set()
    assert await cache.get("app") == "client app"
    storage.release.clear()
    first = asyncio.create_task(cache.get("app"))  # stale: this one reloads
    await asyncio.sleep(0)
    others = await asyncio.gather(*(cache.get("app") for _ in range(20)))
    assert others == ["client app"] * 20  # served the previous copy meanwhile
    storage.release.set()
    assert await first == "client app"
    assert storage.reads == 2


async def test_a_read_begun_before_a_forget_is_not_cached() -> None:
    """A change through this instance forgets the client; a read that started before
    the change committed may bring the old row, so it is used once but not kept."""
    storage = SlowStorage()
    cache = ClientCache(storage, ttl=60.0)  # type: ignore[arg-type]
    reading = asyncio.create_task(cache.get("app"))
    await asyncio.sleep(0)
    cache.forget("app")  # the change commits while the read is under way
    storage.release.set()
    assert await reading == "client app"
    assert await cache.get("app") == "client app"
    assert storage.reads == 2  # read again, not served from the cache


async def test_signing_keys_reload_once_while_stale(app) -> None:  # the in-process app
    ring = app.ctx.keys
    reads = 0
    real = app.ctx.storage.signing_keys

    async def counted() -> Any:
        nonlocal reads
        reads += 1
        return await real()

    app.ctx.storage.signing_keys = counted
    ring._settings = ring._settings.model_copy(update={"cache_ttl": 0.0})
    signers = await asyncio.gather(*(ring.signer("access") for _ in range(20)))
    assert len({s.kid for s in signers}) == 1
    assert reads == 1
