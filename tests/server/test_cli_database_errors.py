"""A database that cannot be used, or a database URL that cannot be: one line naming
what the driver said (never the URL or its password) and exit 1, no traceback."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import pytest
from cli_helpers import Invoke, cli_runner, one_line

from support import create_database


@pytest.fixture
def cli(monkeypatch, capsys) -> Invoke:
    return cli_runner(monkeypatch, capsys)


def test_a_file_that_is_no_database_is_named_by_the_driver(cli, tmp_path) -> None:
    """It said only "the database cannot be used: DatabaseError"."""
    (tmp_path / "bastion.db").write_bytes(b"not a database, " * 512)
    code, err = cli("migrate", "--data-dir", str(tmp_path))
    assert code == 1
    assert one_line(err) == ("error: the database cannot be used: DatabaseError: file is not "
                             "a database")


def test_asyncpgs_own_error_is_named_without_the_password(cli, pg_admin_url) -> None:
    """SQLAlchemy's asyncpg adapter wraps asyncpg's exceptions in one called Error."""
    password = secrets.token_urlsafe(16)
    url = pg_admin_url.replace("postgres@", f"postgres:{password}@").rsplit("/", 1)[0]
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    code, err = cli("migrate", "--database-url", f"{url}/{missing}")
    assert code == 1 and password not in err
    assert f'InvalidCatalogNameError: database "{missing}" does not exist' in one_line(err)
    asyncio.run(create_database(pg_admin_url, missing))
    assert cli("migrate", "--database-url", f"{url}/{missing}")[0] == 0
