"""The body of ``GET /api/v1/users/{id}/export`` (and of the account page's download):
everything kept about one user."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field
from starlette.responses import Response

from bastion.server.api.schemas import EventOut, OrganizationOut, UserOut
from bastion.server.models import Grant, LoginSession
from bastion.server.storage.base import UserExport


class MembershipOut(BaseModel):
    organization: OrganizationOut
    roles: list[str]


class SessionOut(BaseModel):
    """A sign-in at Bastion's pages (the OIDC ``sid``), ended ones too."""

    id: str
    created_at: datetime
    auth_time: datetime
    expires_at: datetime
    revoked_at: datetime | None
    user_agent: str

    @classmethod
    def of(cls, session: LoginSession) -> SessionOut:
        return cls(id=session.id, created_at=session.created_at, auth_time=session.auth_time,
                   expires_at=session.expires_at, revoked_at=session.revoked_at,
                   user_agent=session.user_agent)


class GrantOut(BaseModel):
    """An app's authorization to act for the user: every token it got from one sign-in."""

    client_id: str
    client_name: str | None = Field(description="None if the client is unknown.")
    scope: str
    session_id: str | None
    organization_id: str | None
    auth_time: datetime
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, grant: Grant, client_name: str | None) -> GrantOut:
        return cls(client_id=grant.client_id, client_name=client_name, scope=grant.scope,
                   session_id=grant.session_id, organization_id=grant.organization_id,
                   auth_time=grant.auth_time, created_at=grant.created_at,
                   revoked_at=grant.revoked_at)


class UserExportOut(BaseModel):
    exported_at: datetime
    user: UserOut
    organizations: list[MembershipOut]
    sessions: list[SessionOut] = Field(description="Newest first, until housekeeping "
                                       "removes them a day after they expire.")
    grants: list[GrantOut] = Field(description="Newest first, until housekeeping removes "
                                   "them once revoked or expired.")
    events: list[EventOut] = Field(description="Audit events by or about the user, newest "
                                   "first: the first 10,000 (see `events_total`).")
    events_total: int = Field(description="How many there are; the rest are in "
                              "`GET /api/v1/events` filtered by `actor` and `target`.")

    @classmethod
    def of(cls, export: UserExport, at: datetime) -> UserExportOut:
        return cls(
            exported_at=at, user=UserOut.of(export.user),
            organizations=[MembershipOut(organization=OrganizationOut.of(org), roles=list(roles))
                           for org, roles in export.organizations],
            sessions=[SessionOut.of(s) for s in export.sessions],
            grants=[GrantOut.of(g, name) for g, name in export.grants],
            events=[EventOut.of(e) for e in export.events], events_total=export.events_total)


def download(export: UserExport) -> Response:
    """The export as a JSON file to save, never cached."""
    body = UserExportOut.of(export, datetime.now(UTC)).model_dump_json(indent=2)
    return Response(body, media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="user-{export.user.id}.json"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
