"""API keys: making them, hashing them, and comparing them in constant time.

A source document holds only SHA-256 hashes of its API keys.  Each entry of
``api_keys`` is ``{"hash": <hex>, "expires_at": <datetime or None>}``; the
current key has no expiry, a rotated-out key keeps working until its expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from .sources import SourceConfig

API_KEY_PREFIX = "ptl_"
#: Random bytes in a key (256 bits: no dictionary to attack, so an unsalted hash is enough).
API_KEY_BYTES = 32
# Stands in for a key hash when the source does not exist (never matches a real key).
_DUMMY_HASHES: tuple[tuple[str, datetime | None], ...] = (("0" * 64, None),)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_BYTES)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_matches(token: str, source: SourceConfig | None, now: datetime) -> bool:
    """True if ``token`` is a live key of ``source``; no early exit on a match.

    ``None`` (no such source) is compared against a dummy hash, so a wrong key and an
    unknown source take the same path.
    """
    digest = hash_api_key(token)
    matched = False
    for stored, expires_at in source.key_hashes if source is not None else _DUMMY_HASHES:
        equal = hmac.compare_digest(digest, stored)
        live = expires_at is None or now < expires_at
        matched |= equal and live
    return matched and source is not None
