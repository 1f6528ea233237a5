"""``bastion keys`` run where the servers' settings are not: a new key keeps the
algorithm of the key it follows."""

from __future__ import annotations

import asyncio

from cli_helpers import cli_runner

from bastion.cli import main
from bastion.server import keys
from bastion.server.models import SigningKey
from bastion.server.storage import open_storage


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


def test_key_messages_give_the_servers_bound(monkeypatch, capsys, tmp_path) -> None:
    """They said RELOAD_EVERY, while servers go on RELOAD_GRACE more with keys at hand."""
    cli_runner(monkeypatch, capsys)  # no BASTION_* setting but these
    where = ["--database-url", f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}",
             "--data-dir", str(tmp_path)]
    assert main(["keys", "rotate", *where]) == 0
    assert "start signing with them within 1.25 s" in capsys.readouterr().out
    kid = next(k.kid for k in stored(where[1]) if k.use == "access" and k.activated_at
               and not k.retired_at)
    assert main(["keys", "withdraw", kid, *where]) == 0
    assert "drop it within 1.25 s" in capsys.readouterr().out
    assert keys.RELOAD_BOUND == 1.25
