"""Options, named connections and ``using=``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bastion import AsyncClient, Client, ConfigurationError, configure, get_settings
from bastion.client.connections import configured


@pytest.fixture(autouse=True)
def _no_connections() -> Iterator[None]:
    yield
    configure()


def test_defaults():
    settings = Client(url="https://id.example")._core.settings
    assert settings.timeout == 10.0
    assert settings.verify_ssl is True and settings.allow_redirects is False
    assert settings.retries == 2


def test_configure_and_using():
    configure(
        default={"url": "https://id.example", "client_id": "a"},
        test={"url": "https://test.example", "client_id": "b", "timeout": 3},
    )
    assert configured() == ("default", "test")
    assert Client()._core.settings.client_id == "a"
    test = Client(using="test")
    assert test._core.settings.url == "https://test.example"
    assert test._core.settings.timeout == 3.0
    assert AsyncClient(using="test", client_id="c")._core.settings.client_id == "c"
    assert get_settings("test").client_id == "b"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"url": "https://id.example", "colour": "red"}, "colour"),
        ({"client_id": "x"}, "url"),
        ({"url": "ftp://id.example"}, "url"),
        ({"url": "https://id.example?x=1"}, "url"),
        ({"url": "https://id.example", "timeout": "10"}, "timeout"),
        ({"url": "https://id.example", "retries": -1}, "retries"),
        ({"url": "https://id.example", "verify_ssl": "no"}, "verify_ssl"),
        ({"url": "https://id.example", "client_id": 5}, "client_id"),
        ({"url": "https://id.example", "algorithms": ["none"]}, "algorithms"),
        ({"url": "https://id.example", "algorithms": ["HS256"]}, "algorithms"),
        ({"url": "https://id.example", "token_endpoint_auth_method": "x"}, "token_endpoint"),
        ({"url": "https://admin:secret@id.example"}, "url"),  # repr() would show it
        ({"url": "https://id.example", "leeway": float("nan")}, "leeway"),  # nan < 0 is False
        ({"url": "https://id.example", "leeway": float("inf")}, "leeway"),
        ({"url": "https://id.example", "timeout": float("nan")}, "timeout"),
        ({"url": "https://id.example", "timeout": 0}, "'timeout'.* must be a positive"),
        ({"url": "https://id.example", "timeout": -1.5}, "'timeout'.* must be a positive"),
        ({"url": "https://id.example", "refresh_margin": -1}, "refresh_margin"),
        ({"url": "https://id.example", "jwks_max_stale": float("inf")}, "jwks_max_stale"),
        ({"url": "https://id.example", "jwks_max_stale": "1h"}, "jwks_max_stale"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], named: str):
    with pytest.raises(ConfigurationError, match=named):
        configure(default=options)
    with pytest.raises(ConfigurationError, match=named):
        Client(**options)  # type: ignore[arg-type]


def test_unknown_connection_and_unknown_override():
    with pytest.raises(ConfigurationError, match="'nope'"):
        Client(using="nope")
    configure(default={"url": "https://id.example"})
    with pytest.raises(ConfigurationError, match="colour"):
        Client(colour="red")


def test_secrets_stay_out_of_reprs():
    key = "k3y" * 11
    settings = Client(url="https://id.example", client_secret="hunter2", state_key=key)
    assert "hunter2" not in repr(settings._core.settings)
    assert key not in repr(settings._core.settings)


@pytest.mark.parametrize("key", ["", "summer", "x" * 31, "é" * 15])
def test_a_short_state_key_is_refused_with_a_recipe(key: str):
    with pytest.raises(ConfigurationError, match="state_key") as caught:
        Client(url="https://id.example", state_key=key)
    assert "secrets.token_urlsafe(32)" in str(caught.value)
    with pytest.raises(ConfigurationError, match="32 bytes"):
        configure(default={"url": "https://id.example", "state_key": key})


def test_a_32_byte_state_key_is_accepted():
    assert Client(url="https://id.example", state_key="é" * 16)._core.settings.state_key


def test_a_closed_client_says_so() -> None:
    client = Client(url="https://id.example")
    client.close()
    with pytest.raises(ConfigurationError, match="closed"):
        client.client_credentials()


def test_configure_leaves_the_replaced_client_to_the_objects_bound_to_it() -> None:
    """A ``User`` fetched before ``configure()`` keeps working; its client is closed
    once nothing holds it."""
    import gc

    from bastion.client._shared import shared_client

    configure(default={"url": "https://id.example"})
    before = shared_client()
    configure(default={"url": "https://id.example"})
    assert shared_client() is not before
    http = before._http
    assert not http.is_closed
    del before
    gc.collect()
    assert http.is_closed


def test_a_connection_configure_dropped_has_its_client_closed_too() -> None:
    """Never asked for again, it was never replaced: its pool stayed open for good."""
    import gc

    from bastion.client._shared import shared_client

    configure(default={"url": "https://id.example"})
    dropped = shared_client()
    configure(other={"url": "https://id.example"})
    shared_client("other")
    http = dropped._http
    del dropped
    gc.collect()
    assert http.is_closed


def test_routes_get_a_client_per_event_loop() -> None:
    """An app (or its tests) may run several loops in turn; a client made in one
    cannot be used from another."""
    import asyncio

    from bastion.client.integrations.bearer import Guard, aclose_clients

    configure(default={"url": "https://id.example"})
    guard = Guard()

    async def first() -> object:
        return guard.client  # no request made: nothing to close

    async def second() -> object:
        client = guard.client
        assert guard.client is client
        await aclose_clients()
        return client

    assert asyncio.run(first()) is not asyncio.run(second())


def test_an_empty_connection_name_is_not_the_default() -> None:
    configure(default={"url": "https://id.example"})
    with pytest.raises(ConfigurationError, match="no connection named ''"):
        Client(using="")
