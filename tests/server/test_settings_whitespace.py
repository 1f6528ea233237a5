"""A secret key or a database URL given with white space around it (a Kubernetes secret
made ``--from-file``, an env file written with ``echo``: a trailing newline) is taken
without it, by the server and every command alike, as data_dir/secret_key and
``--old-secret-key-file`` always were."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cli_helpers import Invoke, cli_runner
from ops_helpers import on_store

import bastion.cli
from bastion.server.keys import KeyCipher, KeyDecryptionError
from bastion.server.models import OutgoingMail, SigningKey
from bastion.server.services import outbox
from bastion.server.settings import Settings
from bastion.server.storage import tables

KEY = "white-space-" + "k" * 40
NL = KEY + "\n"  # as a secret made from a file gives it
NEW = "new-secret-" + "n" * 40


@pytest.fixture
def cli(monkeypatch, capsys) -> Invoke:
    return cli_runner(monkeypatch, capsys)


def run(data: Path, work: Any) -> Any:
    return on_store(Settings(data_dir=data).resolved_database_url, work)


def stored(data: Path) -> tuple[list[SigningKey], list[OutgoingMail]]:
    async def work(store: Any) -> tuple[list[SigningKey], list[OutgoingMail]]:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(tables.outbox))).mappings().all()
        return await store.signing_keys(), [OutgoingMail(**row) for row in rows]
    return run(data, work)


def under(secret: str, data: Path) -> bool:
    """Whether every stored key and queued mail opens under ``secret``."""
    found, mail = stored(data)
    try:
        for key in found:
            KeyCipher(secret.encode()).decrypt(key.kid, key.private_key_enc)
        for queued in mail:
            outbox.Seal(secret.encode()).open(queued)
    except (KeyDecryptionError, outbox.SealError):
        return False
    return bool(found)


def test_the_settings_leave_the_white_space_out(tmp_path, monkeypatch) -> None:
    for name in [k for k in os.environ if k.startswith("BASTION_")]:
        monkeypatch.delenv(name)
    db = tmp_path / "b.db"
    monkeypatch.setenv("BASTION_SECRET_KEY", f"  {KEY}\r\n")
    monkeypatch.setenv("BASTION_DATABASE_URL", f"sqlite+aiosqlite:///{db}\n")
    settings = Settings()
    assert settings.secret_key_bytes() == KEY.encode()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{db}"
    monkeypatch.delenv("BASTION_SECRET_KEY")
    monkeypatch.delenv("BASTION_DATABASE_URL")
    config = tmp_path / "bastion.toml"
    config.write_text(f'secret_key = "{KEY}\\n"\n')
    monkeypatch.setenv("BASTION_CONFIG_FILE", str(config))
    assert Settings().secret_key_bytes() == KEY.encode()
    assert Settings(secret_key=f"\t{KEY} ").secret_key_bytes() == KEY.encode()


def test_the_commands_agree_with_a_server_given_the_key_with_a_newline(
        cli, tmp_path) -> None:
    """The server took the key with its newline, cron's ``$(cat file)`` without it, and
    ``--old-secret-key-file`` the same file without it: the last two were refused."""
    data = str(tmp_path / "data")
    assert cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY=NL)[0] == 0
    code, err = cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY=KEY)
    assert code == 0, err
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(NL)
    code, err = cli("secret-key", "rotate", "--data-dir", data, "--old-secret-key-file",
                    str(secret_file), BASTION_SECRET_KEY=NEW)
    assert code == 0, err
    assert under(NEW, Path(data))


def test_the_old_secret_key_from_the_environment_is_taken_without_white_space(
        cli, tmp_path) -> None:
    data = str(tmp_path / "data")
    assert cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY=KEY)[0] == 0
    code, err = cli("secret-key", "rotate", "--data-dir", data,
                    BASTION_SECRET_KEY=NEW, BASTION_OLD_SECRET_KEY=f" {KEY}\n")
    assert code == 0, err
    assert under(NEW, Path(data))


def test_a_sqlite_url_with_a_newline_names_the_file_without_it(cli, tmp_path) -> None:
    db = tmp_path / "bastion.db"
    code, err = cli("migrate", BASTION_DATABASE_URL=f"sqlite+aiosqlite:///{db}\n")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bastion.db",
                                                          "bastion.db.migrate-lock"]


def test_an_error_hides_the_database_url_given_with_a_newline(monkeypatch) -> None:
    url = "postgresql+asyncpg://bastion:pw-secret@db.example/bastion"
    monkeypatch.setenv("BASTION_DATABASE_URL", url + "\n")
    message = bastion.cli._without_password(f"cannot use {url}: refused",
                                            argparse.Namespace(database_url=None))
    assert message == "cannot use ***: refused"
