"""What the SQLAlchemy storage mixins share: the engine and two small helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.server.storage.conflicts import conflict


class SQLBase:
    engine: AsyncEngine

    async def _insert(self, table: sa.Table, values: dict[str, Any]) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(table.insert().values(**values))
        except IntegrityError as exc:
            raise conflict(exc) from None

    async def _one(self, query: sa.Select[Any]) -> Mapping[str, Any] | None:
        async with self.engine.connect() as conn:
            row: Mapping[str, Any] | None = (await conn.execute(query)).mappings().first()
        return row


def values(record: Any) -> dict[str, Any]:
    """A dataclass record as column values."""
    return {f: getattr(record, f) for f in record.__dataclass_fields__}
