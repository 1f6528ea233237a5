"""Scope checks (RFC 6749 section 3.3)."""

from __future__ import annotations

from bastion.oauth.errors import InvalidScope
from bastion.server.models import Client


def granted_scope(requested: str | None, client: Client) -> str:
    """The scope to grant: what was asked, if the client may have all of it; the
    client's registered scopes when nothing was asked."""
    if requested is None:
        return " ".join(client.scopes)
    wanted = list(dict.fromkeys(requested.split()))
    extra = [s for s in wanted if s not in client.scopes]
    if extra:
        raise InvalidScope(f"Scope not allowed for this client: {' '.join(extra)}.")
    return " ".join(wanted)
