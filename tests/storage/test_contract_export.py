"""The storage contract for exporting what is kept about a user, on SQLite and
PostgreSQL: their row, memberships, sessions (ended too), grants with the client's
name, and the audit events by or about them and the attempts on their names, newest
first and bounded, without the addresses of events others caused."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from test_contract import NOW, sign_in
from test_contract_erase import DATA, ME, OTHER, setup

from bastion.server.models import Event
from bastion.server.storage import SQLStorage


async def test_an_export_holds_what_is_kept_about_the_user(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.revoke_session("s1", NOW)
    await storage.add_event(replace(sign_in(2), ip="203.0.113.9"))
    export = await storage.export_user(ME.id, 100, DATA)
    assert export is not None and export.user == ME
    assert [(org.id, roles) for org, roles in export.organizations] == [("org", ("r",))]
    assert [(s.id, s.revoked_at) for s in export.sessions] == [("s1", NOW)]
    assert [(g.id, g.revoked_at, name) for g, name in export.grants] == [("g1", NOW, "App")]
    # By them, about them, or attempts on their username or address: not OTHER's, nor
    # on an address they have not confirmed.
    by_id = {e.id: e for e in export.events}
    assert sorted(by_id) == ["a1", "a2", "a5", "c1", "e1", "e2", "u1"]
    assert export.events_total == 7
    assert by_id["e2"].ip == "203.0.113.9"  # their own
    assert by_id["a1"].ip is None and by_id["c1"].ip is None  # others'
    other = await storage.export_user(OTHER.id, 100, DATA)
    assert other is not None and [g.id for g, _ in other.grants] == ["g2"]
    assert sorted(e.id for e in other.events) == ["a3", "c2"]
    assert await storage.export_user("missing", 100, DATA) is None


async def test_events_come_newest_first_up_to_the_limit(storage: SQLStorage) -> None:
    await setup(storage)
    for n in range(5):
        await storage.add_event(Event(
            id=f"later{n}", at=NOW + timedelta(minutes=n), action="account.password",
            actor=ME.id, actor_type="user", target=ME.id, client_id=None, ip=None))
    export = await storage.export_user(ME.id, 3, DATA)
    assert export is not None
    assert [e.id for e in export.events] == ["later4", "later3", "later2"]
    assert export.events_total == 11


async def test_a_deleted_client_keeps_its_name(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.delete_client("app", NOW)
    export = await storage.export_user(ME.id, 10, DATA)
    assert export is not None and [(g.revoked_at, name) for g, name in export.grants] == [
        (NOW, "App")]


async def test_another_users_names_in_events_they_caused_are_left_out(
        storage: SQLStorage) -> None:
    # An administrator's export holds the changes they made to other users, but not
    # those users' names: those are the other users' data (and erased with them).
    await setup(storage)
    for event_id, target in (("mine", ME.id), ("theirs", OTHER.id)):
        await storage.add_event(Event(
            id=event_id, at=NOW, action="user.create", actor=ME.id, actor_type="user",
            target=target, client_id=None, ip=None, detail={
                "fields": ["email"], "email": f"{target}@example.com", "username": target,
                "is_administrator": False, "email_verified": False}))
    export = await storage.export_user(ME.id, 100, DATA)
    assert export is not None
    by_id = {e.id: e for e in export.events}
    assert by_id["mine"].detail["email"] == f"{ME.id}@example.com"
    assert by_id["theirs"].detail == {"fields": ["email"], "is_administrator": False,
                                      "email_verified": False}
