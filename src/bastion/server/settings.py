"""Server settings: one class, every field documented where its default is defined.

Sources, highest first: keyword arguments, ``BASTION_*`` environment variables,
the TOML file named by ``BASTION_CONFIG_FILE`` (keys are the field names),
then the defaults below.

Development defaults (a generated ``secret_key``, an ``http`` issuer) are fine on a
laptop and log a loud warning; with ``environment = "production"`` they are refused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import secrets
import tempfile
import time
from email.utils import getaddresses
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from bastion.server.text import utf8

MIN_SECRET_KEY_LENGTH = 32
SHORT_SECRET_KEY = (
    f"the secret key must be at least {MIN_SECRET_KEY_LENGTH} characters of random text; make "
    'one with python -c "import secrets; print(secrets.token_urlsafe(48))"')

log = logging.getLogger("bastion")
ISSUER_EXAMPLE = "e.g. https://id.example.com (a path may follow)"
#: The longest issuer: with it, the largest token a registration allows stays within the
#: 16 KiB Bastion and its SDK accept (``tests/server/test_token_size.py``).
MAX_ISSUER_LENGTH = 500

SECRET_KEY_FILE = "secret_key"
DATABASE_FILE = "bastion.db"
#: Settings whose surrounding white space is dropped: none is part of a key, a URL
#: or a login.
STRIPPED = ("secret_key", "database_url", "smtp_username", "smtp_password")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="forbid")

    environment: Literal["development", "production"] = Field(
        "development",
        description="'production' refuses development defaults (generated secret key, "
        "plain-http issuer) instead of warning about them.",
    )
    data_dir: Path = Field(
        Path("bastion-data"),
        description="Directory for the default SQLite database and the development "
        "secret key. Relative paths are taken from the working directory. Empty: the "
        "default. Unless this or database_url is set, only `bastion serve` creates the "
        "database; the other commands refuse to start without one.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL: 'postgresql+asyncpg://user:pw@host/db' or "
        "'sqlite+aiosqlite:////path/bastion.db' (a file: no other driver, no in-memory "
        "database). Default: a SQLite file 'bastion.db' in data_dir (WAL mode).",
    )
    issuer: str | None = Field(
        None,
        description="The issuer URL that tokens carry and discovery advertises: http(s), "
        "a host, an optional port and path; no query, fragment or user. Default: "
        "http://<host>:<port> of `bastion serve`.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Encrypts private signing keys and queued mail at rest and signs session "
        "and CSRF cookies (at least 32 characters of random text; keep it out of the database "
        "backups). Every instance on one database needs the same value; change it with "
        "`bastion secret-key rotate`. Default in development: generated once into "
        "data_dir/secret_key (0600).",
    )
    access_token_ttl: int = Field(
        600, ge=30, le=86400, description="Access token lifetime in seconds."
    )
    id_token_ttl: int = Field(3600, ge=30, le=86400, description="ID token lifetime in seconds.")
    refresh_token_ttl: int = Field(
        30 * 86400, ge=60, description="Refresh token lifetime in seconds."
    )
    refresh_token_max_lifetime: int | None = Field(
        None, ge=60, description="Seconds after the user signed in when a token family ends, "
        "however often it is refreshed (every refresh token expires by then): the user "
        "signs in again. Unset: a family lives as long as it is refreshed within "
        "refresh_token_ttl."
    )
    authorization_code_ttl: int = Field(
        60, ge=10, le=600, description="Authorization code lifetime in seconds."
    )
    access_token_audience: str | None = Field(
        None,
        description="The 'aud' of access tokens when the request names no resource. "
        "Default: the issuer.",
    )
    access_token_alg: Literal["ES256", "ES384", "RS256", "PS256", "EdDSA"] = Field(
        "ES256", description="Signing algorithm of new access-token keys."
    )
    id_token_alg: Literal["RS256", "ES256", "PS256"] = Field(
        "RS256", description="Signing algorithm of new ID-token keys. Keep RS256 unless "
        "every app accepts the other: it is OpenID Connect's default, the one every "
        "provider must offer, and many libraries accept nothing else by default."
    )
    cache_ttl: float = Field(
        5.0,
        ge=0,
        le=300,
        description="Seconds an instance trusts its in-memory copy of clients (and of "
        "signing keys, which it reads again every second at most). A client change made "
        "elsewhere (the CLI, another instance) takes effect here within this time. 0 "
        "disables the cache.",
    )
    password_hash_memory_kib: int = Field(
        19456, ge=8192, description="argon2id memory cost in KiB (OWASP: 19 MiB)."
    )
    password_hash_time_cost: int = Field(2, ge=1, description="argon2id iterations (OWASP: 2).")
    password_hash_parallelism: int = Field(1, ge=1, description="argon2id lanes (OWASP: 1).")
    session_ttl: int = Field(
        8 * 3600, ge=60, description="How long a sign-in at Bastion's pages lasts (seconds)."
    )
    session_idle_timeout: int = Field(
        0, ge=0, description="End a sign-in at Bastion's pages this many seconds after it was "
        "last used (an authorization it answers, the account page), within session_ttl; "
        "0: only session_ttl ends it. OWASP suggests 15 to 30 minutes where devices are "
        "shared."
    )
    login_delay_after: int = Field(
        3, ge=1, description="Failed sign-ins (per account or IP) before each further attempt "
        "must wait, doubling from 1 s up to 60 s."
    )
    login_lock_after: int = Field(
        10, ge=2, description="Failed sign-ins for one account before it is locked for "
        "login_lock_seconds. Per client IP the limit is ten times this."
    )
    login_lock_seconds: int = Field(
        900, ge=1, description="How long a locked account (or IP) must wait."
    )
    login_client_lock_after: int = Field(
        1000, ge=2, description="Failed password grants through one confidential client "
        "before that client's password grants are locked for login_lock_seconds. Its "
        "server calls for all its users from one address, so this budget replaces the "
        "per-IP one there (each account keeps its own limit). Ends with a lock, never "
        "delays; a count starts over an hour after its first failure, or when its lock ends."
    )
    smtp_host: str | None = Field(
        None,
        description="SMTP server for outgoing mail. Unset (or empty): mail is written to "
        "the log instead (development only; refused in production).",
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_tls: Literal["none", "starttls", "tls"] = Field(
        "starttls", description="'starttls' upgrades a plain connection, 'tls' connects over "
        "TLS (port 465), 'none' only for a local relay."
    )
    smtp_username: str | None = Field(None, description="SMTP login, if the server needs one.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_timeout: float = Field(15.0, gt=0, description="Seconds before an SMTP attempt fails.")
    mail_from: str = Field(
        "Bastion <no-reply@localhost>", description="The From header of every message."
    )
    sign_in_link_ttl: int = Field(
        900, ge=60, le=3600, description="How long an emailed sign-in link works (seconds)."
    )
    passwordless_signup: bool = Field(
        False, description="Create an account the first time an unknown address uses a "
        "sign-in link. Off: unknown addresses get no mail (and the same answer)."
    )
    link_limit_per_email: int = Field(
        5, ge=1, description="Sign-in links per address per hour (a browser that has "
        "signed in with the address has a count of its own); email-change links per new "
        "address and per account asking, counted apart."
    )
    link_limit_per_ip: int = Field(
        30, ge=1, description="Sign-in links requested per client IP per hour."
    )
    link_limit_per_client: int = Field(
        1000, ge=1, description="Sign-in links one confidential client may request per "
        "hour through POST /oauth/passwordless (its server asks for all its users, so "
        "this replaces the per-IP limit there; each address keeps its own)."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="IP addresses or networks (CIDR) of the reverse proxies whose "
        "X-Forwarded-For/-Proto headers are believed, e.g. [\"10.0.0.5\", \"10.1.0.0/16\"] "
        "(in the environment also 10.0.0.5,10.1.0.0/16). "
        "Name them: '*' (or 0.0.0.0/0) is refused, since behind a proxy that appends to "
        "X-Forwarded-For it would let clients pick their own address. Empty: the socket's "
        "peer is the client. Throttling and the audit log use this address.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per event; json: one JSON object per "
        "line (time, level, logger, message, request_id), for log collectors. Every line a "
        "request causes carries its id, sent back as X-Request-ID.",
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request body accepted on OAuth endpoints."
    )
    max_api_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted on the REST API "
        "(/api/): a larger one is refused with 413 before it is read or authenticated."
    )
    housekeeping_interval: int = Field(
        3600, ge=0, description="Seconds between purges of what no longer decides anything: "
        "codes, refresh tokens, revoked access-token ids, emailed links and sessions 25 hours "
        "after they expire (longer than any access token lives), grants nothing refers to "
        "any longer, signing keys 25 hours after they were retired, spent throttle counts, "
        "mail a week after it was sent or given up, and audit events older than "
        "event_retention_days. Every instance purges (the first time within five minutes "
        "of starting); 0: never, e.g. when `bastion purge` runs from cron instead."
    )
    event_retention_days: int | None = Field(
        None, ge=1, description="Days the audit log keeps an event; older ones are purged. "
        "Unset: kept for ever."
    )
    db_pool_size: int = Field(
        10, ge=1, description="Connections per instance in the PostgreSQL pool."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("BASTION_CONFIG_FILE")
        if config_file:
            if not Path(config_file).is_file():  # a typo would drop every setting in it
                raise SettingsError(f"BASTION_CONFIG_FILE {config_file} is not a file")
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            except UnicodeDecodeError:
                raise SettingsError(f"BASTION_CONFIG_FILE {config_file} is not valid UTF-8, "
                                    "as TOML must be") from None
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _blank_data_dir_is_unset(cls, values: Any) -> Any:
        # ``BASTION_DATA_DIR=`` made the working directory the data directory: the
        # database and the secret key landed wherever a command was run.
        if (isinstance(values, dict) and isinstance(values.get("data_dir"), str)
                and not values["data_dir"].strip()):
            return {k: v for k, v in values.items() if k != "data_dir"}
        return values

    @field_validator("*", mode="before")
    @classmethod
    def _text_is_utf8(cls, value: Any, info: ValidationInfo) -> Any:
        # Python keeps other bytes of the environment as lone surrogates, which failed
        # with a traceback where the value was encoded (the secret key, a database URL).
        # Any bytes make a file name, so data_dir takes them as they are.
        if info.field_name == "data_dir":
            return value
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, SecretStr):
                text = text.get_secret_value()
            if isinstance(text, str) and not utf8(text):
                raise ValueError("the value is not valid UTF-8")
        return value

    @field_validator("database_url", "issuer", "access_token_audience", "smtp_host",
                     "smtp_username", "smtp_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # ``BASTION_SMTP_HOST=`` (set, but empty) passed the production check while the
        # mailer took it for "no SMTP", and sign-in links went to the log.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator(*STRIPPED, mode="before")
    @classmethod
    def _without_surrounding_white_space(cls, value: Any) -> Any:
        # A Kubernetes secret made --from-file, or an env file written with echo, ends
        # with a newline that ``$(cat file)`` and data_dir/secret_key drop: the server and
        # the CLI used two secret keys, and a SQLite URL named a file ending in "\n".
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return value.strip() if isinstance(value, str) else value

    #: The secret key and database URL as given, where stripping dropped white space:
    #: what the releases before this one used (``secret_key_as_given``).
    _as_given: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_values_as_given(cls, values: Any,
                              handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        settings = handler(values)
        for name in ("secret_key", "database_url") if isinstance(values, dict) else ():
            given = values.get(name)
            if isinstance(given, SecretStr):
                given = given.get_secret_value()
            if isinstance(given, str) and given.strip() and given != given.strip():
                settings._as_given[name] = given
        return settings

    @field_validator("issuer")
    @classmethod
    def _issuer_is_a_url(cls, issuer: str | None) -> str | None:
        return None if issuer is None else check_issuer(issuer)

    @field_validator("access_token_audience")
    @classmethod
    def _audience_fits_a_token(cls, audience: str | None) -> str | None:
        if audience is not None and claim_length(audience) > MAX_ISSUER_LENGTH:
            raise ValueError(f"the audience is longer than {MAX_ISSUER_LENGTH} characters, "
                             "as a token carries it")
        return audience

    @field_validator("mail_from")
    @classmethod
    def _one_sender(cls, sender: str) -> str:
        # "Bastion" alone was MAIL FROM:<Bastion>, "a@b.c, root@x" a From of two: every
        # mail failed or went out malformed, and only the log said so.
        found = getaddresses([sender])
        local, _, domain = found[0][1].rpartition("@") if len(found) == 1 else ("", "", "")
        if not local or not domain or "@" in local or any(c in sender for c in "\r\n"):
            raise ValueError(f"{sender!r} is not one sender's address; write it as "
                             "'Name <no-reply@example.com>' or 'no-reply@example.com'")
        return sender

    @field_validator("secret_key")
    @classmethod
    def _secret_key_given(cls, key: SecretStr | None) -> SecretStr | None:
        # Shorter than MIN_SECRET_KEY_LENGTH is refused for a store's first keys only
        # (``keys.check_secret_key``): a store that has keys must keep opening them.
        if key is not None and not key.get_secret_value().strip():
            raise ValueError("the secret key is empty; " + SHORT_SECRET_KEY.removeprefix("the "))
        return key

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_listed(cls, value: Any) -> Any:
        # From the environment: a JSON list, or the addresses separated by commas
        # (BASTION_TRUSTED_PROXIES=10.0.0.5 was "error parsing value ... EnvSettingsSource").
        if not isinstance(value, str):
            return value
        if not value.lstrip().startswith("["):
            return [part for part in (p.strip() for p in value.split(",")) if part]
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("not a JSON list; write it as '[\"10.0.0.5\", "
                             "\"10.1.0.0/16\"]' or '10.0.0.5,10.1.0.0/16'") from None

    @field_validator("trusted_proxies")
    @classmethod
    def _explicit_proxies(cls, proxies: list[str]) -> list[str]:
        """Each proxy as an address or a network; '*' (and 0.0.0.0/0) trust anyone."""
        named = []
        for proxy in (p.strip() for p in proxies):
            try:
                network = ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                network = None
            if network is None or network.prefixlen == 0:
                raise ValueError(f"{proxy!r} is not the IP address or network "
                                 "of a proxy; name each one (e.g. '10.0.0.5' or '10.0.0.0/24'), "
                                 "'*' is not allowed")
            named.append(str(network) if "/" in proxy else str(network.network_address))
        return named

    @model_validator(mode="after")
    def _refuse_development_defaults(self) -> Settings:
        if self.environment == "production":
            if self.secret_key is None:
                raise ValueError("secret_key (BASTION_SECRET_KEY) must be set in production")
            if self.issuer is None or not self.issuer.startswith("https://"):
                raise ValueError("issuer (BASTION_ISSUER) must be an https URL in production")
            if self.smtp_host is None:
                raise ValueError("smtp_host (BASTION_SMTP_HOST) must be set in production")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return sqlite_url(self.default_database.resolve())

    @property
    def default_database(self) -> Path:
        """The SQLite file used when no database_url is set."""
        return self.data_dir / DATABASE_FILE

    @property
    def names_database(self) -> bool:
        """Whether a setting (argument, environment or config file) names the database:
        database_url, or data_dir for the default one. Else it is the default in the
        working directory, which may be a mistake (cron's empty environment)."""
        return bool(self.database_url) or "data_dir" in self.model_fields_set

    @property
    def audience(self) -> str:
        return self.access_token_audience or self.issuer_url

    @property
    def issuer_url(self) -> str:
        if not self.issuer:
            raise RuntimeError("issuer is not set (bastion serve sets it from --host/--port)")
        return self.issuer.rstrip("/")

    @property
    def issuer_path(self) -> str:
        """The issuer's path ("" for none, else like ``/tenant-a``): the pages' links,
        redirects and cookies live under it."""
        return urlsplit(self.issuer_url).path

    @property
    def cookie_suffix(self) -> str:
        """What the pages' cookie names end with: nothing at the root, else a tag of
        the issuer's path. A browser sends a cookie of ``/`` under every path too, so
        issuers on one host (one at the root, or a release whose cookies had ``Path=/``)
        would otherwise read one another's."""
        path = self.issuer_path
        return "-" + hashlib.sha256(path.encode()).hexdigest()[:8] if path else ""

    def cookie_name(self, base: str) -> str:
        """The name of the pages' cookie ``base``: tagged with the issuer's path, and
        for an https issuer prefixed so that a browser takes it from this host only.
        ``__Host-`` (at the root) keeps other hosts of the site, e.g. a compromised
        sibling subdomain, from setting it for this one; ``__Secure-`` (under a path,
        as ``__Host-`` needs ``Path=/``) at least keeps plain-http pages from it."""
        if not self.issuer_url.startswith("https://"):
            return base + self.cookie_suffix
        return ("__Secure-" if self.issuer_path else "__Host-") + base + self.cookie_suffix

    def secret_key_as_given(self) -> bytes | None:
        """``secret_key`` as given, with the white space around it that ``secret_key``
        leaves out (None where there was none): releases before this one used it so,
        and a store's keys may still be encrypted under it."""
        given = self._as_given.get("secret_key")
        return None if given is None else given.encode()

    def database_url_as_given(self) -> str | None:
        """``database_url`` as given, where white space around it was left out."""
        return self._as_given.get("database_url")

    def secret_key_bytes(self) -> bytes:
        """The secret key, generating a development one on first use."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / SECRET_KEY_FILE
        if not path.exists():
            self._generate_secret_key(path)
        key = _read_key(path)
        # Made a moment ago by another process where there are no hard links: it may
        # still be writing it (see _generate_secret_key). Wait for it, briefly.
        until = time.monotonic() + 2.0
        while len(key) < MIN_SECRET_KEY_LENGTH and time.monotonic() < until and (
                time.time() - path.stat().st_mtime < 10):
            time.sleep(0.05)
            key = _read_key(path)
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(f"{path}: {SHORT_SECRET_KEY}")
        return key.encode()

    def _generate_secret_key(self, path: Path) -> None:
        """Write a key beside ``path`` and link it into place: whole or not at all, and
        of processes starting together on a new data directory the first one's key
        stands (the others read it)."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd, written = tempfile.mkstemp(prefix=f".{SECRET_KEY_FILE}-", dir=self.data_dir)  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(written, path)
            except FileExistsError:
                return
            except OSError:  # no hard links here (some network and FUSE mounts)
                try:  # created and written in turn: a reader may see it empty meanwhile
                    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                           0o600), "w") as f:
                        f.write(key)
                except FileExistsError:
                    return
        finally:
            os.unlink(written)
        log.warning("generated a development secret key in %s", path)

    def development_warnings(self) -> list[str]:
        """What a production deployment must change; logged loudly at start."""
        warnings = []
        if (self.secret_key is not None
                and len(self.secret_key.get_secret_value()) < MIN_SECRET_KEY_LENGTH):
            warnings.append(f"secret_key is shorter than {MIN_SECRET_KEY_LENGTH} characters")
        if self.secret_key is None:
            warnings.append(
                f"secret_key is generated into {self.data_dir / SECRET_KEY_FILE}: "
                "set BASTION_SECRET_KEY for anything but a laptop"
            )
        if self.issuer and not self.issuer.startswith("https://"):
            warnings.append(f"issuer {self.issuer} is not https: tokens travel in clear")
        if not self.database_url:
            warnings.append("embedded SQLite database: use PostgreSQL for several instances")
        if self.smtp_host is None:
            warnings.append("no smtp_host: emails (sign-in links) are written to the log, "
                            "not sent")
        return warnings


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite file at ``path`` (absolute), which SQLAlchemy reads back as
    that path: in the database part it decodes %-escapes, and a '?' begins the query.
    (``sqlalchemy.URL.create`` renders the same, but fails on a path that is not
    UTF-8, which Python keeps as surrogates and SQLite opens as the bytes they were.)"""
    return "sqlite+aiosqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def claim_length(value: str) -> int:
    """The length of ``value`` in a token's claims, serialized with ASCII escapes."""
    return len(json.dumps(value)) - 2


def _read_key(path: Path) -> str:
    try:
        return path.read_bytes().decode().strip()
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not valid UTF-8: {SHORT_SECRET_KEY}") from None


def check_issuer(issuer: str) -> str:
    """``issuer`` if it is an http(s) URL with a host, and no query, fragment, user or
    white space: discovery publishes it and every token carries it, so a relying party
    compares it character for character (OpenID Connect Discovery 1.0, section 3). The
    message leaves out the value, as every settings message does."""
    if claim_length(issuer) > MAX_ISSUER_LENGTH:  # every token carries it (the constant)
        raise ValueError(f"the issuer is longer than {MAX_ISSUER_LENGTH} characters, as a "
                         "token carries it (a character not ASCII counts as 6)")
    if any(c.isspace() or not c.isprintable() for c in issuer):
        raise ValueError("the issuer must not contain spaces or control characters")
    if not issuer.startswith(("http://", "https://")):
        raise ValueError(f"the issuer must be an http or https URL, {ISSUER_EXAMPLE}")
    try:
        parts = urlsplit(issuer)
        if parts.port == 0:  # reading it raises for a port that is no number, or too large
            raise ValueError
    except ValueError:
        raise ValueError(f"the issuer's host or port is not valid, {ISSUER_EXAMPLE}") from None
    if not parts.hostname:
        raise ValueError(f"the issuer names no host, {ISSUER_EXAMPLE}")
    if "@" in parts.netloc:
        raise ValueError("the issuer must not carry a user name or password")
    if "?" in issuer or "#" in issuer:
        raise ValueError("the issuer must have no query (?) or fragment (#)")
    return issuer


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and config file, with explicit overrides on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
