"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a session ends,
each client that holds tokens from it and registered a ``backchannel_logout_uri`` is
sent a logout token, server to server, so it can end its own session for the user.

https://openid.net/specs/openid-connect-backchannel-1_0.html

The storage queues one notice per client, user and session in the transaction that
ends the sessions (``revoke_session``, ``revoke_user_sessions``), so none is lost;
the outbox worker delivers them with its retries. The token is signed at each
attempt, with the ID-token key: it is fresh, and nothing secret waits in the database.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import httpx2

from bastion.oauth.claims import LOGOUT_EVENT
from bastion.server.keys import KeyRing
from bastion.server.metrics import LOGOUTS
from bastion.server.models import LogoutNotice
from bastion.server.services.outbox import Queue
from bastion.server.services.sessions import public_sid
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage

log = logging.getLogger("bastion.logout")

TOKEN_TTL = 120  # seconds: the token is sent at once, and signed again on a retry
POST_SECONDS = 10.0  # connect, send and answer; the outbox bounds a whole attempt too
LANES = 8  # clients posted to at once by an instance (one notice at a time per client)


class Refused(Exception):
    """The client's endpoint did not answer 2xx."""


def logout_claims(settings: Settings, notice: LogoutNotice, now: int) -> dict[str, Any]:
    """Section 2.4: no ``nonce``; ``sid`` when the grants came from a session."""
    claims: dict[str, Any] = {
        "iss": settings.issuer_url, "aud": notice.client_id, "iat": now,
        "exp": now + TOKEN_TTL, "jti": secrets.token_urlsafe(16), "sub": notice.user_id,
        "events": {LOGOUT_EVENT: {}},
    }
    if notice.session_id:
        claims["sid"] = public_sid(notice.session_id)
    return claims


def logout_queue(storage: Storage, keys: KeyRing, settings: Settings) -> Queue[LogoutNotice]:
    async def send(notice: LogoutNotice) -> bool:
        client = await storage.get_client(notice.client_id)
        uri = client.backchannel_logout_uri if client is not None else None
        if uri is None:  # deleted since, or no longer asks: nothing to tell
            return False
        signer = await keys.signer("id")
        token = signer.sign(logout_claims(settings, notice, int(time.time())),
                            typ="logout+jwt")
        # The token goes to the registered URI only: no redirect is followed. The
        # answer's body is never read (the status says it all).
        async with (httpx2.AsyncClient(timeout=POST_SECONDS, follow_redirects=False) as http,
                    http.stream("POST", uri, data={"logout_token": token},
                                headers={"Cache-Control": "no-store"}) as answer):
            if not answer.is_success:
                raise Refused(f"the client's back-channel logout URI answered "
                              f"{answer.status_code}")
        return True

    return Queue(
        claim=lambda now, busy: storage.claim_logout_notices(now, limit=1, skip_clients=busy),
        send=send,
        sent=lambda notice, at, claim: storage.logout_notice_sent(
            notice.id, at, claimed_until=claim),
        failed=lambda notice, reason, retry, at, claim: storage.logout_notice_failed(
            notice.id, reason, retry, at, claimed_until=claim),
        describe=lambda notice: f"back-channel logout {notice.id} to client {notice.client_id}",
        outcomes=LOGOUTS, log=log, lanes=LANES, lane=lambda notice: notice.client_id)
