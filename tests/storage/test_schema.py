"""The migrations build the schema ``tables.py`` describes, on SQLite and PostgreSQL
(what the storage code reads and writes is what the database has)."""

from __future__ import annotations

import warnings
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bastion.server.storage import SQLStorage
from bastion.server.storage.tables import metadata


def _differences(conn: Any) -> list[Any]:
    def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        # User search's own indexes are made by the migrations only: SQLite's full-text
        # tables, PostgreSQL's trigram indexes.
        name = name or ""
        return not ((kind == "table" and name.startswith("users_fts"))
                    or (kind == "index" and name.endswith("_trgm")))

    context = MigrationContext.configure(conn, opts={"include_object": include})
    with warnings.catch_warnings():  # expression indexes cannot be reflected on SQLite
        warnings.simplefilter("ignore")
        return list(compare_metadata(context, metadata))


async def test_the_migrated_schema_is_the_one_the_code_uses(storage: SQLStorage) -> None:
    async with storage.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
