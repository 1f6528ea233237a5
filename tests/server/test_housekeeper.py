"""The background purge: it survives a failing database, logs and counts what it
deleted, stops when the server closes, and is off with ``housekeeping_interval=0``. (What a purge
deletes is the storage contract's, tests/storage/test_contract_purge.py; the real
process, tests/e2e/test_housekeeping.py.)"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bastion.server.services import housekeeping
from bastion.server.settings import Settings
from bastion.server.storage.base import Cutoffs


class FlakyStorage:
    """Fails its first purge, then deletes one refresh token a round."""

    def __init__(self) -> None:
        self.rounds = 0
        self.enough = asyncio.Event()

    async def purge(self, cutoffs: Cutoffs, limit: int) -> dict[str, int]:
        self.rounds += 1
        if self.rounds == 1:
            raise ConnectionError("the database is away")
        if self.rounds >= 3:
            self.enough.set()
        return {"refresh_tokens": 1}

    async def purge_grants(self, before: datetime, after: Any, limit: int) -> tuple[int, None]:
        return 0, None


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def settings(interval: int) -> Settings:
    return Settings(_env_file=None, housekeeping_interval=interval)  # type: ignore[call-arg]


async def test_a_failed_round_is_logged_and_the_next_one_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(housekeeping._random, "uniform", lambda low, high: 0.0)  # no waiting
    failed, done = (sample("bastion_purges_total", outcome=o) for o in ("failed", "done"))
    purged = sample("bastion_purged_rows_total", kind="refresh_tokens")
    storage = FlakyStorage()
    keeper = housekeeping.Housekeeper(storage, settings(3600))  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, "bastion.housekeeping"):
        await keeper.start()
        await asyncio.wait_for(storage.enough.wait(), 30)
        await keeper.close()
    assert "housekeeping failed" in caplog.text and "the database is away" in caplog.text
    assert "housekeeping deleted 1 refresh_tokens" in caplog.text
    assert sample("bastion_purges_total", outcome="failed") == failed + 1
    assert sample("bastion_purges_total", outcome="done") >= done + 2
    assert sample("bastion_purged_rows_total", kind="refresh_tokens") >= purged + 2
    rounds = storage.rounds
    await asyncio.sleep(0)
    assert storage.rounds == rounds  # stopped


async def test_an_interval_of_0_never_purges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(housekeeping._random, "uniform", lambda low, high: 0.0)
    storage = FlakyStorage()
    keeper = housekeeping.Housekeeper(storage, settings(0))  # type: ignore[arg-type]
    await keeper.start()
    for _ in range(10):
        await asyncio.sleep(0)
    await keeper.close()
    assert storage.rounds == 0
