"""Email addresses are one account whatever their letter case or Unicode form, on
every backend (SQLite's own ``lower()`` folds only ASCII); the upgrades that brought
that and the hourly throttle window keep the data stored before them."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from bastion.server.services import users as user_service
from bastion.server.services.errors import AlreadyExists
from bastion.server.services.passwords import Passwords
from bastion.server.settings import Settings
from bastion.server.storage import SQLStorage, migrate, open_storage
from bastion.server.storage.tables import users
from support import empty_store_url

NFD = unicodedata.normalize("NFD", "ärne@example.de")
SPELLINGS = ["ärne@example.de", "ÄRNE@Example.DE", "Ärne@example.de", NFD]


async def _create(storage: SQLStorage, username: str, email: str):
    passwords = Passwords(Settings(_env_file=None))  # type: ignore[call-arg]
    return await user_service.create_user(storage, passwords, username=username, email=email,
                                          password=None)


async def test_an_address_is_stored_folded_and_found_by_every_spelling(
        storage: SQLStorage) -> None:
    user = await _create(storage, "arne", "Ärne@Example.DE")
    assert user.email == "ärne@example.de"
    assert (await storage.get_user(user.id)).email == "ärne@example.de"  # type: ignore[union-attr]
    for spelling in SPELLINGS:
        found = await storage.get_user_by_login(spelling)
        assert found is not None and found.id == user.id, spelling
        assert [u.id for u in await storage.search_users(spelling[:4], 10, 0)] == [
            user.id], spelling


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_no_second_account_for_another_spelling(storage: SQLStorage, spelling: str) -> None:
    await _create(storage, "arne", "Ärne@example.de")
    with pytest.raises(AlreadyExists) as err:
        await _create(storage, "twin", spelling)
    assert err.value.field == "email"
    other = await _create(storage, "other", "other@example.de")
    passwords = Passwords(Settings(_env_file=None))  # type: ignore[call-arg]
    with pytest.raises(AlreadyExists):
        await user_service.update_user(storage, passwords, other.id, email=spelling)


NOW = datetime(2026, 1, 2, tzinfo=UTC)


def _row(n: int, email: str) -> dict[str, object]:
    return {"id": f"u{n}", "username": f"user{n}", "email": email, "password_hash": None,
            "is_administrator": False, "created_at": NOW, "updated_at": NOW}


async def _store_at(request: pytest.FixtureRequest, tmp_path, revision: str):
    store = open_storage(await empty_store_url(request, tmp_path, "at_" + revision),
                         pool_size=2)
    await migrate.upgrade(store.engine, revision)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def at_0004(request: pytest.FixtureRequest, tmp_path):
    """An empty store at revision 0004, before addresses were folded."""
    async for store in _store_at(request, tmp_path, "0004"):
        yield store


async def test_the_upgrade_folds_stored_addresses(at_0004: SQLStorage) -> None:
    async with at_0004.engine.begin() as conn:
        await conn.execute(sa.insert(users), [_row(1, "Alice@Example.COM"), _row(2, NFD),
                                              _row(3, "bob@example.com")])
    await migrate.upgrade(at_0004.engine)
    assert [u.email for u in [await at_0004.get_user(f"u{n}") for n in (1, 2, 3)] if u] == [
        "alice@example.com", "ärne@example.de", "bob@example.com"]
    found = await at_0004.get_user_by_login("ÄRNE@example.de")
    assert found is not None and found.id == "u2"


async def test_the_upgrade_stops_at_twins_and_names_both(at_0004: SQLStorage) -> None:
    async with at_0004.engine.begin() as conn:  # one address, two Unicode forms
        await conn.execute(sa.insert(users), [_row(1, "ärne@example.de"), _row(2, NFD)])
    with pytest.raises(RuntimeError, match="u1 and u2 have email addresses"):
        await migrate.upgrade(at_0004.engine)
    assert await migrate.current_revision(at_0004.engine) == "0004"  # nothing half done
    async with at_0004.engine.connect() as conn:  # the 0004 schema: not the storage's
        stored = (await conn.execute(sa.select(users.c.email).where(users.c.id == "u2"))
                  ).scalar()
    assert stored == NFD


@pytest.fixture(params=["sqlite", "postgresql"])
async def at_0002(request: pytest.FixtureRequest, tmp_path):
    """An empty store at revision 0002: an upgrade from it runs 0003 and 0004 (new
    tables, triggers) before 0005 can refuse twins."""
    async for store in _store_at(request, tmp_path, "0002"):
        yield store


async def _tables(store: SQLStorage) -> set[str]:
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_an_upgrade_stopped_half_way_leaves_nothing_behind_and_runs_again(
        at_0002: SQLStorage) -> None:
    # On SQLite the schema changes of 0003 and 0004 committed one by one, so after the
    # refusal the database said 0002 but had 0003's tables, and no later upgrade could
    # create them again ("table organizations already exists").
    before = await _tables(at_0002)
    async with at_0002.engine.begin() as conn:
        await conn.execute(sa.insert(users), [_row(1, "ärne@example.de"), _row(2, NFD)])
    with pytest.raises(RuntimeError, match="u1 and u2 have email addresses"):
        await migrate.upgrade(at_0002.engine)
    assert await migrate.current_revision(at_0002.engine) == "0002"
    assert await _tables(at_0002) == before  # no organizations, roles, outbox ...
    async with at_0002.engine.begin() as conn:  # what the refusal asks of the operator
        await conn.execute(sa.update(users).where(users.c.id == "u2")
                           .values(email="arne2@example.de"))
    await migrate.upgrade(at_0002.engine)
    assert await migrate.current_revision(at_0002.engine) == migrate.head_revision()
    assert {"organizations", "roles", "outbox"} <= await _tables(at_0002)
    found = await at_0002.get_user_by_login("ÄRNE@example.de")
    assert found is not None and found.id == "u1"


async def test_the_upgrade_finds_twins_that_fold_to_ascii(at_0004: SQLStorage) -> None:
    try:  # the Kelvin sign folds to an ASCII k; SQLite's lower() leaves it alone
        async with at_0004.engine.begin() as conn:
            await conn.execute(sa.insert(users), [_row(1, "\u212aim@example.io"),
                                                  _row(2, "kim@example.io")])
    except sa.exc.IntegrityError:  # PostgreSQL's lower() made them one address already
        assert at_0004.engine.dialect.name == "postgresql"
        return
    with pytest.raises(RuntimeError, match="u2 and u1 have email addresses"):
        await migrate.upgrade(at_0004.engine)


async def test_the_upgrade_starts_each_throttle_count_at_its_last_failure(
        at_0004: SQLStorage) -> None:
    async with at_0004.engine.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO login_throttle (key, failures, last_failure_at) VALUES ('k', 3, :at)"),
            {"at": NOW if at_0004.engine.dialect.name == "postgresql"
             else NOW.replace(tzinfo=None)})
    await migrate.upgrade(at_0004.engine)
    [count] = await at_0004.get_throttles(["k"])
    assert (count.failures, count.first_failure_at, count.last_failure_at) == (3, NOW, NOW)


async def test_the_upgrade_keeps_stored_signing_keys_signing(at_0004: SQLStorage) -> None:
    from bastion.server.models import SigningKey

    async with at_0004.engine.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO signing_keys (kid, alg, use, private_key_enc, public_jwk, created_at) "
            "VALUES ('old', 'ES256', 'access', :blob, '{}', :at)"),
            {"blob": b"\x01", "at": NOW if at_0004.engine.dialect.name == "postgresql"
             else NOW.replace(tzinfo=None)})
    await migrate.upgrade(at_0004.engine)
    [old] = await at_0004.signing_keys()
    assert (old.activated_at, old.retired_at) == (NOW, None)  # it signs, as before
    new = SigningKey(kid="new", alg="ES256", use="access", private_key_enc=b"\x01",
                     public_jwk={}, created_at=NOW)
    assert await at_0004.publish_signing_key(new)  # published ahead of its turn
    assert await at_0004.rotate_signing_key(replace(new, kid="next")) == "new"


async def test_the_purge_indexes_an_operator_built_beforehand_are_kept(
        at_0004: SQLStorage) -> None:
    """docs/deployment.md has operators of large PostgreSQL databases build migration
    0008's indexes beforehand (CONCURRENTLY); the upgrade then finds them."""
    await migrate.upgrade(at_0004.engine, "0007")
    documented = _documented_index_sql()
    async with at_0004.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        for statement in documented[:2]:  # some of them, as an interrupted run would
            if conn.dialect.name == "sqlite":
                statement = statement.replace(" CONCURRENTLY", "")
            await conn.execute(sa.text(statement))
    await migrate.upgrade(at_0004.engine)
    assert await migrate.current_revision(at_0004.engine) == migrate.head_revision()


def _documented_index_sql() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "deployment.md").read_text()
    return [line.rstrip(";") for line in text.splitlines()
            if line.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS ")]


def test_the_documented_index_statements_are_the_migrations() -> None:
    from bastion.server.storage.tables import PURGE_INDEXES

    expected = [f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index.name} ON "
                f"{index.table.name} ({', '.join(c.name for c in index.columns)})"  # type: ignore[union-attr]
                for index in PURGE_INDEXES]
    assert _documented_index_sql() == expected


async def _schema(store: SQLStorage) -> set[tuple[str, str]]:
    """The indexes and triggers of users and clients (what a table rebuild would lose)."""
    if store.engine.dialect.name == "sqlite":
        query = ("SELECT type, name FROM sqlite_master WHERE tbl_name IN ('users', 'clients') "
                 "AND type IN ('index', 'trigger')")
    else:
        query = ("SELECT 'index', indexname FROM pg_indexes WHERE tablename IN ('users', "
                 "'clients') UNION SELECT 'trigger', tgname FROM pg_trigger t JOIN pg_class c "
                 "ON c.oid = t.tgrelid WHERE c.relname IN ('users', 'clients') "
                 "AND NOT t.tgisinternal")
    async with store.engine.connect() as conn:
        return {(kind, name) for kind, name in await conn.execute(sa.text(query))}


async def test_undoing_the_newest_migrations_keeps_every_index_and_trigger(
        storage: SQLStorage) -> None:
    from alembic import command

    before = await _schema(storage)
    assert ("index", "uq_users_email") in before

    def down(conn: object) -> None:
        cfg = migrate._config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")

    async with storage.engine.begin() as conn:
        await conn.run_sync(down)
    assert await migrate.current_revision(storage.engine) == "0008"
    assert await _schema(storage) == before
    await migrate.upgrade(storage.engine)
    assert await _schema(storage) == before


async def test_0005_reads_users_a_page_at_a_time(at_0004: SQLStorage) -> None:
    """Addresses are folded on every page, not only the first."""
    from importlib import import_module

    fold_emails = import_module("bastion.server.storage.migrations.versions.0005_fold_emails")
    async with at_0004.engine.begin() as conn:
        await conn.execute(sa.insert(users), [_row(n, f"User{n}@Example.com") for n in range(5)])
        seen = await conn.run_sync(lambda c: list(fold_emails._all_users(c, batch=2)))
    assert [user_id for user_id, _ in seen] == [f"u{n}" for n in range(5)]


@pytest.fixture(params=["sqlite", "postgresql"])
async def at_0013(request: pytest.FixtureRequest, tmp_path):
    """A store at revision 0013, before settled deliveries and mail domains."""
    async for store in _store_at(request, tmp_path, "0013"):
        yield store


async def test_0014_takes_sent_deliveries_out_of_the_claims_range(at_0013: SQLStorage) -> None:
    """A sent row kept its next attempt, so every claim walked every sent row first."""
    from bastion.server.storage.tables import outbox

    async with at_0013.engine.begin() as conn:
        await conn.execute(sa.insert(outbox), [
            {"id": f"m{n}", "to": "a@example.com", "subject": "s", "text": "", "html": "",
             "created_at": NOW, "attempts": 1, "next_attempt_at": NOW,
             "sent_at": NOW if n else None} for n in range(3)])
    await migrate.upgrade(at_0013.engine)
    async with at_0013.engine.connect() as conn:
        due = await conn.execute(sa.select(outbox.c.id, outbox.c.next_attempt_at)
                                 .order_by(outbox.c.id))
        assert [(row.id, row.next_attempt_at is not None) for row in due] == [
            ("m0", True), ("m1", False), ("m2", False)]
    assert [m.id for m in await at_0013.claim_mail(NOW)] == ["m0"]


async def test_0015_stores_addresses_as_mail_delivers_to_them(at_0013: SQLStorage) -> None:
    async with at_0013.engine.begin() as conn:
        await conn.execute(sa.insert(users), [
            _row(1, "bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"),
            _row(2, "x@b\u00fccher.example"), _row(3, "ann@example.com")])
    await migrate.upgrade(at_0013.engine)
    assert [(await at_0013.get_user(f"u{n}")).email  # type: ignore[union-attr]
            for n in (1, 2, 3)] == ["bob@example.com", "x@b\u00fccher.example", "ann@example.com"]
    with pytest.raises(AlreadyExists):  # the account a plain spelling was open to before
        await _create(at_0013, "eve", "bob@example.com")


async def test_0015_names_two_users_whose_mail_goes_to_one_mailbox(at_0013: SQLStorage) -> None:
    async with at_0013.engine.begin() as conn:
        await conn.execute(sa.insert(users), [_row(1, "x@example.com"),
                                              _row(2, "x@exa\u00admple.com")])
    with pytest.raises(migrate.MigrationError, match="users u1 and u2 have email addresses "
                       "that mail delivers to one mailbox"):
        await migrate.upgrade(at_0013.engine)
