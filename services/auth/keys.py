"""API key material: generated once, shown once, stored only as a hash.

A key reads `fsk_<id>_<secret>`: the id (16 hex digits) finds the stored row,
the secret is 256 random bits. With that much entropy a plain SHA-256 of the
whole key is a safe verifier, and it is cheap enough for the evaluation hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "fsk"
_KEY_RE = re.compile(r"^fsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    token: str  # the full key: shown to its owner once, never stored

    @property
    def secret_hash(self) -> str:
        return hash_token(self.token)


def generate() -> NewKey:
    key_id = secrets.token_hex(8)
    return NewKey(key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}")


def parse_key_id(token: str) -> str | None:
    """The key id of a well-formed key, else None (malformed keys are refused unseen)."""
    match = _KEY_RE.match(token)
    return match.group(1) if match else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), secret_hash)
