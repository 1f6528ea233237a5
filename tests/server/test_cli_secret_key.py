"""``bastion secret-key rotate``: the signing keys and the queued mail move from the old
secret key to the new one, and a server on the new one signs with the same keys."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import sqlalchemy as sa
from cli_helpers import Invoke, one_line
from ops_helpers import on_store as run

from bastion.oauth.jose import parse_compact, verify_signature
from bastion.server import keys
from bastion.server.context import Context
from bastion.server.keys import KeyCipher, KeyDecryptionError, KeyRing
from bastion.server.models import OutgoingMail, SigningKey
from bastion.server.services import outbox
from bastion.server.settings import Settings
from bastion.server.storage import tables
from support import BASTION, ISSUER

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32
TOKEN = "link-token-0123456789abcdef"



@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'rekey.db'}"


def settings(url: str, secret: str) -> Settings:
    return Settings(database_url=url, secret_key=secret, issuer=ISSUER,
                    password_hash_memory_kib=8192)


def prepare(url: str, secret: str = OLD) -> str:
    """Keys (a retired one, two that sign, two next ones) and a queued sign-in mail, all
    under ``secret``; returns the mail's id."""
    async def work(store: Any) -> str:
        await KeyRing(store, settings(url, secret)).ensure()
        await keys.rotate(store, settings(url, secret), ("access",))
        return await queue(store, secret)
    return run(url, work)


async def queue(store: Any, secret: str) -> str:
    """A sign-in mail queued under ``secret``; its id."""
    mail = await outbox.enqueue(store, outbox.Seal(secret.encode()), "ann@example.com",
                                "Your sign-in link", "sign_in", client_name="App",
                                link=f"{ISSUER}/login/link?token={TOKEN}",
                                expires_in="15 minutes")
    assert mail is not None
    return str(mail.id)


def stored(url: str) -> tuple[list[SigningKey], list[OutgoingMail]]:
    """The keys and the queued mail, as stored."""
    async def work(store: Any) -> tuple[list[SigningKey], list[OutgoingMail]]:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(tables.outbox))).mappings().all()
        return await store.signing_keys(), [OutgoingMail(**row) for row in rows]
    return run(url, work)


def rotate(cli: Invoke, url: str, *args: str, old: str | None = OLD,
           new: str = NEW) -> tuple[int, str]:
    env = {"BASTION_SECRET_KEY": new} | ({"BASTION_OLD_SECRET_KEY": old} if old else {})
    return cli("secret-key", "rotate", "--database-url", url, *args, **env)


def test_keys_and_queued_mail_move_to_the_new_secret_key(cli, url) -> None:
    mail_id = prepare(url)
    before, _ = stored(url)
    code, err = rotate(cli, url)
    assert code == 0, err
    after, queued = stored(url)
    assert [(k.kid, k.public_jwk) for k in after] == [(k.kid, k.public_jwk) for k in before]
    new_cipher, old_cipher = KeyCipher(NEW.encode()), KeyCipher(OLD.encode())
    for key in after:
        new_cipher.decrypt(key.kid, key.private_key_enc)
        with pytest.raises(KeyDecryptionError):
            old_cipher.decrypt(key.kid, key.private_key_enc)
    [mail] = queued
    assert mail.id == mail_id
    assert TOKEN in outbox.Seal(NEW.encode()).open(mail).text
    with pytest.raises(outbox.SealError):
        outbox.Seal(OLD.encode()).open(mail)

    async def server(store: Any) -> tuple[str, str]:
        # as `bastion serve` starts: checks, then makes no key and signs with the stored one
        await keys.check_signing(store, settings(url, NEW))
        ctx = Context(settings(url, NEW), store)
        await ctx.keys.ensure()
        signer = await ctx.keys.signer("access")
        token = signer.sign({"sub": "ann"}, typ="at+jwt")
        verify_signature(parse_compact(token), await ctx.keys.verifiers(signer.kid),
                         [signer.alg])
        events = (await store.list_events({"action": "secret_key.rotate"}, 10, 0))[0]
        assert [e.detail for e in events] == [{"via": "cli", "keys": 5, "mail": 1}]
        return signer.kid, (await ctx.keys.signer("id")).kid

    signers = run(url, server)
    assert set(signers) <= {k.kid for k in before if keys.signs(k)}
    assert {k.kid for k in stored(url)[0]} == {k.kid for k in before}  # no key was made


def test_the_output_says_what_comes_next_and_holds_no_secret(url) -> None:
    """The real command, as an operator runs it."""
    prepare(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env |= {"BASTION_SECRET_KEY": NEW, "BASTION_OLD_SECRET_KEY": OLD,
            "BASTION_DATABASE_URL": url}
    if "PYTHONPATH" in env:  # as the tests were started, from another directory
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    done = subprocess.run([*BASTION, "secret-key", "rotate"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "encrypted 5 signing key(s) and 1 queued mail(s) again" in done.stdout
    for says in ("Restart every instance", "run this command once more",
                 "users sign in again", "Tokens issued already stay valid",
                 "bastion keys withdraw"):
        assert says in done.stdout
    again = subprocess.run([*BASTION, "secret-key", "rotate"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and "nothing to change" in again.stdout
    for output in (done.stdout, done.stderr, again.stdout, again.stderr):
        for secret in (OLD, NEW, "o" * 16, "n" * 16, "PRIVATE KEY", TOKEN):
            assert secret not in output


def test_running_it_twice_changes_nothing_more(cli, url) -> None:
    prepare(url)
    assert rotate(cli, url)[0] == 0
    keys_after, _ = stored(url)
    code, err = rotate(cli, url)
    assert code == 0, err
    assert [k.private_key_enc for k in stored(url)[0]] == [k.private_key_enc for k in keys_after]


def test_mail_queued_under_the_old_secret_after_the_rotation_is_moved_by_a_second_run(
        cli, url) -> None:
    """An instance not yet restarted queues mail under the old secret meanwhile."""
    prepare(url)
    assert rotate(cli, url)[0] == 0
    late = prepare_mail(url, OLD)
    assert rotate(cli, url)[0] == 0
    [mail] = [m for m in stored(url)[1] if m.id == late]
    assert TOKEN in outbox.Seal(NEW.encode()).open(mail).text


def prepare_mail(url: str, secret: str) -> str:
    return run(url, lambda store: queue(store, secret))


def test_a_wrong_old_secret_key_changes_nothing(cli, url) -> None:
    prepare(url)
    keys_before, _ = stored(url)
    code, err = rotate(cli, url, old="not-the-old-secret-" + "x" * 32)
    assert code == 1
    line = one_line(err)
    assert "opens under neither the old secret key nor the new one" in line
    assert "x" * 16 not in err and NEW not in err
    assert [k.private_key_enc for k in stored(url)[0]] == [k.private_key_enc
                                                           for k in keys_before]


def test_one_mail_under_a_third_secret_key_changes_nothing_at_all(cli, url) -> None:
    """The keys come first, the mail after: one transaction, so the keys stay too."""
    prepare(url)
    stray = prepare_mail(url, "a-third-secret-" + "t" * 32)
    keys_before, _ = stored(url)
    code, err = rotate(cli, url)
    assert code == 1 and f"queued mail {stray} opens under neither" in one_line(err)
    after, mail = stored(url)
    assert [k.private_key_enc for k in after] == [k.private_key_enc for k in keys_before]
    assert all(TOKEN in outbox.Seal(OLD.encode()).open(m).text for m in mail if m.id != stray)


@pytest.mark.parametrize("args", [("--old-secret-key", OLD), (f"--old-secret-key={OLD}",),
                                  (OLD,), ("--old-secret", OLD)])
def test_the_old_secret_key_is_never_taken_from_the_command_line(cli, url, args) -> None:
    prepare(url)
    keys_before, _ = stored(url)
    code, err = rotate(cli, url, *args, old=None)
    assert code == 2 and OLD not in err  # argparse's usage and one line
    assert "error: argument" in err and "not taken on the command line" in err
    assert [k.private_key_enc for k in stored(url)[0]] == [k.private_key_enc
                                                           for k in keys_before]


@pytest.mark.parametrize("args", [("secret-key", "rotate", f"--old-secret={OLD}"),
                                  ("purge", OLD), ("purge", "--json", f"--old={OLD}", OLD),
                                  ("purge", "-" + OLD)])
def test_unrecognized_arguments_are_named_without_their_values(cli, url, args) -> None:
    code, err = cli(*args, "--database-url", url, BASTION_SECRET_KEY=NEW)
    assert code == 2 and OLD not in err
    assert "error: unrecognized arguments: " in err and "(values not shown)" in err


@pytest.mark.parametrize(("args", "said"), [
    (("migrate", f"--data={OLD}"), "ambiguous option: --data=... could match"),
    (("secret-key", OLD), "invalid choice: '...'"),
    (("serve", "--port", OLD), "argument --port: '...' is not a whole number"),
    (("serve", f"--workers={OLD}"), "argument --workers: '...' is not a whole number"),
])
def test_no_usage_error_repeats_a_value(cli, args, said) -> None:
    code, err = cli(*args)
    assert code == 2 and OLD not in err and said in err


def test_the_old_secret_key_from_a_file(cli, url, tmp_path) -> None:
    prepare(url)
    path = tmp_path / "old"
    path.write_text(OLD + "\n")
    code, err = rotate(cli, url, "--old-secret-key-file", str(path), old=None)
    assert code == 0, err
    for key in stored(url)[0]:
        KeyCipher(NEW.encode()).decrypt(key.kid, key.private_key_enc)


@pytest.mark.parametrize(("old", "new", "file", "says"), [
    (None, NEW, False, "no old secret key: set BASTION_OLD_SECRET_KEY"),
    (OLD, NEW, True, "the old secret key is given twice"),
    (NEW, NEW, False, "the old secret key is the same as BASTION_SECRET_KEY"),
    (OLD, "short", False, "at least 32 characters"),
])
def test_refusals_are_one_line_and_change_nothing(cli, url, tmp_path, old, new, file,
                                                  says) -> None:
    prepare(url)
    keys_before, _ = stored(url)
    (tmp_path / "old").write_text(OLD)
    args = ("--old-secret-key-file", str(tmp_path / "old")) if file else ()
    code, err = rotate(cli, url, *args, old=old, new=new)
    assert code == 1 and says in one_line(err)
    assert OLD not in err and NEW not in err
    assert [k.private_key_enc for k in stored(url)[0]] == [k.private_key_enc
                                                           for k in keys_before]


def test_without_a_new_secret_key_setting_none_is_generated(cli, url, tmp_path) -> None:
    prepare(url)
    code, err = cli("secret-key", "rotate", "--database-url", url, "--data-dir", str(tmp_path),
                    BASTION_OLD_SECRET_KEY=OLD)
    assert code == 1 and "the new secret key is not set" in one_line(err)
    assert not (tmp_path / "secret_key").exists()


def test_a_server_still_on_the_old_secret_key_keeps_signing_until_restarted(
        cli, url) -> None:
    """Documented in docs/deployment.md: the ring keeps the private keys it opened (by
    kid), so the rotation does not stop it; a restart on the old secret is refused, and
    a key it never opened (activated by a rotation since) it cannot use."""
    prepare(url)

    async def work(store: Any) -> None:
        ring = KeyRing(store, settings(url, OLD))
        await ring.ensure()
        kid = (await ring.signer("access")).kid
        from bastion.server.services import secret_key

        await secret_key.rotate(store, settings(url, NEW), OLD.encode())
        await ring.reload()
        signer = await ring.signer("access")
        assert signer.kid == kid and ring.reload_error is None
        assert signer.sign({"sub": "ann"}, typ="at+jwt")
        with pytest.raises(KeyDecryptionError):  # `bastion serve` on the old secret
            await keys.check_signing(store, settings(url, OLD))
        # a rotation (with the new secret) activates the next key: not opened before
        await keys.rotate(store, settings(url, NEW), ("access",))
        await ring.reload()
        assert ring.reload_error is not None and "cannot be decrypted" in ring.reload_error
        assert (await ring.signer("access")).kid == kid  # the old one, while published
    run(url, work)
