from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from bastion.server.storage import SQLStorage, migrate, open_storage
from support import create_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def storage(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[SQLStorage]:
    """A migrated, empty store on each backend: one contract, every backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}"
    else:
        admin = request.getfixturevalue("pg_admin_url")
        url = await create_database(admin, f"contract_{uuid.uuid4().hex[:12]}")
    store = open_storage(url, pool_size=5)
    await migrate.upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()
