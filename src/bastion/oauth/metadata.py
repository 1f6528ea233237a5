"""Authorization server metadata: where to find it and how to read it.

OpenID Connect Discovery 1.0 section 4 puts the document at
``{issuer}/.well-known/openid-configuration``; RFC 8414 section 3 inserts the
well-known segment *before* the issuer's path. Both are tried, in that order.
Endpoint paths always come from the document, never from a guess.

RFC 8414: https://www.rfc-editor.org/rfc/rfc8414
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MetadataError", "ProviderMetadata", "discovery_urls", "normalize_issuer"]

OIDC_SUFFIX = "/.well-known/openid-configuration"
RFC8414_PREFIX = "/.well-known/oauth-authorization-server"


class MetadataError(ValueError):
    """The metadata document is unusable; the message names the field."""


def normalize_issuer(url: str) -> str:
    """The issuer without a trailing slash, the form issuers are compared in."""
    return url.rstrip("/")


def discovery_urls(issuer: str) -> tuple[str, str]:
    """The OpenID Connect and the RFC 8414 metadata URLs for ``issuer``."""
    issuer = normalize_issuer(issuer)
    parts = urlsplit(issuer)
    rfc8414 = urlunsplit((parts.scheme, parts.netloc, RFC8414_PREFIX + parts.path, "", ""))
    return issuer + OIDC_SUFFIX, rfc8414


def _optional_url(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise MetadataError(f"metadata field {name!r} is not a URL")
    return value


def _string_list(document: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = document.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MetadataError(f"metadata field {name!r} is not a list of strings")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The fields the SDK uses; the whole document stays in ``raw``."""

    issuer: str
    token_endpoint: str | None = None
    jwks_uri: str | None = None
    authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None
    introspection_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    end_session_endpoint: str | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    grant_types_supported: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_document(
        cls, document: Mapping[str, Any], expected_issuer: str | None = None
    ) -> ProviderMetadata:
        """Read a metadata document, checking its issuer (RFC 8414 section 3.3)."""
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise MetadataError("metadata has no issuer")
        if expected_issuer is not None and normalize_issuer(issuer) != normalize_issuer(
            expected_issuer
        ):
            raise MetadataError("metadata issuer does not match the configured url")
        return cls(
            issuer=issuer,
            token_endpoint=_optional_url(document, "token_endpoint"),
            jwks_uri=_optional_url(document, "jwks_uri"),
            authorization_endpoint=_optional_url(document, "authorization_endpoint"),
            revocation_endpoint=_optional_url(document, "revocation_endpoint"),
            introspection_endpoint=_optional_url(document, "introspection_endpoint"),
            userinfo_endpoint=_optional_url(document, "userinfo_endpoint"),
            end_session_endpoint=_optional_url(document, "end_session_endpoint"),
            token_endpoint_auth_methods_supported=_string_list(
                document, "token_endpoint_auth_methods_supported"
            ),
            grant_types_supported=_string_list(document, "grant_types_supported"),
            scopes_supported=_string_list(document, "scopes_supported"),
            raw=dict(document),
        )

    def endpoint(self, name: str) -> str | None:
        """An endpoint URL by metadata field name (``"revocation_endpoint"``...)."""
        value = getattr(self, name, None) if name.endswith(("_endpoint", "_uri")) else None
        return value if isinstance(value, str) else None
