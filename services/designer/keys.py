"""API key material: random, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid

KEY_PREFIX = "wp_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex
