"""``RegisteredClient`` and ``SigningKey``: OAuth clients and signing keys as
Bastion's REST API shows them (``client.clients``, ``client.keys``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._shared import parse_datetime, required_text
from .exceptions import ProtocolError

__all__ = ["RegisteredClient", "SigningKey"]


def _texts(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"The API's answer has no list of {name!r}.")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """An OAuth client registered with Bastion. ``client_secret`` is set only on
    the answer that issued it (``create``, ``rotate_secret``): it is shown once."""

    client_id: str
    name: str
    is_public: bool
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    created_at: datetime | None = None
    #: Until when the secret before the last rotation still works (else ``None``).
    previous_secret_expires_at: datetime | None = None
    client_secret: str | None = field(default=None, repr=False)
    #: Where Bastion POSTs a logout token when a session ends (else ``None``).
    backchannel_logout_uri: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], client: object = None) -> RegisteredClient:
        secret = body.get("client_secret")
        return cls(
            required_text(body, "client_id"),
            required_text(body, "name"),
            body.get("is_public") is True,
            _texts(body, "redirect_uris"),
            _texts(body, "post_logout_redirect_uris"),
            _texts(body, "grant_types"),
            _texts(body, "scopes"),
            parse_datetime(body.get("created_at")),
            parse_datetime(body.get("previous_secret_expires_at")),
            secret if isinstance(secret, str) else None,
            logout if isinstance(logout := body.get("backchannel_logout_uri"), str) else None,
        )


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A signing key (public facts only). ``status``: ``"active"`` signs now,
    ``"next"`` is published and signs after the next rotation, ``"retired"``
    verifies its tokens until they expire. ``use``: ``"access"`` or ``"id"``."""

    kid: str
    alg: str
    use: str
    status: str
    created_at: datetime | None = None
    activated_at: datetime | None = None
    retired_at: datetime | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], client: object = None) -> SigningKey:
        return cls(
            required_text(body, "kid"),
            required_text(body, "alg"),
            required_text(body, "use"),
            required_text(body, "status"),
            parse_datetime(body.get("created_at")),
            parse_datetime(body.get("activated_at")),
            parse_datetime(body.get("retired_at")),
        )
