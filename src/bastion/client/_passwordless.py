"""The I/O-free flows for Bastion's passwordless sign-in and hosted account page.

- ``start_passwordless_flow``: a new authorization request (sealed state, PKCE,
  nonce: exactly as ``start_authorization``) sent with an email address to the
  ``passwordless_endpoint`` the provider advertises, client-authenticated like
  the token endpoint. The provider emails a one-time link; opened in a browser,
  it completes that authorization request, so the app's usual callback
  finishes it with ``finish_authorization``. The answer is the same whether or
  not the address has an account; too many requests raise ``RateLimited``
  (with ``retry_after``), a bad address ``InvalidRequest``.
- ``edit_profile_url_flow``: the ``account_endpoint`` URL with ``client_id``
  and ``return_to``, and never a token or secret (the page uses the user's
  session at the provider, and honours ``return_to`` only if it is one of the
  client's registered redirect URIs).
"""

from __future__ import annotations

from collections.abc import Collection

from ._arguments import expect
from ._authorization import authorization_request_flow, with_query
from ._base import BaseClient, Flow
from ._responses import json_object
from .exceptions import ConfigurationError, ProtocolError

__all__ = ["PASSWORDLESS_EXPIRATION", "edit_profile_url_flow", "start_passwordless_flow"]

#: Seconds the state of a passwordless request stays valid by default: twice the
#: link's lifetime on Bastion by default (``sign_in_link_ttl``, 15 minutes). A server
#: whose links live longer (up to an hour) needs ``expiration`` at least as long, or
#: a late link signs the user in at the provider but fails at the app's callback.
PASSWORDLESS_EXPIRATION = 1800.0


def start_passwordless_flow(
    core: BaseClient,
    email: str,
    scope: str | Collection[str] | None = "openid",
    expiration: float = PASSWORDLESS_EXPIRATION,
    nonce: str | None = None,
    *,
    redirect_uri: str | None = None,
    organization: str | None = None,
) -> Flow[str]:
    """Ask the provider to email a sign-in link; returns the sealed state."""
    if not isinstance(email, str) or not email.strip():
        raise ConfigurationError("start_passwordless needs an email address")
    state, params = yield from authorization_request_flow(
        core,
        scope,
        expiration,
        nonce,
        redirect_uri=redirect_uri,
        purpose="start_passwordless",
        extra={"organization": organization},
    )
    data = {**params, "email": email.strip()}
    response = yield from core._post_flow("passwordless_endpoint", data, "start_passwordless")
    if json_object(response.content).get("status") != "accepted":
        raise ProtocolError("The passwordless endpoint did not accept the request.")
    return state


def edit_profile_url_flow(core: BaseClient, return_to: str | None = None) -> Flow[str]:
    """Where to send the browser to edit the profile (no token or secret in it)."""
    expect(return_to, str | None, "return_to must be a URL (str)")
    metadata = yield from core.metadata_flow()
    url = core.endpoint(metadata, "account_endpoint")
    params = {"client_id": core.settings.client_id, "return_to": return_to}
    given = {name: value for name, value in params.items() if value}
    return with_query(url, given) if given else url
