"""Sticky bucketing: which students see the canary.

A student's bucket is a keyed BLAKE2b hash of their id under the rollout's
salt, reduced to ``[0, BUCKETS)``. A student is in the canary iff their bucket
is below the weight in basis points, so raising the weight only ever adds
students, the answer is the same on every replica and after a restart (no
Python ``hash()``), and a new rollout (new salt) draws a fresh sample.
"""

from __future__ import annotations

import functools
import hashlib
import secrets

BUCKETS = 10_000
"""Weights are expressed in basis points of this many buckets."""


def _salt_key(salt: str) -> bytes:
    """The BLAKE2b key for a salt: the salt itself, or its digest if over 64 bytes.

    Truncating instead would give two long salts with a common prefix the
    same sample; hashing keeps every salt of up to 64 bytes (all that
    :func:`new_salt` makes) mapped exactly as before.
    """
    raw = salt.encode("utf-8", "surrogatepass")
    if len(raw) <= hashlib.blake2b.MAX_KEY_SIZE:
        return raw
    return hashlib.blake2b(raw, digest_size=hashlib.blake2b.MAX_KEY_SIZE).digest()


@functools.lru_cache(maxsize=64)
def _keyed(salt: str) -> hashlib.blake2b:
    """A BLAKE2b object keyed with ``salt``, copied per student (never updated itself).

    Keying one costs a compression of the padded key and the constructor's
    keyword parsing (~3.5k of a bucket's 11k instructions). Salts are one per
    rollout, so a small cache holds every live one.
    """
    return hashlib.blake2b(key=_salt_key(salt), digest_size=8)


def bucket(salt: str, student_id: str) -> int:
    """Return the student's bucket in ``[0, BUCKETS)`` for this salt."""
    h = _keyed(salt).copy()
    h.update(student_id.encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "big") % BUCKETS


def in_canary(salt: str, student_id: str, weight_bp: int) -> bool:
    """Whether the student falls in the canary at ``weight_bp`` basis points."""
    if weight_bp <= 0:
        return False
    if weight_bp >= BUCKETS:
        return True
    return bucket(salt, student_id) < weight_bp


def new_salt() -> str:
    """A fresh random salt for a new rollout."""
    return secrets.token_hex(16)


def percent_to_bp(percent: float) -> int:
    """Convert a percentage (10.0) to basis points (1000), clamped to the range."""
    return max(0, min(BUCKETS, round(percent * BUCKETS / 100)))
