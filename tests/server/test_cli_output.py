"""``bastion clients list | head -1``: a reader that goes away is no database error."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from bastion.server.services.clients import create_client
from bastion.server.storage import migrate, open_storage
from support import BASTION, server_env


@pytest.mark.parametrize("clients", [1, 80])  # flushed at exit; failing in mid-list
def test_a_closed_stdout_ends_the_command_quietly(tmp_path, clients: int) -> None:
    """It said "error: the database cannot be reached: BrokenPipeError" (or Python's
    "Exception ignored ... BrokenPipeError" at exit)."""
    env = server_env(tmp_path)

    async def made() -> None:
        store = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}")
        try:
            await migrate.upgrade(store.engine)
            for n in range(clients):
                await create_client(store, name=f"app {n}", grant_types=["client_credentials"])
        finally:
            await store.close()

    asyncio.run(made())
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes a byte
    try:
        done = subprocess.run([*BASTION, "clients", "list"], env=env, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a command the signal ended
