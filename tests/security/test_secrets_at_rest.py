"""Secrets at rest: a client secret, an authorization code and a refresh token are
stored as their SHA-256 digests, computed here with hashlib (not with the code under
test), and their plain text is in no column of the database."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from security_helpers import Env, exchange, get_code

from bastion.server.storage.tables import authorization_codes, clients, metadata, refresh_tokens


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def test_secrets_are_stored_as_sha256_digests_and_nowhere_in_plain(env: Env) -> None:
    code = await get_code(env)
    tokens = (await exchange(env, code)).json()
    secret = env.web.secret
    assert secret is not None
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        stored_secret = (await conn.execute(sa.select(clients.c.secret_digest).where(
            clients.c.client_id == env.web.client_id))).scalar()
        assert stored_secret == sha256(secret) and len(stored_secret) == 32
        assert (await conn.execute(sa.select(sa.func.count()).select_from(
            authorization_codes).where(authorization_codes.c.digest == sha256(code)))
                ).scalar() == 1
        assert (await conn.execute(sa.select(sa.func.count()).select_from(
            refresh_tokens).where(refresh_tokens.c.digest == sha256(tokens["refresh_token"])))
                ).scalar() == 1
        plain = [secret, code, tokens["refresh_token"]]
        for table in metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                for value in row:
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    assert not any(p in text for p in plain), (table.name, value)
