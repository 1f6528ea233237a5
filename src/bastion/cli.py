"""The ``bastion`` command: serve, migrate, clients, users, keys, secret-key, purge.

Every command takes ``--database-url`` (or reads ``BASTION_DATABASE_URL``) and
applies pending migrations before it works, so it runs on a fresh database. Where no
setting names the database, only ``serve`` creates the default one: the others refuse
to start from nothing in whatever directory they were run (cron's).
The CLI calls services, never HTTP routes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, NoReturn, TypeVar

from bastion.server.text import utf8

T = TypeVar("T")

log = logging.getLogger("bastion")


def _within(low: int, high: int) -> Callable[[str], int]:
    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    return number


def _not_in_argv(_text: str) -> str:
    raise argparse.ArgumentTypeError(
        "the old secret key is not taken on the command line, where other users see it "
        "(ps): set BASTION_OLD_SECRET_KEY or use --old-secret-key-file PATH")


_OPTION = re.compile(r"--[A-Za-z][A-Za-z0-9-]*|-[A-Za-z]")  # not a value such as "-s3cr3t"


class _Parser(argparse.ArgumentParser):
    """Names the arguments in its errors without their values: a misspelt option with a
    secret (``--old-secret=VALUE``, ``--data=URL`` matching two options) or a value
    given where a choice or a number was due must not be echoed to the terminal or log."""

    _argv: ClassVar[list[str]] = []  # of the parse under way (subparsers report too)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        _Parser._argv = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            names = [a.split("=", 1)[0] + ("=..." if "=" in a else "")
                     if _OPTION.fullmatch(a.split("=", 1)[0]) else "..." for a in extras]
            self.error(f"unrecognized arguments: {' '.join(names)} (values not shown)")
        return parsed

    def error(self, message: str) -> NoReturn:
        for arg in _Parser._argv:
            name, equals, value = arg.partition("=")
            if arg.startswith("-") and equals:
                message = message.replace(arg, name + "=...")
            elif not arg.startswith("-"):
                value = arg
            if value:  # argparse quotes a value it refuses: 'VALUE'
                message = message.replace(repr(value), "'...'")
        super().error(message)


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--database-url", help="SQLAlchemy async URL (env BASTION_DATABASE_URL; "
                        "prefer the environment for a URL with a password: argv is public)")
    common.add_argument("--data-dir", help="directory of the default SQLite database and "
                        "development secret key (env BASTION_DATA_DIR)")

    parser = _Parser(prog="bastion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_within(1, 65535), default=8000)
    serve.add_argument("--workers", type=_within(1, 256), default=1)
    serve.add_argument("--issuer", help="public URL (env BASTION_ISSUER); default http://HOST:PORT")
    serve.add_argument("--demo", action="store_true",
                       help="create a demo client and user once and print their credentials")
    serve.add_argument("--access-log", action="store_true", help="log every request line")

    sub.add_parser("migrate", parents=[common], help="apply database migrations")

    clients = sub.add_parser("clients", help="OAuth clients").add_subparsers(
        dest="action", required=True)
    create_client = clients.add_parser("create", parents=[common], help="register a client")
    create_client.add_argument("--name", required=True)
    create_client.add_argument("--public", action="store_true",
                               help="a public client (no secret; PKCE required)")
    create_client.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
    create_client.add_argument("--grant-type", action="append", default=[], dest="grant_types")
    create_client.add_argument("--post-logout-redirect-uri", action="append", default=[],
                               dest="post_logout_redirect_uris")
    create_client.add_argument("--backchannel-logout-uri", metavar="URI",
                               help="where a logout token is POSTed when a session ends")
    create_client.add_argument("--scope", action="append", default=[], dest="scopes")
    create_client.add_argument("--json", action="store_true", help="print one JSON object")
    list_clients = clients.add_parser("list", parents=[common], help="list the clients")
    list_clients.add_argument("--json", action="store_true", help="print one JSON object per line")
    rotate_secret = clients.add_parser("rotate-secret", parents=[common],
                                       help="issue a new client secret (shown once)")
    rotate_secret.add_argument("client_id")
    rotate_secret.add_argument("--keep-old-for", type=_within(0, 604_800), default=0,  # 7 days
                               metavar="SECONDS", help="the old secret keeps working this long "
                               "(default 0: it stops at once)")
    rotate_secret.add_argument("--json", action="store_true", help="print one JSON object")
    delete_client = clients.add_parser("delete", parents=[common],
                                       help="delete a client and revoke every token it holds")
    delete_client.add_argument("client_id")

    users = sub.add_parser("users", help="users").add_subparsers(dest="action", required=True)
    create_user = users.add_parser("create", parents=[common], help="create a user")
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--admin", action="store_true")
    create_user.add_argument("--email-verified", action="store_true",
                             help="the address is known to be theirs (else: once they use a "
                             "link mailed to it)")
    create_user.add_argument("--password-stdin", action="store_true", required=True,
                             help="read the password from standard input")
    create_user.add_argument("--json", action="store_true", help="print one JSON object")
    erase_user = users.add_parser("erase", parents=[common], help="erase a user's personal "
                                  "data for good (deleting them first): cannot be undone")
    erase_user.add_argument("user_id")
    erase_user.add_argument("--yes", action="store_true", required=True,
                            help="confirm: the data cannot be brought back")

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="action", required=True)
    keys.add_parser("rotate", parents=[common], help="sign with the keys published at the last "
                    "rotation and publish the next ones")
    withdraw = keys.add_parser("withdraw", parents=[common], help="take a leaked key out of "
                               "service at once: out of the JWKS, its tokens invalid")
    withdraw.add_argument("kid")

    secret_key = sub.add_parser("secret-key", help="the secret key (BASTION_SECRET_KEY)"
                                ).add_subparsers(dest="action", required=True)
    rekey = secret_key.add_parser(
        "rotate", parents=[common], allow_abbrev=False,  # no --old-secret-key VALUE as a file
        help="encrypt the stored signing keys and queued mail again, from the old secret key "
        "(BASTION_OLD_SECRET_KEY or --old-secret-key-file) to BASTION_SECRET_KEY")
    rekey.add_argument("--old-secret-key-file", metavar="PATH",
                       help="read the old secret key from this file (else from the "
                       "environment, BASTION_OLD_SECRET_KEY)")
    # Refused, without repeating the value: argv is public (ps, shell history).
    rekey.add_argument("--old-secret-key", type=_not_in_argv, help=argparse.SUPPRESS)
    rekey.add_argument("old_secret_key_value", nargs="?", type=_not_in_argv,
                       help=argparse.SUPPRESS)

    purge = sub.add_parser("purge", parents=[common], help="delete expired codes, tokens, links, "
                           "sessions and sent mail now (servers do it every "
                           "housekeeping_interval)")
    purge.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name, value in vars(args).items():
        if name in _PATHS:  # any bytes make a path: Python keeps them as they are
            continue
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and not utf8(text):
                print(f"error: {name.replace('_', '-')} is not valid UTF-8", file=sys.stderr)
                return 2  # as argparse for a usage error
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        from bastion.server.services.errors import ServiceError
        from bastion.server.settings import load_settings
    except ModuleNotFoundError as exc:
        print(f"error: {exc.name} is missing; install the server: pip install 'bastion[server]'",
              file=sys.stderr)
        return 1
    try:
        settings = load_settings(database_url=args.database_url, data_dir=args.data_dir,
                                 issuer=getattr(args, "issuer", None))
        if settings.log_format == "json":
            from bastion.server import logs

            logs.json_lines()
        if args.command == "serve":
            return _serve(args, settings)
        _check_database_named(settings)
        code = _run(_COMMANDS[(args.command, getattr(args, "action", None))](args, settings))
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not as Python exits
        return code
    except BrokenPipeError:  # a closed database connection is never one (asyncpg, SQLite)
        return _reader_gone()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        message = _failure(exc)
        if message is None:
            raise
        print(f"error: {_without_password(message, args)}", file=sys.stderr)
        return 1


#: Arguments that name files: not stored as text, so any bytes will do.
_PATHS = {"data_dir", "old_secret_key_file"}


def _reader_gone() -> int:
    """Stop quietly, with the status of a command killed by SIGPIPE, as other commands
    do when the reader of their output goes away."""
    import signal

    # What is left in the buffer would fail again when Python flushes it at exit.
    with contextlib.suppress(OSError, ValueError):  # ValueError: stdout is no file
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _without_password(message: str, args: argparse.Namespace) -> str:
    """Belt and braces: no driver is known to repeat the database URL, but it may hold
    a password and must not reach the terminal."""
    for url in (args.database_url, os.environ.get("BASTION_DATABASE_URL")):
        if url and url.strip():  # blank: no URL (else every space became ***)
            message = message.replace(url.strip(), "***")  # as the settings took it
    return message


def _failure(exc: Exception) -> str | None:
    """One line for what an operator can fix (settings, database, files), without the
    values given: a setting or a database URL may hold a secret. ``None``: a bug."""
    import tomllib

    import alembic.util
    import sqlalchemy.exc
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from bastion.server.keys import KeyDecryptionError
    from bastion.server.storage.database_url import BadDatabaseURL
    from bastion.server.storage.migrate import MigrationError

    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"])
            text = error["msg"].removeprefix("Value error, ")
            problems.append(f"{field}: {text}" if field else text)
        return "; ".join(problems)
    if isinstance(exc, SettingsError | KeyDecryptionError | BadDatabaseURL | MigrationError):
        return str(exc)
    if isinstance(exc, alembic.util.CommandError):
        return f"the database cannot be migrated: {str(exc).splitlines()[0]}"
    if isinstance(exc, tomllib.TOMLDecodeError):
        return f"the config file (BASTION_CONFIG_FILE) is not valid TOML: {exc}"
    if isinstance(exc, sqlalchemy.exc.ArgumentError):
        return "the database URL (--database-url, BASTION_DATABASE_URL) is not valid"
    if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
        cause = getattr(exc, "orig", None) or exc
        while cause.__cause__ is not None:  # SQLAlchemy's asyncpg adapter wraps asyncpg's
            cause = cause.__cause__
        # The driver's message names the database, role or file, not the password.
        first = next(iter(str(cause).strip().splitlines()), "")
        return f"the database cannot be used: {type(cause).__name__}" + (
            f": {first}" if first else "")
    if isinstance(exc, ModuleNotFoundError):
        return (f"module {exc.name} is not installed: install the server, pip install "
                "'bastion[server]', and for a database other than SQLite or PostgreSQL "
                "its async driver")
    if isinstance(exc, OSError):
        if exc.filename:  # the data directory, the secret key file, the database file
            return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
        # asyncpg's connection errors come unwrapped: refused, timed out, unknown host
        return f"the database cannot be reached: {type(exc).__name__}: {exc}"
    return None


def _check_database_named(settings: Any) -> None:
    """Refuse to create the default database where no setting names one: run from
    cron (no ``BASTION_*`` variables, another directory) a command would make a new
    database and secret key, do its work there and exit 0."""
    from pydantic_settings import SettingsError

    if not settings.names_database and not settings.default_database.exists():
        raise SettingsError(
            f"no database is configured and there is none at "
            f"{settings.default_database.resolve()}: set BASTION_DATABASE_URL "
            "(--database-url), or BASTION_DATA_DIR (--data-dir) for a SQLite database")


def _run(coro: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await coro
    return asyncio.run(wrapped())


async def _with_storage(settings: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    from bastion.server.storage import migrate, open_storage

    _check_database_file_name(settings)
    storage = open_storage(settings.resolved_database_url, pool_size=1)
    try:
        await migrate.upgrade(storage.engine)
        await _secret_key_without_white_space(storage, settings)
        return await work(storage)
    finally:
        await storage.close()


def _check_database_file_name(settings: Any) -> None:
    """Releases before this one kept the white space around the database URL (a
    newline, from a secret made from a file): a SQLite file was named with it. Refuse
    to start a new, empty database beside it."""
    import sqlalchemy as sa
    from pydantic_settings import SettingsError

    given = settings.database_url_as_given()
    if given is None:
        return
    try:
        old, new = sa.make_url(given), sa.make_url(settings.database_url)
    except (ValueError, sa.exc.ArgumentError):
        return  # no URL, then: database_url.check says so
    if (new.get_backend_name() == "sqlite" and old.database and new.database
            and old.database != new.database and os.path.exists(old.database)
            and not os.path.exists(new.database)):
        raise SettingsError(
            f"the database URL (--database-url, BASTION_DATABASE_URL) ends in white space, "
            f"which releases before this one kept in the file's name: the database is "
            f"{old.database!r}. Stop every instance and rename it (and its -wal and -shm "
            f"files, if any) to {new.database}")


async def _secret_key_without_white_space(storage: Any, settings: Any) -> None:
    """Releases before this one used the secret key with the white space around it (a
    newline, from a secret made from a file): encrypt what the store holds under that
    again under the key without it, as ``bastion secret-key rotate`` would. The key as
    given is tried, and the key with a newline after it: the secret may have been
    fixed since."""
    from bastion.server.keys import KeyCipher, KeyDecryptionError
    from bastion.server.services import audit, secret_key

    if settings.secret_key is None:  # (a development key is read without white space)
        return

    def opens(cipher: KeyCipher, key: Any) -> bool:
        try:
            cipher.decrypt(key.kid, key.private_key_enc)
        except KeyDecryptionError:
            return False
        return True

    used = settings.secret_key_bytes()
    cipher = KeyCipher(used)
    closed = [k for k in await storage.signing_keys() if not opens(cipher, k)]
    if not closed:
        return
    for before in dict.fromkeys(filter(None, (settings.secret_key_as_given(), used + b"\n",
                                              used + b"\r\n"))):
        if any(opens(KeyCipher(before), k) for k in closed):
            break
    else:
        return  # under another key: a command that uses them says so
    try:
        done = await secret_key.rotate(storage, settings, before)
    except secret_key.SecretKeyError as exc:
        raise secret_key.SecretKeyError(
            "the stored signing keys are encrypted under BASTION_SECRET_KEY with white "
            "space around it, which this release leaves out, and could not be encrypted "
            f"again without it: {exc}") from None
    await audit.record(storage, audit.SYSTEM, "secret_key.rotate", None, via="cli",
                       keys=done.keys, mail=done.mail, white_space=True)
    log.warning("the stored signing keys were encrypted under BASTION_SECRET_KEY with the "
                "white space around it (a trailing newline), which this release leaves out: "
                "encrypted %d signing key(s) and %d queued mail(s) again under the key "
                "without it. Session cookies made before stop working: users sign in again",
                done.keys, done.mail)


async def _migrate(_args: argparse.Namespace, settings: Any) -> int:
    from bastion.server.storage import migrate

    async def work(storage: Any) -> int:
        print(f"database at revision {await migrate.current_revision(storage.engine)}")
        return 0

    return await _with_storage(settings, work)


async def _clients_create(args: argparse.Namespace, settings: Any) -> int:
    from bastion.server.services import audit
    from bastion.server.services.clients import create_client

    async def create(storage: Any) -> Any:
        new = await create_client(
            storage, name=args.name, public=args.public, redirect_uris=args.redirect_uris,
            grant_types=args.grant_types, scopes=args.scopes,
            post_logout_redirect_uris=args.post_logout_redirect_uris,
            backchannel_logout_uri=args.backchannel_logout_uri)
        await audit.record(storage, audit.SYSTEM, "client.create", new.client.client_id,
                           via="cli", grant_types=list(new.client.grant_types),
                           scopes=list(new.client.scopes))
        return new

    new = await _with_storage(settings, create)
    _print_client(new.client, new.client_secret, as_json=args.json)
    return 0


def _print_client(client: Any, secret: str | None = None, *, as_json: bool) -> None:
    from bastion.server.services.clients import previous_secret_until

    out: dict[str, Any] = {"client_id": client.client_id, "name": client.name,
                           "public": client.is_public,
                           "grant_types": list(client.grant_types),
                           "redirect_uris": list(client.redirect_uris),
                           "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
                           "scopes": list(client.scopes)}
    if client.backchannel_logout_uri:
        out["backchannel_logout_uri"] = client.backchannel_logout_uri
    if until := previous_secret_until(client):
        out["previous_secret_expires_at"] = until.isoformat()
    if secret:
        out["client_secret"] = secret
    if as_json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key}: {' '.join(value) if isinstance(value, list) else value}")
    if secret:
        print("The secret is shown once; store it now.")


async def _clients_list(args: argparse.Namespace, settings: Any) -> int:
    async def every(storage: Any) -> list[Any]:
        found: list[Any] = []
        while True:
            page, total = await storage.list_clients(100, len(found))
            found += page
            if not page or len(found) >= total:
                return found

    for n, client in enumerate(await _with_storage(settings, every)):
        if not args.json and n:
            print()
        _print_client(client, as_json=args.json)
    return 0


async def _clients_rotate_secret(args: argparse.Namespace, settings: Any) -> int:
    from bastion.server.services import audit
    from bastion.server.services.clients import rotate_secret

    async def rotate(storage: Any) -> Any:
        new = await rotate_secret(storage, args.client_id, args.keep_old_for)
        await audit.record(storage, audit.SYSTEM, "client.secret.rotate", args.client_id,
                           via="cli", keep_old_for=args.keep_old_for)
        return new

    new = await _with_storage(settings, rotate)
    _print_client(new.client, new.client_secret, as_json=args.json)
    if not args.json:
        print("running servers take the change within their cache_ttl "
              f"(BASTION_CACHE_TTL; {settings.cache_ttl:g} s here)")
    return 0


async def _clients_delete(args: argparse.Namespace, settings: Any) -> int:
    from bastion.server.services import audit
    from bastion.server.services.clients import delete_client

    async def delete(storage: Any) -> bool:
        deleted = await delete_client(storage, args.client_id)
        if deleted:
            await audit.record(storage, audit.SYSTEM, "client.delete", args.client_id,
                               via="cli")
        return deleted

    if await _with_storage(settings, delete):
        print(f"deleted client {args.client_id} and revoked its tokens; running servers "
              f"refuse it within their cache_ttl (BASTION_CACHE_TTL; {settings.cache_ttl:g} s "
              "here)")
    else:
        print(f"client {args.client_id} was deleted before")
    return 0


async def _users_create(args: argparse.Namespace, settings: Any) -> int:
    from bastion.server.services import audit
    from bastion.server.services.passwords import Passwords
    from bastion.server.services.users import audited, create_user

    try:
        password: str | None = sys.stdin.readline().rstrip("\r\n")
    except UnicodeDecodeError:  # stdin decoded strictly (outside the C locale)
        password = None
    if password is None or not utf8(password):
        print("error: the password on standard input is not valid UTF-8", file=sys.stderr)
        return 1
    if not password:  # create_user takes "no password" to mean a passwordless account
        print("error: no password on standard input", file=sys.stderr)
        return 1
    async def create(storage: Any) -> Any:
        user = await create_user(storage, Passwords(settings), username=args.username,
                                 email=args.email, password=password,
                                 is_administrator=args.admin,
                                 email_verified=args.email_verified)
        await audit.record(storage, audit.SYSTEM, "user.create", user.id, via="cli",
                           **audited(user))
        return user

    user = await _with_storage(settings, create)
    if args.json:
        print(json.dumps({"id": user.id, "username": user.username, "email": user.email,
                          "email_verified": user.email_verified_at is not None,
                          "is_administrator": user.is_administrator}))
    else:
        print(f"created user {user.username} ({user.id})")
    return 0


async def _users_erase(args: argparse.Namespace, settings: Any) -> int:
    from bastion.server.services import audit
    from bastion.server.services.users import erase_user

    async def erase(storage: Any) -> Any:
        user = await erase_user(storage, args.user_id)
        await audit.record(storage, audit.SYSTEM, "user.erase", user.id, via="cli")
        return user

    await _with_storage(settings, erase)
    print(f"erased user {args.user_id}; the apps it was signed in to are told by a "
          "running server")
    return 0


async def _keys_rotate(_args: argparse.Namespace, settings: Any) -> int:
    from datetime import UTC, datetime, timedelta

    from bastion.server import keys
    from bastion.server.services import audit

    async def rotate(storage: Any) -> tuple[list[str], set[str]]:
        # next keys relying parties have surely seen: published longer ago than they
        # may cache the JWKS
        seen = datetime.now(UTC) - timedelta(seconds=keys.JWKS_MAX_AGE)
        waiting = {k.kid for k in await storage.signing_keys()
                   if k.activated_at is None and k.retired_at is None and k.created_at <= seen}
        signing = await keys.rotate(storage, settings)
        await audit.record(storage, audit.SYSTEM, "keys.rotate", None, via="cli", kids=signing)
        return signing, waiting

    kids, waiting = await _with_storage(settings, rotate)
    print("signing keys now: " + ", ".join(kids))
    if fresh := [k for k in kids if k not in waiting]:
        print(f"{', '.join(fresh)}: new, as no next key was stored or it was published "
              f"less than {keys.JWKS_MAX_AGE} s ago: relying parties that cache the JWKS "
              "may refuse its tokens until they fetch it again")
    print(f"running servers start signing with them within {keys.RELOAD_BOUND:g} s; "
          "the next keys are published now, and old public keys stay published until "
          "their tokens expire")
    return 0


async def _keys_withdraw(args: argparse.Namespace, settings: Any) -> int:
    from bastion.server import keys
    from bastion.server.services import audit

    async def withdraw(storage: Any) -> list[str]:
        signing = await keys.withdraw(storage, settings, args.kid)
        await audit.record(storage, audit.SYSTEM, "keys.withdraw", args.kid, via="cli",
                           kids=signing)
        return signing

    kids = await _with_storage(settings, withdraw)
    print(f"withdrew {args.kid}; signing keys now: {', '.join(kids)}")
    print(f"running servers drop it within {keys.RELOAD_BOUND:g} s, relying parties when "
          "they fetch the JWKS again (the SDK: within its jwks_max_age)")
    return 0


async def _secret_key_rotate(args: argparse.Namespace, settings: Any) -> int:
    from bastion.server.services import audit, secret_key

    olds = _old_secret_keys(args)

    async def rotate_from(storage: Any, old: bytes) -> Any:
        done = await secret_key.rotate(storage, settings, old)
        await audit.record(storage, audit.SYSTEM, "secret_key.rotate", None, via="cli",
                           keys=done.keys, mail=done.mail)
        return done

    async def rotate(storage: Any) -> Any:
        for old in olds[:-1]:
            with contextlib.suppress(secret_key.SecretKeyError):  # it wrote nothing
                return await rotate_from(storage, old)
        return await rotate_from(storage, olds[-1])

    done = await _with_storage(settings, rotate)
    if done.keys or done.mail:
        print(f"encrypted {done.keys} signing key(s) and {done.mail} queued mail(s) again "
              "under the new secret key")
    else:
        print("nothing to change: every stored signing key and queued mail is under the "
              "new secret key already")
    print("Next:\n"
          "- Running servers keep signing with the keys they loaded already, under the old "
          "secret key, but open no key made from now on. Restart every instance with the "
          "new BASTION_SECRET_KEY now.\n"
          "- Then run this command once more: it moves the mail that instances still on "
          "the old secret key queued meanwhile.\n"
          "- Every session cookie and CSRF token made under the old secret key stops "
          "working on the restarted instances: users sign in again.\n"
          "- Tokens issued already stay valid: the signing keys are the same ones. If the "
          "private keys may have leaked too, withdraw them (bastion keys withdraw; see "
          "docs/deployment.md).")
    return 0


def _old_secret_keys(args: argparse.Namespace) -> list[bytes]:
    """The old secret key without the white space around it, as every secret key is
    taken; then as given, where that differs: releases before this one used
    BASTION_SECRET_KEY so (a backup from then is under it)."""
    from pathlib import Path

    from bastion.server.services.secret_key import SecretKeyError

    given = os.environ.get("BASTION_OLD_SECRET_KEY")
    if args.old_secret_key_file is not None:
        if given is not None:
            raise SecretKeyError("the old secret key is given twice: use either "
                                 "BASTION_OLD_SECRET_KEY or --old-secret-key-file")
        try:
            given = Path(args.old_secret_key_file).read_bytes().decode()
        except UnicodeDecodeError:
            raise SecretKeyError(f"{args.old_secret_key_file} is not valid UTF-8") from None
    if given is None:
        raise SecretKeyError("no old secret key: set BASTION_OLD_SECRET_KEY or use "
                             "--old-secret-key-file PATH (and BASTION_SECRET_KEY to the new one)")
    if not utf8(given):
        raise SecretKeyError("BASTION_OLD_SECRET_KEY is not valid UTF-8")
    return [key.encode() for key in dict.fromkeys((given.strip(), given))]


async def _purge(args: argparse.Namespace, settings: Any) -> int:
    from bastion.server.services import housekeeping

    gone = await _with_storage(settings, lambda storage: housekeeping.purge(storage, settings))
    if args.json:
        print(json.dumps(gone))
    else:
        print("deleted " + (", ".join(f"{count} {kind}" for kind, count in sorted(gone.items()))
                            or "nothing: no row was due"))
    return 0


_COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace, Any], Awaitable[int]]] = {
    ("migrate", None): _migrate,
    ("clients", "create"): _clients_create,
    ("clients", "list"): _clients_list,
    ("clients", "rotate-secret"): _clients_rotate_secret,
    ("clients", "delete"): _clients_delete,
    ("users", "create"): _users_create,
    ("users", "erase"): _users_erase,
    ("keys", "rotate"): _keys_rotate,
    ("keys", "withdraw"): _keys_withdraw,
    ("secret-key", "rotate"): _secret_key_rotate,
    ("purge", None): _purge,
}


def _serve(args: argparse.Namespace, settings: Any) -> int:
    from pydantic_settings import SettingsError

    from bastion.server.demo import ensure_demo
    from bastion.server.keys import KeyRing, check_signing
    from bastion.server.settings import check_issuer

    if not settings.issuer and _wildcard(args.host):
        # Discovery would send browsers and apps to http://0.0.0.0:PORT.
        raise SettingsError(f"--host {args.host} listens on every address, but is no address "
                            "a browser or an app can reach: set BASTION_ISSUER (or --issuer) "
                            "to the public URL, e.g. https://id.example.com")
    issuer = settings.issuer or f"http://{_address(args.host, args.port)}"
    try:
        check_issuer(issuer)
    except ValueError as exc:  # from --host: a given issuer was checked with the settings
        raise SettingsError(f"--host: {exc}; or set BASTION_ISSUER") from None
    settings = settings.model_copy(update={"issuer": issuer})
    for warning in settings.development_warnings():
        log.warning("DEVELOPMENT DEFAULT: %s", warning)

    async def prepare(storage: Any) -> None:
        await check_signing(storage, settings)
        await KeyRing(storage, settings).ensure()
        if args.demo:
            await ensure_demo(storage, settings)

    _run(_with_storage(settings, prepare))
    # Workers are separate processes: they read their settings from the environment.
    os.environ["BASTION_ISSUER"] = issuer
    if settings.database_url:  # else they find the default database as this did
        os.environ["BASTION_DATABASE_URL"] = settings.database_url
    os.environ["BASTION_DATA_DIR"] = str(settings.data_dir)
    made = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics here; a scrape of any worker adds them up.
        import tempfile

        made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bastion-metrics-")
    try:
        _uvicorn(args, settings, issuer)
    finally:
        if made is not None:
            import shutil

            shutil.rmtree(made, ignore_errors=True)
    return 0


def _wildcard(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _address(host: str, port: int) -> str:
    """``host:port`` as in a URL: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _uvicorn(args: argparse.Namespace, settings: Any, issuer: str) -> None:
    import uvicorn

    from bastion.server.logs import uvicorn_log_config

    log.info("Bastion listening on %s (issuer %s)", _address(args.host, args.port), issuer)
    uvicorn.run(
        "bastion.server.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        access_log=args.access_log,
        log_config=uvicorn_log_config(settings.log_format),
        log_level="info",
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        server_header=False,
        http="bastion.server.http_protocol:HttpProtocol",  # one send per response
        ws="none",  # no WebSocket routes: an Upgrade is a plain request, logged redacted
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    sys.exit(main())
