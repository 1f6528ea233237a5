"""Email addresses beyond ASCII are stored with their domain as mail delivers to it
(``bastion.server.text.mail_domain``, UTS 46: a soft hyphen or zero-width space
dropped, wide letters and an ideographic full stop made ASCII).

Addresses stored before kept such characters: ``x@exa<soft hyphen>mple.com`` stayed
an address of its own, beside ``x@example.com`` whose mailbox gets its mail, and an
account for the plain spelling could still be made. Two addresses that map to one
stop the upgrade with both users named, as in 0005.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.migrate import MigrationError
from bastion.server.text import mail_domain

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_users = sa.table("users", sa.column("id", sa.String), sa.column("email", sa.String))


def upgrade() -> None:
    bind = op.get_bind()
    changed = [{"user_id": user_id, "mapped": mail_domain(email)}
               for user_id, email in _beyond_ascii(bind) if mail_domain(email) != email]
    seen: dict[str, str] = {}
    for row in changed:
        other = seen.setdefault(row["mapped"], row["user_id"])
        if other == row["user_id"]:
            other = bind.execute(sa.select(_users.c.id).where(
                _users.c.email == row["mapped"])).scalar() or other
        if other != row["user_id"]:
            raise MigrationError(
                f"users {other} and {row['user_id']} have email addresses that mail "
                f"delivers to one mailbox ({row['mapped']!r}); give one of them another "
                "address with the previous Bastion version, then upgrade again")
    if changed:
        bind.execute(sa.update(_users).where(_users.c.id == sa.bindparam("user_id"))
                     .values(email=sa.bindparam("mapped")), changed)


def _beyond_ascii(bind: sa.Connection, batch: int = 10_000) -> list[tuple[str, str]]:
    """(id, email) of every user whose address is not ASCII, read a page at a time by
    id (see 0005)."""
    found: list[tuple[str, str]] = []
    after = ""
    while True:
        page = bind.execute(sa.select(_users.c.id, _users.c.email).where(_users.c.id > after)
                            .order_by(_users.c.id).limit(batch)).all()
        found += [(user_id, email) for user_id, email in page if not email.isascii()]
        if len(page) < batch:
            return found
        after = page[-1][0]


def downgrade() -> None:
    pass  # the characters dropped are not kept; the mapped addresses are still valid
