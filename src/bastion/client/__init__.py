"""The Bastion SDK: sync and async clients for any OAuth 2.0 / OIDC provider.

Layout: ``_base`` is the I/O-free core (token endpoint, introspection,
revocation) over ``_discovery`` (settings, discovery, keys, verification);
``_authorization`` the I/O-free authorization code flow with PKCE and ID token
validation, ``_login`` the other flows for users (password grant, userinfo,
logout, revoke-all, token-set checks); ``_client`` and ``_async_client`` are
the two thin sending shells, their sign-in calls in ``_signin`` and
``_async_signin``; ``_auth`` holds the ``httpx2.Auth`` flows (client
credentials, and a user's refreshing ``TokenAuth``); ``state`` seals the OAuth
state; ``id_token`` validates ID tokens; ``connections`` holds named settings;
``_admin`` the I/O-free core of Bastion's REST API and ``_admin_users``,
``_admin_orgs``, ``_admin_events`` its flows, run by the namespaces
``client.users``, ``.organizations``, ``.roles``, ``.events`` (``_api`` and
``_async_api``); ``_passwordless`` emailed sign-in links and the account page;
``models`` the high-level ``User`` (``_user_admin``: its administration calls),
``organizations`` ``Organization``, ``Role``, ``Permission`` and ``Member``, ``events``
``Event`` (``_shared``: their clients); ``paging`` the ``Page`` of a listing;
``jwks`` the key cache; ``tokens`` the ``TokenSet`` and ``TokenCheck``;
``exceptions`` the tree.

This package never imports ``bastion.server``.
"""

from __future__ import annotations

from bastion.oauth.metadata import ProviderMetadata

from ._async_client import AsyncClient
from ._auth import ClientCredentialsAuth, TokenAuth
from ._client import Client
from .connections import configure, get_settings
from .events import Event
from .exceptions import *  # noqa: F403 - the exception tree is part of the API
from .exceptions import __all__ as _exception_names
from .logout_token import LogoutToken
from .models import User
from .organizations import Member, Organization, Permission, Role, UserRoles
from .paging import Page
from .registry import RegisteredClient, SigningKey
from .state import MemoryReplayStore, ReplayStore
from .tokens import TokenCheck, TokenSet

__all__ = [
    "AsyncClient",
    "Client",
    "ClientCredentialsAuth",
    "Event",
    "LogoutToken",
    "Member",
    "MemoryReplayStore",
    "Organization",
    "Page",
    "Permission",
    "ProviderMetadata",
    "RegisteredClient",
    "ReplayStore",
    "Role",
    "SigningKey",
    "TokenAuth",
    "TokenCheck",
    "TokenSet",
    "User",
    "UserRoles",
    "configure",
    "get_settings",
    *_exception_names,
]
