"""What ``bastion serve`` checks before it listens, with uvicorn left out: the issuer
it builds and the signing keys it must be able to use."""

from __future__ import annotations

import os

import pytest
from cli_helpers import one_line

from bastion.server.settings import load_settings

SECRET = "serve-" + "s" * 40



def test_serve_refuses_a_secret_key_that_cannot_open_the_signing_keys(
        cli, served, tmp_path) -> None:
    """It started, failed every token request and stayed unready, where the docs
    promised one line at start."""
    data = str(tmp_path / "data")
    assert cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY=SECRET)[0] == 0
    code, err = cli("serve", "--data-dir", data, BASTION_SECRET_KEY="other-" + "o" * 40)
    assert code == 1 and "cannot be decrypted" in one_line(err)
    assert served == []
    assert os.environ.get("BASTION_ISSUER") is None
    code, err = cli("serve", "--data-dir", data, BASTION_SECRET_KEY=SECRET)
    assert code == 0, err
    assert len(served) == 1


def test_serve_brackets_an_ipv6_host_in_the_default_issuer(cli, served, tmp_path) -> None:
    """``--host ::1`` made the issuer http://::1:8123, which is no URL."""
    code, err = cli("serve", "--host", "::1", "--port", "8123", "--data-dir", str(tmp_path))
    assert code == 0, err
    assert served[0].issuer == "http://[::1]:8123"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]"])  # noqa: S104
def test_serve_on_every_address_needs_the_issuer_named(cli, served, tmp_path, host) -> None:
    """Discovery published http://0.0.0.0:8000 as the issuer and its endpoints."""
    code, err = cli("serve", "--host", host, "--data-dir", str(tmp_path))
    assert code == 1 and served == []
    assert "set BASTION_ISSUER" in one_line(err) and f"--host {host} " in one_line(err)
    code, err = cli("serve", "--host", host, "--issuer", "https://id.example",
                    "--data-dir", str(tmp_path))
    assert code == 0, err
    assert served[0].issuer == "https://id.example"


def test_serve_refuses_an_issuer_that_is_no_url(cli, served, tmp_path) -> None:
    code, err = cli("serve", "--issuer", "https://id.example?tenant=a", "--data-dir",
                    str(tmp_path))
    assert code == 1 and "no query" in one_line(err) and served == []


def test_serve_creates_the_default_database_where_no_setting_names_one(
        cli, served, tmp_path, monkeypatch) -> None:
    """The quick start (``./scripts/serve``); the other commands refuse to (see
    test_cli_errors), and then use what it made."""
    monkeypatch.chdir(tmp_path)
    code, err = cli("serve")
    assert code == 0, err
    assert (tmp_path / "bastion-data" / "bastion.db").exists()
    assert (tmp_path / "bastion-data" / "secret_key").exists()
    assert "BASTION_DATABASE_URL" not in os.environ  # the workers find it as serve did
    monkeypatch.delenv("BASTION_DATA_DIR")  # set for its workers
    code, err = cli("keys", "rotate")
    assert code == 0, err


def test_serve_takes_a_data_dir_of_any_bytes_as_the_other_commands_do(
        cli, served, tmp_path) -> None:
    """serve handed its workers the database URL made of that path, and a worker's
    settings refused it as text that is not UTF-8, a setting nobody had set."""
    data = os.fsdecode(os.fsencode(tmp_path) + b"/d\xff")
    code, err = cli("serve", "--data-dir", data)
    assert code == 0, err
    worker = load_settings()  # as create_app_from_env: from the environment
    assert worker.resolved_database_url == served[0].resolved_database_url
    assert os.path.exists(os.fsencode(tmp_path) + b"/d\xff/bastion.db")
