"""Organizations, roles, permissions, audit events; fast user search.

Substring search on username and email is served by trigram indexes: pg_trgm GIN
indexes on PostgreSQL, an FTS5 trigram table kept in sync by triggers on SQLite.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from bastion.server.storage.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE users_fts USING fts5(username, email, content='users', "
    "content_rowid='rowid', tokenize='trigram')",
    "INSERT INTO users_fts(rowid, username, email) SELECT rowid, username, email FROM users",
    "CREATE TRIGGER users_fts_insert AFTER INSERT ON users BEGIN "
    "INSERT INTO users_fts(rowid, username, email) VALUES (new.rowid, new.username, new.email); "
    "END",
    "CREATE TRIGGER users_fts_delete AFTER DELETE ON users BEGIN "
    "INSERT INTO users_fts(users_fts, rowid, username, email) "
    "VALUES ('delete', old.rowid, old.username, old.email); END",
    "CREATE TRIGGER users_fts_update AFTER UPDATE OF username, email ON users BEGIN "
    "INSERT INTO users_fts(users_fts, rowid, username, email) "
    "VALUES ('delete', old.rowid, old.username, old.email); "
    "INSERT INTO users_fts(rowid, username, email) VALUES (new.rowid, new.username, new.email); "
    "END",
]


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("uq_organizations_name", "organizations", [sa.text("lower(name)")],
                    unique=True)
    op.create_table(
        "roles",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organization_id", sa.String(36), sa.ForeignKey("organizations.id"),
                  nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("uq_roles_org_name", "roles", ["organization_id", sa.text("lower(name)")],
                    unique=True)
    op.create_table(
        "role_permissions",
        sa.Column("role_id", sa.String(36), sa.ForeignKey("roles.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("permission", sa.String(200), primary_key=True),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("role_id", sa.String(36), sa.ForeignKey("roles.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("organization_id", sa.String(36), nullable=False),
    )
    op.create_index("ix_user_roles_org_user", "user_roles", ["organization_id", "user_id"])
    op.create_index("ix_user_roles_role", "user_roles", ["role_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    for column in ("at", "action", "actor", "target"):
        op.create_index(f"ix_events_{column}", "events", [column])
    op.create_index("ix_users_created", "users", ["created_at", "id"])
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("organization_id", sa.String(36), nullable=True))
    with op.batch_alter_table("authorization_codes") as batch:
        batch.add_column(sa.Column("organization_id", sa.String(36), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_users_username_trgm ON users "
                   "USING gin (lower(username) gin_trgm_ops)")
        op.execute("CREATE INDEX ix_users_email_trgm ON users "
                   "USING gin (lower(email) gin_trgm_ops)")
    elif op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS users_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS users_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_users_username_trgm")
        op.execute("DROP INDEX IF EXISTS ix_users_email_trgm")
    for table in ("events", "user_roles", "role_permissions", "roles", "organizations"):
        op.drop_table(table)
    op.drop_index("ix_users_created", "users")
