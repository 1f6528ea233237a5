"""Request and response bodies of the REST API (documented in OpenAPI with examples).

Every string of a request body is bounded and ends in ``STORABLE``: a NUL or a lone
surrogate (which no backend can store) is refused with the other validation errors (422).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from pydantic.config import JsonDict

from bastion.server.api import cursors, times
from bastion.server.models import Event, Organization, Role, User
from bastion.server.services.clients import SCOPE_PATTERN, SCOPE_RULE
from bastion.server.services.rbac import (
    NAME_PATTERN,
    NAME_RULE,
    PERMISSION_PATTERN,
    PERMISSION_RULE,
)
from bastion.server.services.users import (
    EMAIL_PATTERN,
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    USERNAME_PATTERN,
    USERNAME_RULE,
)
from bastion.server.text import storable


def _storable(value: str) -> str:
    if not storable(value):
        raise ValueError("must not hold a NUL or a character that cannot be encoded as UTF-8")
    return value


#: The last annotation of every request string (after its bounds).
STORABLE = AfterValidator(_storable)
#: The schema's view of ``STORABLE`` for strings with no pattern of their own: a client
#: that reads the schema knows a NUL is refused (lone surrogates cannot be sent as UTF-8).
NO_NUL = r"^[^\x00]*$"
Username = Annotated[str, Field(min_length=1, max_length=150, pattern=USERNAME_PATTERN), STORABLE]
Email = Annotated[str, Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN), STORABLE]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN), STORABLE]
Permission = Annotated[str, Field(min_length=1, max_length=200, pattern=PERMISSION_PATTERN),
                       STORABLE]
Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH,
                                pattern=NO_NUL), STORABLE]
RoleRef = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL),  # an id or a name
                    STORABLE]
RefreshTokenText = Annotated[str, Field(min_length=1, max_length=512, pattern=NO_NUL), STORABLE]
#: What a 422 says instead of a pattern a person cannot act on: one for every pattern of
#: a body or parameter (tests/server/test_api_input_errors.py walks the OpenAPI schema).
PATTERN_RULES = {USERNAME_PATTERN: USERNAME_RULE, NAME_PATTERN: NAME_RULE,
                 PERMISSION_PATTERN: PERMISSION_RULE, NO_NUL: "must not hold a NUL",
                 EMAIL_PATTERN: "one plain email address, such as alice@example.com",
                 SCOPE_PATTERN: SCOPE_RULE, times.RFC3339: times.RULE,
                 cursors.PATTERN: cursors.RULE}

_USER_EXAMPLE: JsonDict = {"id": "5f0c7a4e-3f1b-4d2e-9a57-1f2b3c4d5e6f", "username": "alice",
                 "email": "alice@example.com", "email_verified": True,
                 "is_administrator": False,
                 "created_at": "2026-11-22T06:00:00Z", "updated_at": "2026-11-22T06:00:00Z",
                 "deleted_at": None, "erased_at": None}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_USER_EXAMPLE]})

    id: str
    username: str
    email: str
    email_verified: bool = Field(description="Whether the user proved the address theirs "
                                 "(used a link mailed to it), or an administrator said so.")
    is_administrator: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    erased_at: datetime | None = Field(
        default=None, description="When the user's personal data was erased for good "
        "(`POST /api/v1/users/{id}/erase`); the username and email are then placeholders.")

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, username=user.username, email=user.email,
                   email_verified=user.email_verified_at is not None,
                   is_administrator=user.is_administrator, created_at=user.created_at,
                   updated_at=user.updated_at, deleted_at=user.deleted_at,
                   erased_at=user.erased_at)


class UserList(BaseModel):
    items: list[UserOut]
    count: int | None = Field(description="How many users match, over all pages (null "
                              "when not asked for: `count=false`).")
    next: str | None = Field(default=None, description="On a full page, the cursor to pass "
                             "as `after` for the next one; null on a shorter page.")


class Count(BaseModel):
    count: int


class UserCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"username": "alice", "email": "alice@example.com", "password": "a long passphrase"}]})

    username: Username
    email: Email
    password: Password | None = Field(None, description="Omit for a user who signs in by "
                                      "email link.")
    is_administrator: StrictBool = False
    email_verified: StrictBool = Field(False, description="Whether you know the address is "
                                       "theirs; else it is verified when they use a link "
                                       "mailed to it.")


def patch_schema(example: JsonDict) -> Callable[[JsonDict], None]:
    """A PATCH body's schema as the API takes it: each field may be left out, none may
    be null (``api.common.changes`` refuses it), though ``None`` stands for "left out"
    in Python."""
    def shape(schema: JsonDict) -> None:
        schema["examples"] = [example]
        properties = schema.get("properties")
        assert isinstance(properties, dict)
        for prop in properties.values():
            assert isinstance(prop, dict)
            given = prop.pop("anyOf", None)
            if isinstance(given, list):
                kinds = [k for k in given
                         if not (isinstance(k, dict) and k.get("type") == "null")]
                prop.update(kinds[0] if len(kinds) == 1 else {"anyOf": kinds})  # type: ignore[arg-type]
            prop.pop("default", None)
    return shape


class UserUpdate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=patch_schema(
        {"email": "alice@new.example"}))

    username: Username | None = None
    email: Email | None = None
    password: Password | None = Field(None, description="A new password ends every session "
                                      "and revokes every token of the user.")
    is_administrator: StrictBool | None = None
    email_verified: StrictBool | None = Field(None, description="A new email is unverified "
                                              "unless this says otherwise.")


class OrganizationOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "0b7e...", "name": "acme", "created_at": "2026-11-22T06:00:00Z"}]})

    id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, org: Organization) -> OrganizationOut:
        return cls(id=org.id, name=org.name, created_at=org.created_at)


class OrganizationList(BaseModel):
    items: list[OrganizationOut]
    count: int


class OrganizationCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "acme"}]})

    name: Name


class OrganizationUpdate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "acme"}]})

    name: Name = Field(description="The new name (the id, which tokens carry in `org`, "
                       "stays).")


class MemberOut(BaseModel):
    user: UserOut
    roles: list[str] = Field(description="The names of the roles the user holds there, "
                             "sorted.")


class MemberList(BaseModel):
    items: list[MemberOut]
    count: int = Field(description="How many users hold a role there, over all pages.")


class RoleOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "3c1d...", "organization_id": "0b7e...", "name": "editor",
         "permissions": ["posts:read", "posts:write"], "created_at": "2026-11-22T06:00:00Z"}]})

    id: str
    organization_id: str
    name: str
    permissions: list[str]
    created_at: datetime

    @classmethod
    def of(cls, role: Role) -> RoleOut:
        return cls(id=role.id, organization_id=role.organization_id, name=role.name,
                   permissions=list(role.permissions), created_at=role.created_at)


class RoleList(BaseModel):
    items: list[RoleOut]
    count: int


class RoleCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "editor", "permissions": ["posts:read", "posts:write"]}]})

    name: Name
    permissions: list[Permission] = Field(default_factory=list, max_length=500)


class Permissions(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"permissions": ["posts:delete"]}]})

    permissions: list[Permission] = Field(min_length=1, max_length=500)


class Reissue(Strict):
    refresh_token: RefreshTokenText = Field(
        description="The user's current refresh token, issued in this organization; its "
        "token family is revoked and a new pair returned.")


class UserRolesChange(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"add": ["editor"], "remove": ["viewer"]}]})

    add: list[RoleRef] = Field(default_factory=list, max_length=100,
                               description="Role ids or names to attach.")
    remove: list[RoleRef] = Field(default_factory=list, max_length=100,
                                  description="Role ids or names to remove.")
    reissue: Reissue | None = None


class TokenPair(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None
    scope: str | None = None
    id_token: str | None = None


class UserRoles(BaseModel):
    items: list[RoleOut]
    count: int
    tokens: TokenPair | None = Field(None, description=(
        "Present when reissue was asked for, unless the change left the user without a "
        "role in the organization: the old tokens are then revoked and none issued."))


class EventOut(BaseModel):
    id: str
    at: datetime
    action: str
    actor: str | None
    actor_type: str
    target: str | None
    client_id: str | None
    ip: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(id=event.id, at=event.at, action=event.action, actor=event.actor,
                   actor_type=event.actor_type, target=event.target, client_id=event.client_id,
                   ip=event.ip, detail=event.detail)


class EventList(BaseModel):
    items: list[EventOut]
    count: int | None = Field(description="How many events match, over all pages (null "
                              "when not asked for: `count=false`).")
    next: str | None = Field(default=None, description="On a full page, the cursor to pass "
                             "as `after` for the next (older) one; null on a shorter page.")
