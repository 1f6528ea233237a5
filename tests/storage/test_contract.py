"""The storage contract, run on SQLite and on a real PostgreSQL cluster."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bastion.server.models import Client, Event, Grant, SigningKey, User
from bastion.server.storage import Conflict, SQLStorage, migrate
from bastion.server.storage.base import Missing

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def user(n: int = 1, **changes: object) -> User:
    base = User(id=f"00000000-0000-0000-0000-{n:012d}", username=f"User{n}",
                email=f"user{n}@example.com", password_hash="$argon2id$x", is_administrator=False,
                created_at=NOW, updated_at=NOW)
    return replace(base, **changes)  # type: ignore[arg-type]


def grant(grant_id: str = "g1", **changes: object) -> Grant:
    base = Grant(id=grant_id, client_id="app", user_id=user().id, session_id=None,
                 scope="openid", auth_time=NOW, created_at=NOW)
    return replace(base, **changes)  # type: ignore[arg-type]


async def member_of(storage: SQLStorage, org_id: str) -> None:
    """Give ``user()`` a role in a new organization ``org_id`` (a grant there needs one)."""
    from bastion.server.models import Organization, Role

    await storage.create_organization(Organization(id=org_id, name=org_id, created_at=NOW))
    await storage.create_role(Role(id=f"{org_id}-r", organization_id=org_id, name="r",
                                   permissions=(), created_at=NOW))
    await storage.change_user_roles(user().id, org_id, [f"{org_id}-r"], [])


def sign_in(n: int, method: str = "password", client_id: str | None = "app") -> Event:
    """The login.success audit event ``e<n>`` of ``user()``."""
    return Event(id=f"e{n}", at=NOW, action="login.success", actor=user().id,
                 actor_type="user", target=user().id, client_id=client_id, ip=None,
                 detail={"method": method})


def client(client_id: str = "app") -> Client:
    return Client(client_id=client_id, name="App", is_public=False, secret_digest=b"d" * 32,
                  redirect_uris=("https://app.example/cb",), grant_types=("client_credentials",),
                  scopes=("read", "write"), created_at=NOW)


def key(kid: str, use: str = "access", at: datetime = NOW) -> SigningKey:
    return SigningKey(kid=kid, alg="ES256", use=use, private_key_enc=b"\x01secret",  # type: ignore[arg-type]
                      public_jwk={"kid": kid, "kty": "EC"}, created_at=at)


async def test_migrations_are_current_and_idempotent(storage: SQLStorage) -> None:
    await migrate.upgrade(storage.engine)
    assert await migrate.current_revision(storage.engine) == migrate.head_revision()


async def test_user_round_trip_keeps_every_field(storage: SQLStorage) -> None:
    u = user(deleted_at=NOW + timedelta(days=1), is_administrator=True)
    await storage.create_user(u)
    assert await storage.get_user(u.id) == u
    assert await storage.get_user("missing") is None


async def test_user_lookup_by_login_is_case_insensitive(storage: SQLStorage) -> None:
    u = user()
    await storage.create_user(u)
    assert await storage.get_user_by_login("user1") == u
    assert await storage.get_user_by_login("USER1@EXAMPLE.COM") == u
    assert await storage.get_user_by_login("nobody") is None


OTHER_ID = "00000000-0000-0000-0000-000000000009"


@pytest.mark.parametrize(("changes", "field"), [
    ({"id": OTHER_ID, "username": "USER1", "email": "other@example.com"}, "username"),
    ({"id": OTHER_ID, "username": "other", "email": "User1@Example.com"}, "email"),
])
async def test_user_uniqueness_is_case_insensitive(storage: SQLStorage, changes, field) -> None:
    await storage.create_user(user())
    with pytest.raises(Conflict) as err:
        await storage.create_user(user(**changes))
    assert err.value.field == field


async def test_client_round_trip_and_conflict(storage: SQLStorage) -> None:
    await storage.create_client(client())
    assert await storage.get_client("app") == client()
    assert await storage.get_client("other") is None
    with pytest.raises(Conflict) as err:
        await storage.create_client(client())
    assert err.value.field == "client_id"
    assert await storage.get_client("app") == client()  # the first one is kept


async def test_rotation_retires_only_the_same_use(storage: SQLStorage) -> None:
    await storage.rotate_signing_key(key("a1"))
    await storage.rotate_signing_key(key("i1", use="id"))
    later = NOW + timedelta(hours=1)
    await storage.rotate_signing_key(key("a2", at=later))
    keys = {k.kid: k for k in await storage.signing_keys()}
    assert keys["a1"].retired_at == later
    assert keys["a2"].retired_at is None
    assert keys["i1"].retired_at is None
    assert keys["a1"].private_key_enc == b"\x01secret"
    assert keys["a2"].public_jwk == {"kid": "a2", "kty": "EC"}


async def test_a_rotation_activates_the_next_key_and_publishes_the_new_one(
        storage: SQLStorage) -> None:
    assert await storage.rotate_signing_key(key("a1")) == "a1"  # no next key: at once
    assert await storage.publish_signing_key(key("a2"))
    assert not await storage.publish_signing_key(key("a3"))  # one next key per use
    later = NOW + timedelta(hours=1)
    assert await storage.rotate_signing_key(key("a4", at=later)) == "a2"
    stored = {k.kid: k for k in await storage.signing_keys()}
    assert set(stored) == {"a1", "a2", "a4"}
    assert (stored["a1"].activated_at, stored["a1"].retired_at) == (NOW, later)
    assert (stored["a2"].activated_at, stored["a2"].retired_at) == (later, None)
    assert (stored["a4"].activated_at, stored["a4"].retired_at) == (None, None)


async def test_a_withdrawn_key_goes_and_the_key_that_signs_is_replaced_first(
        storage: SQLStorage) -> None:
    later = NOW + timedelta(hours=1)
    await storage.rotate_signing_key(key("a1"))
    await storage.rotate_signing_key(key("a2", at=later))  # a1 retired, a2 signs
    await storage.publish_signing_key(key("a3"))
    assert await storage.withdraw_signing_key("a1", key("x1", at=later))  # retired: just goes
    assert await storage.withdraw_signing_key("a3", key("n1", at=later))  # next: replaced
    assert await storage.withdraw_signing_key("a2", key("n2", at=later))  # signs: n1 now
    assert not await storage.withdraw_signing_key("a2", key("n3", at=later))
    stored = {k.kid: k for k in await storage.signing_keys()}
    assert set(stored) == {"n1", "n2"}
    assert stored["n1"].activated_at == later and stored["n1"].retired_at is None
    assert stored["n2"].activated_at is None


async def test_a_next_key_is_replaced_only_while_it_is_next(storage: SQLStorage) -> None:
    # A setting's new algorithm replaces the key waiting its turn; had a rotation
    # activated it meanwhile, it signs and must stay.
    later = NOW + timedelta(hours=1)
    await storage.rotate_signing_key(key("a1"))
    await storage.publish_signing_key(key("n1"))
    assert await storage.replace_next_signing_key("n1", key("n2", at=later))
    assert await storage.rotate_signing_key(key("n3", at=later)) == "n2"
    assert not await storage.replace_next_signing_key("n2", key("x", at=later))  # signs now
    assert not await storage.replace_next_signing_key("a1", key("x", at=later))  # retired
    assert not await storage.replace_next_signing_key("gone", key("x", at=later))
    stored = {k.kid: k for k in await storage.signing_keys()}
    assert set(stored) == {"a1", "n2", "n3"}
    assert stored["n2"].activated_at == later and stored["n3"].activated_at is None


async def test_withdrawals_racing_rotations_rotate_once_per_withdrawal(
        storage: SQLStorage) -> None:
    await storage.rotate_signing_key(key("a1"))
    await storage.publish_signing_key(key("a2"))
    later = NOW + timedelta(hours=1)
    done = await asyncio.gather(
        *(storage.withdraw_signing_key("a1", key(f"r{i}", at=later)) for i in range(4)),
        storage.rotate_signing_key(key("k1", at=later + timedelta(seconds=1))))
    assert sum(result is True for result in done[:4]) == 1  # one withdrew it, once
    stored = await storage.signing_keys()
    assert "a1" not in {k.kid for k in stored}
    assert sum(k.retired_at is None and k.activated_at is not None for k in stored) == 1
    assert sum(k.activated_at is None for k in stored) == 1
    assert len(stored) == 3  # a2 and one rotation's keys: no rotation was doubled


@pytest.mark.parametrize("published", [False, True])
async def test_concurrent_rotations_leave_one_active_and_one_next_key(
        storage: SQLStorage, published: bool) -> None:
    if published:
        await storage.publish_signing_key(key("next"))
    await asyncio.gather(*(storage.rotate_signing_key(key(f"k{i}", at=NOW + timedelta(seconds=i)))
                           for i in range(5)))
    stored = await storage.signing_keys()
    active = [k for k in stored if k.retired_at is None and k.activated_at is not None]
    waiting = [k for k in stored if k.activated_at is None]
    assert len(active) == 1
    assert len(waiting) == (1 if published else 0)  # rotate publishes one only after one


async def test_ping(storage: SQLStorage) -> None:
    await storage.ping()


# -- directory: users search, organizations, roles, events ------------------------

from bastion.server.models import Organization, Role  # noqa: E402


async def seed_users(storage: SQLStorage) -> None:
    names = [("alice", "alice@example.com"), ("Bob_99", "bob@corp.example"),
             ("carol", "CAROL@Example.org"), ("dave%x", "dave@x.example")]
    for i, (name, mail) in enumerate(names, start=1):
        await storage.create_user(user(i, username=name, email=mail,
                                       created_at=NOW + timedelta(seconds=i)))


@pytest.mark.parametrize(("query", "expected"), [
    (None, ["alice", "Bob_99", "carol", "dave%x"]),
    ("EXAMPLE", ["alice", "Bob_99", "carol", "dave%x"]),  # trigram path, case-insensitive
    ("corp", ["Bob_99"]),
    ("b_9", ["Bob_99"]),
    ("%", ["dave%x"]),  # LIKE wildcards are literal
    ("_", ["Bob_99"]),
    ("al", ["alice"]),  # short: no trigram, a scan
    ("ol@ex", ["carol"]),
    ('"; DROP TABLE users; --', []),
    ("zzz", []),
])
async def test_search_users_by_substring(storage: SQLStorage, query, expected) -> None:
    await seed_users(storage)
    found = await storage.search_users(query, limit=10, offset=0)
    assert [u.username for u in found] == expected
    assert await storage.count_users(query) == len(expected)


@pytest.mark.parametrize(("query", "expected"), [
    ("\u03c3@example", ["bob"]),  # SQLite's index took the final sigma for it
    ("\u00e4rne@", ["arne"]),  # the address's
    ("\u00e4r", ["arne"]),  # short: a scan
    ("sam123", ["sam"]),  # ASCII, and SQLite's index took the long s (U+017F) for an s
])
async def test_search_and_count_agree_on_every_page_beyond_ascii(storage: SQLStorage, query,
                                                                 expected) -> None:
    for i, (name, mail) in enumerate([("anna", "anna\u03c2@example.gr"),
                                      ("bob", "bob\u03c3@example.gr"),
                                      ("arne", "\u00e4rne@example.gr"),
                                      ("longs", "\u017fam123@example.gr"),
                                      ("sam", "sam123@example.gr")], start=1):
        await storage.create_user(user(i, username=name, email=mail,
                                       created_at=NOW + timedelta(seconds=i)))
    assert await storage.count_users(query) == len(expected)
    for limit in (1, 10):  # a page of one is found by the scan of the first rows
        pages = [await storage.search_users(query, limit, offset) for offset in range(5)]
        assert [u.username for page in pages for u in page] == expected


async def test_search_pages_in_a_stable_order_and_skips_deleted(storage: SQLStorage) -> None:
    await seed_users(storage)
    await storage.update_user(user(2).id, {"deleted_at": NOW})
    assert [u.username for u in await storage.search_users(None, 2, 0)] == ["alice", "carol"]
    assert [u.username for u in await storage.search_users(None, 2, 2)] == ["dave%x"]
    assert await storage.count_users(None) == 3
    assert await storage.count_users(None, include_deleted=True) == 4


async def test_update_user_keeps_search_in_sync_and_reports_conflicts(storage) -> None:
    await seed_users(storage)
    updated = await storage.update_user(user(1).id, {"username": "alicia"})
    assert updated is not None and updated.username == "alicia"
    assert updated.updated_at > NOW
    assert [u.username for u in await storage.search_users("alicia", 5, 0)] == ["alicia"]
    assert await storage.search_users("alice@", 5, 0) != []  # email unchanged
    with pytest.raises(Conflict) as err:
        await storage.update_user(user(1).id, {"username": "CAROL"})
    assert err.value.field == "username"
    assert await storage.update_user("missing", {"username": "x"}) is None


async def test_organizations_and_roles(storage: SQLStorage) -> None:
    org = Organization(id="org-1", name="Acme", created_at=NOW)
    await storage.create_organization(org)
    with pytest.raises(Conflict):
        await storage.create_organization(Organization(id="org-2", name="ACME", created_at=NOW))
    assert await storage.get_organization("acme") == org
    assert await storage.list_organizations(10, 0) == ([org], 1)
    editor = Role(id="r-1", organization_id="org-1", name="editor",
                  permissions=("posts:read", "posts:write"), created_at=NOW)
    await storage.create_role(editor)
    await storage.create_role(Role(id="r-2", organization_id="org-1", name="empty",
                                   permissions=(), created_at=NOW))
    with pytest.raises(Conflict):
        await storage.create_role(replace(editor, id="r-3", name="Editor"))
    assert await storage.get_role("org-1", "EDITOR") == editor
    await storage.change_permissions("r-1", add=["posts:delete", "posts:read"],
                                     remove=["posts:write"])
    role = await storage.get_role("org-1", "r-1")
    assert role is not None and role.permissions == ("posts:delete", "posts:read")
    assert [r.name for r in await storage.list_roles("org-1")] == ["editor", "empty"]


async def test_an_id_finds_its_own_record_before_a_name_spelled_like_it(
        storage: SQLStorage) -> None:
    # Names and ids share the lookups: a name spelled like another record's id (which
    # the services refuse, but an older database may hold) must not take its place,
    # whichever row the database meets first.
    for n, impostor_first in enumerate((False, True)):
        real, other = (f"0f0e0d0c-0000-4000-8000-{n}{i:011d}" for i in (1, 2))
        org = Organization(id=real, name=f"Acme{n}", created_at=NOW)
        impostor = Organization(id=other, name=real.upper(), created_at=NOW)
        role = Role(id=real, organization_id=real, name="viewer", permissions=(),
                    created_at=NOW)
        fake = Role(id=other, organization_id=real, name=real.upper(),
                    permissions=("billing:admin",), created_at=NOW)
        orgs, found_roles = [impostor, org], [fake, role]
        if not impostor_first:
            orgs.reverse()
            found_roles.reverse()
        for o in orgs:
            await storage.create_organization(o)
        for r in found_roles:
            await storage.create_role(r)
        assert await storage.get_organization(real) == org
        assert await storage.get_organization(other) == impostor
        assert await storage.get_role(real, real) == role
        assert await storage.get_role(real, other) == fake


async def test_user_roles_change_atomically_and_block_deletion(storage: SQLStorage) -> None:
    await storage.create_user(user())
    await storage.create_organization(Organization(id="o", name="o", created_at=NOW))
    for rid in ("a", "b"):
        await storage.create_role(Role(id=rid, organization_id="o", name=rid,
                                       permissions=(f"{rid}:x",), created_at=NOW))
    uid = user().id
    assert [r.id for r in await storage.change_user_roles(uid, "o", ["a"], [])] == ["a"]
    assert [r.id for r in await storage.change_user_roles(uid, "o", ["b", "b"], ["a"])] == ["b"]
    assert await storage.delete_role("o", "b", force=False) == "in_use"
    assert await storage.delete_role("o", "a", force=False) == "deleted"
    assert await storage.delete_role("o", "b", force=True) == "deleted"
    assert await storage.user_roles(uid, "o") == []
    assert await storage.delete_role("o", "b", force=True) == "missing"


async def test_concurrent_adds_of_one_role_or_permission_all_succeed(
        storage: SQLStorage) -> None:
    await storage.create_user(user())
    await storage.create_organization(Organization(id="o", name="o", created_at=NOW))
    await storage.create_role(Role(id="a", organization_id="o", name="a",
                                   permissions=("a:x",), created_at=NOW))
    uid = user().id
    added = await asyncio.gather(*[storage.change_user_roles(uid, "o", ["a"], [])
                                   for _ in range(8)])
    assert [[r.id for r in roles] for roles in added] == [["a"]] * 8
    await asyncio.gather(*[storage.change_permissions("a", ["a:new", "a:x"], [])
                           for _ in range(8)])
    role = await storage.get_role("o", "a")
    assert role is not None and role.permissions == ("a:new", "a:x")
    assert [r.id for r in await storage.user_roles(uid, "o")] == ["a"]


async def test_adding_a_missing_role_changes_nothing(storage: SQLStorage) -> None:
    await storage.create_user(user())
    for org in ("o", "other"):
        await storage.create_organization(Organization(id=org, name=org, created_at=NOW))
    for rid, org in (("a", "o"), ("b", "o"), ("x", "other")):
        await storage.create_role(Role(id=rid, organization_id=org, name=rid,
                                       permissions=(), created_at=NOW))
    uid = user().id
    await storage.change_user_roles(uid, "o", ["b"], [])
    assert await storage.delete_role("o", "a", force=True) == "deleted"
    for wanted in (["a"], ["x"]):  # deleted meanwhile; of another organization
        with pytest.raises(Missing) as caught:
            await storage.change_user_roles(uid, "o", ["b", *wanted], ["b"])
        assert caught.value.key == wanted[0]
        assert [r.id for r in await storage.user_roles(uid, "o")] == ["b"]
    with pytest.raises(Missing):
        await storage.change_permissions("a", ["a:x"], [])
    await storage.change_permissions("a", [], ["a:x"])  # nothing to add: nothing to refuse


async def test_a_role_in_use_is_never_deleted_without_force(storage: SQLStorage) -> None:
    """An add racing a plain delete: either the add goes first and the delete answers
    ``in_use``, or the delete goes first and the add finds no role. Never both done
    (the delete's cascade would take the new assignment away unseen)."""
    await storage.create_user(user())
    await storage.create_organization(Organization(id="o", name="o", created_at=NOW))
    uid = user().id
    for n in range(20):
        rid = f"r{n}"
        await storage.create_role(Role(id=rid, organization_id="o", name=rid, permissions=(),
                                       created_at=NOW))
        added, deleted = await asyncio.gather(
            storage.change_user_roles(uid, "o", [rid], []),
            storage.delete_role("o", rid, force=False), return_exceptions=True)
        if isinstance(added, Missing):
            assert deleted == "deleted"
        else:
            assert deleted == "in_use", (n, added, deleted)
            assert rid in [r.id for r in await storage.user_roles(uid, "o")]


async def test_adding_a_role_while_it_is_force_deleted(storage: SQLStorage) -> None:
    """Either the add goes first (and the delete takes it away) or it finds no role:
    never a foreign-key error."""
    await storage.create_user(user())
    await storage.create_organization(Organization(id="o", name="o", created_at=NOW))
    uid = user().id
    for i in range(5):
        rid = f"r{i}"
        await storage.create_role(Role(id=rid, organization_id="o", name=rid,
                                       permissions=("p",), created_at=NOW))
        added, permitted, deleted = await asyncio.gather(
            storage.change_user_roles(uid, "o", [rid], []),
            storage.change_permissions(rid, ["q"], []),
            storage.delete_role("o", rid, force=True), return_exceptions=True)
        assert deleted == "deleted"
        assert isinstance(added, (list, Missing)), added
        assert permitted is None or isinstance(permitted, Missing), permitted
        assert await storage.user_roles(uid, "o") == []
        assert await storage.get_role("o", rid) is None


async def test_events_filter_and_page_newest_first(storage: SQLStorage) -> None:
    for i in range(5):
        await storage.add_event(Event(id=f"e{i}", at=NOW + timedelta(seconds=i),
                                      action="login.failure" if i % 2 else "login.success",
                                      actor=f"u{i % 2}", actor_type="user", target="t",
                                      client_id="c", ip="127.0.0.1", detail={"i": i}))
    items, count = await storage.list_events({"action": "login.success"}, 2, 0)
    assert count == 3 and [e.id for e in items] == ["e4", "e2"]
    items, count = await storage.list_events({"since": NOW + timedelta(seconds=3)}, 10, 0)
    assert [e.id for e in items] == ["e4", "e3"] and items[0].detail == {"i": 4}


# -- mail outbox and one-time tokens --------------------------------------------------

from bastion.server.models import LoginSession, OneTimeToken, OutgoingMail  # noqa: E402


async def test_outbox_claims_each_message_once_and_retries(storage: SQLStorage) -> None:
    mail = OutgoingMail(id="m1", to="a@example.com", subject="s", text="t", html="h",
                        created_at=NOW)
    await storage.enqueue_mail(mail)
    later = NOW + timedelta(seconds=1)
    first, second = await asyncio.gather(storage.claim_mail(later), storage.claim_mail(later))
    assert len(first) + len(second) == 1
    (claimed,) = first + second
    assert claimed.claimed_until is not None and claimed.claimed_until > later
    assert await storage.mail_failed("m1", "boom", retry_at=later + timedelta(minutes=1),
                                     at=later, claimed_until=claimed.claimed_until)
    assert await storage.claim_mail(later) == []
    (again,) = await storage.claim_mail(later + timedelta(minutes=2))
    assert again.attempts == 1 and again.text == "t"
    assert again.claimed_until is not None
    assert await storage.mail_sent("m1", later, claimed_until=again.claimed_until)
    stored = await storage.get_mail("m1")
    assert stored is not None and stored.sent_at == later and stored.text == ""
    assert await storage.claim_mail(later + timedelta(days=1)) == []


async def test_settling_mail_needs_the_claim_still_held(storage: SQLStorage) -> None:
    for n in (1, 2):
        await storage.enqueue_mail(OutgoingMail(id=f"m{n}", to="a@example.com", subject="s",
                                                text="t", html="h", created_at=NOW))
    (mine,) = await storage.claim_mail(NOW, limit=1)
    assert mine.id == "m1" and mine.claimed_until is not None
    # one at a time: the other message stays free for another instance meanwhile
    assert [m.id for m in await storage.claim_mail(NOW, limit=1)] == ["m2"]
    # the claim expires mid-send and another instance takes the message
    (theirs,) = await storage.claim_mail(mine.claimed_until + timedelta(seconds=1), limit=1)
    assert theirs.id == "m1" and theirs.claimed_until != mine.claimed_until
    assert theirs.claimed_until is not None
    assert not await storage.mail_sent("m1", NOW, claimed_until=mine.claimed_until)
    assert not await storage.mail_failed("m1", "late", None, NOW,
                                         claimed_until=mine.claimed_until)
    stored = await storage.get_mail("m1")
    assert stored is not None and stored.sent_at is None and stored.failed_at is None
    assert stored.attempts == 0 and stored.claimed_until == theirs.claimed_until
    sent_at = NOW + timedelta(minutes=3)
    assert await storage.mail_sent("m1", sent_at, claimed_until=theirs.claimed_until)
    assert not await storage.mail_sent("m1", sent_at, claimed_until=theirs.claimed_until)
    stored = await storage.get_mail("m1")
    assert stored is not None and stored.sent_at == sent_at and stored.attempts == 1


async def test_a_mails_expiry_is_kept_and_it_is_claimed_once_expired(
        storage: SQLStorage) -> None:
    expires = NOW + timedelta(minutes=15)
    for mail_id, expires_at in (("m1", expires), ("m2", None)):
        await storage.enqueue_mail(OutgoingMail(id=mail_id, to="a@example.com", subject="s",
                                                text="t", html="h", created_at=NOW,
                                                expires_at=expires_at))
    stored = await storage.get_mail("m1")
    assert stored is not None and stored.expires_at == expires
    # still claimed once past it: the sender settles it unsent
    claimed = await storage.claim_mail(expires + timedelta(minutes=1))
    assert {m.id: m.expires_at for m in claimed} == {"m1": expires, "m2": None}


async def test_cancelling_a_users_one_time_tokens(storage: SQLStorage) -> None:
    await storage.create_user(user(1))
    await storage.create_user(user(2))

    def token(n: int, purpose: str, user_n: int | None) -> OneTimeToken:
        return OneTimeToken(digest=bytes([n]) * 32, purpose=purpose,  # type: ignore[arg-type]
                            email="a@example.com", user_id=user(user_n).id if user_n else None,
                            client_id=None, payload={}, created_at=NOW,
                            expires_at=NOW + timedelta(minutes=15))
    for t in (token(1, "email_change", 1), token(2, "email_change", 1), token(3, "sign_in", 1),
              token(4, "email_change", 2), token(5, "sign_in", None)):
        await storage.create_one_time_token(t)
    assert await storage.use_one_time_token(bytes([1]) * 32, NOW) is not None
    later = NOW + timedelta(seconds=5)
    assert await storage.cancel_one_time_tokens(user(1).id, ("email_change",), later) == 1
    assert await storage.use_one_time_token(bytes([2]) * 32, NOW) is None

    async def used_at(n: int) -> datetime | None:
        found = await storage.get_one_time_token(bytes([n]) * 32)
        assert found is not None
        return found.used_at
    assert await used_at(1) == NOW and await used_at(2) == later  # a used one is kept as was
    assert [await used_at(n) for n in (3, 4, 5)] == [None, None, None]  # others untouched
    assert await storage.cancel_one_time_tokens(user(1).id, ("sign_in", "email_change"),
                                                later) == 1
    assert await storage.use_one_time_token(bytes([3]) * 32, NOW) is None
    assert await storage.use_one_time_token(bytes([4]) * 32, NOW) is not None


async def test_cancelling_also_the_sign_up_links_to_the_users_addresses(storage: SQLStorage):
    await storage.create_user(user(1))

    def token(n: int, email: str, user_n: int | None) -> OneTimeToken:
        return OneTimeToken(digest=bytes([n]) * 32, purpose="sign_in", email=email,
                            user_id=user(user_n).id if user_n else None, client_id=None,
                            payload={}, created_at=NOW, expires_at=NOW + timedelta(minutes=15))
    for t in (token(1, "a@example.com", 1), token(2, "a@example.com", None),
              token(3, "old@example.com", None), token(4, "b@example.com", None)):
        await storage.create_one_time_token(t)
    later = NOW + timedelta(seconds=5)
    assert await storage.cancel_one_time_tokens(user(1).id, ("sign_in",), later,
                                                ("a@example.com", "old@example.com")) == 3
    for n in (1, 2, 3):
        assert await storage.use_one_time_token(bytes([n]) * 32, NOW) is None
    assert await storage.use_one_time_token(bytes([4]) * 32, NOW) is not None  # not theirs


async def test_a_spent_token_comes_with_its_user_as_the_spend_read_them(
        storage: SQLStorage) -> None:
    ann = user(1, password_hash=None)
    await storage.create_user(ann)
    for n, user_id in ((1, ann.id), (2, None)):
        await storage.create_one_time_token(OneTimeToken(
            digest=bytes([n]) * 32, purpose="sign_in", email=ann.email, user_id=user_id,
            client_id=None, payload={}, created_at=NOW, expires_at=NOW + timedelta(minutes=15)))
    spent = await storage.use_one_time_token(bytes([1]) * 32, NOW)
    assert spent is not None and spent[0].used_at == NOW and spent[1] == ann
    sign_up = await storage.use_one_time_token(bytes([2]) * 32, NOW)
    assert sign_up is not None and sign_up[1] is None  # a sign-up's: no user yet


async def test_a_session_for_a_user_without_password_is_refused_once_one_is_set(
        storage: SQLStorage) -> None:
    """A link spent, then a new password (which cancels the links mailed before it),
    then the session of that link: ``""`` stands for "they had none"."""
    ann = user(1, password_hash=None)
    await storage.create_user(ann)

    def session(session_id: str) -> LoginSession:
        return LoginSession(id=session_id, user_id=ann.id, auth_time=NOW,
                            expires_at=NOW + timedelta(hours=1), created_at=NOW)
    assert await storage.create_session(session("s1"), password_hash="")
    await storage.update_user(ann.id, {"password_hash": "$argon2id$new"})
    assert not await storage.create_session(session("s2"), password_hash="")
    assert await storage.get_session("s2") is None


async def test_a_change_cancels_the_links_in_its_own_transaction(storage: SQLStorage) -> None:
    """A new password or address cancelled the links mailed before it in a second
    transaction: a crash between the two left a link working after the change."""
    await storage.create_user(user(1, email="a@example.com"))
    for n, email, user_n in ((1, "a@example.com", 1), (2, "a@example.com", None),
                             (3, "b@example.com", None), (4, "c@example.com", None)):
        await storage.create_one_time_token(OneTimeToken(
            digest=bytes([n]) * 32, purpose="sign_in", email=email,
            user_id=user(user_n).id if user_n else None, client_id=None, payload={},
            created_at=NOW, expires_at=NOW + timedelta(minutes=15)))
    changed = await storage.update_user(user(1).id, {"email": "b@example.com"},
                                        cancel_links=("sign_in", "email_change"))
    assert changed is not None and changed.email == "b@example.com"
    for n in (1, 2, 3):  # theirs, and sign-ups to the address before and after
        found = await storage.get_one_time_token(bytes([n]) * 32)
        assert found is not None and found.used_at == changed.updated_at
    assert await storage.use_one_time_token(bytes([4]) * 32, NOW) is not None  # not theirs


async def test_one_time_tokens_work_once_and_expire(storage: SQLStorage) -> None:
    token = OneTimeToken(digest=b"x" * 32, purpose="sign_in", email="a@example.com",
                         user_id=None, client_id="c", payload={"authorize": "q"},
                         created_at=NOW, expires_at=NOW + timedelta(minutes=15))
    await storage.create_one_time_token(token)
    assert await storage.use_one_time_token(b"x" * 32, NOW + timedelta(minutes=16)) is None
    uses = await asyncio.gather(*(storage.use_one_time_token(b"x" * 32, NOW) for _ in range(5)))
    assert sum(u is not None for u in uses) == 1
    assert await storage.get_one_time_token(b"x" * 32) is not None


async def test_search_pages_of_a_common_substring(storage: SQLStorage) -> None:
    await seed_users(storage)
    pages = [await storage.search_users("EXAMPLE", 2, offset) for offset in (0, 2, 4)]
    assert [[u.username for u in page] for page in pages] == [
        ["alice", "Bob_99"], ["carol", "dave%x"], []]


async def test_concurrent_migrations_apply_once(storage: SQLStorage, tmp_path) -> None:
    """Several instances migrating one fresh database at once (bastion migrate/serve)."""
    from bastion.server.storage.sql import create_engine

    url = storage.engine.url
    if url.get_backend_name() == "sqlite":
        fresh = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    else:
        from support import create_database

        admin = url.set(database="postgres").render_as_string(hide_password=False)
        fresh = await create_database(admin, f"fresh_{id(tmp_path) % 10**8}")
    engines = [create_engine(fresh) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate.upgrade(e) for e in engines))
        assert await migrate.current_revision(engines[0]) == migrate.head_revision()
    finally:
        for e in engines:
            await e.dispose()


async def test_refresh_family_is_read_at_once(storage: SQLStorage) -> None:
    from bastion.server.models import RefreshToken

    await storage.create_user(user())
    await member_of(storage, "org")
    family = grant(organization_id="org")
    token = RefreshToken(digest=b"r" * 32, grant_id="g1", client_id="app", user_id=user().id,
                         scope="openid", created_at=NOW, expires_at=NOW + timedelta(days=1))
    await storage.create_grant(family, token)
    assert await storage.get_refresh_family(b"r" * 32) == (token, family, user())
    assert await storage.get_refresh_family(b"x" * 32) is None


async def test_login_reads_the_user_and_its_throttles_at_once(storage: SQLStorage) -> None:
    u = user()
    await storage.create_user(u)
    later = NOW + timedelta(minutes=5)
    for k in ("acct:user1", "user:" + u.id, "ip:10.0.0.1", "acct:someone-else"):
        await storage.record_failure(k, NOW, lock_after=5, lock_until=later)

    found, counts = await storage.get_login("USER1", ["acct:user1", "ip:10.0.0.1"], "user:")
    assert found == u
    assert sorted(t.key for t in counts) == sorted(["acct:user1", "ip:10.0.0.1", "user:" + u.id])

    found, counts = await storage.get_login("nobody", ["acct:nobody", "ip:10.0.0.1"], "user:")
    assert found is None
    assert [t.key for t in counts] == ["ip:10.0.0.1"]


async def test_failures_lock_at_the_limit_and_start_over_when_the_lock_ends(
        storage: SQLStorage) -> None:
    lock = NOW + timedelta(minutes=5)
    counts = [await storage.record_failure("k", NOW, 3, lock) for _ in range(3)]
    assert [(t.failures, t.locked_until) for t in counts] == [(1, None), (2, None), (3, lock)]
    assert (await storage.record_failure("k", NOW, 3, lock + timedelta(1))).failures == 4
    ended = lock + timedelta(days=1)  # the lock (extended by that failure) is over
    again = await storage.record_failure("k", ended, 3, ended + timedelta(minutes=5))
    assert (again.failures, again.locked_until, again.last_failure_at) == (1, None, ended)
    # a limit of one locks at the first failure
    assert (await storage.record_failure("one", NOW, 1, lock)).locked_until == lock


async def test_failures_start_over_after_an_idle_window_but_a_lock_is_kept(
        storage: SQLStorage) -> None:
    hour = timedelta(hours=1)
    await storage.record_failure("idle", NOW, 5, NOW + hour)
    later = NOW + 2 * hour
    assert (await storage.record_failure("idle", later, 5, later, later - hour)).failures == 1
    assert (await storage.record_failure("idle", later, 5, later, NOW)).failures == 2
    long_lock = NOW + 3 * hour
    for _ in range(2):
        await storage.record_failure("locked", NOW, 2, long_lock)
    kept = await storage.record_failure("locked", later, 2, long_lock, later - hour)
    assert (kept.failures, kept.locked_until) == (3, long_lock)


async def test_a_count_lasts_an_hour_from_its_first_failure_however_busy(
        storage: SQLStorage) -> None:
    """A budget is per hour even for a key that never rests (an app's server)."""
    hour = timedelta(hours=1)
    counts = [await storage.record_failure("busy", NOW + n * timedelta(minutes=40), 5,
                                           NOW + 2 * hour, NOW + n * timedelta(minutes=40) - hour)
              for n in range(3)]
    assert [(t.failures, t.first_failure_at) for t in counts] == [
        (1, NOW), (2, NOW), (1, NOW + timedelta(minutes=80))]


async def test_a_grant_and_its_audit_event_are_written_together(storage: SQLStorage) -> None:
    from sqlalchemy.exc import IntegrityError

    await storage.create_user(user())
    await storage.create_grant(grant(), None, sign_in(1))
    assert await storage.get_grant("g1") == grant()
    assert [e.id for e in (await storage.list_events({}, 10, 0))[0]] == ["e1"]

    with pytest.raises(IntegrityError):  # the grant exists: nothing of this call is kept
        await storage.create_grant(grant(), None, sign_in(2))
    assert (await storage.list_events({}, 10, 0))[1] == 1


async def test_a_session_and_its_sign_in_event_are_written_together(storage: SQLStorage) -> None:
    from sqlalchemy.exc import IntegrityError

    from bastion.server.models import LoginSession

    await storage.create_user(user())
    session = LoginSession(id="s1", user_id=user().id, auth_time=NOW,
                           expires_at=NOW + timedelta(hours=1), created_at=NOW, user_agent="ua")
    await storage.create_session(session, sign_in(1, "form", None))
    assert await storage.get_session("s1") == session
    with pytest.raises(IntegrityError):  # the session exists: nothing of this call is kept
        await storage.create_session(session, sign_in(2, "form", None))
    assert [e.id for e in (await storage.list_events({}, 10, 0))[0]] == ["e1"]


async def test_a_call_that_fails_half_way_keeps_nothing_and_the_next_one_works(
        storage: SQLStorage) -> None:
    import sqlalchemy as sa

    from bastion.server.storage.prepared import insert
    from bastion.server.storage.sql_base import values
    from bastion.server.storage.tables import users

    def insert_then_fail(conn: sa.Connection) -> None:
        insert(conn, users, values(user(1)))
        raise RuntimeError("failed half-way")

    with pytest.raises(RuntimeError):
        await storage._write(insert_then_fail)
    assert await storage.get_user(user(1).id) is None
    await storage.create_user(user(2))
    assert await storage.get_user(user(2).id) == user(2)


async def test_a_retired_key_that_never_signed_does_not_block_the_next(
        storage: SQLStorage) -> None:
    await storage.rotate_signing_key(key("a1"))
    await storage.publish_signing_key(replace(key("stale"), retired_at=NOW))
    assert await storage.publish_signing_key(key("a2"))
    assert await storage.rotate_signing_key(key("a3")) == "a2"


async def test_another_address_is_unverified_in_the_same_statement(storage: SQLStorage) -> None:
    await storage.create_user(user(email_verified_at=NOW))
    uid = user().id
    same = await storage.update_user(uid, {"email": "user1@example.com", "username": "U1"})
    assert same is not None and same.email_verified_at == NOW  # the same address
    moved = await storage.update_user(uid, {"email": "moved@example.com"})
    assert moved is not None and moved.email_verified_at is None
    proven = await storage.update_user(uid, {"email": "proven@example.com",
                                             "email_verified_at": NOW})
    assert proven is not None and proven.email_verified_at == NOW
    assert not await storage.verify_email(uid, "moved@example.com", NOW)  # not theirs now
