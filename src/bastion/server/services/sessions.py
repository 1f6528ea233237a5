"""Login sessions: a row per browser sign-in, referenced by a signed cookie."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bastion.server.models import Event, LoginSession, User
from bastion.server.services.signing import Signer
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage

COOKIE = "bastion_session"
_PURPOSE = "session"


def public_sid(session_id: str) -> str:
    """The ``sid`` apps are given for a session (ID tokens, logout tokens): a hash of
    its id, never the id itself, which the session cookie carries with only its MAC
    to protect it. Whoever learnt the secret key could otherwise make the cookie of any
    session from an ID token an app was given, or logged."""
    digest = hashlib.sha256(b"bastion sid\0" + session_id.encode()).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


async def start(storage: Storage, settings: Settings, signer: Signer, user: User,
                user_agent: str, event: Event | None = None, *, password_checked: bool = False,
                ) -> tuple[LoginSession, str] | None:
    """A new session (a fresh id on every sign-in: no fixation) and its cookie value;
    ``event`` (the sign-in's audit event) is stored with it. None, storing nothing, if
    the user was deleted meanwhile, or (``password_checked``: the sign-in checked their
    password, or spent a link, which a new password cancels) given a new password since
    ``user`` was read."""
    now = datetime.now(UTC)
    session = LoginSession(
        id=secrets.token_urlsafe(24),
        user_id=user.id,
        auth_time=now,
        expires_at=_end(settings, now, now),
        created_at=now,
        user_agent=user_agent[:300],
    )
    if not await storage.create_session(
            session, event,
            password_hash=(user.password_hash or "") if password_checked else None):
        return None
    return session, signer.sign(_PURPOSE, session.id)


async def named(storage: Storage, signer: Signer,
                cookie: str | None) -> tuple[LoginSession, User] | None:
    """The session the cookie names and its user, unless it was ended or the user
    deleted; expired or not (its grants outlive it: a logout still ends them)."""
    session_id = signer.unsign(_PURPOSE, cookie)
    if session_id is None:
        return None
    session = await storage.get_session(session_id)
    if session is None or session.revoked_at:
        return None
    user = await storage.get_user(session.user_id)
    if user is None or user.deleted_at is not None:
        return None
    return session, user


async def current(storage: Storage, settings: Settings, signer: Signer,
                  cookie: str | None) -> tuple[LoginSession, User] | None:
    """The live session and user the cookie names, if any; using it keeps it alive
    (``session_idle_timeout``)."""
    found = await named(storage, signer, cookie)
    now = datetime.now(UTC)
    if found is None or found[0].expires_at <= now:
        return None
    session, user = found
    idle = settings.session_idle_timeout
    end = _end(settings, session.auth_time, now)
    # Written at most once a minute (or a tenth of the timeout): a page's burst of
    # requests costs one write.
    if idle and end - session.expires_at >= timedelta(seconds=max(1, min(60, idle // 10))):
        await storage.extend_session(session.id, end)
        session = replace(session, expires_at=end)
    return session, user


def _end(settings: Settings, auth_time: datetime, now: datetime) -> datetime:
    """When a session signed in at ``auth_time`` and used ``now`` ends: ``session_ttl``
    after the sign-in, or sooner, ``session_idle_timeout`` after this use."""
    end = auth_time + timedelta(seconds=settings.session_ttl)
    idle = settings.session_idle_timeout
    return min(end, now + timedelta(seconds=idle)) if idle else end


async def end(storage: Storage, session_id: str) -> None:
    await storage.revoke_session(session_id, datetime.now(UTC))
