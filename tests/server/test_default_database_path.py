"""The default SQLite database is data_dir/bastion.db whatever characters the data
directory's path holds: its URL was built by pasting the path in, and SQLAlchemy read
a '%' escape or a '?' (a query) in it, so the database (and its migration lock) went
elsewhere: ``My%20Projects`` became ``My Projects``."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from bastion.server.settings import Settings, load_settings

NAMES = ["with space", "hash#dir", "pct%41dir", "q?mark=1", "at@sign", "semi;colon",
         "My%20Projects", "plus+sign", "x%2Fy", "%", "ü", os.fsdecode(b"d\xff")]




@pytest.mark.parametrize("name", NAMES)
def test_the_default_database_url_names_the_file_in_the_data_dir(tmp_path, name) -> None:
    settings = Settings(data_dir=tmp_path / name)
    url = sa.make_url(settings.resolved_database_url)
    assert url.database == str((tmp_path / name / "bastion.db").resolve())
    assert not url.query


def test_every_command_uses_the_database_in_the_data_dir(cli, tmp_path) -> None:
    data = str(tmp_path / "q?x=1%41")
    code, err = cli("clients", "create", "--name", "App", "--public", "--redirect-uri",
                    "https://app.example/cb", "--data-dir", data)
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["q?x=1%41"]
    assert sorted(p.name for p in Path(data).iterdir()) == [
        "bastion.db", "bastion.db.migrate-lock"]
    assert clients_in(Path(data) / "bastion.db") == ["App"]
    code, err = cli("clients", "create", "--name", "Other", "--public", "--redirect-uri",
                    "https://other.example/cb", "--data-dir", data)
    assert code == 0, err
    assert clients_in(Path(data) / "bastion.db") == ["App", "Other"]


def test_the_quick_start_in_a_directory_named_with_an_escape(
        cli, served, tmp_path, monkeypatch) -> None:
    """``bastion serve`` with no setting, run from ``My%20Projects``: it made its
    database in ``My Projects``, and the next command found none where it looked."""
    here = tmp_path / "My%20Projects"
    here.mkdir()
    monkeypatch.chdir(here)
    code, err = cli("serve")
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["My%20Projects"]
    assert (here / "bastion-data" / "bastion.db").exists()
    worker = load_settings()  # as create_app_from_env, from what serve set for it
    assert worker.resolved_database_url == served[0].resolved_database_url
    monkeypatch.delenv("BASTION_DATA_DIR")  # set for its workers
    code, err = cli("clients", "create", "--name", "App", "--public", "--redirect-uri",
                    "https://app.example/cb")  # finds the database serve made, or refuses
    assert code == 0, err
    assert clients_in(here / "bastion-data" / "bastion.db") == ["App"]
    assert [p.name for p in tmp_path.iterdir()] == ["My%20Projects"]


def clients_in(db: Path) -> list[str]:
    """The names of the clients in the SQLite file ``db``, read by sqlite3 itself."""
    assert db.exists()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [name for (name,) in conn.execute("SELECT name FROM clients ORDER BY name")]
