"""``client.clients`` and ``client.keys`` (and their awaited twins): OAuth clients
and signing keys in Bastion's REST API, each call one flow of ``_admin_clients``.
Administrator only; ``.with_token(tokens)`` runs them with an administrator
user's token (asked for with scope ``bastion:admin``) instead of this client's own."""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import _admin_clients as flows
from ._api import Namespace
from .exceptions import ConfigurationError
from .paging import Page
from .registry import RegisteredClient, SigningKey

if TYPE_CHECKING:  # a cycle at run time: the shells import this module
    from ._async_client import AsyncClient  # noqa: F401 - named in quotes below
    from ._client import Client  # noqa: F401 - named in quotes below

__all__ = ["AsyncClients", "AsyncKeys", "Clients", "Keys"]

ClientRef = RegisteredClient | str
Texts = str | Collection[str]


def _seconds(keep_old_for: float | timedelta) -> int:
    """Whole seconds, rounded up: a part of a second still keeps the old secret."""
    seconds = keep_old_for.total_seconds() if isinstance(keep_old_for, timedelta) else keep_old_for
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not math.isfinite(seconds) or seconds < 0):
        raise ConfigurationError("keep_old_for must be a number of seconds >= 0 or a timedelta")
    return math.ceil(seconds)


def _created(name: str, public: bool, redirect_uris: Texts, post_logout_redirect_uris: Texts,
             grant_types: Texts, scopes: Texts,
             backchannel_logout_uri: str | None) -> dict[str, Any]:
    return {"name": name, "is_public": public, "redirect_uris": redirect_uris,
            "post_logout_redirect_uris": post_logout_redirect_uris,
            "grant_types": grant_types, "scopes": scopes,
            "backchannel_logout_uri": backchannel_logout_uri}


def _changed(name: str | None, redirect_uris: Texts | None,
             post_logout_redirect_uris: Texts | None, grant_types: Texts | None,
             scopes: Texts | None, backchannel_logout_uri: str | None) -> dict[str, Any]:
    return {"name": name, "redirect_uris": redirect_uris,
            "post_logout_redirect_uris": post_logout_redirect_uris,
            "grant_types": grant_types, "scopes": scopes,
            "backchannel_logout_uri": backchannel_logout_uri}


class Clients(Namespace["Client"]):
    def list(self, limit: int = 20, offset: int = 0) -> Page[RegisteredClient]:
        """Registered clients, oldest first; ``.total`` counts them all."""
        return self._client._run(
            flows.list_clients_flow(self._client._core, limit, offset, self._token))

    def get(self, client_id: ClientRef) -> RegisteredClient:
        """``NotFound`` if there is none."""
        return self._client._run(flows.get_client_flow(self._client._core, client_id, self._token))

    def create(self, name: str, *, public: bool = False, redirect_uris: Texts = (),
               post_logout_redirect_uris: Texts = (), grant_types: Texts = (),
               scopes: Texts = (), backchannel_logout_uri: str | None = None) -> RegisteredClient:
        """Register a client; a confidential one's ``client_secret`` is on the answer,
        once. Grant types default to authorization_code and refresh_token with a
        redirect URI, else client_credentials. ``backchannel_logout_uri``: where Bastion
        POSTs a logout token when a session the client holds tokens from ends (see
        ``verify_logout_token``). ``BadRequest`` names a bad field."""
        fields = _created(name, public, redirect_uris, post_logout_redirect_uris,
                          grant_types, scopes, backchannel_logout_uri)
        return self._client._run(flows.create_client_flow(self._client._core, fields, self._token))

    def update(self, client_id: ClientRef, *, name: str | None = None,
               redirect_uris: Texts | None = None, post_logout_redirect_uris: Texts | None = None,
               grant_types: Texts | None = None, scopes: Texts | None = None,
               backchannel_logout_uri: str | None = None) -> RegisteredClient:
        """Change what is given; a list replaces the stored one, and
        ``backchannel_logout_uri=""`` removes that URI."""
        fields = _changed(name, redirect_uris, post_logout_redirect_uris, grant_types, scopes,
                          backchannel_logout_uri)
        flow = flows.update_client_flow(self._client._core, client_id, fields, self._token)
        return self._client._run(flow)

    def rotate_secret(self, client_id: ClientRef,
                      keep_old_for: float | timedelta = 0) -> RegisteredClient:
        """A new secret, on the answer's ``client_secret`` (shown once). The old one
        keeps working for ``keep_old_for`` (seconds, at most 7 days), so apps can
        move to the new one; 0 (the default) ends it at once."""
        flow = flows.rotate_secret_flow(self._client._core, client_id, _seconds(keep_old_for),
                                        self._token)
        return self._client._run(flow)

    def delete(self, client_id: ClientRef) -> None:
        """Delete a client and revoke every token it holds. Deleting it again is not
        an error (a retried request); ``NotFound`` if there never was one."""
        self._client._run(flows.delete_client_flow(self._client._core, client_id, self._token))


class Keys(Namespace["Client"]):
    def list(self) -> Page[SigningKey]:
        """Every stored signing key, by use, oldest first (no private parts)."""
        return self._client._run(flows.list_keys_flow(self._client._core, self._token))

    def rotate(self) -> Page[SigningKey]:
        """Activate each use's next key (already published) and publish a new next
        key; the keys as they are after the rotation."""
        return self._client._run(flows.rotate_keys_flow(self._client._core, self._token))

    def withdraw(self, kid: str) -> Page[SigningKey]:
        """Take a key out of service at once, as after a leak: it leaves the JWKS and
        its tokens stop verifying (the key that signs is replaced first). The keys as
        they are after."""
        return self._client._run(flows.withdraw_key_flow(self._client._core, kid, self._token))


class AsyncClients(Namespace["AsyncClient"]):
    async def list(self, limit: int = 20, offset: int = 0) -> Page[RegisteredClient]:
        return await self._client._run(
            flows.list_clients_flow(self._client._core, limit, offset, self._token))

    async def get(self, client_id: ClientRef) -> RegisteredClient:
        return await self._client._run(
            flows.get_client_flow(self._client._core, client_id, self._token))

    async def create(self, name: str, *, public: bool = False, redirect_uris: Texts = (),
                     post_logout_redirect_uris: Texts = (), grant_types: Texts = (),
                     scopes: Texts = (),
                     backchannel_logout_uri: str | None = None) -> RegisteredClient:
        fields = _created(name, public, redirect_uris, post_logout_redirect_uris,
                          grant_types, scopes, backchannel_logout_uri)
        return await self._client._run(
            flows.create_client_flow(self._client._core, fields, self._token))

    async def update(self, client_id: ClientRef, *, name: str | None = None,
                     redirect_uris: Texts | None = None,
                     post_logout_redirect_uris: Texts | None = None,
                     grant_types: Texts | None = None,
                     scopes: Texts | None = None,
                     backchannel_logout_uri: str | None = None) -> RegisteredClient:
        fields = _changed(name, redirect_uris, post_logout_redirect_uris, grant_types, scopes,
                          backchannel_logout_uri)
        flow = flows.update_client_flow(self._client._core, client_id, fields, self._token)
        return await self._client._run(flow)

    async def rotate_secret(self, client_id: ClientRef,
                            keep_old_for: float | timedelta = 0) -> RegisteredClient:
        flow = flows.rotate_secret_flow(self._client._core, client_id, _seconds(keep_old_for),
                                        self._token)
        return await self._client._run(flow)

    async def delete(self, client_id: ClientRef) -> None:
        await self._client._run(
            flows.delete_client_flow(self._client._core, client_id, self._token))


class AsyncKeys(Namespace["AsyncClient"]):
    async def list(self) -> Page[SigningKey]:
        return await self._client._run(flows.list_keys_flow(self._client._core, self._token))

    async def rotate(self) -> Page[SigningKey]:
        return await self._client._run(flows.rotate_keys_flow(self._client._core, self._token))

    async def withdraw(self, kid: str) -> Page[SigningKey]:
        return await self._client._run(
            flows.withdraw_key_flow(self._client._core, kid, self._token))
