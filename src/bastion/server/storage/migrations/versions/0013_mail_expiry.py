"""When a queued mail's link stops working (``outbox.expires_at``).

Sign-in and email-change mail carries its link's expiry; the outbox worker settles
such a mail unsent once that has passed (after an SMTP outage, say), rather than
deliver a dead link. Mail queued before, and other mail, has none and never expires.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("expires_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN, as in 0010 and 0012.
    op.drop_column("outbox", "expires_at")
