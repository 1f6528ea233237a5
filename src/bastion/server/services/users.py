"""Creating and finding users."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from bastion.server.models import User
from bastion.server.services.errors import AlreadyExists, InvalidInput
from bastion.server.services.passwords import Passwords
from bastion.server.storage.base import Conflict, Storage

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,149}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise InvalidInput(
            "username", "1 to 150 letters, digits or '_.+-', starting with a letter or digit"
        )
    return username


def check_email(email: str) -> str:
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidInput("email", f"{email!r} is not an email address")
    return email


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            "password", f"must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    return password


async def create_user(
    storage: Storage,
    passwords: Passwords,
    *,
    username: str,
    email: str,
    password: str | None,
    is_administrator: bool = False,
) -> User:
    check_username(username)
    check_email(email)
    password_hash = await passwords.ahash(check_password(password)) if password else None
    now = datetime.now(UTC)
    user = User(
        id=str(uuid.uuid4()),
        username=username,
        email=email,
        password_hash=password_hash,
        is_administrator=is_administrator,
        created_at=now,
        updated_at=now,
    )
    try:
        await storage.create_user(user)
    except Conflict as exc:
        value = username if exc.field == "username" else email
        raise AlreadyExists(exc.field, value) from None
    return user
