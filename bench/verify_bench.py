"""How fast is ``Client.verify_token``? ES256 and RS256, against PyJWT, joserfc
and the raw ``cryptography`` signature check (the floor), in one run.

Every contender verifies the same RFC 9068 access token with a key parsed once
and cached; the SDK's JWKS is loaded before timing (through a MockTransport, so
no network). The libraries check what they check by default plus iss and aud;
the SDK also checks typ, exp, nbf and iat.

Run:  .venv/bin/python bench/verify_bench.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import timeit
from collections.abc import Callable
from typing import Any

import httpx2
import jwt as pyjwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, RSAKey

from bastion import Client
from bastion.oauth.jose import PrivateKey, b64url_decode

ISSUER = "https://bastion.example"


def make_token(key: PrivateKey) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": ISSUER,
        "client_id": "client-1",
        "scope": "read write",
        "iat": now,
        "exp": now + 3600,
        "jti": "7b0c1d2e3f",
    }
    return key.sign(claims, typ="at+jwt")


def sdk_client(key: PrivateKey) -> Client:
    documents = {
        "/.well-known/openid-configuration": {"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"},
        "/jwks": {"keys": [key.public_jwk()]},
    }

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=documents[request.url.path])

    return Client(url=ISSUER, transport=httpx2.MockTransport(handler))


def raw_floor(key: PrivateKey, token: str) -> Callable[[], Any]:
    """Only the signature operation, with every input already decoded."""
    signing_input, _, sig_b64 = token.encode().rpartition(b".")
    signature = b64url_decode(sig_b64)
    public = key.key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        algorithm = ec.ECDSA(hashes.SHA256())
        return lambda: public.verify(der, signing_input, algorithm)
    assert isinstance(public, rsa.RSAPublicKey)
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    return lambda: public.verify(signature, signing_input, pad, sha)


def contenders(alg: str) -> dict[str, Callable[[], Any]]:
    key = PrivateKey.generate("bench-" + alg.lower(), alg)
    token = make_token(key)
    jwk = key.public_jwk()

    client = sdk_client(key)
    client.verify_token(token)  # loads metadata and JWKS once

    pyjwt_key = pyjwt.PyJWK(jwk).key
    joserfc_key = (ECKey if alg.startswith("ES") else RSAKey).import_key(jwk)
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER}, aud={"essential": True, "value": ISSUER}
    )

    def joserfc_verify() -> Any:
        decoded = jose_jwt.decode(token, joserfc_key, algorithms=[alg])
        registry.validate(decoded.claims)
        return decoded.claims

    return {
        "bastion verify_token": lambda: client.verify_token(token),
        "PyJWT decode": lambda: pyjwt.decode(
            token, pyjwt_key, algorithms=[alg], audience=ISSUER, issuer=ISSUER
        ),
        "joserfc decode+validate": joserfc_verify,
        "cryptography (floor)": raw_floor(key, token),
    }


def ops_per_second(func: Callable[[], Any], seconds: float) -> float:
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    repeats = max(3, int(seconds / max(timer.timeit(number), 1e-9)))
    best = min(timer.repeat(repeat=min(repeats, 15), number=number))
    return number / best


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="rough time per contender")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for alg in ("ES256", "RS256"):
        results[alg] = {
            name: ops_per_second(func, args.seconds) for name, func in contenders(alg).items()
        }
    if args.json:
        print(json.dumps(results))
        return
    print(f"python {platform.python_version()} on {platform.machine()}, {cpu_model()}")
    for alg, row in results.items():
        floor = row["cryptography (floor)"]
        print(f"\n{alg}")
        for name, ops in row.items():
            print(f"  {name:26} {ops:>10,.0f} ops/s   {floor / ops:4.2f}x floor cost")


if __name__ == "__main__":
    main()
