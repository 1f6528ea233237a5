"""Domain records the services and storage exchange. Plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

KeyUse = Literal["access", "id"]


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    email: str
    password_hash: str | None = field(repr=False)
    is_administrator: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    is_public: bool
    secret_digest: bytes | None = field(repr=False)
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    use: KeyUse
    private_key_enc: bytes = field(repr=False)
    public_jwk: dict[str, Any] = field(repr=False)
    created_at: datetime
    retired_at: datetime | None = None
