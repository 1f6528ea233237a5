"""When a user's email address was proven theirs (``users.email_verified_at``).

Set when they use a link mailed to it (sign-in, sign-up, email change) or when an
administrator says so; cleared when the address changes otherwise. ID tokens and
UserInfo carry it as ``email_verified``. Addresses stored before are unverified.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email_verified_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35 or later), not a batch: rebuilding users on SQLite
    # would lose the unique lower(...) indexes and the search triggers, which SQLAlchemy
    # cannot read back.
    op.drop_column("users", "email_verified_at")
