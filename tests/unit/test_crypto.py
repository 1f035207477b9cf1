"""AES-256-GCM key ring: round trip, rotation, tamper and bad configuration."""

from __future__ import annotations

import base64

import pytest

from wa_portal.services.crypto import CryptoError, KeyRing

K1 = "k1:" + base64.b64encode(b"1" * 32).decode()
K2 = "k2:" + base64.b64encode(b"2" * 32).decode()


def test_round_trip_and_nonce_is_fresh():
    ring = KeyRing.parse(K1)
    a, b = ring.encrypt(b"token", aad="x"), ring.encrypt(b"token", aad="x")
    assert a != b and a.startswith("v1:k1:")
    assert ring.decrypt(a, aad="x") == b"token"
    assert b"token" not in a.encode()


def test_rotation_new_key_first_old_still_decrypts():
    old = KeyRing.parse(K1).encrypt(b"secret", aad="x")
    ring = KeyRing.parse(f"{K2},{K1}")
    assert ring.decrypt(old, aad="x") == b"secret"
    assert ring.needs_rotation(old)
    assert not ring.needs_rotation(ring.encrypt(b"secret", aad="x"))


@pytest.mark.parametrize("mutate", ["aad", "flip", "unknown-kid"])
def test_tampering_is_detected(mutate):
    ring = KeyRing.parse(K1)
    token = ring.encrypt(b"secret", aad="x")
    aad = "x"
    if mutate == "aad":
        aad = "y"
    elif mutate == "flip":
        raw = bytearray(base64.b64decode(token.split(":", 2)[2]))
        raw[-1] ^= 1
        token = "v1:k1:" + base64.b64encode(bytes(raw)).decode()
    else:
        token = token.replace("v1:k1:", "v1:zz:")
    with pytest.raises(CryptoError):
        ring.decrypt(token, aad=aad)


@pytest.mark.parametrize("spec", ["", "nokey", "k1:notbase64!!", "k1:" + base64.b64encode(b"short").decode()])
def test_bad_key_ring_is_refused(spec):
    with pytest.raises(CryptoError):
        KeyRing.parse(spec)
