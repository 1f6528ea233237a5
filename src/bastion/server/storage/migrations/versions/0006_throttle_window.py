"""Throttle counts last an hour from their first attempt (``first_failure_at``).

Before, a count started over only after an hour without an attempt, so the budget of a
key many people share (a confidential client's server, an office's address) was
never renewed while they kept signing in, and their steady typos added up to a lock.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("login_throttle") as batch:
        batch.add_column(sa.Column("first_failure_at", UTCDateTime, nullable=True))
    op.execute("UPDATE login_throttle SET first_failure_at = last_failure_at")
    with op.batch_alter_table("login_throttle") as batch:
        batch.alter_column("first_failure_at", existing_type=UTCDateTime, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("login_throttle") as batch:
        batch.drop_column("first_failure_at")
