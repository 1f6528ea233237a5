"""Creating and finding users."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, NoReturn

from bastion.server.models import User
from bastion.server.services import login, throttle
from bastion.server.services.errors import AlreadyExists, Erased, InvalidInput, NotFound
from bastion.server.services.passwords import MAX_PASSWORD_LENGTH as MAX_PASSWORD_LENGTH
from bastion.server.services.passwords import MIN_PASSWORD_LENGTH as MIN_PASSWORD_LENGTH
from bastion.server.services.passwords import Passwords
from bastion.server.storage.base import Conflict, PersonalData, Storage, UserExport
from bastion.server.text import fold, mail_domain

#: The rules, as patterns the API schema states too (the password's lengths, imported
#: above, live with the hashing: a longer password matches none).
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,149}$"
USERNAME_RULE = "1 to 150 letters, digits or '_.+-', starting with a letter or digit"
# One plain addr-spec: no whitespace, control character or address-list syntax
# (``,;:<>()[]"\``), which mail headers would read as more addresses or a display name;
# the domain has no empty label. Unicode local parts and domains pass.
_NOT_ADDRESS = r'\s\x00-\x1f\x7f-\x9f@,;:<>()\[\]"\\'
EMAIL_PATTERN = rf"^[^{_NOT_ADDRESS}]{{1,64}}@(?:[^{_NOT_ADDRESS}.]+\.)+[^{_NOT_ADDRESS}.]+$"
_USERNAME = re.compile(USERNAME_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise InvalidInput("username", USERNAME_RULE)
    return username


async def check_username_free(storage: Storage, username: str, user_id: str) -> None:
    """``AlreadyExists`` if another user holds ``username`` (as the unique index
    compares it), for a form that must refuse it before it changes anything else; the
    write still has the last word."""
    other = await storage.get_user_by_login(username)
    if other is not None and other.id != user_id and other.username.lower() == username.lower():
        raise AlreadyExists("username", username)


def check_email(email: str) -> str:
    """The address in the form it is stored and compared in (``text.fold``: lower case,
    NFC), or ``InvalidInput``."""
    folded = mail_domain(fold(email))
    if len(folded) > 320 or not _EMAIL.fullmatch(folded):
        raise InvalidInput("email", f"{email!r} is not an email address")
    if folded.endswith(".invalid"):  # RFC 2606: never delivered; erased users' placeholder
        raise InvalidInput("email", f"{email!r} is in the reserved domain .invalid, "
                           "where no mail is ever delivered")
    return folded


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
    email_verified: bool = False,
) -> User:
    check_username(username)
    email = check_email(email)
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
        email_verified_at=now if email_verified else None,
    )
    try:
        await storage.create_user(user)
    except Conflict as exc:
        value = username if exc.field == "username" else email
        raise AlreadyExists(exc.field, value) from None
    return user


async def get_user(storage: Storage, user_id: str) -> User:
    user = await storage.get_user(user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


async def update_user(
    storage: Storage, passwords: Passwords, user_id: str, *, username: str | None = None,
    email: str | None = None, password: str | None = None, is_administrator: bool | None = None,
    email_verified: bool | None = None, keep_session: str | None = None,
) -> User:
    """Apply the given changes. A new password ends every session of the user but
    ``keep_session`` (the browser that changed it, if any), revokes all their grants
    and cancels their pending emailed links, so whoever knew the old password (or
    holds a token or a link) is signed out. A new email cancels the links too, and is
    unverified unless ``email_verified`` says otherwise."""
    changes: dict[str, Any] = {}
    if username is not None:
        changes["username"] = check_username(username)
    if email is not None:
        changes["email"] = check_email(email)
    if password is not None:
        changes["password_hash"] = await passwords.ahash(check_password(password))
    if is_administrator is not None:
        changes["is_administrator"] = is_administrator
    before = await storage.get_user(user_id) if email is not None else None
    if email_verified is not None:  # else the storage unverifies another address
        changes["email_verified_at"] = datetime.now(UTC) if email_verified else None
    new_email = before is not None and before.email != changes["email"]
    try:
        user = await storage.update_user(
            user_id, changes, keep_session=keep_session,
            end_sessions_at=datetime.now(UTC) if password is not None else None,
            # in the same transaction: a link must not outlive the change that ends it
            cancel_links=LINKS if password is not None or new_email else ())
    except Conflict as exc:
        raise AlreadyExists(exc.field, str(changes.get(exc.field, ""))) from None
    if user is None:
        await refuse_change(storage, user_id)
    return user


#: The links a new password, a new address or a deletion cancels: those mailed before
#: (sign-in, email change), and sign-up links to the user's addresses (used after the
#: account exists, they would sign in to it).
LINKS = ("sign_in", "email_change")


async def _cancel_links(storage: Storage, user: User) -> None:
    await storage.cancel_one_time_tokens(user.id, LINKS, datetime.now(UTC), {fold(user.email)})


async def delete_user(storage: Storage, user_id: str) -> User:
    """Soft delete: the user can no longer sign in, every token of theirs is revoked
    and every link mailed to them cancelled."""
    now = datetime.now(UTC)
    user = await get_user(storage, user_id)
    if user.deleted_at is None:
        user = await storage.update_user(user_id, {"deleted_at": now}, end_sessions_at=now,
                                         cancel_links=LINKS) or user
    else:  # deleted before: make sure
        await storage.revoke_user_sessions(user_id, now)
        await _cancel_links(storage, user)
    return user


async def restore_user(storage: Storage, user_id: str) -> User:
    user = await storage.update_user(user_id, {"deleted_at": None})
    if user is None:
        await refuse_change(storage, user_id)
    return user


async def refuse_change(storage: Storage, user_id: str) -> NoReturn:
    """Why a user could not be changed: erased (the storage leaves those as they are),
    or no such user."""
    user = await storage.get_user(user_id)
    raise Erased(user_id) if user is not None and user.erased_at else NotFound("user", user_id)


def audited(user: User, names: Collection[str] = ("username", "email")) -> dict[str, Any]:
    """What the audit event of a user's creation or change records of them: the flags
    that grant or prove something as they now are, and the ``names`` given (new values,
    erased with the user: ``PERSONAL_DATA``). Never the password or its hash."""
    current = {"username": user.username, "email": user.email}
    return {**{name: value for name, value in current.items() if name in names},
            "is_administrator": user.is_administrator,
            "email_verified": user.email_verified_at is not None}


#: Audit events an export carries; the rest are paged through the events API.
EXPORT_EVENTS = 10_000
#: Where a user's name lies beyond their own rows (``Storage.export_user``,
#: ``Storage.erase_user``): failed sign-ins name the login tried, the changes of a
#: user (``user.*`` by an administrator, ``account.*`` on the account page) the username
#: and email (``audited``), and the throttle counts a login, an address and the account.
PERSONAL_DATA = PersonalData(attempts=login.ATTEMPTS, spell=login.tried,
                             named=("user.create", "user.update", "account.username",
                                    "account.email"),
                             throttle_keys=throttle.keys_naming)


async def export_user(storage: Storage, user_id: str) -> UserExport:
    export = await storage.export_user(user_id, EXPORT_EVENTS, PERSONAL_DATA)
    if export is None:
        raise NotFound("user", user_id)
    return export


async def erase_user(storage: Storage, user_id: str) -> User:
    """Erase the user's personal data for good (``Storage.erase_user``); the apps
    holding their tokens are told as for a deletion."""
    user = await storage.erase_user(user_id, datetime.now(UTC), PERSONAL_DATA)
    if user is None:
        raise NotFound("user", user_id)
    return user
