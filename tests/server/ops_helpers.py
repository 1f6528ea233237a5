"""For the tests of what an operator runs: ``bastion serve`` with uvicorn left out, and
work on a store the way a command opens it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import bastion.cli
from bastion.server.storage import migrate, open_storage


def capture_serve(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The settings ``bastion serve`` starts uvicorn with, from now on, instead of
    starting it; the variables it sets for its workers are undone after the test."""
    started: list[Any] = []
    monkeypatch.setattr(bastion.cli, "_uvicorn",
                        lambda args, settings, issuer: started.append(settings))
    for name in ("BASTION_ISSUER", "BASTION_DATABASE_URL", "BASTION_DATA_DIR"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return started


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
