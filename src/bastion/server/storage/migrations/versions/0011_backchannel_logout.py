"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0).

- ``clients.backchannel_logout_uri``: where a client is told that a session it holds
  tokens from has ended (NULL: it is not told).
- ``logout_notices``: the logouts to deliver, queued in the transaction that ends the
  sessions and sent by the outbox worker with retries, as mail is.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.tables import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("backchannel_logout_uri", sa.Text, nullable=True))
    op.create_table(
        "logout_notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.Column("claimed_until", UTCDateTime, nullable=True),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("failed_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
    )
    op.create_index("ix_logout_notices_created_at", "logout_notices", ["created_at"])
    op.create_index("ix_logout_notices_next_attempt_at", "logout_notices", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("logout_notices")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("backchannel_logout_uri")
