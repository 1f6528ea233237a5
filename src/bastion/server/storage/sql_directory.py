"""Users, organizations, roles and audit events on SQLAlchemy (mixed into SQLStorage)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from bastion.server.models import Event, Grant, LoginSession, Member, Organization, Role, User
from bastion.server.storage import prepared
from bastion.server.storage.base import (
    Conflict,
    DeleteOrganizationResult,
    DeleteRoleResult,
    EventFilter,
    Missing,
    PersonalData,
    UserExport,
)
from bastion.server.storage.conflicts import conflict
from bastion.server.storage.sql_base import SQLBase, values
from bastion.server.storage.sql_grants import end_user_sessions, revoke_grants
from bastion.server.storage.sql_mail import cancel_tokens
from bastion.server.storage.tables import (
    clients,
    events,
    grants,
    login_sessions,
    login_throttle,
    one_time_tokens,
    organizations,
    outbox,
    role_permissions,
    roles,
    user_roles,
    users,
)
from bastion.server.text import fold

# By id or by name; the id first, should another's name be spelled like it.
_ORGANIZATION = sa.select(organizations).where(sa.or_(
    organizations.c.id == sa.bindparam("id"),
    sa.func.lower(organizations.c.name) == sa.bindparam("name"),
)).order_by(sa.case((organizations.c.id == sa.bindparam("id"), 0), else_=1)).limit(1)

_MIN_TRIGRAM = 3  # shorter queries cannot use a trigram index and scan instead
# SQLite: how many users (in page order) to scan for a page before asking the FTS
# index; a common substring fills its page from the first rows at once.
_SCAN_FIRST = 5000


def _like(query: str) -> str:
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class DirectoryMixin(SQLBase):
    # -- users ------------------------------------------------------------------

    def _like_filter(self, query: str, table: Any = users) -> Any:
        """Whether a user's username or email holds ``query`` (folded), as PostgreSQL's
        ``lower()`` tells. The rule of every search and count, whatever index finds the
        rows: a page and the count must agree."""
        pattern = _like(query)
        name, email = table.c.username, table.c.email
        if self.engine.dialect.name == "sqlite":
            # LIKE ignores ASCII case, all a username has (USERNAME_PATTERN); emails
            # are stored folded.
            return sa.or_(name.like(pattern, escape="\\"), email.like(pattern, escape="\\"))
        return sa.or_(sa.func.lower(name).like(pattern, escape="\\"),
                      sa.func.lower(email).like(pattern, escape="\\"))

    def _user_filter(self, query: str | None, include_deleted: bool,
                     after: tuple[datetime, str] | None = None) -> list[Any]:
        where: list[Any] = []
        if not include_deleted:
            where.append(users.c.deleted_at.is_(None))
        if after is not None:  # keyset paging: the ``>=`` lets ix_users_created seek
            at, user_id = after
            where += [users.c.created_at >= at,
                      sa.or_(users.c.created_at > at, users.c.id > user_id)]
        if query:
            if self.engine.dialect.name == "sqlite" and len(query) >= _MIN_TRIGRAM:
                phrase = '"' + query.replace('"', '""') + '"'
                where.append(sa.literal_column("users.rowid").in_(
                    sa.text("SELECT rowid FROM users_fts WHERE users_fts MATCH :phrase")
                    .bindparams(phrase=phrase)))
                # The index folds more letters than lower() (the two sigmas; U+017F
                # to "s", so an ASCII query finds the long-s "sam" for "sam"): it only narrows.
                # Usernames are ASCII, so a row whose address is ASCII too needs no
                # second look (cheaper than one at every row: a count of many matches).
                ascii_email = (sa.func.length(sa.cast(users.c.email, sa.LargeBinary))
                               == sa.func.length(users.c.email))
                where.append(sa.or_(ascii_email, self._like_filter(query))
                             if query.isascii() else self._like_filter(query))
            else:
                where.append(self._like_filter(query))
        return where

    async def search_users(self, query: str | None, limit: int, offset: int,
                           include_deleted: bool = False,
                           after: tuple[datetime, str] | None = None) -> list[User]:
        if query and "\x00" in query:  # no username or email holds one; databases refuse it
            return []
        query = fold(query) if query else query  # as addresses are stored
        order = (users.c.created_at, users.c.id)
        head = None
        if query and self.engine.dialect.name == "sqlite" and len(query) >= _MIN_TRIGRAM:
            # The FTS index materialises every match before sorting; for a common
            # substring the page is found sooner among the first rows in order.
            first = (sa.select(users).where(*self._user_filter(None, include_deleted, after))
                     .order_by(*order).limit(_SCAN_FIRST + offset).subquery())
            head = (sa.select(first).where(self._like_filter(query, first))
                    .order_by(first.c.created_at, first.c.id).limit(limit).offset(offset))
        stmt = (sa.select(users).where(*self._user_filter(query, include_deleted, after))
                .order_by(*order).limit(limit).offset(offset))

        def search(conn: sa.Connection) -> list[User]:
            if head is not None:
                rows = conn.execute(head).mappings().all()
                if len(rows) == limit:
                    return [User(**row) for row in rows]
            return [User(**row) for row in conn.execute(stmt).mappings()]
        return await self._read(search)

    async def count_users(self, query: str | None, include_deleted: bool = False) -> int:
        if query and "\x00" in query:
            return 0
        query = fold(query) if query else query
        stmt = sa.select(sa.func.count()).select_from(users).where(
            *self._user_filter(query, include_deleted))
        return await self._read(lambda conn: int(conn.execute(stmt).scalar_one()))

    async def update_user(self, user_id: str, changes: Mapping[str, Any], *,
                          end_sessions_at: datetime | None = None,
                          keep_session: str | None = None,
                          cancel_links: Collection[str] = ()) -> User | None:
        now = datetime.now(UTC)
        values = {**changes, "updated_at": now}
        if "email" in changes and "email_verified_at" not in changes:
            # Another address is not proven yet; decided on the row as it is, in this
            # statement, so a change racing a confirmation cannot keep a stale flag.
            values["email_verified_at"] = sa.case(
                (users.c.email == changes["email"], users.c.email_verified_at), else_=None)

        def update(conn: sa.Connection) -> User | None:
            before = _locked_user(conn, user_id) if cancel_links else None
            done = conn.execute(users.update().where(  # an erased user stays so
                users.c.id == user_id, users.c.erased_at.is_(None)).values(**values))
            if done.rowcount != 1:
                return None
            if end_sessions_at is not None:  # in the same transaction: both or neither
                end_user_sessions(conn, user_id, end_sessions_at, keep_session)
            user = User(**conn.execute(sa.select(users).where(users.c.id == user_id)
                                       ).mappings().one())
            if cancel_links:  # and so are the links mailed before
                addresses = {user.email} | ({before["email"]} if before is not None else set())
                cancel_tokens(conn, user_id, cancel_links, now, addresses)
            return user
        try:
            return await self._write(update)
        except IntegrityError as exc:
            raise conflict(exc) from None

    async def erase_user(self, user_id: str, at: datetime,
                         data: PersonalData) -> User | None:
        def erase(conn: sa.Connection) -> User | None:
            row = _locked_user(conn, user_id)
            if row is None or row["erased_at"] is not None:
                return None if row is None else User(**row)
            # Their address, and those their email-change links name, unless another
            # user holds one now (that one's mail and links are theirs).
            addresses = {row["email"], *conn.execute(sa.select(one_time_tokens.c.email).where(
                one_time_tokens.c.user_id == user_id)).scalars()}
            addresses -= set(conn.execute(sa.select(users.c.email).where(
                users.c.email.in_(addresses), users.c.id != user_id)).scalars())
            logins = {row["username"], row["email"]}
            # Unclaimable placeholders: no username holds a ':', no address ends in
            # '.invalid' (services.users refuses both).
            conn.execute(users.update().where(users.c.id == user_id).values(
                username=f"erased:{user_id}", email=f"{user_id}@erased.invalid",
                password_hash=None, is_administrator=False, email_verified_at=None,
                deleted_at=sa.func.coalesce(users.c.deleted_at, at), erased_at=at,
                updated_at=at))
            # Memberships first: deleting an organization takes them, then grants.
            conn.execute(user_roles.delete().where(user_roles.c.user_id == user_id))
            end_user_sessions(conn, user_id, at)  # the apps are told
            conn.execute(login_sessions.delete().where(login_sessions.c.user_id == user_id))
            unowned = (one_time_tokens.c.user_id.is_(None),
                       one_time_tokens.c.email.in_(addresses))
            conn.execute(one_time_tokens.delete().where(sa.or_(
                one_time_tokens.c.user_id == user_id, sa.and_(*unowned))))
            conn.execute(outbox.delete().where(sa.or_(
                outbox.c.user_id == user_id,
                sa.and_(outbox.c.user_id.is_(None), outbox.c.to.in_(addresses)))))
            keys = data.throttle_keys(user_id, sorted(logins | addresses))
            if keys:
                conn.execute(login_throttle.delete().where(login_throttle.c.key.in_(keys)))
            if data.attempts:
                conn.execute(events.update().where(*_attempts_on(data, logins))
                             .values(target=user_id))
            if data.named:
                named = conn.execute(sa.select(events.c.id, events.c.detail).where(
                    events.c.target == user_id, events.c.action.in_(data.named))).all()
                for event_id, detail in named:
                    kept = _unnamed(detail)
                    if kept != detail:
                        conn.execute(events.update().where(events.c.id == event_id)
                                     .values(detail=kept))
            return User(**conn.execute(sa.select(users).where(users.c.id == user_id))
                        .mappings().one())
        return await self._write(erase, may_wait=True)

    async def export_user(self, user_id: str, event_limit: int,
                          data: PersonalData) -> UserExport | None:
        def export(conn: sa.Connection) -> UserExport | None:
            row = conn.execute(sa.select(users).where(users.c.id == user_id)).mappings().first()
            if row is None:
                return None
            theirs = [events.c.actor == user_id, events.c.target == user_id]
            if data.attempts:
                theirs.append(sa.and_(*_attempts_on(data, {row["username"], row["email"]})))
            held: dict[str, list[str]] = {}
            for org_id, role in conn.execute(
                    sa.select(user_roles.c.organization_id, roles.c.name)
                    .join(roles, roles.c.id == user_roles.c.role_id)
                    .where(user_roles.c.user_id == user_id)):
                held.setdefault(org_id, []).append(role)
            orgs = conn.execute(sa.select(organizations).where(organizations.c.id.in_(held))
                                .order_by(organizations.c.created_at, organizations.c.id))
            sessions = conn.execute(sa.select(login_sessions).where(
                login_sessions.c.user_id == user_id).order_by(
                login_sessions.c.created_at.desc(), login_sessions.c.id))
            granted = conn.execute(
                sa.select(grants, clients.c.name.label("client_name"))
                .outerjoin(clients, clients.c.client_id == grants.c.client_id)
                .where(grants.c.user_id == user_id)
                .order_by(grants.c.created_at.desc(), grants.c.id)).mappings()
            listed = conn.execute(sa.select(events).where(sa.or_(*theirs)).order_by(
                events.c.at.desc(), events.c.id.desc()).limit(event_limit)).mappings()
            return UserExport(
                user=User(**row),
                organizations=[(Organization(**org), tuple(sorted(held[org["id"]])))
                               for org in orgs.mappings()],
                sessions=[LoginSession(**s) for s in sessions.mappings()],
                grants=[(Grant(**{k: v for k, v in g.items() if k != "client_name"}),
                         g["client_name"]) for g in granted],
                events=[_as_theirs(Event(**e), user_id, data) for e in listed],
                events_total=int(conn.execute(sa.select(sa.func.count()).select_from(events)
                                              .where(sa.or_(*theirs))).scalar_one()))
        return await self._read(export)

    async def verify_email(self, user_id: str, email: str, at: datetime) -> bool:
        def verify(conn: sa.Connection) -> bool:
            done = conn.execute(users.update().where(
                users.c.id == user_id, users.c.email == fold(email),
                users.c.email_verified_at.is_(None)).values(email_verified_at=at, updated_at=at))
            return done.rowcount == 1
        return await self._write(verify)

    # -- organizations ------------------------------------------------------------

    async def create_organization(self, org: Organization) -> None:
        try:
            await self._write(lambda conn: conn.execute(organizations.insert(), {
                "id": org.id, "name": org.name, "created_at": org.created_at}))
        except IntegrityError:
            raise Conflict("name") from None

    async def get_organization(self, org_id: str) -> Organization | None:
        row = await self._one(_ORGANIZATION, {"id": org_id, "name": org_id.lower()})
        return Organization(**row) if row else None

    async def list_organizations(self, limit: int, offset: int) -> tuple[list[Organization], int]:
        return await self._organizations(limit, offset)

    async def _organizations(self, limit: int, offset: int,
                             *where: Any) -> tuple[list[Organization], int]:
        """A page of the organizations ``where`` selects, oldest first, and their count."""
        def page(conn: sa.Connection) -> tuple[list[Organization], int]:
            rows = conn.execute(sa.select(organizations).where(*where).order_by(
                organizations.c.created_at, organizations.c.id).limit(limit).offset(offset)
            ).mappings()
            items = [Organization(**row) for row in rows]
            total = conn.execute(sa.select(sa.func.count()).select_from(organizations)
                                 .where(*where)).scalar_one()
            return items, int(total)
        return await self._read(page)

    async def rename_organization(self, org_id: str, name: str) -> Organization | None:
        where = organizations.c.id == org_id

        def rename(conn: sa.Connection) -> Organization | None:
            if conn.execute(organizations.update().where(where).values(name=name)).rowcount != 1:
                return None
            return Organization(**conn.execute(sa.select(organizations).where(where))
                                .mappings().one())
        try:
            return await self._write(rename)
        except IntegrityError:
            raise Conflict("name") from None

    async def delete_organization(self, org_id: str, force: bool,
                                  at: datetime) -> DeleteOrganizationResult:
        where = organizations.c.id == org_id
        in_org = roles.c.organization_id == org_id

        def delete(conn: sa.Connection) -> DeleteOrganizationResult:
            # Lock, then count, as ``delete_role`` does. PostgreSQL: the organization
            # (a role being created waits, or went first and is locked below) and its
            # roles (an assignment being added holds one: wait for it, then see it).
            # SQLite holds the write lock from the start.
            conn.execute(sa.select(organizations.c.id).where(where).with_for_update())
            conn.execute(sa.select(roles.c.id).where(in_org).with_for_update())
            if conn.execute(sa.select(organizations.c.id).where(where)).first() is None:
                return "missing"
            held = conn.execute(sa.select(user_roles.c.role_id).where(
                user_roles.c.organization_id == org_id).limit(1)).first()
            if held and not force:
                return "in_use"
            conn.execute(user_roles.delete().where(user_roles.c.organization_id == org_id))
            conn.execute(role_permissions.delete().where(
                role_permissions.c.role_id.in_(sa.select(roles.c.id).where(in_org))))
            conn.execute(roles.delete().where(in_org))
            conn.execute(organizations.delete().where(where))
            # Its tokens carry roles that are gone. grants has no index by organization
            # (a rare admin call may scan the table, as deleting a client does).
            revoke_grants(conn, sa.select(grants.c.id).where(grants.c.organization_id == org_id),
                          at)
            return "deleted"
        return await self._write(delete, may_wait=True)

    async def list_members(self, org_id: str, limit: int, offset: int,
                           include_deleted: bool = False) -> tuple[list[Member], int]:
        where: list[Any] = [users.c.id.in_(sa.select(user_roles.c.user_id).where(
            user_roles.c.organization_id == org_id))]
        if not include_deleted:
            where.append(users.c.deleted_at.is_(None))

        # The page and its members' roles in one statement (one snapshot on PostgreSQL
        # too): a member whose last role is taken meanwhile is not listed without roles.
        members = (sa.select(users).where(*where).order_by(users.c.created_at, users.c.id)
                   .limit(limit).offset(offset).cte("members"))
        held = (sa.select(members, roles.c.name.label("role_name"))
                .join(user_roles, sa.and_(user_roles.c.user_id == members.c.id,
                                          user_roles.c.organization_id == org_id))
                .join(roles, roles.c.id == user_roles.c.role_id)
                .order_by(members.c.created_at, members.c.id, roles.c.name))
        fields = [c.name for c in users.columns]

        def page(conn: sa.Connection) -> tuple[list[Member], int]:
            found: dict[str, tuple[User, list[str]]] = {}
            for row in conn.execute(held).mappings():
                if row["id"] not in found:
                    found[row["id"]] = (User(**{f: row[f] for f in fields}), [])
                found[row["id"]][1].append(row["role_name"])
            total = conn.execute(sa.select(sa.func.count()).select_from(users).where(*where)
                                 ).scalar_one()
            return [Member(u, tuple(names)) for u, names in found.values()], int(total)
        return await self._read(page)

    async def user_organizations(self, user_id: str, limit: int,
                                 offset: int) -> tuple[list[Organization], int]:
        return await self._organizations(limit, offset, organizations.c.id.in_(
            sa.select(user_roles.c.organization_id).where(user_roles.c.user_id == user_id)))

    # -- roles and permissions ----------------------------------------------------------

    async def create_role(self, role: Role) -> None:
        def create(conn: sa.Connection) -> None:
            conn.execute(roles.insert(), {
                "id": role.id, "organization_id": role.organization_id, "name": role.name,
                "created_at": role.created_at})
            if role.permissions:
                conn.execute(role_permissions.insert(), [
                    {"role_id": role.id, "permission": p} for p in role.permissions])
        try:
            await self._write(create)
        except IntegrityError:
            if await self._one(_ORGANIZATION, {"id": role.organization_id, "name": ""}) is None:
                raise Missing(role.organization_id) from None  # deleted meanwhile
            raise Conflict("name") from None

    async def list_roles(self, org_id: str) -> list[Role]:
        return await self._read(lambda conn: _roles(conn, roles.c.organization_id == org_id))

    async def get_role(self, org_id: str, role: str) -> Role | None:
        """A role of the organization by id or (case-insensitive) name; the id first,
        should another role's name be spelled like it."""
        found = await self._read(lambda conn: _roles(conn, sa.and_(
            roles.c.organization_id == org_id,
            sa.or_(roles.c.id == role, sa.func.lower(roles.c.name) == role.lower()))))
        found.sort(key=lambda r: r.id != role)
        return found[0] if found else None

    async def delete_role(self, org_id: str, role_id: str, force: bool) -> DeleteRoleResult:
        def delete(conn: sa.Connection) -> DeleteRoleResult:
            # Lock the role, then count: else an add committed meanwhile would be
            # cascaded away unseen. PostgreSQL: wait for any add holding the role
            # (``_live_roles``). SQLite holds the write lock from the start.
            conn.execute(sa.select(roles.c.id).where(roles.c.id == role_id).with_for_update())
            in_use = conn.execute(sa.select(sa.func.count()).select_from(user_roles)
                                  .where(user_roles.c.role_id == role_id)).scalar_one()
            if in_use and not force:
                return "in_use"
            conn.execute(user_roles.delete().where(user_roles.c.role_id == role_id))
            conn.execute(role_permissions.delete().where(role_permissions.c.role_id == role_id))
            done = conn.execute(roles.delete().where(
                roles.c.id == role_id, roles.c.organization_id == org_id))
            return "deleted" if done.rowcount == 1 else "missing"
        return await self._write(delete)

    async def change_permissions(self, role_id: str, add: Iterable[str],
                                 remove: Iterable[str],
                                 check: Callable[[Role], None] | None = None) -> None:
        gone, wanted = list(remove), list(dict.fromkeys(add))

        def change(conn: sa.Connection) -> None:
            # Adds wait for each other (the role's row for update), so ``check`` sees
            # the permissions an add commits before it.
            if wanted and not _live_roles(conn, [role_id], exclusive=True):
                raise Missing(role_id)  # deleted meanwhile
            if gone:
                conn.execute(role_permissions.delete().where(
                    role_permissions.c.role_id == role_id,
                    role_permissions.c.permission.in_(gone)))
            if wanted:  # concurrent adds of one permission all succeed
                conn.execute(self._insert_ignore(role_permissions), [
                    {"role_id": role_id, "permission": p} for p in wanted])
                if check is not None:
                    check(_roles(conn, roles.c.id == role_id)[0])
        await self._write(change)

    async def user_roles(self, user_id: str, org_id: str) -> list[Role]:
        ids = sa.select(user_roles.c.role_id).where(
            user_roles.c.user_id == user_id, user_roles.c.organization_id == org_id)
        return await self._read(lambda conn: _roles(conn, roles.c.id.in_(ids)))

    async def change_user_roles(self, user_id: str, org_id: str, add: Iterable[str],
                                remove: Iterable[str],
                                check: Callable[[list[Role]], None] | None = None,
                                ) -> list[Role]:
        """Add and remove role ids in one transaction; returns the roles after. Raises
        ``Missing`` (changing nothing) if a role to add is not (or no longer) one of
        the organization's, or the user is erased (``Missing(user_id)``)."""
        gone, wanted = list(remove), list(dict.fromkeys(add))

        def change(conn: sa.Connection) -> list[Role]:
            if wanted:
                # The user first, then the roles, in the order sign-ins take them (a
                # grant holds its user's row, then the role it is issued with): the
                # other order deadlocked with them and a forced organization delete.
                # An erasure under way is waited for, and so is another change adding
                # roles to the user, whose roles ``check`` then sees.
                held = _locked_user(conn, user_id)
                if held is None or held["erased_at"] is not None:
                    raise Missing(user_id)
                # resolved before this transaction: a role may be deleted meanwhile
                live = _live_roles(conn, wanted, org_id)
                missing = [r for r in wanted if r not in live]
                if missing:
                    raise Missing(missing[0])
            if gone:
                conn.execute(user_roles.delete().where(
                    user_roles.c.user_id == user_id, user_roles.c.role_id.in_(gone)))
            if wanted:  # concurrent adds of one role all succeed
                conn.execute(self._insert_ignore(user_roles), [
                    {"user_id": user_id, "role_id": r, "organization_id": org_id}
                    for r in wanted])
            ids = sa.select(user_roles.c.role_id).where(
                user_roles.c.user_id == user_id, user_roles.c.organization_id == org_id)
            after = _roles(conn, roles.c.id.in_(ids))
            if check is not None:
                check(after)  # raising rolls the change back
            return after
        return await self._write(change)

    def _insert_ignore(self, table: sa.Table) -> Any:
        """``INSERT`` that skips rows whose key exists (``ON CONFLICT DO NOTHING``)."""
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        return insert(table).on_conflict_do_nothing()

    # -- audit events ---------------------------------------------------------------

    async def add_event(self, event: Event) -> None:
        row = values(event)
        if event.target is None or _unnamed(event.detail) == event.detail:
            await self._insert(events, row)
            return

        def add(conn: sa.Connection) -> None:
            # An event naming its target is written after the change it records, in
            # another transaction: an erasure committed in between took the names out
            # of the events before it, not of this one. ``FOR SHARE`` waits for an
            # erasure under way and then reads what it wrote.
            erased = conn.execute(sa.select(users.c.erased_at).where(
                users.c.id == event.target).with_for_update(read=True)).scalar()
            if erased is not None:
                row["detail"] = _unnamed(event.detail)
            prepared.insert(conn, events, row)
        await self._write(add)

    async def list_events(self, where: EventFilter, limit: int, offset: int,
                          after: tuple[datetime, str] | None = None, count: bool = True,
                          ) -> tuple[list[Event], int | None]:
        text = [v for k, v in where.items() if k in ("action", "actor", "target", "client_id")]
        if any("\x00" in str(v) for v in text):  # stored events hold none
            return [], 0 if count else None
        conditions = [getattr(events.c, k) == v for k, v in where.items()
                      if k in ("action", "actor", "target", "client_id") and v]
        if where.get("since"):
            conditions.append(events.c.at >= where["since"])
        if where.get("until"):
            conditions.append(events.c.at < where["until"])

        paged = list(conditions)
        if after is not None:  # keyset paging, newest first: the ``<=`` lets ix_events_at seek
            at, event_id = after
            paged += [events.c.at <= at, sa.or_(events.c.at < at, events.c.id < event_id)]

        def page(conn: sa.Connection) -> tuple[list[Event], int | None]:
            rows = conn.execute(sa.select(events).where(*paged).order_by(
                events.c.at.desc(), events.c.id.desc()).limit(limit).offset(offset)).mappings()
            items = [Event(**row) for row in rows]
            if not count:
                return items, None
            return items, int(conn.execute(sa.select(sa.func.count()).select_from(events)
                                           .where(*conditions)).scalar_one())
        return await self._read(page)


def _live_roles(conn: sa.Connection, role_ids: list[str], org_id: str | None = None, *,
                exclusive: bool = False) -> set[str]:
    """Which of ``role_ids`` exist (in ``org_id``), locked until the transaction ends
    (PostgreSQL ``FOR KEY SHARE``: a concurrent delete waits, or went first and the
    role is not found; ``exclusive``: ``FOR NO KEY UPDATE``, so that other exclusive
    lockers wait too), so rows referencing them can be inserted. SQLite holds the
    write lock from the start of the transaction."""
    where: list[Any] = [roles.c.id.in_(role_ids)]
    if org_id is not None:
        where.append(roles.c.organization_id == org_id)
    locked = sa.select(roles.c.id).where(*where).with_for_update(
        read=not exclusive, key_share=True)
    return set(conn.execute(locked).scalars())


def _locked_user(conn: sa.Connection, user_id: str) -> sa.RowMapping | None:
    """The user's row, locked until the transaction ends: a racing erasure, change
    or role assignment waits (on SQLite the write lock). PostgreSQL ``FOR NO KEY
    UPDATE``: rows that refer to the user (a reissued grant) are not held up, which
    could deadlock with a transaction that revoked a grant of theirs first."""
    return conn.execute(sa.select(users).where(users.c.id == user_id)
                        .with_for_update(key_share=True)).mappings().first()


def _attempts_on(data: PersonalData, logins: Iterable[str]) -> list[Any]:
    """The sign-in attempts on any of ``logins`` (a username, an address), spelt as
    they are recorded, or as stored (as attempts were recorded before)."""
    names = set(logins)
    return [events.c.action.in_(data.attempts),
            events.c.target.in_(names | {data.spell(name) for name in names})]


def _roles(conn: sa.Connection, where: Any) -> list[Role]:
    rows = conn.execute(sa.select(roles).where(where)
                        .order_by(roles.c.name, roles.c.id)).mappings().all()
    if not rows:
        return []
    perms: dict[str, list[str]] = {row["id"]: [] for row in rows}
    for role_id, permission in conn.execute(
        sa.select(role_permissions.c.role_id, role_permissions.c.permission)
        .where(role_permissions.c.role_id.in_(list(perms)))
        .order_by(role_permissions.c.permission)
    ):
        perms[role_id].append(permission)
    return [Role(id=r["id"], organization_id=r["organization_id"], name=r["name"],
                 permissions=tuple(perms[r["id"]]), created_at=r["created_at"]) for r in rows]


def _unnamed(detail: dict[str, Any]) -> dict[str, Any]:
    """An event's ``detail`` without the names of its target (``PersonalData.named``)."""
    return {k: v for k, v in detail.items() if k not in ("username", "email")}


def _as_theirs(event: Event, user_id: str, data: PersonalData) -> Event:
    """An event as a user's export shows it: the address it came from only if they
    acted, and the names of another user it was about (an administrator's changes)
    left out, which are that user's (GDPR article 15(4))."""
    ip = event.ip if event.actor == user_id else None
    detail = event.detail if event.target == user_id or event.action not in data.named \
        else _unnamed(event.detail)
    return replace(event, ip=ip, detail=detail)
