"""``at_hash`` (OpenID Connect Core 3.1.3.6), one function for the server and the SDK.

The expected values are the published vectors of the oidc-token-hash library that
node-oidc-provider and openid-client share; EdDSA (Ed25519) hashes with SHA-512."""

from __future__ import annotations

import pytest

from bastion.client.id_token import at_hash
from bastion.oauth.jose import ALGORITHMS, token_hash

TOKEN = "YmJiZTAwYmYtMzgyOC00NzhkLTkyOTItNjJjNDM3MGYzOWIy9sFhvH8K_x8UIHj1osisS57f5DduL"
SHA256 = "xsZZrUssMXjL3FBlzoSh2g"
SHA384 = "adt46pcdiB-l6eTNifgoVM-5AIJAxq84"
SHA512 = "p2LHG4H-8pYDc0hyVOo3iIHvZJUqe9tbj3jESOuXbkY"
EXPECTED = {"ES256": SHA256, "RS256": SHA256, "PS256": SHA256, "ES384": SHA384,
            "RS384": SHA384, "RS512": SHA512, "EdDSA": SHA512}


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_token_hash_matches_the_published_vectors(alg: str) -> None:
    assert token_hash(TOKEN, alg) == EXPECTED[alg]


def test_the_sdk_checks_with_the_same_function() -> None:
    assert at_hash is token_hash
