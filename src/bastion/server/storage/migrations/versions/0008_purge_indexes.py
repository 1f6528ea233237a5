"""Indexes for the housekeeping purge (``Storage.purge``): it deletes expired rows by
their expiry (or creation) time, and grants no code or refresh token refers to.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (name, table, columns), as in ``tables.PURGE_INDEXES``
_INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_authorization_codes_expires", "authorization_codes", ["expires_at"]),
    ("ix_authorization_codes_grant", "authorization_codes", ["grant_id"]),
    ("ix_refresh_tokens_expires", "refresh_tokens", ["expires_at"]),
    ("ix_revoked_access_tokens_expires", "revoked_access_tokens", ["expires_at"]),
    ("ix_login_sessions_expires", "login_sessions", ["expires_at"]),
    ("ix_grants_created", "grants", ["created_at", "id"]),
    ("ix_one_time_tokens_expires", "one_time_tokens", ["expires_at"]),
    ("ix_outbox_created", "outbox", ["created_at"]),
    ("ix_login_throttle_last_failure", "login_throttle", ["last_failure_at"]),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        # IF NOT EXISTS: on large PostgreSQL tables an operator may have built them
        # beforehand with CREATE INDEX CONCURRENTLY (see docs/deployment.md)
        op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table)
