"""Bodies of the client and signing-key routes (OAuth clients, key rotation)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from pydantic.config import JsonDict

from bastion.server.api.schemas import NO_NUL, STORABLE, Strict, patch_schema
from bastion.server.keys import signs
from bastion.server.models import Client, SigningKey
from bastion.server.services.clients import (
    GRANT_TYPES,
    MAX_SECRET_OVERLAP,
    SCOPE_PATTERN,
    previous_secret_until,
)

ClientName = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL), STORABLE]
Uri = Annotated[str, Field(min_length=1, max_length=2000, pattern=NO_NUL), STORABLE]
Uris = Annotated[list[Uri], Field(max_length=50)]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials", "password"]
Scope = Annotated[str, Field(min_length=1, max_length=200, pattern=SCOPE_PATTERN), STORABLE]
Scopes = Annotated[list[Scope], Field(max_length=100)]


def _json_number(value: object) -> object:
    """A JSON number (``5`` or ``5.0``), not text or a boolean that pydantic would coerce."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


_CLIENT_EXAMPLE: JsonDict = {
    "client_id": "Jd3vXk0bq1W5b6t2kQm1Zg", "name": "Shop", "is_public": False,
    "redirect_uris": ["https://shop.example/callback"],
    "post_logout_redirect_uris": ["https://shop.example/"],
    "backchannel_logout_uri": "https://shop.example/backchannel-logout",
    "grant_types": ["authorization_code", "refresh_token"], "scopes": [],
    "created_at": "2026-11-22T06:00:00Z", "previous_secret_expires_at": None,
}


class ClientOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_CLIENT_EXAMPLE]})

    client_id: str
    name: str
    is_public: bool
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    backchannel_logout_uri: str | None = Field(
        description="Where a logout token is POSTed when a session the client holds "
        "tokens from ends (OpenID Connect Back-Channel Logout); null: not told.")
    grant_types: list[str]
    scopes: list[str] = Field(description="Extra scopes the client may ask for.")
    created_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the secret before the last rotation still works; null "
        "when only the current secret does.")

    @classmethod
    def of(cls, client: Client) -> ClientOut:
        previous = previous_secret_until(client)
        return cls(client_id=client.client_id, name=client.name, is_public=client.is_public,
                   redirect_uris=list(client.redirect_uris),
                   post_logout_redirect_uris=list(client.post_logout_redirect_uris),
                   backchannel_logout_uri=client.backchannel_logout_uri,
                   grant_types=list(client.grant_types), scopes=list(client.scopes),
                   created_at=client.created_at, previous_secret_expires_at=previous)


class ClientWithSecret(ClientOut):
    client_secret: str | None = Field(
        description="Shown once, here; only its digest is stored. Null for a public client.")

    @classmethod
    def issued(cls, client: Client, secret: str | None) -> ClientWithSecret:
        return cls(**ClientOut.of(client).model_dump(), client_secret=secret)


class ClientList(BaseModel):
    items: list[ClientOut]
    count: int


class ClientCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Shop", "redirect_uris": ["https://shop.example/callback"]}]})

    name: ClientName
    is_public: StrictBool = Field(False, description="A browser or native app: no secret, PKCE "
                            "required.")
    redirect_uris: Uris = Field(default_factory=list)
    post_logout_redirect_uris: Uris = Field(default_factory=list)
    backchannel_logout_uri: Uri | None = Field(
        None, description="https (http only for loopback): where Bastion POSTs a logout "
        "token when a session the client holds tokens from ends.")
    grant_types: list[GrantType] = Field(
        default_factory=list, max_length=len(GRANT_TYPES),
        description="Default: authorization_code and refresh_token with a redirect URI or "
        "for a public client, else client_credentials.")
    scopes: Scopes = Field(default_factory=list)


class ClientUpdate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=patch_schema(
        {"redirect_uris": ["https://shop.example/callback", "https://shop.example/cb2"]}))

    name: ClientName | None = None
    redirect_uris: Uris | None = Field(None, description="Replaces the list.")
    post_logout_redirect_uris: Uris | None = Field(None, description="Replaces the list.")
    backchannel_logout_uri: Uri | Literal[""] | None = Field(
        None, description="Replaces it; \"\" removes it.")
    grant_types: list[GrantType] | None = Field(None, max_length=len(GRANT_TYPES))
    scopes: Scopes | None = None


class SecretRotation(Strict):
    keep_old_for: Annotated[int, BeforeValidator(_json_number)] = Field(
        0, ge=0, le=MAX_SECRET_OVERLAP,
        description="Seconds the current secret keeps working, so apps can move to the new "
        "one without downtime; 0 ends it at once (a leaked secret).")


KeyStatus = Literal["active", "next", "retired"]


class KeyOut(BaseModel):
    kid: str
    alg: str
    use: str = Field(description="access or id: which tokens it signs.")
    status: KeyStatus = Field(description="active: signs now; next: published, signs "
                              "after the next rotation; retired: verifies its tokens until "
                              "they expire.")
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None

    @classmethod
    def of(cls, key: SigningKey) -> KeyOut:
        status: KeyStatus = "active" if signs(key) else (
            "retired" if key.retired_at is not None else "next")
        return cls(kid=key.kid, alg=key.alg, use=key.use, status=status,
                   created_at=key.created_at, activated_at=key.activated_at,
                   retired_at=key.retired_at)


class KeyList(BaseModel):
    items: list[KeyOut]
    count: int
