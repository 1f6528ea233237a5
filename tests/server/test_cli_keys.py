"""``bastion keys`` run where the servers' settings are not: a new key keeps the
algorithm of the key it follows."""

from __future__ import annotations

import asyncio

import pytest
from cli_helpers import Invoke, cli_runner

from bastion.server.models import SigningKey
from bastion.server.storage import open_storage


@pytest.fixture
def cli(monkeypatch, capsys) -> Invoke:
    return cli_runner(monkeypatch, capsys)


def stored(url: str) -> list[SigningKey]:
    async def read() -> list[SigningKey]:
        store = open_storage(url)
        try:
            return await store.signing_keys()
        finally:
            await store.close()
    return asyncio.run(read())


def test_a_rotation_without_the_algorithm_setting_keeps_the_servers_algorithm(
        cli, monkeypatch, tmp_path) -> None:
    """Run from cron without BASTION_ACCESS_TOKEN_ALG, on RS256 servers: the next key
    was ES256, and after the following rotation ES256 signed."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    where = ("--database-url", url, "--data-dir", str(tmp_path))
    code, err = cli("keys", "rotate", *where, BASTION_ACCESS_TOKEN_ALG="RS256")  # the servers'
    assert code == 0, err
    monkeypatch.delenv("BASTION_ACCESS_TOKEN_ALG")
    for _ in range(2):
        code, err = cli("keys", "rotate", *where)
        assert code == 0, err
    signing = next(k for k in stored(url) if k.use == "access" and k.activated_at
                   and not k.retired_at)
    code, err = cli("keys", "withdraw", signing.kid, *where)
    assert code == 0, err
    live = [k for k in stored(url) if k.retired_at is None]
    assert sorted((k.use, k.alg) for k in live) == [("access", "RS256")] * 2 + [("id", "RS256")] * 2
