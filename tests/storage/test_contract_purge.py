"""The storage contract for housekeeping (``purge``, ``purge_grants``): each kind of row
goes once it no longer decides anything and not a moment before, in bounded batches,
with several purges at once, on SQLite and on a real PostgreSQL cluster."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import sqlalchemy as sa
from test_contract import NOW, grant, key, sign_in, user
from test_contract_tokens import refresh

from bastion.server import keys
from bastion.server.models import AuthorizationCode, LoginSession, OneTimeToken, OutgoingMail
from bastion.server.services import housekeeping
from bastion.server.settings import Settings
from bastion.server.storage import SQLStorage
from bastion.server.storage.base import Cutoffs
from bastion.server.storage.tables import PURGE_INDEXES

CUT = NOW - timedelta(days=1)  # expired_before
BEFORE, AFTER = CUT - timedelta(seconds=1), CUT + timedelta(seconds=1)
CUTOFFS = Cutoffs(now=NOW, expired_before=CUT, throttles_before=NOW - timedelta(hours=1),
                  mail_before=NOW - timedelta(days=7))


def code(digest: bytes, grant_id: str, expires_at=AFTER) -> AuthorizationCode:
    return AuthorizationCode(digest=digest, client_id="app", user_id=user().id, session_id=None,
                             grant_id=grant_id, redirect_uri="https://app.example/cb",
                             scope="openid", nonce=None, code_challenge=None, auth_time=NOW,
                             expires_at=expires_at)


def link(digest: bytes, expires_at) -> OneTimeToken:
    return OneTimeToken(digest=digest, purpose="sign_in", email="a@example.com", user_id=None,
                        client_id="app", payload={}, created_at=NOW, expires_at=expires_at)


def session(session_id: str, expires_at) -> LoginSession:
    return LoginSession(id=session_id, user_id=user().id, auth_time=NOW, expires_at=expires_at,
                        created_at=NOW, user_agent="Firefox")


async def mail(store: SQLStorage, mail_id: str, at, outcome: str | None) -> None:
    """A message queued at ``at`` and then sent, given up on, or left due (``None``)."""
    await store.enqueue_mail(OutgoingMail(id=mail_id, to="a@example.com", subject="Hi",
                                          text="t", html="h", created_at=at))
    if outcome is None:
        return
    (claimed,) = await store.claim_mail(at, limit=1)
    assert claimed.claimed_until is not None
    if outcome == "sent":
        assert await store.mail_sent(mail_id, at, claimed_until=claimed.claimed_until)
    else:
        assert await store.mail_failed(mail_id, "550", None, at,
                                       claimed_until=claimed.claimed_until)


async def keys_of(store: SQLStorage, table: str) -> set[object]:
    key = {"authorization_codes": "digest", "refresh_tokens": "digest",
           "revoked_access_tokens": "jti", "one_time_tokens": "digest", "login_sessions": "id",
           "grants": "id", "login_throttle": "key", "outbox": "id", "events": "id"}[table]
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.text(f"SELECT {key} FROM {table}"))  # noqa: S608
        return {bytes(k) if isinstance(k, memoryview) else k for (k,) in rows}


async def test_each_kind_goes_once_past_its_cutoff_and_not_before(store: SQLStorage) -> None:
    await store.create_code(code(b"c-old" + b"." * 27, "g-code-old", BEFORE),
                            grant("g-code-old"))
    await store.create_code(code(b"c-new" + b"." * 27, "g-code-new", AFTER),
                            grant("g-code-new"))
    await store.create_grant(grant("g-refresh"), refresh(b"r-old" + b"." * 27, "g-refresh",
                                                         BEFORE))
    assert await store.create_refresh_token(refresh(b"r-new" + b"." * 27, "g-refresh", AFTER))
    await store.revoke_access_token("jti-old", BEFORE)
    await store.revoke_access_token("jti-new", AFTER)
    await store.create_one_time_token(link(b"l-old" + b"." * 27, BEFORE))
    await store.create_one_time_token(link(b"l-new" + b"." * 27, AFTER))
    await store.create_session(session("s-old", BEFORE))
    await store.create_session(session("s-new", AFTER))
    hour = timedelta(hours=1)
    # spent: last counted over an hour ago; a lock that has ended
    await store.record_failure("spent", NOW - 2 * hour, 10, NOW)
    await store.record_failure("lock-ended", NOW - 2 * hour, 1, NOW - hour)
    # still counting: a recent attempt; a lock that lasts beyond now
    await store.record_failure("recent", NOW - timedelta(minutes=59), 10, NOW)
    await store.record_failure("locked", NOW - 2 * hour, 1, NOW + hour)
    week = timedelta(days=7)
    await mail(store, "sent-old", NOW - week - hour, "sent")
    await mail(store, "failed-old", NOW - week - hour, "failed")
    await mail(store, "sent-new", NOW - week + hour, "sent")
    await mail(store, "due-old", NOW - week - hour, None)  # (last: it would be claimed)
    await store.add_event(replace(sign_in(1), at=NOW - timedelta(days=30)))
    await store.add_event(sign_in(2))

    gone = await store.purge(CUTOFFS, limit=100)

    assert gone == {"authorization_codes": 1, "refresh_tokens": 1, "revoked_access_tokens": 1,
                    "one_time_tokens": 1, "login_sessions": 1, "signing_keys": 0,
                    "login_throttle": 2, "outbox": 2,
                    "logout_notices": 0}  # (test_contract_logouts.py)
    assert await keys_of(store, "authorization_codes") == {b"c-new" + b"." * 27}
    assert await keys_of(store, "refresh_tokens") == {b"r-new" + b"." * 27}
    assert await keys_of(store, "revoked_access_tokens") == {"jti-new"}
    assert await keys_of(store, "one_time_tokens") == {b"l-new" + b"." * 27}
    assert await keys_of(store, "login_sessions") == {"s-new"}
    assert await keys_of(store, "login_throttle") == {"recent", "locked"}
    assert await keys_of(store, "outbox") == {"due-old", "sent-new"}  # unsent mail stays
    assert await keys_of(store, "events") == {"e1", "e2"}  # no retention: kept
    # what stays still works
    assert await store.is_revoked("jti-new", None)
    assert (await store.get_throttles(["locked"]))[0].failures == 1

    gone = await store.purge(replace(CUTOFFS, events_before=NOW - timedelta(days=29)), 100)
    assert gone["events"] == 1 and sum(gone.values()) == 1
    assert await keys_of(store, "events") == {"e2"}


async def test_a_grant_goes_once_nothing_refers_to_it(store: SQLStorage) -> None:
    old = CUT - timedelta(days=30)
    # its only refresh token has expired: it goes after that token
    await store.create_grant(grant("g-done", created_at=old),
                             refresh(b"r1" + b"." * 30, "g-done", BEFORE))
    # a live refresh token (and a revoked grant whose token has not expired yet)
    await store.create_grant(grant("g-live", created_at=old),
                             refresh(b"r2" + b"." * 30, "g-live", AFTER))
    await store.create_grant(grant("g-revoked", created_at=old),
                             refresh(b"r3" + b"." * 30, "g-revoked", AFTER))
    await store.revoke_grant("g-revoked", NOW)
    # a code not yet expired
    await store.create_code(code(b"c1" + b"." * 30, "g-code", AFTER), grant("g-code",
                                                                        created_at=old))
    # no token at all (a password grant without refresh): its access tokens expired...
    await store.create_grant(grant("g-bare", created_at=BEFORE), None)
    # ... unless it was made after the cutoff
    await store.create_grant(grant("g-recent", created_at=AFTER), None)

    assert await store.purge_grants(CUT, None, 100) == (1, None)  # g-bare
    await store.purge(CUTOFFS, 100)
    assert await store.purge_grants(CUT, None, 100) == (1, None)  # g-done, now free
    assert await keys_of(store, "grants") == {"g-live", "g-revoked", "g-code", "g-recent"}
    assert await store.is_revoked("any", "g-revoked")  # its access tokens stay revoked


async def test_an_ended_session_stays_while_a_grant_made_in_it_lives(store: SQLStorage) -> None:
    # Its cookie outlives an idle timeout: a logout must still find the session to end
    # the grants made in it.
    await store.create_session(session("s-live", BEFORE))
    await store.create_grant(grant("g-live", session_id="s-live"),
                             refresh(b"r1" + b"." * 30, "g-live", AFTER))
    await store.create_session(session("s-revoked", BEFORE))
    await store.create_grant(grant("g-revoked", session_id="s-revoked"),
                             refresh(b"r2" + b"." * 30, "g-revoked", AFTER))
    await store.revoke_grant("g-revoked", NOW)
    await store.create_session(session("s-none", BEFORE))
    assert (await store.purge(CUTOFFS, 100))["login_sessions"] == 2
    assert await keys_of(store, "login_sessions") == {"s-live"}
    # ... until no cookie of it can be left (session_ttl after it began), then it goes
    # even while the app keeps its grant alive.
    began = session("s-live", BEFORE).created_at
    assert (await store.purge(replace(CUTOFFS, sessions_before=began), 100)
            )["login_sessions"] == 0
    assert (await store.purge(replace(CUTOFFS, sessions_before=began + timedelta(seconds=1)),
                              100))["login_sessions"] == 1


async def test_grants_are_looked_at_a_page_at_a_time(store: SQLStorage) -> None:
    # 7 grants made at 4 moments (ties are paged by id); the odd ones are still in use
    for n in range(7):
        made = BEFORE - timedelta(minutes=n // 2)
        await store.create_grant(grant(f"g{n}", created_at=made),
                                 refresh(bytes([n]) * 32, f"g{n}", AFTER) if n % 2 else None)
    deleted, pages, after = 0, 0, None
    while True:
        count, after = await store.purge_grants(CUT, after, 3)
        deleted, pages = deleted + count, pages + 1
        if after is None:
            break
    assert (deleted, pages) == (4, 3)
    assert await keys_of(store, "grants") == {"g1", "g3", "g5"}


async def test_a_used_refresh_token_is_kept_to_its_expiry_so_reuse_still_revokes(
        store: SQLStorage) -> None:
    await store.create_grant(grant(), refresh(b"a" * 32, expires_at=AFTER))
    assert await store.rotate_refresh_token(b"a" * 32, refresh(b"b" * 32, expires_at=AFTER),
                                            NOW - timedelta(days=2)) == "rotated"
    await store.purge(CUTOFFS, 100)
    assert await store.purge_grants(CUT, None, 100) == (0, None)
    assert await store.rotate_refresh_token(b"a" * 32, refresh(b"c" * 32, expires_at=AFTER),
                                            NOW - timedelta(days=2)) == "reused"
    assert (await store.get_grant("g1")).revoked_at is not None  # type: ignore[union-attr]


async def test_a_batch_deletes_at_most_limit_rows_of_a_kind(store: SQLStorage) -> None:
    for n in range(5):
        await store.revoke_access_token(f"jti-{n}", BEFORE)
    assert (await store.purge(CUTOFFS, 2))["revoked_access_tokens"] == 2
    assert (await store.purge(CUTOFFS, 2))["revoked_access_tokens"] == 2
    assert (await store.purge(CUTOFFS, 2))["revoked_access_tokens"] == 1
    assert (await store.purge(CUTOFFS, 2))["revoked_access_tokens"] == 0


async def test_purges_at_once_delete_each_row_once(store: SQLStorage) -> None:
    for n in range(40):
        await store.create_grant(grant(f"g{n}", created_at=BEFORE),
                                 refresh(bytes([n]) * 32, f"g{n}", BEFORE))
        await store.revoke_access_token(f"jti-{n}", BEFORE)

    async def purge_all() -> tuple[int, int]:
        tokens = grants = 0
        while (done := await store.purge(CUTOFFS, 7))["refresh_tokens"] or \
                done["revoked_access_tokens"]:
            tokens += done["refresh_tokens"]
        after: tuple | None = None
        while True:
            count, after = await store.purge_grants(CUT, after, 7)
            grants += count
            if after is None:
                return tokens, grants

    results = await asyncio.gather(*(purge_all() for _ in range(3)))
    assert sum(t for t, _ in results) == 40 and sum(g for _, g in results) == 40
    assert await keys_of(store, "grants") == set()
    assert await keys_of(store, "revoked_access_tokens") == set()


async def test_the_upgrade_creates_the_indexes_a_purge_reads_by(store: SQLStorage) -> None:
    def indexes(conn: sa.Connection) -> set[tuple[str, tuple[str, ...]]]:
        found = set()
        inspector = sa.inspect(conn)
        for index in PURGE_INDEXES:
            table = index.table.name  # type: ignore[union-attr]
            found |= {(i["name"], tuple(i["column_names"]))
                      for i in inspector.get_indexes(table) if i["name"] == index.name}
        return found

    async with store.engine.connect() as conn:
        assert await conn.run_sync(indexes) == {
            (index.name, tuple(c.name for c in index.columns)) for index in PURGE_INDEXES}


async def test_the_service_purges_everything_due_in_batches(store: SQLStorage) -> None:
    """``housekeeping.purge`` goes on until nothing is due, grants last (a family whose
    last token goes in a batch goes in the same purge)."""
    settings = Settings(_env_file=None, event_retention_days=30)  # type: ignore[call-arg]
    now = NOW + housekeeping.KEEP_EXPIRED
    for n in range(5):
        await store.create_grant(grant(f"g{n}", created_at=NOW - timedelta(days=40)),
                                 refresh(bytes([n]) * 32, f"g{n}", NOW - timedelta(minutes=1)))
        await store.revoke_access_token(f"jti-{n}", NOW - timedelta(minutes=1))
        await store.add_event(replace(sign_in(n), at=NOW - timedelta(days=31)))
    await store.add_event(replace(sign_in(9), at=NOW - timedelta(days=28)))
    await store.create_grant(grant("g-live"), refresh(b"live" * 8, "g-live", NOW))

    assert await housekeeping.purge(store, settings, now, batch=2) == {
        "grants": 5, "refresh_tokens": 5, "revoked_access_tokens": 5, "events": 5}
    assert await keys_of(store, "grants") == {"g-live"}
    assert await keys_of(store, "events") == {"e9"}
    assert await housekeeping.purge(store, settings, now, batch=2) == {}


async def test_the_access_tokens_of_a_grant_that_is_gone_count_as_revoked(
        store: SQLStorage) -> None:
    """Fail closed: a grant purged before its access tokens expired (a purging host's
    clock running fast) does not bring a revoked grant's tokens back."""
    await store.create_grant(grant("g-bare", created_at=BEFORE), None)
    await store.revoke_grant("g-bare", NOW)
    assert await store.is_revoked("jti", "g-bare")
    await store.create_grant(grant("g-live", created_at=AFTER), None)
    assert not await store.is_revoked("jti", "g-live")

    assert await store.purge_grants(CUT, None, 100) == (1, None)
    assert await store.is_revoked("jti", "g-bare")
    assert await store.is_revoked("jti", "never-made")
    assert not await store.is_revoked("jti", "g-live")


async def test_a_signing_key_goes_once_it_is_no_longer_published(storage: SQLStorage) -> None:
    await storage.rotate_signing_key(key("k1", at=CUT - timedelta(days=60)))
    await storage.rotate_signing_key(key("k2", at=BEFORE))  # retires k1 before the cutoff
    await storage.rotate_signing_key(key("k3", at=AFTER))  # retires k2 after it
    assert (await storage.purge(CUTOFFS, 100))["signing_keys"] == 1
    assert [(k.kid, k.retired_at is None) for k in await storage.signing_keys()] == [
        ("k2", False), ("k3", True)]


def test_the_purge_waits_for_the_longest_publication_of_a_retired_key() -> None:
    """``keys.published`` keeps a retired key in the JWKS for its tokens' lives; with
    every lifetime at its maximum that still ends before the purge's cutoff."""
    longest = Settings(_env_file=None, cache_ttl=300, access_token_ttl=86400,  # type: ignore[call-arg]
                       id_token_ttl=86400)
    retired = replace(key("k1"), retired_at=NOW - housekeeping.KEEP_EXPIRED)
    assert keys.published([retired], longest, NOW) == []


async def test_a_grant_stays_while_its_session_is_not_ended(store: SQLStorage) -> None:
    """An app without refresh tokens (it keeps the ID token only) holds nothing but the
    grant: purged while its session lived, a logout found no app to tell."""
    old = CUT - timedelta(days=30)
    for name in ("live", "ended"):
        await store.create_session(session(f"s-{name}", AFTER))
        await store.create_grant(grant(f"g-{name}", created_at=old, session_id=f"s-{name}"),
                                 None)
    await store.revoke_session("s-ended", NOW)
    assert await store.purge_grants(CUT, None, 100) == (1, None)
    assert await keys_of(store, "grants") == {"g-live"}
