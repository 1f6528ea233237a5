from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.server.storage import SQLStorage, migrate, open_storage
from support import empty_store_url


@pytest.fixture(params=["sqlite", "postgresql"])
async def storage(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[SQLStorage]:
    """A migrated, empty store on each backend: one contract, every backend."""
    store = open_storage(await empty_store_url(request, tmp_path, "contract"), pool_size=5)
    await migrate.upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(storage: SQLStorage) -> SQLStorage:
    """``storage`` with ``test_contract.user()`` and ``client()`` in it."""
    from test_contract import client, user

    await storage.create_user(user())
    await storage.create_client(client())
    return storage
