"""Secrets at rest in the log: AES-256-GCM under `FLAGS_SUBSCRIPTION_KEY`, bound to the stream they belong to.

A sealed value reads `v1.<base64url(nonce ‖ ciphertext ‖ tag)>`. The stream name is the associated
data, so a sealed value copied onto another subscription does not open. `SealError` is the one error.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SealError", "Sealer", "new_key"]

PREFIX = "v1."
NONCE_BYTES = 12


class SealError(Exception):
    """The key is unusable, or a sealed value does not open with it."""


def new_key() -> str:
    """A fresh key, as FLAGS_SUBSCRIPTION_KEY takes it."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


class Sealer:
    def __init__(self, key: str) -> None:
        try:
            raw = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SealError("FLAGS_SUBSCRIPTION_KEY is not base64") from exc
        if len(raw) != 32:
            raise SealError(f"FLAGS_SUBSCRIPTION_KEY must be 32 bytes, not {len(raw)}")
        self._aead = AESGCM(raw)

    def seal(self, plaintext: bytes, *, bound_to: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext, bound_to.encode())
        return PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, token: str, *, bound_to: str) -> bytes:
        if not token.startswith(PREFIX):
            raise SealError("not a sealed value")
        body = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound_to.encode())
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise SealError("the sealed value does not open with this key (another key, or tampered)") from exc
