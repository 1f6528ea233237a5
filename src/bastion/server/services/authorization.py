"""Authorization codes: issued after sign-in, exchanged once at the token endpoint."""

from __future__ import annotations

import secrets as _secrets
from datetime import UTC, datetime, timedelta

from bastion.server.models import AuthorizationCode, Client, Grant, LoginSession
from bastion.server.services import secrets
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage


async def issue_code(
    storage: Storage, settings: Settings, *, client: Client, session: LoginSession,
    redirect_uri: str, scope: str, nonce: str | None, code_challenge: str | None,
    organization_id: str | None = None, redirect_uri_sent: bool = True,
) -> str | None:
    """A new code and the grant its tokens will belong to; returns the plain code, or
    None if the session ended meanwhile (nothing is stored)."""
    now = datetime.now(UTC)
    grant = Grant(id=_secrets.token_urlsafe(18), client_id=client.client_id,
                  user_id=session.user_id, session_id=session.id, scope=scope,
                  auth_time=session.auth_time, created_at=now,
                  organization_id=organization_id)
    plain = secrets.new_secret()
    code = AuthorizationCode(
        digest=secrets.digest(plain), client_id=client.client_id, user_id=session.user_id,
        session_id=session.id, grant_id=grant.id, redirect_uri=redirect_uri, scope=scope,
        nonce=nonce, code_challenge=code_challenge, auth_time=session.auth_time,
        expires_at=now + timedelta(seconds=settings.authorization_code_ttl),
        organization_id=organization_id, redirect_uri_sent=redirect_uri_sent,
    )
    return plain if await storage.create_code(code, grant) else None


async def member_organization(storage: Storage, user_id: str, org: str) -> str | None:
    """The id of organization ``org`` (id or name) if the user holds a role in it."""
    found = await storage.get_organization(org)
    if found is None or not await storage.user_roles(user_id, found.id):
        return None
    return found.id
