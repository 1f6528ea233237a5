"""Shared fixtures: a throwaway PostgreSQL cluster and the real ``bastion serve``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ServerProcess, postgres_cluster, running_server

# CI sets this so that a missing PostgreSQL fails the run instead of skipping tests.
REQUIRE_POSTGRES = os.environ.get("BASTION_TEST_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    try:
        with postgres_cluster() as url:
            yield url
    except LookupError as exc:
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(str(exc))


def _provision(server: ServerProcess) -> ServerProcess:
    app = server.create_client("--name", "e2e app", "--grant-type", "client_credentials",
                               "--scope", "read", "--scope", "write")
    server.client_id, server.client_secret = str(app["client_id"]), str(app["client_secret"])
    admin = server.create_client("--name", "e2e admin", "--grant-type", "client_credentials",
                                 "--scope", "bastion:admin")
    server.admin_client_id = str(admin["client_id"])
    server.admin_client_secret = str(admin["client_secret"])
    return server


@pytest.fixture(scope="session")
def bastion_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server on SQLite, on a free loopback port, with a confidential client
    (``client_id``/``client_secret``, grant client_credentials, scopes 'read write')."""
    data_dir: Path = tmp_path_factory.mktemp("bastion-e2e")
    with running_server(data_dir) as server:
        yield _provision(server)


@pytest.fixture(scope="session")
def bastion_server_pg(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str
) -> Iterator[ServerProcess]:
    """The same on PostgreSQL (a database of its own on the throwaway cluster)."""
    import asyncio

    from support import create_database

    url = asyncio.run(create_database(pg_admin_url, "bastion_e2e"))
    data_dir: Path = tmp_path_factory.mktemp("bastion-e2e-pg")
    with running_server(data_dir, url) as server:
        yield _provision(server)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last: Playwright's sync API keeps an event loop running
    for the rest of the session, which the asyncio tests cannot share."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid.replace("\\", "/"))
