"""Signing keys are published before they sign (``signing_keys.activated_at``).

A key with no ``activated_at`` is its use's next key: in the JWKS, not signing until
the next rotation activates it. Keys stored before are active or retired, so they
count as activated when they were created; servers publish the missing next keys
when they start (``KeyRing.ensure``).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ACTIVE = "retired_at IS NULL AND activated_at IS NOT NULL"
_NEXT = "retired_at IS NULL AND activated_at IS NULL"


def upgrade() -> None:
    op.add_column("signing_keys", sa.Column("activated_at", UTCDateTime, nullable=True))
    op.execute("UPDATE signing_keys SET activated_at = created_at")
    op.drop_index("uq_signing_keys_active", "signing_keys")
    op.create_index("uq_signing_keys_active", "signing_keys", ["use"], unique=True,
                    sqlite_where=sa.text(_ACTIVE), postgresql_where=sa.text(_ACTIVE))
    op.create_index("uq_signing_keys_next", "signing_keys", ["use"], unique=True,
                    sqlite_where=sa.text(_NEXT), postgresql_where=sa.text(_NEXT))


def downgrade() -> None:
    op.execute("DELETE FROM signing_keys WHERE activated_at IS NULL")
    op.drop_index("uq_signing_keys_next", "signing_keys")
    op.drop_index("uq_signing_keys_active", "signing_keys")
    op.create_index("uq_signing_keys_active", "signing_keys", ["use"], unique=True,
                    sqlite_where=sa.text("retired_at IS NULL"),
                    postgresql_where=sa.text("retired_at IS NULL"))
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_column("activated_at")
