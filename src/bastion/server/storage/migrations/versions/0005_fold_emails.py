"""Email addresses are stored folded (lower case, NFC: ``bastion.server.text.fold``).

SQLite's ``lower()`` folds only ASCII, so its unique index on ``lower(email)`` let
``Ärne@example.com`` and ``ärne@example.com`` be two accounts, and neither signed in
by the other spelling. Folding in Python before storing makes every backend agree.
Two addresses that fold to one stop the upgrade with both users named: one of them
must be given another address first (with the previous version), as either could be
the mailbox's owner.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.migrate import MigrationError
from bastion.server.text import fold

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_users = sa.table("users", sa.column("id", sa.String), sa.column("email", sa.String))


def upgrade() -> None:
    bind = op.get_bind()
    changed = [{"user_id": user_id, "folded": fold(email), "stored": email}
               for user_id, email in _all_users(bind) if fold(email) != email]
    _refuse_twins(bind, changed)
    if changed:
        bind.execute(sa.update(_users).where(_users.c.id == sa.bindparam("user_id"))
                     .values(email=sa.bindparam("folded")), changed)


def _all_users(bind: sa.Connection, batch: int = 10_000) -> Iterator[tuple[str, str]]:
    """Every (id, email), a page at a time by id. Not a server-side cursor (yield_per):
    on PostgreSQL it stays open until the transaction ends, and a later migration's
    ALTER TABLE users in that transaction would fail (0010)."""
    after = ""
    while True:
        page = bind.execute(sa.select(_users.c.id, _users.c.email).where(_users.c.id > after)
                            .order_by(_users.c.id).limit(batch)).all()
        yield from ((user_id, email) for user_id, email in page)
        if len(page) < batch:
            return
        after = page[-1][0]


def _refuse_twins(bind: sa.Connection, changed: list[dict[str, str]]) -> None:
    """Twins can only hide behind non-ASCII characters: the unique index on
    ``lower(email)`` already kept ASCII spellings apart, on both backends. (Stored, not
    folded: the Kelvin sign U+212A folds to an ASCII ``k``.)"""
    seen: dict[str, str] = {}
    for row in changed:
        user_id, folded = row["user_id"], row["folded"]
        if row["stored"].isascii():
            continue
        other: str | None = seen.setdefault(folded, user_id)
        if other == user_id:
            other = bind.execute(sa.select(_users.c.id).where(
                sa.func.lower(_users.c.email) == folded, _users.c.id != user_id)).scalar()
        if other is not None and other != user_id:
            raise MigrationError(
                f"users {other} and {user_id} have email addresses that differ only in letter "
                f"case or Unicode form ({folded!r}); give one of them another address with "
                "the previous Bastion version, then upgrade again")


def downgrade() -> None:
    pass  # the original letter case is not kept; folded addresses are still valid
