"""The sealed OAuth state: round trip, tampering anywhere, expiry, keys, issuer, replay."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sdk_fakes import CLIENT_ID, ISSUER, REDIRECT_URI, STATE_KEY

from bastion import InvalidStateError, MemoryReplayStore
from bastion.client.state import (
    MAX_STATE_LENGTH,
    AuthorizationState,
    derive_key,
    seal,
    unseal,
)
from bastion.oauth.jose import b64url_decode, b64url_encode

KEY = derive_key(STATE_KEY)
NOW = 1_800_000_000.0


def make_state(**changes: Any) -> AuthorizationState:
    state = AuthorizationState.new(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        code_verifier="v" * 64,
        now=NOW,
        expiration=600,
        nonce="n-123",
        openid=True,
    )
    return replace(state, **changes)


def reseal(payload: Any, key: bytes = KEY) -> str:
    """A state sealed correctly around an arbitrary plaintext (malformed contents)."""
    nonce = os.urandom(12)
    data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    return "v1." + b64url_encode(nonce + AESGCM(key).encrypt(nonce, data, b"v1"))


def test_round_trip_keeps_every_field() -> None:
    state = make_state()
    sealed = seal(state, KEY)
    assert sealed.startswith("v1.") and len(sealed) < 1024
    assert unseal(sealed, KEY, NOW + 1) == state


def test_max_age_round_trips_and_a_state_sealed_without_it_opens() -> None:
    from dataclasses import asdict

    with_age = make_state(max_age=300)
    assert unseal(seal(with_age, KEY), KEY, NOW).max_age == 300
    state = make_state()
    payload = asdict(state)
    del payload["max_age"]  # sealed by a release before max_age was kept
    assert unseal(reseal(payload), KEY, NOW) == state


def test_sealed_text_reveals_nothing_and_differs_each_time() -> None:
    state = make_state(code_verifier="SECRETVERIFIER" + "x" * 50)
    first, second = seal(state, KEY), seal(state, KEY)
    assert first != second  # a fresh nonce each time
    for text in (first, second):
        raw = b64url_decode(text[3:])
        assert b"SECRETVERIFIER" not in raw and ISSUER.encode() not in raw
    assert "SECRETVERIFIER" not in repr(state) and "n-123" not in repr(state)


def test_every_flipped_character_is_refused() -> None:
    """Prefix, nonce, ciphertext and tag: any change anywhere fails."""
    sealed = seal(make_state(), KEY)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(sealed):
        other = alphabet[(alphabet.index(char) + 1) % 64] if char in alphabet else "w"
        tampered = sealed[:i] + other + sealed[i + 1 :]
        with pytest.raises(InvalidStateError):
            unseal(tampered, KEY, NOW)


def test_every_flipped_bit_of_the_body_is_refused() -> None:
    sealed = seal(make_state(), KEY)
    raw = bytearray(b64url_decode(sealed[3:]))
    for i in range(len(raw)):
        for bit in (0x01, 0x80):
            raw[i] ^= bit
            with pytest.raises(InvalidStateError, match=r"tampered|another key"):
                unseal("v1." + b64url_encode(bytes(raw)), KEY, NOW)
            raw[i] ^= bit


def test_truncated_extended_and_spliced_states_are_refused() -> None:
    sealed = seal(make_state(), KEY)
    other = seal(make_state(issuer="https://other.example"), KEY)
    candidates = [
        sealed[:-1],
        sealed[:20],
        sealed + "A",
        sealed + "AA",
        sealed[:40] + other[40:],  # nonce of one, ciphertext of another
        "v2" + sealed[2:],
        sealed[3:],
    ]
    for text in candidates:
        with pytest.raises(InvalidStateError):
            unseal(text, KEY, NOW)


@pytest.mark.parametrize(
    "text",
    [None, "", 42, "v1", "v1.", "v1.!!!!", "v1.AAAA", "v1." + "A" * MAX_STATE_LENGTH, "x.y.z"],
)
def test_malformed_inputs_are_refused(text: Any) -> None:
    with pytest.raises(InvalidStateError):
        unseal(text, KEY, NOW)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        [],
        {},
        {"id": "x"},
        {"id": 1, "issuer": ISSUER},
    ],
)
def test_well_sealed_but_malformed_contents_are_refused(payload: Any) -> None:
    with pytest.raises(InvalidStateError, match="malformed"):
        unseal(reseal(payload), KEY, NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [("expires_at", "soon"), ("expires_at", True), ("openid", 1), ("nonce", 5), ("id", None),
     ("max_age", "60"), ("max_age", True), ("max_age", 1.5)],
)
def test_fields_of_the_wrong_type_are_refused(field: str, value: Any) -> None:
    from dataclasses import asdict

    payload = asdict(make_state())
    payload[field] = value
    with pytest.raises(InvalidStateError, match="malformed"):
        unseal(reseal(payload), KEY, NOW)


def test_expiry_is_checked() -> None:
    sealed = seal(make_state(), KEY)
    assert unseal(sealed, KEY, NOW + 599)
    with pytest.raises(InvalidStateError, match="expired"):
        unseal(sealed, KEY, NOW + 600)


def test_another_key_is_refused() -> None:
    sealed = seal(make_state(), KEY)
    with pytest.raises(InvalidStateError, match="another key"):
        unseal(sealed, derive_key(STATE_KEY + "!"), NOW)


def test_key_derivation_is_stable_and_needs_a_key() -> None:
    assert derive_key(STATE_KEY) == KEY and len(KEY) == 32
    assert derive_key("other") != KEY
    with pytest.raises(InvalidStateError):
        derive_key("")


def test_memory_replay_store_claims_once_and_forgets_expired_ids() -> None:
    now = [NOW]
    store = MemoryReplayStore(clock=lambda: now[0])
    assert store.claim("a", NOW + 10) is True
    assert store.claim("a", NOW + 10) is False
    assert store.claim("b", NOW + 10) is True
    now[0] = NOW + 11  # expired: the state itself is refused by now
    assert store.claim("a", NOW + 20) is True
    for i in range(1100):
        store.claim(f"old{i}", NOW + 12)
    now[0] = NOW + 13
    store.claim("new", NOW + 100)
    assert len(store) < 1100  # expired ids are pruned
