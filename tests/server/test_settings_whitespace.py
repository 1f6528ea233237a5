"""A secret key or a database URL given with white space around it (a Kubernetes secret
made ``--from-file``, an env file written with ``echo``: a trailing newline) is taken
without it, by the server and every command alike, as data_dir/secret_key and
``--old-secret-key-file`` always were. A store that releases before this one encrypted
under the key with its newline keeps working: it is encrypted again without it."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cli_helpers import one_line
from ops_helpers import on_store

import bastion.cli
from bastion.server import keys
from bastion.server.keys import KeyCipher, KeyDecryptionError, KeyRing
from bastion.server.models import OutgoingMail, SigningKey
from bastion.server.services import outbox
from bastion.server.settings import Settings
from bastion.server.storage import tables
from support import ISSUER

KEY = "white-space-" + "k" * 40
NL = KEY + "\n"  # as a secret made from a file gives it
NEW = "new-secret-" + "n" * 40




def run(data: Path, work: Any) -> Any:
    return on_store(Settings(data_dir=data).resolved_database_url, work)


@pytest.fixture
def previous_release(monkeypatch) -> Any:
    """``prepare(data, secret)``: keys (a retired one, two that sign, two next ones) and
    a queued mail stored under ``secret`` exactly as given, as releases before this one
    did with BASTION_SECRET_KEY."""
    def prepare(data: Path, secret: str, mail_secret: str | None = None) -> None:
        settings = Settings(data_dir=data, secret_key=KEY, issuer=ISSUER)
        with monkeypatch.context() as patch:
            patch.setattr(Settings, "secret_key_bytes", lambda self: secret.encode())

            async def work(store: Any) -> None:
                await KeyRing(store, settings).ensure()
                await keys.rotate(store, settings, ("access",))
                seal = outbox.Seal((mail_secret or secret).encode())
                assert await outbox.enqueue(store, seal, "ann@example.com", "Your sign-in link",
                                            "sign_in", client_name="App",
                                            link=f"{ISSUER}/login/link?token=t",
                                            expires_in="15 minutes")
            run(data, work)
    return prepare


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
    assert settings.secret_key_as_given() == f"  {KEY}\r\n".encode()
    assert settings.database_url_as_given() == f"sqlite+aiosqlite:///{db}\n"
    # `bastion serve` copies them with the issuer it builds
    assert settings.model_copy(update={"issuer": ISSUER}).secret_key_as_given() == \
        f"  {KEY}\r\n".encode()
    monkeypatch.delenv("BASTION_SECRET_KEY")
    monkeypatch.delenv("BASTION_DATABASE_URL")
    config = tmp_path / "bastion.toml"
    config.write_text(f'secret_key = "{KEY}\\n"\n')
    monkeypatch.setenv("BASTION_CONFIG_FILE", str(config))
    assert Settings().secret_key_bytes() == KEY.encode()
    assert Settings(secret_key=f"\t{KEY} ").secret_key_bytes() == KEY.encode()
    assert Settings(secret_key=KEY).secret_key_as_given() is None


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


@pytest.mark.parametrize(("before", "now"), [
    pytest.param(NL, NL, id="the-secret-as-it-was"),
    pytest.param(NL, KEY, id="the-newline-taken-out-of-the-secret-too"),
    pytest.param(KEY + "\r\n", KEY, id="crlf-taken-out"),
    pytest.param(" " + KEY, " " + KEY, id="a-leading-space"),
])
def test_serve_encrypts_a_store_under_the_key_with_white_space_again(
        cli, served, previous_release, tmp_path, caplog, before, now) -> None:
    data = tmp_path / "data"
    previous_release(data, before)
    code, err = cli("serve", "--data-dir", str(data), BASTION_SECRET_KEY=now)
    assert code == 0, err
    assert len(served) == 1
    assert under(KEY, data) and not under(before, data)
    assert "white space" in caplog.text and KEY not in caplog.text and KEY not in err

    async def events(store: Any) -> list[Any]:
        return (await store.list_events({"action": "secret_key.rotate"}, 10, 0))[0]
    assert [e.detail for e in run(data, events)] == [
        {"via": "cli", "keys": 5, "mail": 1, "white_space": True}]
    # and once only; from cron, without the newline, every command works
    code, err = cli("keys", "rotate", "--data-dir", str(data), BASTION_SECRET_KEY=KEY)
    assert code == 0, err
    assert len(run(data, events)) == 1


def test_a_store_under_another_key_is_left_as_it_is(
        cli, previous_release, tmp_path) -> None:
    data = tmp_path / "data"
    previous_release(data, NEW + "\n")
    before = stored(data)[0]
    code, err = cli("keys", "rotate", "--data-dir", str(data), BASTION_SECRET_KEY=NL)
    assert code == 1 and "cannot be decrypted" in one_line(err)
    assert stored(data)[0] == before


def test_a_store_that_cannot_be_encrypted_again_says_why_and_changes_nothing(
        cli, previous_release, tmp_path) -> None:
    """A mail under a third key: ``secret-key rotate`` refuses it all, and so does this."""
    data = tmp_path / "data"
    previous_release(data, NL, mail_secret=NEW)
    before = stored(data)[0]
    code, err = cli("keys", "rotate", "--data-dir", str(data), BASTION_SECRET_KEY=NL)
    line = one_line(err)
    assert code == 1 and "white space" in line and "opens under neither" in line
    assert KEY not in err
    assert stored(data)[0] == before


@pytest.mark.parametrize("from_file", [True, False])
def test_a_backup_under_the_key_with_its_newline_moves_to_a_new_key(
        cli, previous_release, tmp_path, from_file) -> None:
    """The old secret key is taken without its white space, and else as given."""
    data = tmp_path / "data"
    previous_release(data, NL)
    secret_file = tmp_path / "old"
    secret_file.write_text(NL)
    given = (("--old-secret-key-file", str(secret_file)), {}) if from_file else \
        ((), {"BASTION_OLD_SECRET_KEY": NL})
    code, err = cli("secret-key", "rotate", "--data-dir", str(data), *given[0],
                    BASTION_SECRET_KEY=NEW, **given[1])
    assert code == 0, err
    assert under(NEW, data)


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


def test_a_database_named_with_the_newline_is_not_left_for_a_new_empty_one(
        cli, tmp_path) -> None:
    """Releases before this one created it so; a new one beside it would have started
    empty: no users, no clients, new signing keys."""
    db = tmp_path / "bastion.db"
    code, err = cli("migrate", "--database-url", f"sqlite+aiosqlite:///{db}%0A")
    assert code == 0, err
    assert (tmp_path / "bastion.db\n").exists()
    code, err = cli("migrate", BASTION_DATABASE_URL=f"sqlite+aiosqlite:///{db}\n")
    assert code == 1 and "rename it" in one_line(err) and str(db) in one_line(err)
    assert not db.exists()
    (tmp_path / "bastion.db\n").rename(db)
    code, err = cli("migrate", BASTION_DATABASE_URL=f"sqlite+aiosqlite:///{db}\n")
    assert code == 0, err


def test_an_error_hides_the_database_url_given_with_a_newline(monkeypatch) -> None:
    url = "postgresql+asyncpg://bastion:pw-secret@db.example/bastion"
    monkeypatch.setenv("BASTION_DATABASE_URL", url + "\n")
    message = bastion.cli._without_password(f"cannot use {url}: refused",
                                            argparse.Namespace(database_url=None))
    assert message == "cannot use ***: refused"


def test_a_store_under_the_key_without_white_space_is_left_as_it_is(
        cli, tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    data = str(tmp_path / "data")
    assert cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY=KEY)[0] == 0
    assert cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY=NL)[0] == 0
    assert "white space" not in caplog.text
