"""SQLAlchemy Core tables. Migrations in ``migrations/versions`` must match these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp: datetime = value
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(150), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("is_administrator", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Column("email_verified_at", UTCDateTime, nullable=True),
    sa.Column("erased_at", UTCDateTime, nullable=True),
)
sa.Index("uq_users_username", sa.func.lower(users.c.username), unique=True)
sa.Index("uq_users_email", sa.func.lower(users.c.email), unique=True)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("is_public", sa.Boolean, nullable=False),
    sa.Column("secret_digest", sa.LargeBinary(32), nullable=True),
    sa.Column("redirect_uris", sa.JSON, nullable=False),
    sa.Column("grant_types", sa.JSON, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("post_logout_redirect_uris", sa.JSON, nullable=False),
    sa.Column("previous_secret_digest", sa.LargeBinary(32), nullable=True),
    sa.Column("previous_secret_expires_at", UTCDateTime, nullable=True),
    sa.Column("tokens_not_before", UTCDateTime, nullable=True),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Column("backchannel_logout_uri", sa.Text, nullable=True),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("use", sa.String(16), nullable=False),
    sa.Column("private_key_enc", sa.LargeBinary, nullable=False),
    sa.Column("public_jwk", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("retired_at", UTCDateTime, nullable=True),
    sa.Column("activated_at", UTCDateTime, nullable=True),
)
# Per use, at most one key signs and one waits its turn, even under concurrent rotations.
_ACTIVE = sa.and_(signing_keys.c.retired_at.is_(None), signing_keys.c.activated_at.is_not(None))
sa.Index("uq_signing_keys_active", signing_keys.c.use, unique=True,
         sqlite_where=_ACTIVE, postgresql_where=_ACTIVE)
_NEXT = sa.and_(signing_keys.c.retired_at.is_(None), signing_keys.c.activated_at.is_(None))
sa.Index("uq_signing_keys_next", signing_keys.c.use, unique=True,
         sqlite_where=_NEXT, postgresql_where=_NEXT)

login_sessions = sa.Table(
    "login_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("auth_time", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("user_agent", sa.String(300), nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("session_id", sa.String(64), nullable=True, index=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("auth_time", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("organization_id", sa.String(36), nullable=True),
)

authorization_codes = sa.Table(
    "authorization_codes",
    metadata,
    sa.Column("digest", sa.LargeBinary(32), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(36), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("grant_id", sa.String(64), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("nonce", sa.String(255), nullable=True),
    sa.Column("code_challenge", sa.String(128), nullable=True),
    sa.Column("auth_time", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("consumed_at", UTCDateTime, nullable=True),
    sa.Column("organization_id", sa.String(36), nullable=True),
    sa.Column("redirect_uri_sent", sa.Boolean, nullable=False),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("digest", sa.LargeBinary(32), primary_key=True),
    sa.Column("grant_id", sa.String(64), nullable=False, index=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(36), nullable=False, index=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

revoked_access_tokens = sa.Table(
    "revoked_access_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

login_throttle = sa.Table(
    "login_throttle",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", UTCDateTime, nullable=False),
    sa.Column("locked_until", UTCDateTime, nullable=True),
    sa.Column("first_failure_at", UTCDateTime, nullable=False),
)

organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
sa.Index("uq_organizations_name", sa.func.lower(organizations.c.name), unique=True)

roles = sa.Table(
    "roles",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("organization_id", sa.String(36), sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
sa.Index("uq_roles_org_name", roles.c.organization_id, sa.func.lower(roles.c.name), unique=True)

role_permissions = sa.Table(
    "role_permissions",
    metadata,
    sa.Column("role_id", sa.String(36), sa.ForeignKey("roles.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("permission", sa.String(200), primary_key=True),
)

user_roles = sa.Table(
    "user_roles",
    metadata,
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("role_id", sa.String(36), sa.ForeignKey("roles.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("organization_id", sa.String(36), nullable=False),
)
sa.Index("ix_user_roles_org_user", user_roles.c.organization_id, user_roles.c.user_id)
sa.Index("ix_user_roles_role", user_roles.c.role_id)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=True, index=True),
    sa.Column("actor_type", sa.String(16), nullable=False),
    sa.Column("target", sa.String(200), nullable=True, index=True),
    sa.Column("client_id", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
)
sa.Index("ix_users_created", users.c.created_at, users.c.id)

def _delivery() -> list[sa.Column[Any]]:
    """The columns of a delivery queue's state (the outbox, logout notices), which
    ``sql_mail`` claims and settles the same way for both."""
    return [
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True, index=True),
        sa.Column("claimed_until", UTCDateTime, nullable=True),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("failed_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
    ]


outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("to", sa.String(320), nullable=False),
    sa.Column("user_id", sa.String(36), nullable=True, index=True),  # whom it is about
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),  # its link's end: not sent after
    *_delivery(),
)

# Back-channel logouts to deliver (``LogoutNotice``), queued and claimed as the
# outbox's mail is.
logout_notices = sa.Table(
    "logout_notices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(36), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
    *_delivery(),
)

one_time_tokens = sa.Table(
    "one_time_tokens",
    metadata,
    sa.Column("digest", sa.LargeBinary(32), primary_key=True),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("user_id", sa.String(36), nullable=True),
    sa.Column("client_id", sa.String(64), nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
)

# What ``Storage.purge`` deletes by, so a purge reads only the rows it deletes
# (migration 0008).
PURGE_INDEXES = (
    sa.Index("ix_authorization_codes_expires", authorization_codes.c.expires_at),
    sa.Index("ix_authorization_codes_grant", authorization_codes.c.grant_id),
    sa.Index("ix_refresh_tokens_expires", refresh_tokens.c.expires_at),
    sa.Index("ix_revoked_access_tokens_expires", revoked_access_tokens.c.expires_at),
    sa.Index("ix_login_sessions_expires", login_sessions.c.expires_at),
    sa.Index("ix_grants_created", grants.c.created_at, grants.c.id),
    sa.Index("ix_one_time_tokens_expires", one_time_tokens.c.expires_at),
    sa.Index("ix_outbox_created", outbox.c.created_at),
    sa.Index("ix_login_throttle_last_failure", login_throttle.c.last_failure_at),
)
