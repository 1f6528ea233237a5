"""OAuth clients on SQLAlchemy (mixed into SQLStorage)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bastion.server.models import Client
from bastion.server.storage.base import DeleteClientResult
from bastion.server.storage.prepared import select_by
from bastion.server.storage.sql_base import SQLBase, values
from bastion.server.storage.sql_grants import revoke_grants
from bastion.server.storage.tables import clients, grants

_LIVE = clients.c.deleted_at.is_(None)
_LISTS = ("redirect_uris", "grant_types", "scopes", "post_logout_redirect_uris")


def _client(row: Mapping[Any, Any]) -> Client:
    return Client(**{**row, **{f: tuple(row[f]) for f in _LISTS}})


def _row(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if k in _LISTS else v for k, v in changes.items()}


class ClientsMixin(SQLBase):
    async def create_client(self, client: Client) -> None:
        row = _row(values(client))
        row["created_at"] = client.created_at or datetime.now(UTC)
        await self._insert(clients, row)

    async def get_client(self, client_id: str) -> Client | None:
        row = await self._one(select_by(clients, "client_id"), {"client_id": client_id})
        return _client(row) if row and row["deleted_at"] is None else None

    async def list_clients(self, limit: int, offset: int) -> tuple[list[Client], int]:
        def page(conn: sa.Connection) -> tuple[list[Client], int]:
            rows = conn.execute(sa.select(clients).where(_LIVE).order_by(
                clients.c.created_at, clients.c.client_id).limit(limit).offset(offset)
            ).mappings()
            items = [_client(row) for row in rows]
            total = conn.execute(sa.select(sa.func.count()).select_from(clients)
                                 .where(_LIVE)).scalar_one()
            return items, int(total)
        return await self._read(page)

    async def update_client(
        self, client_id: str, change: Callable[[Client], Mapping[str, Any]]
    ) -> Client | None:
        where = sa.and_(clients.c.client_id == client_id, _LIVE)

        def update(conn: sa.Connection) -> Client | None:
            row = conn.execute(sa.select(clients).where(where).with_for_update()
                               ).mappings().first()
            if row is None:
                return None
            current = _client(row)
            changes = change(current)  # may raise: nothing is written
            if not changes:
                return current
            conn.execute(clients.update().where(where).values(**_row(changes)))
            return _client(conn.execute(sa.select(clients).where(where)).mappings().one())
        return await self._write(update)

    async def delete_client(self, client_id: str, at: datetime) -> DeleteClientResult:
        def delete(conn: sa.Connection) -> DeleteClientResult:
            done = conn.execute(clients.update().where(clients.c.client_id == client_id, _LIVE)
                                .values(deleted_at=at, secret_digest=None,
                                        previous_secret_digest=None))
            if done.rowcount != 1:
                found = conn.execute(sa.select(clients.c.client_id)
                                     .where(clients.c.client_id == client_id)).first()
                return "missing" if found is None else "already"
            # Its codes, refresh tokens and access tokens die with its grants. grants has
            # no client_id index (one more b-tree write per login): a rare admin call
            # may scan the table.
            revoke_grants(conn, sa.select(grants.c.id).where(grants.c.client_id == client_id),
                          at)
            return "deleted"
        return await self._write(delete, may_wait=True)
