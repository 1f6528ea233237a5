"""Provider metadata: discovery URLs and reading the document."""

from __future__ import annotations

import pytest

from bastion.oauth.metadata import MetadataError, ProviderMetadata, discovery_urls


def test_discovery_urls_keep_the_issuer_path():
    assert discovery_urls("https://id.example/tenant/") == (
        "https://id.example/tenant/.well-known/openid-configuration",
        "https://id.example/.well-known/oauth-authorization-server/tenant",
    )
    assert discovery_urls("https://id.example")[1] == (
        "https://id.example/.well-known/oauth-authorization-server"
    )


def test_from_document_reads_known_fields_and_keeps_the_rest():
    doc = {
        "issuer": "https://id.example",
        "token_endpoint": "https://id.example/token",
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "custom": 1,
    }
    meta = ProviderMetadata.from_document(doc, expected_issuer="https://id.example/")
    assert meta.token_endpoint == "https://id.example/token"
    assert meta.endpoint("token_endpoint") == meta.token_endpoint
    assert meta.endpoint("revocation_endpoint") is None
    assert meta.endpoint("issuer") is None  # not an endpoint
    assert meta.raw["custom"] == 1


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"issuer": 5},
        {"issuer": "https://other.example"},
        {"issuer": "https://id.example", "token_endpoint": "/relative"},
        {"issuer": "https://id.example", "grant_types_supported": "client_credentials"},
    ],
)
def test_bad_documents(doc: dict[str, object]):
    with pytest.raises(MetadataError):
        ProviderMetadata.from_document(doc, expected_issuer="https://id.example")
