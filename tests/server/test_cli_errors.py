"""What an operator sees when a setting, a file or the database is wrong: one line on
stderr and exit 1, never a traceback, never a secret echoed; and commands that refuse
rather than do harm."""

from __future__ import annotations

import pytest
from cli_helpers import one_line

from bastion.server.logs import redact

SECRET = "TOPSECRET-" + "x" * 40



def test_keys_rotate_refuses_a_secret_key_that_cannot_open_the_keys(cli, tmp_path) -> None:
    """Run without BASTION_SECRET_KEY (a development key is generated) or with another
    one, a rotation made keys the servers could not decrypt: they stopped signing."""
    data = str(tmp_path / "data")
    assert cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY=SECRET)[0] == 0
    code, err = cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY="y" * 40)
    assert code == 1 and "cannot be decrypted" in one_line(err)
    code, err = cli("keys", "rotate", "--data-dir", data, BASTION_SECRET_KEY=SECRET)
    assert code == 0, err  # nothing was changed by the refused run


@pytest.mark.parametrize(("env", "says"), [
    ({"BASTION_ENVIRONMENT": "production", "BASTION_SECRET_KEY": SECRET,
      "BASTION_ISSUER": "http://id.example", "BASTION_SMTP_PASSWORD": SECRET}, "https URL"),
    ({"BASTION_ENVIRONMENT": "production", "BASTION_SECRET_KEY": SECRET,
      "BASTION_ISSUER": "https://id.example", "BASTION_SMTP_HOST": ""}, "smtp_host"),
    ({"BASTION_SECRET_KEY": " " * 40}, "secret key is empty"),
    ({"BASTION_CONFIG_FILE": "/no/such/bastion.toml"}, "is not a file"),
    ({"BASTION_TRUSTED_PROXIES": "not json"}, "trusted_proxies"),
    ({"BASTION_ACCESS_TOKEN_TTL": "-5", "BASTION_SECRET_KEY": SECRET}, "access_token_ttl"),
    # a byte that is no UTF-8 ($'\xff'): a UnicodeEncodeError where the key was used
    ({"BASTION_SECRET_KEY": SECRET + "\udcff"}, "secret_key: the value is not valid UTF-8"),
    ({"BASTION_SMTP_PASSWORD": SECRET + "\udcff"}, "smtp_password: the value is not valid"),
])
def test_bad_settings_are_one_line_without_their_values(cli, tmp_path, env, says) -> None:
    code, err = cli("migrate", "--data-dir", str(tmp_path), **env)
    assert code == 1
    line = one_line(err)
    assert says in line and SECRET not in err


@pytest.mark.parametrize(("url", "says"), [
    ("nonsense", "database URL"),
    ("postgresql+asyncpg://bastion:pw-{secret}@127.0.0.1:1/bastion", "cannot be reached"),
    ("mysql+aiomysql://u@127.0.0.1:1/db", "names the database mysql"),
])
def test_a_bad_database_is_one_line_without_the_url(cli, url, says) -> None:
    code, err = cli("migrate", "--database-url", url.format(secret=SECRET))
    assert code == 1 and says in one_line(err) and SECRET not in err


def test_a_short_secret_key_makes_no_new_store_but_keeps_an_old_one_working(
        cli, tmp_path) -> None:
    """Refusing it outright would lock a deployment out of the keys it already has."""
    import asyncio

    from bastion.server import keys
    from bastion.server.settings import Settings
    from bastion.server.storage import migrate, open_storage

    data = tmp_path / "data"
    code, err = cli("keys", "rotate", "--data-dir", str(data), BASTION_SECRET_KEY="short")
    assert code == 1 and "at least 32 characters" in one_line(err)

    async def stored_before() -> None:  # keys made by a version that allowed it
        settings = Settings(data_dir=data, secret_key="short")
        store = open_storage(settings.resolved_database_url)
        try:
            await migrate.upgrade(store.engine)
            cipher = keys.KeyCipher(settings.secret_key_bytes())
            for use in keys.USES:
                await store.rotate_signing_key(keys.new_signing_key(settings, cipher, use))
        finally:
            await store.close()

    asyncio.run(stored_before())
    code, err = cli("keys", "rotate", "--data-dir", str(data), BASTION_SECRET_KEY="short")
    assert code == 0, err


def test_a_config_file_that_is_not_utf8_is_one_line(cli, tmp_path) -> None:
    """A UnicodeDecodeError came out as a traceback."""
    config = tmp_path / "bastion.toml"
    config.write_bytes(b'smtp_password = "pass\xffword"\n')
    code, err = cli("migrate", "--data-dir", str(tmp_path), BASTION_CONFIG_FILE=str(config))
    assert code == 1 and "is not valid UTF-8" in one_line(err) and "pass" not in err


def test_a_development_secret_key_file_that_is_not_text_is_one_line(cli, tmp_path) -> None:
    """``openssl rand 48 > secret_key`` gave a UnicodeDecodeError traceback."""
    (tmp_path / "secret_key").write_bytes(bytes(range(256))[-64:])
    code, err = cli("keys", "rotate", "--data-dir", str(tmp_path))
    assert code == 1 and "secret_key is not valid UTF-8" in one_line(err)


NO_DATABASE = "no database is configured and there is none at"


@pytest.mark.parametrize("args", [
    ["migrate"], ["keys", "rotate"], ["keys", "withdraw", "kid-1"], ["purge"],
    ["clients", "list"], ["clients", "create", "--name", "cron"], ["clients", "delete", "c"],
    ["users", "create", "--username", "u", "--email", "u@example.com", "--password-stdin"],
    ["users", "erase", "u", "--yes"]])
def test_no_command_but_serve_starts_from_nothing_where_no_setting_names_the_database(
        cli, tmp_path, monkeypatch, args) -> None:
    """From cron (no BASTION_* variables, another working directory) a command made a
    new database and secret key in ./bastion-data, did its work there and exited 0."""
    monkeypatch.chdir(tmp_path)
    code, err = cli(*args, stdin="a long passphrase\n")
    line = one_line(err)
    assert code == 1 and NO_DATABASE in line
    assert str(tmp_path / "bastion-data" / "bastion.db") in line
    assert "BASTION_DATABASE_URL" in line and "BASTION_DATA_DIR" in line
    assert list(tmp_path.iterdir()) == []  # no database, no secret key
    # A blank setting names nothing either (BASTION_DATA_DIR= was the working directory).
    code, err = cli(*args, stdin="a long passphrase\n", BASTION_DATA_DIR="",
                    BASTION_DATABASE_URL=" ")
    assert code == 1 and NO_DATABASE in one_line(err) and list(tmp_path.iterdir()) == []


def test_the_default_database_serves_every_command_once_it_exists(cli, tmp_path,
                                                                  monkeypatch) -> None:
    """As after ``bastion serve`` in that directory (the quick start)."""
    monkeypatch.chdir(tmp_path)
    assert cli("migrate", "--data-dir", "bastion-data")[0] == 0  # named: made
    code, err = cli("clients", "create", "--name", "app", "--grant-type",
                    "client_credentials")
    assert code == 0, err
    assert cli("purge")[0] == 0


def test_a_cron_job_without_settings_is_refused(tmp_path) -> None:
    """The real command, in a crontab's environment: HOME, PATH and little else."""
    import os
    import subprocess

    from support import BASTION

    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    if "PYTHONPATH" in env:  # as the tests were started, from another directory
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    done = subprocess.run([*BASTION, "keys", "rotate"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert one_line(done.stderr).startswith(f"error: {NO_DATABASE}")
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


def test_a_data_dir_that_is_a_file_is_one_line(cli, tmp_path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    code, err = cli("keys", "rotate", "--data-dir", str(afile))
    assert code == 1 and str(afile) in one_line(err)


def test_a_development_secret_key_file_must_be_long_enough(cli, tmp_path) -> None:
    (tmp_path / "secret_key").write_text("\n")
    code, err = cli("keys", "rotate", "--data-dir", str(tmp_path))
    assert code == 1 and "at least 32 characters" in one_line(err)


def test_users_create_refuses_an_empty_password(cli, tmp_path) -> None:
    """An empty line meant "no password": a passwordless account, maybe an admin."""
    code, err = cli("users", "create", "--username", "root", "--email", "root@example.com",
                    "--admin", "--password-stdin", "--data-dir", str(tmp_path), stdin="\n")
    assert code == 1 and "no password" in one_line(err)
    code, err = cli("users", "create", "--username", "root", "--email", "root@example.com",
                    "--password-stdin", "--data-dir", str(tmp_path), stdin="a long passphrase\n")
    assert code == 0, err  # no "root" was made by the refused call


def test_an_argument_that_is_not_utf8_is_one_line(cli, tmp_path) -> None:
    """``--name $'a\\xff'`` reached the database as a lone surrogate: a traceback."""
    code, err = cli("clients", "create", "--name", "a\udcff", "--data-dir", str(tmp_path))
    assert code == 2 and "name is not valid UTF-8" in one_line(err)
    code, err = cli("clients", "create", "--name", "x", "--redirect-uri",
                    "https://a.example/\udcff", "--data-dir", str(tmp_path))
    assert code == 2 and "redirect-uris is not valid UTF-8" in one_line(err)


def test_a_data_dir_that_is_not_utf8_is_a_path_like_any_other(cli, tmp_path) -> None:
    # Any bytes make a file name; Python keeps them (as surrogates) and uses them as given.
    code, err = cli("migrate", "--data-dir", str(tmp_path) + "/d\udce4ta")
    assert code == 0, err


@pytest.mark.parametrize("stdin", [b"pass\xffword-long\n", "pass\udcffword-long\n"])
def test_a_password_that_is_not_utf8_is_one_line(cli, tmp_path, stdin) -> None:
    """Read strictly (a UTF-8 locale) or with surrogates (the C locale)."""
    code, err = cli("users", "create", "--username", "ann", "--email", "ann@example.com",
                    "--password-stdin", "--data-dir", str(tmp_path), stdin=stdin)
    assert code == 1 and "password on standard input is not valid UTF-8" in one_line(err)


@pytest.mark.parametrize("args", [["--port", "99999"], ["--port", "0"], ["--workers", "0"],
                                  ["--workers", "two"]])
def test_serve_checks_port_and_workers(cli, args) -> None:
    code, err = cli("serve", *args)
    assert code == 2 and ("between" in err or "whole number" in err)


def test_the_access_log_redacts_a_query_value_up_to_the_next_parameter() -> None:
    line = redact('GET /account?token=abc"QUOTELEAK&x=1 HTTP/1.1')
    assert "QUOTELEAK" not in line and "abc" not in line
    assert line == "GET /account?token=***&x=*** HTTP/1.1"


@pytest.mark.parametrize(("path", "logged"), [
    ("/login/link?token%3DSECRET", "/login/link?***"),  # a link a scanner re-encoded
    ("/login/link?SECRET", "/login/link?***"),
    ("/login/link?SECRET&client_id=web", "/login/link?***&client_id=web"),
    ("/login/link?token=SECRET&&SECRET=x", "/login/link?token=***&&***"),  # a name 43 long
    ("/login/link?", "/login/link?"),
])
def test_the_access_log_redacts_a_query_that_is_no_name_and_value(path, logged) -> None:
    """Only ``name=value`` was redacted: a token without its '=' went to the log whole,
    and as the link was refused (400), not spent, it stayed valid."""
    secret = "T" * 43
    line = redact(f"GET {path.replace('SECRET', secret)} HTTP/1.1")
    assert line == f"GET {logged} HTTP/1.1" and secret not in line


def test_the_access_log_shows_the_values_that_are_no_secret() -> None:
    line = redact("GET /oauth/authorize?response_type=code&client_id=web&state=s3cr3t"
                  "&scope=openid%20email&code_challenge=abc&prompt=login HTTP/1.1")
    assert line == ("GET /oauth/authorize?response_type=code&client_id=web&state=***"
                    "&scope=openid%20email&code_challenge=***&prompt=login HTTP/1.1")


def test_keys_rotate_names_a_next_key_stored_under_another_secret(cli, tmp_path) -> None:
    """The keys that sign open, the one waiting does not: activating it would stop the
    servers signing, so the rotation is refused, saying which key to remove."""
    import asyncio

    from bastion.server import keys
    from bastion.server.settings import Settings
    from bastion.server.storage import open_storage

    data = tmp_path / "data"
    assert cli("keys", "rotate", "--data-dir", str(data), BASTION_SECRET_KEY=SECRET)[0] == 0

    async def foreign_next() -> str:
        other = Settings(data_dir=data, secret_key="w" * 40)
        store = open_storage(other.resolved_database_url)
        try:
            stale = next(k for k in await store.signing_keys()
                         if k.use == "id" and k.activated_at is None)
            async with store.engine.begin() as conn:
                from sqlalchemy import text
                await conn.execute(text("DELETE FROM signing_keys WHERE kid = :kid"),
                                   {"kid": stale.kid})
            key = keys.new_signing_key(other, keys.KeyCipher(other.secret_key_bytes()), "id")
            assert await store.publish_signing_key(key)
            return key.kid
        finally:
            await store.close()

    kid = asyncio.run(foreign_next())
    code, err = cli("keys", "rotate", "--data-dir", str(data), BASTION_SECRET_KEY=SECRET)
    assert code == 1 and f"the next key {kid}" in one_line(err)
