"""The sans-IO core driven by hand: no transport, no event loop, no network."""

from __future__ import annotations

import asyncio
import json
import threading
import traceback
from typing import Any

import anyio
import httpx2
import pytest

from bastion import InvalidGrant, InvalidToken, NotFound, ServerError, TransportError
from bastion.client._admin_users import change_user_roles_flow
from bastion.client._base import BaseClient, Flow
from bastion.client._config import Settings
from bastion.client._flight import Flights, Wait, _TaskEvent, wait_in_task
from bastion.oauth.jose import PrivateKey

ISSUER = "https://id.example"


def drive(flow: Flow[Any], *responses: httpx2.Response) -> tuple[Any, list[httpx2.Request]]:
    """Feed canned responses to a flow; returns its result and the requests it made."""
    sent: list[httpx2.Request] = []
    queue = list(responses)
    try:
        request = next(flow)
        while True:
            assert isinstance(request, httpx2.Request)
            sent.append(request)
            request = flow.send(queue.pop(0))
    except StopIteration as done:
        return done.value, sent


def ok(document: dict[str, Any]) -> httpx2.Response:
    return httpx2.Response(200, content=json.dumps(document).encode())


METADATA = {"issuer": ISSUER, "token_endpoint": ISSUER + "/t", "jwks_uri": ISSUER + "/k"}


def test_client_credentials_flow_builds_the_requests():
    core = BaseClient(
        Settings.from_options({"url": ISSUER, "client_id": "c", "client_secret": "s"})
    )
    tokens, sent = drive(
        core.client_credentials_flow("read"),
        ok(METADATA),
        ok({"access_token": "at", "expires_in": 10}),
    )
    assert [str(r.url) for r in sent] == [
        ISSUER + "/.well-known/openid-configuration",
        ISSUER + "/t",
    ]
    assert sent[1].method == "POST"
    assert sent[1].headers["authorization"] == "Basic Yzpz"
    assert sent[1].content == b"grant_type=client_credentials&scope=read"
    assert tokens.access_token == "at"
    assert not core.is_idempotent(sent[1])
    assert core.is_idempotent(sent[0])


def test_verify_flow_fetches_keys_then_uses_the_clock():
    key = PrivateKey.generate("k", "ES256")
    now = 1_000_000.0
    core = BaseClient(Settings.from_options({"url": ISSUER}), clock=lambda: now)
    token = key.sign(
        {"iss": ISSUER, "aud": ISSUER, "exp": now + 60, "iat": now, "sub": "s"}, typ="at+jwt"
    )
    assert core.verify_cached(token) is None  # no keys yet: I/O needed
    claims, sent = drive(core.verify_flow(token), ok(METADATA), ok({"keys": [key.public_jwk()]}))
    assert claims["sub"] == "s" and len(sent) == 2
    assert core.verify_cached(token) == claims
    now += 120
    with pytest.raises(InvalidToken, match="expired"):
        core.verify_cached(token)


def token_core() -> BaseClient:
    core = BaseClient(
        Settings.from_options({"url": ISSUER, "client_id": "c", "client_secret": "s"})
    )
    drive(core.metadata_flow(), ok(METADATA))
    return core


def test_a_second_refresh_of_the_same_token_waits_for_the_first():
    """Two flows for one refresh token: the second yields Wait, not a request."""
    core = token_core()
    first, second = core.refresh_flow("r-0"), core.refresh_flow("r-0")
    request = next(first)
    assert isinstance(request, httpx2.Request) and b"refresh_token=r-0" in request.content
    wait = next(second)
    assert isinstance(wait, Wait) and not wait.flight.landed
    assert isinstance(next(core.refresh_flow("r-other")), httpx2.Request)  # another token
    with pytest.raises(StopIteration) as done:
        first.send(ok({"access_token": "at-1", "refresh_token": "r-1"}))
    assert wait.flight.landed
    with pytest.raises(StopIteration) as followed:
        next(second)
    assert followed.value.value is done.value.value
    third, sent = drive(core.refresh_flow("r-0"))  # remembered: nothing is sent
    assert third is done.value.value and sent == []


def test_an_abandoned_leader_lands_its_flight_with_an_error():
    core = token_core()
    leader, follower = core.refresh_flow("r-0"), core.refresh_flow("r-0")
    next(leader)
    wait = next(follower)
    leader.close()  # e.g. httpx2 closing an auth flow after a failed send
    assert wait.flight.landed and len(core.flights) == 0
    with pytest.raises(TransportError, match="interrupted"):
        next(follower)


# A role change with ``reissue`` trades the refresh token by the REST API: it must not
# race a refresh of the same token (one of them would present a spent token).


def reissue(core: BaseClient, refresh_token: str) -> Flow[Any]:
    return change_user_roles_flow(core, "org", "user", add="editor", reissue=refresh_token,
                                  token="admin-at")


def reissued(tokens: dict[str, Any] | None) -> httpx2.Response:
    return ok({"items": [], "total": 0, "tokens": tokens})


def refresh_waiting_on_reissue() -> tuple[Flow[Any], Flow[Any]]:
    """A reissue of r-0 sent, and a refresh of r-0 waiting for it."""
    core = token_core()
    change = reissue(core, "r-0")
    assert isinstance(next(change), httpx2.Request)
    refresh = core.refresh_flow("r-0")
    assert isinstance(next(refresh), Wait)
    return change, refresh


def test_a_reissue_waits_for_a_refresh_of_its_token_and_sends_the_new_one():
    core = token_core()
    refresh = core.refresh_flow("r-0")
    next(refresh)
    change = reissue(core, "r-0")
    wait = next(change)
    assert isinstance(wait, Wait)  # not a request presenting the token being refreshed
    with pytest.raises(StopIteration):
        refresh.send(ok({"access_token": "at-1", "refresh_token": "r-1"}))
    request = next(change)
    assert isinstance(request, httpx2.Request)
    assert json.loads(request.content)["reissue"] == {"refresh_token": "r-1"}
    with pytest.raises(StopIteration) as done:
        change.send(reissued({"access_token": "at-2", "refresh_token": "r-2",
                              "token_type": "Bearer"}))
    assert done.value.value.tokens.refresh_token == "r-2"


def test_a_refresh_during_a_reissue_gets_the_reissued_tokens():
    core = token_core()
    change = reissue(core, "r-0")
    assert isinstance(next(change), httpx2.Request)
    refresh = core.refresh_flow("r-0")
    wait = next(refresh)
    assert isinstance(wait, Wait)
    with pytest.raises(StopIteration) as done:
        change.send(reissued({"access_token": "at-2", "refresh_token": "r-2",
                              "token_type": "Bearer"}))
    assert done.value.value.tokens.refresh_token == "r-2"
    with pytest.raises(StopIteration) as followed:
        next(refresh)
    assert followed.value.value.refresh_token == "r-2"
    later, sent = drive(core.refresh_flow("r-0"))  # remembered: the spent token stays home
    assert later.refresh_token == "r-2" and sent == []


def test_a_refresh_waiting_on_a_failed_reissue_presents_the_token_itself():
    change, refresh = refresh_waiting_on_reissue()
    with pytest.raises(NotFound):  # an unknown role: nothing was traded
        change.send(httpx2.Response(404, json={"title": "Not Found", "detail": "no role"}))
    request = next(refresh)
    assert isinstance(request, httpx2.Request) and b"refresh_token=r-0" in request.content
    with pytest.raises(StopIteration) as done:
        refresh.send(ok({"access_token": "at-1", "refresh_token": "r-1"}))
    assert done.value.value.refresh_token == "r-1"


def test_a_refresh_waiting_on_a_reissue_whose_outcome_is_unknown_gets_its_error():
    # A 5xx (or a lost connection) may come after the server traded the token: the
    # waiting refresh must not present it (its reuse would revoke the family).
    change, refresh = refresh_waiting_on_reissue()
    with pytest.raises(ServerError):
        change.send(httpx2.Response(500, json={"title": "Internal Server Error"}))
    with pytest.raises(ServerError):
        next(refresh)


def test_a_refresh_waiting_on_a_reissue_that_revoked_the_tokens_fails():
    change, refresh = refresh_waiting_on_reissue()
    with pytest.raises(StopIteration) as done:  # the user left the organization
        change.send(reissued(None))
    assert done.value.value.tokens is None
    with pytest.raises(InvalidGrant, match="revoked"):
        next(refresh)


def test_a_flight_lands_once_for_every_waiter():
    flights = Flights()
    flight, lead = flights.join("k")
    assert lead and flights.join("k") == (flight, False)
    events = [flight.event(threading.Event) for _ in range(3)]
    flights.land("k", flight, "result")
    assert all(event is not None and event.is_set() for event in events)
    assert flight.event(threading.Event) is None and flight.outcome() == "result"
    settled, lead = flights.join("k", lambda: "known")
    assert not lead and settled.landed and settled.outcome() == "known" and len(flights) == 0


def leader_fails(flights: Flights, flight: Any, error: BaseException) -> BaseException:
    """A leader whose work raised ``error`` (while handling a ``KeyError``, from an
    ``OSError``): it lands the flight where it caught it, as ``lead`` does."""
    try:
        try:
            raise KeyError("the lookup that failed first")
        except KeyError:
            raise error from OSError("refused")
    except BaseException as exc:
        flights.land("k", flight, error=exc)
        return exc


def follower_one(flight: Any) -> BaseException:
    """A caller following ``flight``. ``follower_two`` is the same on purpose: the
    function names tell each one's frames apart in a traceback."""
    try:
        flight.outcome()
    except BaseException as exc:
        return exc
    raise AssertionError("the flight failed")


def follower_two(flight: Any) -> BaseException:
    try:
        flight.outcome()
    except BaseException as exc:
        return exc
    raise AssertionError("the flight failed")


def failed_flight(error: BaseException) -> tuple[BaseException, BaseException, BaseException]:
    """The leader's error, then what two followers raised, one after the other."""
    flights = Flights()
    flight, _ = flights.join("k")
    failed = leader_fails(flights, flight, error)
    return failed, follower_one(flight), follower_two(flight)


def frames(error: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(error.__traceback__)]


def test_each_follower_of_a_failed_flight_raises_its_own_copy():
    """One shared exception object raised by many threads grew one traceback with all
    their frames (each caller's log showed the others'), and kept those frames alive."""
    failed, first, second = failed_flight(TransportError("Could not reach the provider."))
    assert len({id(failed), id(first), id(second)}) == 3
    for copied in (first, second):
        assert type(copied) is TransportError and str(copied) == str(failed)
        assert copied.__cause__ is failed.__cause__ and isinstance(copied.__cause__, OSError)
        assert copied.__context__ is failed.__context__
        assert isinstance(copied.__context__, KeyError) and copied.__suppress_context__


def test_a_followers_traceback_starts_where_the_leader_raised_it():
    """The leader's frames (where it failed), then the follower's own; never another
    follower's."""
    failed, first, second = failed_flight(TransportError("Could not reach the provider."))
    assert frames(first) == ["follower_one", "outcome", "leader_fails"]
    assert frames(second) == ["follower_two", "outcome", "leader_fails"]
    assert frames(failed) == ["leader_fails"]


def test_notes_and_headers_added_to_a_followers_copy_are_its_own():
    error = InvalidToken(headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    error.add_note("noted by the leader")
    failed, first, second = failed_flight(error)
    first.add_note("noted by the first follower")
    assert isinstance(first, InvalidToken) and isinstance(second, InvalidToken)
    first.headers["X-Seen-By"] = "first"
    assert first.__notes__ == ["noted by the leader", "noted by the first follower"]
    assert second.__notes__ == failed.__notes__ == ["noted by the leader"]
    assert second.headers == failed.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Reworded(Exception):
    """Not the SDK's: its ``__init__`` rewords its argument (a copy would do it twice)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"reworded: {detail}")


def test_an_exception_that_is_not_a_bastion_error_is_shared():
    failed, first, second = failed_flight(Reworded("detail"))
    assert first is failed and second is failed and str(first) == "reworded: detail"


def test_a_task_following_a_flight_that_a_thread_lands_is_woken_through_its_loop(
    monkeypatch: pytest.MonkeyPatch,
):
    # A sync client's auth serving an async httpx2 client: the flight lands in the
    # leader's thread. An event loop is not thread-safe, so the task's event must be
    # set in the loop's own thread (set from another, an idle loop never wakes).
    real_event = anyio.Event
    set_in: list[int] = []

    class Recording:
        def __init__(self) -> None:
            self.inner = real_event()

        def set(self) -> None:
            set_in.append(threading.get_ident())
            self.inner.set()

        async def wait(self) -> None:
            await self.inner.wait()

    monkeypatch.setattr(anyio, "Event", Recording)
    flights = Flights()
    flight, lead = flights.join("k")
    assert lead
    following = threading.Event()

    async def follow() -> Any:
        waiter = asyncio.ensure_future(wait_in_task(Wait(flight)))
        await asyncio.sleep(0)  # one step: the task registers its event and waits
        assert flight._events
        following.set()
        await asyncio.wait_for(waiter, 30)
        return flight.outcome()

    def land() -> None:
        assert following.wait(30)
        flights.land("k", flight, "result")

    thread = threading.Thread(target=land)
    thread.start()
    assert asyncio.run(follow()) == "result"
    thread.join()
    assert set_in == [threading.get_ident()]


class FailingEvent:
    def set(self) -> None:
        raise RuntimeError("a waiter's own trouble")


def test_a_flight_wakes_every_waiter_even_when_waking_one_fails():
    """It stopped at the first failure: the waiters after it were never woken."""
    flights = Flights()
    flight, _ = flights.join("k")
    first = flight.event(threading.Event)
    flight.event(FailingEvent)
    last = flight.event(threading.Event)
    with pytest.raises(RuntimeError, match="own trouble"):
        flights.land("k", flight, "result")
    assert first is not None and first.is_set()
    assert last is not None and last.is_set()
    assert flight.outcome() == "result"


def test_a_task_event_whose_loop_has_closed_is_set_from_another_thread_quietly():
    """Its waiter's loop ended (an ``asyncio.run`` that finished): setting it raised
    RuntimeError in the thread landing the flight."""
    async def make() -> _TaskEvent:
        return _TaskEvent()

    event = asyncio.run(make())
    errors: list[BaseException] = []

    def set_it() -> None:
        try:
            event.set()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=set_it)
    thread.start()
    thread.join()
    assert errors == []


def test_a_cancelled_task_stops_waiting_on_the_flight():
    """Its event stayed registered, to be set after its loop had gone."""
    flights = Flights()
    flight, _ = flights.join("k")

    async def give_up() -> None:
        waiter = asyncio.ensure_future(wait_in_task(Wait(flight)))
        await asyncio.sleep(0)  # one step: the task registers its event and waits
        assert flight._events
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(give_up())
    assert flight._events == []
