"""Erasing a user (``POST /api/v1/users/{id}/erase``).

- ``users.erased_at``: when the user's personal data was erased. The row stays, with
  placeholders for its name and address, so that the grants, logout notices and
  audit events that name the user's id still point at a row.
- ``outbox.user_id``: the user a mail is about (if any), so that erasing them finds
  the mail to every address they had (a notice to an old address names the new one).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.tables import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("erased_at", UTCDateTime, nullable=True))
    op.add_column("outbox", sa.Column("user_id", sa.String(36), nullable=True))
    op.create_index("ix_outbox_user_id", "outbox", ["user_id"])


def downgrade() -> None:
    # Plain DROP COLUMNs, as in 0010: rebuilding users on SQLite would lose its
    # lower(...) indexes and search triggers.
    op.drop_index("ix_outbox_user_id", "outbox")
    op.drop_column("outbox", "user_id")
    op.drop_column("users", "erased_at")
