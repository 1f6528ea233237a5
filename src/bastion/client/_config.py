"""The options of one connection, validated once, with every default here.

Unknown options and options of the wrong type raise ``ConfigurationError``
naming the option; so does a call that needs an option left unset
(``client_credentials`` without ``client_id``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from bastion.oauth.jose import ALGORITHMS

from .exceptions import ConfigurationError

__all__ = ["Settings"]

_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
#: Shortest ``state_key``, in UTF-8 bytes: it must be random, not a passphrase.
MIN_STATE_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Settings:
    #: The issuer URL; discovery documents are read below it.
    url: str
    #: The OAuth client; required for token, introspection and revocation calls.
    client_id: str | None = None
    #: The client's secret; ``None`` for a public client.
    client_secret: str | None = field(default=None, repr=False)
    #: Where the provider sends the browser back (authorization code flow).
    redirect_uri: str | None = None
    #: Key that signs and encrypts the self-contained OAuth state: random text of
    #: at least 32 bytes, e.g. ``secrets.token_urlsafe(32)``.
    state_key: str | None = field(default=None, repr=False)
    #: Seconds per request (connect, read, write and pool each); more than 0.
    timeout: float = 10.0
    #: Check the server's TLS certificate. Turn off only for local development.
    verify_ssl: bool = True
    #: Follow HTTP redirects (OAuth endpoints should not redirect).
    allow_redirects: bool = False
    #: Retries after the first attempt, for requests safe to repeat.
    retries: int = 2
    #: Audience ``verify_token`` expects; ``None`` means the issuer URL.
    audience: str | None = None
    #: Clock skew tolerated on exp, nbf and iat, in seconds.
    leeway: float = 30.0
    #: Signature algorithms ``verify_token`` accepts (never ``none`` or HMAC).
    algorithms: tuple[str, ...] = ALGORITHMS
    #: Minimum seconds between two JWKS fetches caused by an unknown ``kid``.
    jwks_refresh_interval: float = 60.0
    #: Longest seconds a fetched JWKS is trusted before it is fetched again (the
    #: provider's ``Cache-Control: max-age`` may shorten it): a key the provider
    #: stops publishing stops verifying here within this time.
    jwks_max_age: float = 300.0
    #: Longest seconds keys past ``jwks_max_age`` go on serving while they cannot be
    #: fetched again (the provider is down or out of reach); then they are dropped and
    #: verification fails until a fetch succeeds. ``None``: no limit.
    jwks_max_stale: float | None = 3600.0
    #: Seconds before expiry at which a cached access token is replaced (at most half
    #: the lifetime of a token the SDK obtained).
    refresh_margin: float = 30.0
    #: Force a token endpoint auth method; ``None`` picks from the metadata.
    token_endpoint_auth_method: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, name: str = "") -> Settings:
        where = f" in connection {name!r}" if name else ""
        known = {f.name for f in fields(cls)}
        for option in options:
            if option not in known:
                raise ConfigurationError(f"unknown option {option!r}{where}")
        if options.get("url") is None:
            raise ConfigurationError(f"missing required option 'url'{where}")
        values = dict(options)
        if isinstance(values.get("algorithms"), list):
            values["algorithms"] = tuple(values["algorithms"])
        if isinstance(values.get("timeout"), int) and not isinstance(values["timeout"], bool):
            values["timeout"] = float(values["timeout"])
        settings = cls(**values)
        settings._check(where)
        return settings

    def _check(self, where: str) -> None:
        def bad(option: str, expected: str) -> ConfigurationError:
            return ConfigurationError(f"option {option!r}{where} must be {expected}")

        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise bad("url", "an http(s) URL")
        if parts.query or parts.fragment:
            raise bad("url", "an issuer URL without query or fragment")
        if parts.username is not None or parts.password is not None:  # repr() shows the URL
            raise bad("url", "an issuer URL without a user name or password")
        for option in ("client_id", "client_secret", "redirect_uri", "state_key", "audience"):
            if not isinstance(getattr(self, option), str | None):
                raise bad(option, "a string")
        key = self.state_key
        if key is not None and len(key.encode("utf-8")) < MIN_STATE_KEY_BYTES:
            # Nothing slows a guess (HKDF is fast), so the key itself must be strong.
            raise ConfigurationError(
                f"option 'state_key'{where} must be at least {MIN_STATE_KEY_BYTES} bytes of"
                " random text; make one with"
                ' python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        for option in ("verify_ssl", "allow_redirects"):
            if not isinstance(getattr(self, option), bool):
                raise bad(option, "True or False")
        # 0 is not "no timeout" to httpx2: every request would time out at once.
        if not seconds_ok(self.timeout) or self.timeout == 0:
            raise bad("timeout", "a positive number of seconds")
        for option in ("leeway", "jwks_refresh_interval", "jwks_max_age", "refresh_margin"):
            if not seconds_ok(getattr(self, option)):
                raise bad(option, "a non-negative number")
        if self.jwks_max_stale is not None and not seconds_ok(self.jwks_max_stale):
            raise bad("jwks_max_stale", "a non-negative number or None")
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise bad("retries", "a non-negative integer")
        if not self.algorithms or not all(alg in ALGORITHMS for alg in self.algorithms):
            raise bad("algorithms", f"a non-empty list from {', '.join(ALGORITHMS)}")
        method = self.token_endpoint_auth_method
        if method is not None and method not in _AUTH_METHODS:
            raise bad("token_endpoint_auth_method", " or ".join(_AUTH_METHODS))

    @property
    def issuer(self) -> str:
        return self.url.rstrip("/")

    def require(self, option: str, purpose: str) -> str:
        """The value of a string option a call needs, or ``ConfigurationError``."""
        value = getattr(self, option)
        if not value:
            raise ConfigurationError(f"option {option!r} is required for {purpose}")
        return str(value)


def seconds_ok(value: object) -> bool:
    """A finite, non-negative number of seconds (``nan < 0`` is false: a NaN leeway
    would let every expired token through)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def check_leeway(leeway: float) -> float:
    """A per-call ``leeway``, or ``ConfigurationError``."""
    if not seconds_ok(leeway):
        raise ConfigurationError("leeway must be a non-negative number of seconds")
    return leeway
