"""For the tests of what an operator runs: work on a store the way a command opens it
(``served`` and ``cli`` are fixtures of tests/server/conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from bastion.server.storage import migrate, open_storage


def on_store(url: str, work: Any) -> Any:
    """``await work(store)`` on the database at ``url``, migrated first."""
    async def go() -> Any:
        store = open_storage(url)
        try:
            await migrate.upgrade(store.engine)
            return await work(store)
        finally:
            await store.close()
    return asyncio.run(go())
