"""What a grant handler receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bastion.server.models import Client


@dataclass(frozen=True, slots=True)
class TokenRequest:
    client: Client  # already authenticated
    form: Mapping[str, str]
    client_ip: str | None
    secret: bytes | None = None  # the digest of the secret the client authenticated with
