"""``throttle.Gate``: the places an instance gives attempts on a key, in memory; and
the address a client is counted by."""

from __future__ import annotations

import asyncio

import pytest

from bastion.server.services.throttle import Gate, Policy, ip_key

ONE = Policy(lock_after=3, lock_seconds=60)
TWO = Policy(lock_after=30, lock_seconds=60, in_flight=2)


async def test_a_key_admits_in_flight_attempts_at_once_and_queues_the_rest() -> None:
    gate, inside, most = Gate(), 0, {}

    async def attempt(key: str, policy: Policy) -> None:
        nonlocal inside
        async with gate.hold([(key, policy)]):
            inside += 1
            most[key] = max(most.get(key, 0), inside)
            for _ in range(3):  # let every other attempt run up to its place
                await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(attempt("one", ONE) for _ in range(10)))
    await asyncio.gather(*(attempt("two", TWO) for _ in range(10)))
    assert most == {"one": 1, "two": 2}
    assert gate._places == {}  # nothing is kept once no attempt holds or waits


async def test_an_attempt_cancelled_while_waiting_gives_its_places_back() -> None:
    gate = Gate()
    held = gate.hold([("ip", TWO), ("acct", ONE)])
    await held.__aenter__()
    waiting = asyncio.create_task(gate.hold([("ip", TWO), ("acct", ONE)]).__aenter__())
    await asyncio.sleep(0)  # it has the second IP place and waits for the account
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await held.__aexit__(None, None, None)
    assert gate._places == {}


def test_a_count_begun_over_an_hour_ago_no_longer_delays() -> None:
    """``evaluate`` forgets a count an hour after its first failure, even one that had
    a failure a moment ago (``Storage.record_failure`` then starts it over)."""
    from datetime import UTC, datetime, timedelta

    from bastion.server.models import Throttle
    from bastion.server.services.throttle import evaluate

    now = datetime(2026, 1, 2, tzinfo=UTC)
    policy = Policy(lock_after=10, lock_seconds=60, delay_after=3)
    recent = Throttle("k", 5, last_failure_at=now - timedelta(seconds=1),
                      first_failure_at=now - timedelta(minutes=59))
    assert evaluate([recent], [("k", policy)], now) is not None  # waits: 5 failures
    old = Throttle("k", 5, last_failure_at=now - timedelta(seconds=1),
                   first_failure_at=now - timedelta(minutes=61))
    assert evaluate([old], [("k", policy)], now) is None


@pytest.mark.parametrize(("ip", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # one subscriber's /64
    ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped
    ("64:ff9b::192.0.2.1", "192.0.2.1"),  # NAT64: each IPv4 client its own key
    ("::ffff:0:192.0.2.1", "192.0.2.1"),  # SIIT
    ("::1", "::1"),  # not global: as it is
    ("fe80::1%eth0", "fe80::1%eth0"),
    ("64:ff9b:1::1", "64:ff9b:1::1"),  # a local translator's prefix: as it is
    ("not an address", "not an address"),
])
def test_the_ip_a_budget_is_counted_by(ip: str, key: str) -> None:
    assert ip_key(ip) == key
