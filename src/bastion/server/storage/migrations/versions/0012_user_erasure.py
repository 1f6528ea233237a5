"""Erasing a user (``POST /api/v1/users/{id}/erase``).

- ``users.erased_at``: when the user's personal data was erased. The row stays, with
  placeholders for its name and address, so that the grants, logout notices and
  audit events that name the user's id still point at a row.

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


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("erased_at")
