from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.server.keys import KeyCipher, KeyDecryptionError
from bastion.server.mail import LogMailer, mailer
from bastion.server.settings import Settings


def test_production_refuses_development_defaults(tmp_path) -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(environment="production", data_dir=tmp_path, issuer="https://id.example")
    with pytest.raises(ValidationError, match="https"):
        Settings(environment="production", secret_key="s" * 40, issuer="http://id.example")
    with pytest.raises(ValidationError, match="smtp_host"):
        Settings(environment="production", secret_key="s" * 40, issuer="https://id.example")
    Settings(environment="production", secret_key="s" * 40, issuer="https://id.example",
             smtp_host="mail.example")


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_optional_setting_is_unset(tmp_path, monkeypatch, blank: str) -> None:
    """``BASTION_SMTP_HOST=`` passed the production check, and the mailer took it for
    no SMTP: sign-in links were written to the log."""
    names = ["database_url", "issuer", "access_token_audience", "smtp_host", "smtp_username",
             "smtp_password"]
    for name in names:
        monkeypatch.setenv(f"BASTION_{name.upper()}", blank)
    settings = Settings(data_dir=tmp_path)
    assert [getattr(settings, name) for name in names] == [None] * len(names)
    assert isinstance(mailer(settings), LogMailer)
    assert any("no smtp_host" in w for w in settings.development_warnings())
    with pytest.raises(ValidationError, match="smtp_host"):
        Settings(environment="production", secret_key="s" * 40, issuer="https://id.example")


@pytest.mark.parametrize("issuer", [
    "notaurl", "https://", "https:///tenant", "ftp://id.example", "https://id.example?x=1",
    "https://id.example/#top", "https://id.example?", "https://id.example path",
    " https://id.example", "https://id.example/\n", "https://user:pw@id.example",
    "https://id.example:99999", "https://id.example:http", "http://::1:8000",
    "https://id.example/" + "t" * 482,  # 501 characters: its tokens could pass 16 KiB
    "https://id.example/" + "é" * 81])  # 100 characters, 505 in a token's JSON
def test_an_issuer_that_discovery_would_publish_broken_is_refused(tmp_path, issuer) -> None:
    with pytest.raises(ValidationError, match="the issuer"):
        Settings(data_dir=tmp_path, issuer=issuer)


@pytest.mark.parametrize("issuer", ["https://id.example", "https://id.example:8443/tenant/a",
                                    "http://[::1]:8000", "http://127.0.0.1:8000/",
                                    "https://id.example/" + "t" * 481])
def test_an_issuer_may_have_a_port_and_a_path(tmp_path, issuer) -> None:
    assert Settings(data_dir=tmp_path, issuer=issuer).issuer == issuer


def test_environment_and_config_file(tmp_path, monkeypatch) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text('access_token_ttl = 120\nissuer = "https://file.example"\n')
    monkeypatch.setenv("BASTION_CONFIG_FILE", str(config))
    monkeypatch.setenv("BASTION_ISSUER", "https://env.example")
    settings = Settings(data_dir=tmp_path)
    assert settings.access_token_ttl == 120
    assert settings.issuer == "https://env.example"  # environment beats the file


@pytest.mark.parametrize("sender", ["Bastion", "a@example.com, root@evil.example", "@b.c",
                                    "Bastion <a@example.com>\nBcc: b@example.com"])
def test_the_sender_is_one_address(tmp_path, sender: str) -> None:
    """"Bastion" alone was MAIL FROM:<Bastion>, and a list a From of two: every mail
    failed or went out malformed, and only the log said so."""
    with pytest.raises(ValidationError, match="not one sender's address"):
        Settings(data_dir=tmp_path, mail_from=sender)
    assert Settings(data_dir=tmp_path, mail_from='"Ops, Inc" <ops@example.com>').mail_from


def test_unknown_setting_is_refused(tmp_path) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, acess_token_ttl=5)  # type: ignore[call-arg]


@pytest.mark.parametrize("proxy", ["*", "0.0.0.0/0", "::/0", "proxy.internal", "10.0.0.0/33"])
def test_trusted_proxies_must_be_named(tmp_path, proxy: str) -> None:
    """Trusting anyone's X-Forwarded-For would let clients pick their own address."""
    with pytest.raises(ValidationError, match="name each one"):
        Settings(data_dir=tmp_path, trusted_proxies=["10.0.0.5", proxy])


def test_trusted_proxies_are_addresses_or_networks(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BASTION_TRUSTED_PROXIES", '["10.0.0.5", " 10.1.2.3/16", "::1"]')
    assert Settings(data_dir=tmp_path).trusted_proxies == ["10.0.0.5", "10.1.0.0/16", "::1"]


def test_development_secret_key_is_generated_once_with_mode_0600(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = settings.secret_key_bytes()
    assert len(first) >= 48
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path / "data").secret_key_bytes() == first
    assert any("secret_key" in w for w in settings.development_warnings())


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_data_dir_is_the_default(monkeypatch, blank: str) -> None:
    """``BASTION_DATA_DIR=`` made the working directory the data directory."""
    monkeypatch.setenv("BASTION_DATA_DIR", blank)
    for settings in (Settings(), Settings(data_dir=blank)):
        assert settings.data_dir == Path("bastion-data")
        assert not settings.names_database  # the CLI's guard applies


def test_a_development_secret_key_is_never_seen_partly_written(tmp_path, monkeypatch) -> None:
    """The file was created empty, then written: a process starting meanwhile read
    an empty key ("must be at least 32 characters")."""
    path = tmp_path / "data" / "secret_key"
    make = secrets.token_urlsafe

    def generate(n: int) -> str:
        assert not path.exists()  # what another process would read now
        return make(n)

    monkeypatch.setattr(secrets, "token_urlsafe", generate)
    key = Settings(data_dir=tmp_path / "data").secret_key_bytes()
    assert path.read_bytes() == key and len(key) >= 48
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no file left behind


def test_processes_generating_the_secret_key_together_agree_on_the_first(
        tmp_path, monkeypatch) -> None:
    """The one that came second failed with FileExistsError."""
    path = tmp_path / "secret_key"
    theirs = "theirs-" + "t" * 60
    make = secrets.token_urlsafe

    def generate(n: int) -> str:
        path.write_text(theirs)  # another process got there in the meantime
        return make(n)

    monkeypatch.setattr(secrets, "token_urlsafe", generate)
    assert Settings(data_dir=tmp_path).secret_key_bytes() == theirs.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_a_secret_key_that_is_not_utf8_is_refused(tmp_path, monkeypatch) -> None:
    """``BASTION_SECRET_KEY=$'\\xff...'``: a UnicodeEncodeError where it was used."""
    monkeypatch.setenv("BASTION_SECRET_KEY", "\udcff" * 40)
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(data_dir=tmp_path)


def test_private_keys_are_encrypted_and_bound_to_their_kid() -> None:
    cipher = KeyCipher(b"one secret")
    blob = cipher.encrypt("kid-1", b"-----BEGIN PRIVATE KEY-----...")
    assert b"PRIVATE KEY" not in blob
    assert cipher.decrypt("kid-1", blob) == b"-----BEGIN PRIVATE KEY-----..."
    with pytest.raises(KeyDecryptionError):
        cipher.decrypt("kid-2", blob)
    with pytest.raises(KeyDecryptionError, match="BASTION_SECRET_KEY"):
        KeyCipher(b"another secret").decrypt("kid-1", blob)


def test_every_setting_is_documented() -> None:

    docs = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    for name, field in Settings.model_fields.items():
        assert f"`{name}`" in docs, f"docs/server.md does not document {name}"
        assert field.description, f"{name} has no description"


def test_a_new_data_directory_and_its_database_are_private_whatever_the_umask(tmp_path) -> None:
    # The database holds password hashes, secret digests and the encrypted signing
    # keys: with the usual umask 022 it used to be created readable by every user.
    import os
    import subprocess

    from support import BASTION

    data_dir = tmp_path / "new" / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_DATA_DIR"] = str(data_dir)
    done = subprocess.run(["sh", "-c", 'umask 022 && exec "$@"', "sh", *BASTION, "migrate"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = [p for p in data_dir.iterdir() if p.name in ("bastion.db", "bastion.db-wal",
                                                          "bastion.db-shm")]
    assert any(p.name == "bastion.db" for p in files), files
    for path in files:  # the database and any -wal / -shm beside it
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_development_secret_key_is_made_where_there_are_no_hard_links(
        tmp_path, monkeypatch) -> None:
    """Some network and FUSE mounts refuse os.link: the key is created in place."""
    def no_links(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("os.link", no_links)
    key = Settings(data_dir=tmp_path).secret_key_bytes()
    assert len(key) >= 32 and (tmp_path / "secret_key").read_bytes() == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no stray copy


def test_a_development_secret_key_still_being_written_is_waited_for(
        tmp_path, monkeypatch) -> None:
    """Without hard links, another process creates the file and then writes it: read
    in between, it was empty, and the start failed with "too short"."""
    import bastion.server.settings as settings_module

    path = tmp_path / "secret_key"
    path.write_text("")  # created this moment, not written yet
    key = "k" * 48

    def the_writer_finishes(seconds: float) -> None:
        path.write_text(key)

    monkeypatch.setattr(settings_module.time, "sleep", the_writer_finishes)
    assert Settings(data_dir=tmp_path).secret_key_bytes() == key.encode()


def test_an_audience_too_long_for_a_token_is_refused(tmp_path) -> None:
    with pytest.raises(ValidationError, match="the audience is longer than 500"):
        Settings(data_dir=tmp_path, access_token_audience="urn:" + "a" * 497)
    assert Settings(data_dir=tmp_path, access_token_audience="urn:" + "a" * 496
                    ).access_token_audience


@pytest.mark.parametrize(("given", "named"), [
    ("10.0.0.5", ["10.0.0.5"]),
    (" 10.0.0.5, 10.1.2.3/16 ,", ["10.0.0.5", "10.1.0.0/16"]),
    ('["::1"]', ["::1"]),
    ("", []),
])
def test_trusted_proxies_from_the_environment_may_be_separated_by_commas(
        tmp_path, monkeypatch, given: str, named: list[str]) -> None:
    """``BASTION_TRUSTED_PROXIES=10.0.0.5`` failed with "error parsing value for field
    trusted_proxies from source EnvSettingsSource"."""
    monkeypatch.setenv("BASTION_TRUSTED_PROXIES", given)
    assert Settings(data_dir=tmp_path).trusted_proxies == named


def test_trusted_proxies_that_are_no_json_list_say_how_to_write_them(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_TRUSTED_PROXIES", '["10.0.0.5",')
    with pytest.raises(ValidationError, match="not a JSON list; write it as"):
        Settings(data_dir=tmp_path)


def test_white_space_around_the_smtp_login_is_left_out(tmp_path, monkeypatch) -> None:
    """A password from a file (a Kubernetes secret --from-file) ends with a newline:
    the SMTP server refused every login with it."""
    monkeypatch.setenv("BASTION_SMTP_USERNAME", "mailer\n")
    monkeypatch.setenv("BASTION_SMTP_PASSWORD", "s3cret pass\n")
    settings = Settings(data_dir=tmp_path)
    assert settings.smtp_username == "mailer"
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "s3cret pass"
