"""Organizations, roles and permissions, and the claims they put in tokens."""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bastion.server.models import Organization, Role
from bastion.server.services import users
from bastion.server.services.errors import AlreadyExists, InUse, InvalidInput, NotFound
from bastion.server.storage.base import Conflict, DeleteRoleResult, Missing, Storage

#: The rules, as patterns the API schema states too.
NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 _.:-]{0,98}[A-Za-z0-9_.:-])?$"
PERMISSION_PATTERN = r"^[A-Za-z0-9_.:/*-]{1,200}$"
NAME_RULE = ("1 to 100 letters, digits, spaces or '_.:-', starting with a letter or digit "
             "and not ending with a space")
PERMISSION_RULE = "1 to 200 of letters, digits and '_.:/*-'"
_NAME = re.compile(NAME_PATTERN)
_PERMISSION = re.compile(PERMISSION_PATTERN)
_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.IGNORECASE)


#: Bytes of roles and permissions (as JSON) a token may carry: tokens of up to 16 KiB are
#: accepted (``MAX_TOKEN_LENGTH``); base64url adds a third, the other claims the rest.
CLAIMS_BUDGET = 8 * 1024


def held_claims(held: Iterable[Role]) -> dict[str, list[str]]:
    """The ``roles`` and ``permissions`` claims of a user holding ``held``."""
    held = list(held)
    return {"roles": sorted(r.name for r in held),
            "permissions": sorted({p for r in held for p in r.permissions})}


def claims_size(claims: dict[str, Any]) -> int:
    part = {"roles": claims["roles"], "permissions": claims["permissions"]}
    return len(json.dumps(part, separators=(",", ":")).encode())


def check_fits(field: str, held: Iterable[Role]) -> None:
    """Refuse a change after which a token could not carry a user's roles: Bastion and
    the SDK would refuse the tokens it signed."""
    size = claims_size(held_claims(held))
    if size > CLAIMS_BUDGET:
        raise InvalidInput(field, f"a token would carry {size} bytes of roles and permissions "
                           f"in this organization, over the {CLAIMS_BUDGET} it can hold; use "
                           "fewer or broader permissions")


def check_name(field: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(field, NAME_RULE)
    if _ID.fullmatch(name):  # names and ids share the lookups (``get_role``...)
        raise InvalidInput(field, "a name must not have the form of an id (a UUID)")
    return name


def check_permissions(permissions: Iterable[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(permissions))
    for p in out:
        if not isinstance(p, str) or not _PERMISSION.fullmatch(p):
            raise InvalidInput("permissions", f"{p!r} is not a permission ({PERMISSION_RULE})")
    return out


async def create_organization(storage: Storage, name: str) -> Organization:
    org = Organization(id=str(uuid.uuid4()), name=check_name("name", name),
                       created_at=datetime.now(UTC))
    try:
        await storage.create_organization(org)
    except Conflict:
        raise AlreadyExists("name", org.name, "organization name") from None
    return org


async def organization(storage: Storage, org: str) -> Organization:
    found = await storage.get_organization(org)
    if found is None:
        raise NotFound("organization", org)
    return found


async def rename_organization(storage: Storage, org: str,
                              name: str) -> tuple[Organization, Organization]:
    """The organization before and after."""
    found = await organization(storage, org)
    try:
        renamed = await storage.rename_organization(found.id, check_name("name", name))
    except Conflict:
        raise AlreadyExists("name", name, "organization name") from None
    if renamed is None:  # deleted since it was looked up
        raise NotFound("organization", org)
    return found, renamed


async def delete_organization(storage: Storage, org: str, force: bool) -> Organization:
    """Delete ``org`` with its roles and their assignments; its users' tokens for it
    are revoked. ``InUse`` while users hold its roles, unless ``force``."""
    found = await organization(storage, org)
    result = await storage.delete_organization(found.id, force, datetime.now(UTC))
    _deleted(result, f"Users hold roles in organization {found.name!r} (soft-deleted users "
             "too: see include_deleted); take them away first", "organization", org)
    return found


def _deleted(result: DeleteRoleResult, in_use: str, what: str, key: str) -> None:
    """Raise for a delete that did not happen: ``InUse`` (no force) or ``NotFound``."""
    if result == "in_use":
        raise InUse(f"{in_use}, or delete with force=true.")
    if result == "missing":
        raise NotFound(what, key)


async def create_role(storage: Storage, org_id: str, name: str,
                      permissions: Iterable[str]) -> Role:
    role = Role(id=str(uuid.uuid4()), organization_id=org_id, name=check_name("name", name),
                permissions=tuple(sorted(check_permissions(permissions))),
                created_at=datetime.now(UTC))
    check_fits("permissions", [role])
    try:
        await storage.create_role(role)
    except Conflict:
        raise AlreadyExists("name", role.name, "role name") from None
    except Missing:  # the organization was deleted since it was looked up
        raise NotFound("organization", org_id) from None
    return role


async def role(storage: Storage, org_id: str, key: str) -> Role:
    found = await storage.get_role(org_id, key)
    if found is None:
        raise NotFound("role", key)
    return found


async def delete_role(storage: Storage, org_id: str, key: str, force: bool) -> Role:
    found = await role(storage, org_id, key)
    result = await storage.delete_role(org_id, found.id, force)
    _deleted(result, f"Role {found.name!r} is assigned to users; remove it from them first",
             "role", key)
    return found


async def change_permissions(storage: Storage, org_id: str, key: str, add: Iterable[str] = (),
                             remove: Iterable[str] = ()) -> Role:
    found = await role(storage, org_id, key)
    add, remove = check_permissions(add), check_permissions(remove)
    _neither_nor("add", set(add) & set(remove))
    try:  # checked in the write, where concurrent adds cannot slip past each other
        await storage.change_permissions(found.id, add, remove,
                                         lambda role: check_fits("permissions", [role]))
    except Missing:  # deleted since it was looked up
        raise NotFound("role", key) from None
    return await role(storage, org_id, found.id)


def _neither_nor(field: str, both: set[str]) -> None:
    """One change may not both add and remove a thing: which would it be?"""
    if both:
        raise InvalidInput(field, f"{', '.join(map(repr, sorted(both)))}: both added and "
                           "removed; send each in one list only")


@dataclass(frozen=True, slots=True)
class RolesChange:
    """A change of a user's roles, applied: the roles after it, and the ids of the
    roles asked to be added and removed, however they were named (for the audit)."""

    roles: list[Role]
    added: list[str]
    removed: list[str]


async def change_user_roles(storage: Storage, user_id: str, org_id: str,
                            add: Iterable[str] = (), remove: Iterable[str] = (), *,
                            must_fit: bool = False) -> RolesChange:
    """Resolve role ids or names (all or nothing), then apply in one transaction.
    ``must_fit``: a token must be able to carry the roles after the change even if it
    adds none (tokens are to be issued with them)."""
    added: dict[str, Role] = {}
    keys: dict[str, str] = {}  # role id -> the key asked for, for messages
    for key in add:
        found = await role(storage, org_id, key)
        added[found.id], keys[found.id] = found, key
    remove_ids = [(await role(storage, org_id, key)).id for key in remove]
    _neither_nor("add", {keys[i] for i in added if i in remove_ids})
    # checked in the write, where concurrent adds wait for each other
    check = functools.partial(check_fits, "add") if added or must_fit else None
    try:
        roles = await storage.change_user_roles(user_id, org_id, list(keys), remove_ids,
                                                check)
        # What was asked, resolved: what the user held before is not read apart from
        # the write, where a change committed in between would hide a grant.
        return RolesChange(roles, list(keys), sorted(set(remove_ids)))
    except Missing as exc:  # a role to add was deleted since it was looked up
        if exc.key == user_id:  # or the user is erased (or was never there)
            await users.refuse_change(storage, user_id)
        if await storage.get_organization(org_id) is None:  # with its organization
            raise NotFound("organization", org_id) from None
        raise NotFound("role", keys.get(exc.key, exc.key)) from None


async def token_claims(storage: Storage, user_id: str, org_id: str) -> dict[str, Any]:
    """``org``, ``roles`` and ``permissions`` of a user in an organization."""
    return {"org": org_id, **held_claims(await storage.user_roles(user_id, org_id))}
