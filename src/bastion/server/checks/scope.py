"""Scope checks (RFC 6749 section 3.3)."""

from __future__ import annotations

from collections.abc import Collection

from bastion.oauth.errors import InvalidScope
from bastion.server.models import Client, User

#: What makes a token an administrator's in the REST API (``api.auth``).
ADMIN_SCOPE = "bastion:admin"


#: Scopes of OpenID Connect Core that apps' libraries often ask for by default:
#: granted only to a client registered for them, otherwise left out of the grant
#: rather than failing the sign-in (Core 3.1.2.1: values not understood SHOULD be
#: ignored). Refresh tokens come with the ``refresh_token`` grant type, not with
#: ``offline_access``; Bastion has no phone or address claims.
OPTIONAL_SCOPES = frozenset({"offline_access", "phone", "address"})


def _wanted(requested: str, allowed: Collection[str]) -> list[str]:
    """The scopes asked for, once each, but ``OPTIONAL_SCOPES`` not in ``allowed``.
    Raises ``InvalidScope`` when that leaves none of several asked for: a token of no
    scope is not what was asked for (RFC 6749 section 3.3; section 6 for a refresh)."""
    asked = list(dict.fromkeys(requested.split()))
    wanted = [s for s in asked if s in allowed or s not in OPTIONAL_SCOPES]
    if asked and not wanted:
        raise InvalidScope(f"Scope not granted to this client: {' '.join(asked)}.")
    return wanted


def granted_scope(requested: str | None, client: Client) -> str:
    """The scope to grant: what was asked, if the client may have all of it (but
    ``OPTIONAL_SCOPES``, left out when it may not); the client's registered scopes when
    nothing was asked."""
    if requested is None:
        return " ".join(client.scopes)
    wanted = _wanted(requested, client.scopes)
    extra = [s for s in wanted if s not in client.scopes]
    if extra:
        raise InvalidScope(f"Scope not allowed for this client: {' '.join(extra)}.")
    return " ".join(wanted)


def narrowed_scope(requested: str, granted: str) -> str:
    """A refresh's scope (RFC 6749 section 6): what was asked, within what was granted;
    an optional scope left out of the grant is left out again (a client that sends its
    original request's scope on every refresh), and ``bastion:admin`` is left out for
    a grant without it, as a sign-in leaves it out for anyone but an administrator."""
    held = granted.split()
    wanted = [s for s in _wanted(requested, held) if s in held or s != ADMIN_SCOPE]
    extra = [s for s in wanted if s not in held]
    if extra:
        raise InvalidScope("A refresh cannot widen the scope; not granted, or no longer "
                           f"allowed for this client: {' '.join(extra)}.")
    return " ".join(wanted)


def for_user(scope: str, user: User, asked: bool = True) -> str:
    """``scope`` for a token of ``user``: without ``bastion:admin`` unless they are an
    administrator and it was ``asked`` for (not a client's registered scopes taken by
    default): an administrator's token is an admin's only when wanted as one, and the
    scope grants nothing to anyone else. The server may issue less than was asked (RFC
    6749 section 3.3); the answer's ``scope`` says so."""
    if ADMIN_SCOPE not in scope or (user.is_administrator and asked):
        return scope
    return " ".join(s for s in scope.split() if s != ADMIN_SCOPE)


def still_allowed(scope: str, client: Client, user: User) -> str:
    """A stored grant's ``scope`` as it may be issued now: without the scopes its
    client is no longer registered for, and without ``bastion:admin`` for a user who is
    an administrator no more. A narrowed client or a demoted user takes effect on the
    next refresh, not only on the next sign-in."""
    return for_user(" ".join(s for s in scope.split() if s in client.scopes), user)
