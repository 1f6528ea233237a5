"""The Bastion SDK: sync and async clients for any OAuth 2.0 / OIDC provider.

Layout: ``_base`` is the I/O-free core (every flow, decision and parser);
``_client`` and ``_async_client`` are the two thin sending shells; ``_auth`` is
the client-credentials ``httpx2.Auth``; ``connections`` holds named settings;
``jwks`` the key cache; ``tokens`` the ``TokenSet``; ``exceptions`` the tree.
Later pieces get their own modules here: ``state`` (signed OAuth state),
``pkce``-based login in the core flows, ``models`` (``User``...),
``integrations/`` (FastAPI).

This package never imports ``bastion.server``.
"""

from __future__ import annotations

from bastion.oauth.metadata import ProviderMetadata

from ._async_client import AsyncClient
from ._auth import ClientCredentialsAuth
from ._client import Client
from .connections import configure, get_settings
from .exceptions import *  # noqa: F403 - the exception tree is part of the API
from .exceptions import __all__ as _exception_names
from .tokens import TokenSet

__all__ = [
    "AsyncClient",
    "Client",
    "ClientCredentialsAuth",
    "ProviderMetadata",
    "TokenSet",
    "configure",
    "get_settings",
    *_exception_names,
]
