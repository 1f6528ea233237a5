"""``bastion serve --demo``: a demo client and user, created once, shown once.

Instances starting together on a fresh database race to create them: one wins and
prints the credentials; the others find them made meanwhile and say they exist, as a
later start would."""

from __future__ import annotations

import secrets
import sys

from bastion.server.services.clients import create_client
from bastion.server.services.errors import AlreadyExists
from bastion.server.services.passwords import Passwords
from bastion.server.services.users import create_user
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage

DEMO_CLIENT_ID = "demo"
DEMO_USERNAME = "demo"


async def ensure_demo(storage: Storage, settings: Settings) -> None:
    out = sys.stdout
    print(await _client(storage), file=out)
    print(await _user(storage, settings), file=out)
    out.flush()


async def _client(storage: Storage) -> str:
    exists = f"demo client {DEMO_CLIENT_ID!r} exists (its secret was shown when created)"
    if await storage.get_client(DEMO_CLIENT_ID) is not None:
        return exists
    try:
        new = await create_client(
            storage,
            client_id=DEMO_CLIENT_ID,
            name="Demo app",
            redirect_uris=["http://127.0.0.1:5000/callback"],
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
            scopes=["openid", "profile", "email", "read", "write"],
        )
    except AlreadyExists:  # made meanwhile by another instance, or deleted
        if await storage.get_client(DEMO_CLIENT_ID) is not None:
            return exists
        return f"demo client {DEMO_CLIENT_ID!r} was deleted; it is not made again"
    return f"demo client: client_id={DEMO_CLIENT_ID} client_secret={new.client_secret}"


async def _user(storage: Storage, settings: Settings) -> str:
    exists = f"demo user {DEMO_USERNAME!r} exists (its password was shown when created)"
    if await storage.get_user_by_login(DEMO_USERNAME) is not None:
        return exists
    password = secrets.token_urlsafe(12)
    try:
        await create_user(
            storage, Passwords(settings), username=DEMO_USERNAME, email="demo@example.com",
            password=password,
        )
    except AlreadyExists as clash:  # made meanwhile by another instance, or a clash
        if await storage.get_user_by_login(DEMO_USERNAME) is not None:
            return exists
        return f"demo user {DEMO_USERNAME!r} not made: {clash}"
    return f"demo user:   username={DEMO_USERNAME} password={password}"
