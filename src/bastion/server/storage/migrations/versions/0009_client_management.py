"""Client management: secret rotation with an overlap, and deleted clients.

- ``clients.previous_secret_digest`` and ``previous_secret_expires_at``: the secret
  before the last rotation, accepted until then (NULL when there is none), so apps
  move to a new secret without downtime.
- ``clients.tokens_not_before``: the client's own tokens (client credentials, no
  grant) issued before it are refused; set by a rotation that ends the old secret at
  once, as after a leak.
- ``clients.deleted_at``: a deleted client is kept, marked, so its id is never
  reused and nothing issued for it comes back to life.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = ("deleted_at", "tokens_not_before", "previous_secret_expires_at",
            "previous_secret_digest")


def upgrade() -> None:
    op.add_column("clients", sa.Column("previous_secret_digest", sa.LargeBinary(32),
                                       nullable=True))
    op.add_column("clients", sa.Column("previous_secret_expires_at", UTCDateTime,
                                       nullable=True))
    op.add_column("clients", sa.Column("tokens_not_before", UTCDateTime, nullable=True))
    op.add_column("clients", sa.Column("deleted_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM clients WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("clients") as batch:
        for column in _COLUMNS:
            batch.drop_column(column)
