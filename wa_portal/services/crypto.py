"""AES-256-GCM envelope for secrets at rest, under a key ring that can rotate.

``ENCRYPTION_KEYS`` is a comma list of ``kid:base64(32 bytes)``: the first key encrypts,
every key decrypts. A token is ``v1:<kid>:<base64(nonce || ciphertext+tag)>``; the
associated data binds a token to its purpose so it cannot be pasted into another column.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class CryptoError(Exception):
    """A key ring is malformed, or a token cannot be decrypted with it."""


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        keys: list[tuple[str, bytes]] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            kid, sep, b64 = part.partition(":")
            if not sep or not kid:
                raise CryptoError("ENCRYPTION_KEYS entries look like kid:base64key")
            try:
                key = base64.b64decode(b64, validate=True)
            except binascii.Error as exc:
                raise CryptoError(f"key {kid!r} is not valid base64") from exc
            if len(key) != 32:
                raise CryptoError(f"key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
            keys.append((kid, key))
        if not keys:
            raise CryptoError("ENCRYPTION_KEYS holds no key")
        return cls(tuple(keys))

    @property
    def primary_kid(self) -> str:
        return self.keys[0][0]

    def encrypt(self, plaintext: bytes, *, aad: str) -> str:
        kid, key = self.keys[0]
        nonce = os.urandom(12)
        ct = AESGCM(key).encrypt(nonce, plaintext, aad.encode())
        return f"v1:{kid}:{base64.b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str, *, aad: str) -> bytes:
        try:
            version, kid, b64 = token.split(":", 2)
        except ValueError:
            raise CryptoError("not an encrypted token") from None
        if version != "v1":
            raise CryptoError(f"unknown token version {version!r}")
        key = dict(self.keys).get(kid)
        if key is None:
            raise CryptoError(f"no key {kid!r} in ENCRYPTION_KEYS")
        raw = base64.b64decode(b64)
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], aad.encode())
        except InvalidTag:
            raise CryptoError("token does not decrypt (wrong key or tampered)") from None

    def needs_rotation(self, token: str) -> bool:
        return not token.startswith(f"v1:{self.primary_kid}:")


_cache: dict[str, KeyRing] = {}


def key_ring(spec: str | None = None) -> KeyRing:
    if spec is None:
        from flask import current_app

        spec = current_app.config["ENCRYPTION_KEYS"]
    ring = _cache.get(spec)
    if ring is None:
        ring = _cache[spec] = KeyRing.parse(spec)
    return ring
