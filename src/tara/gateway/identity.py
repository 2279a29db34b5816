"""Student ids leave the gateway only as a keyed hash.

The hash is HMAC-SHA256 under ``auth.student_hash_key``: stable across
replicas and restarts (so the interaction log and the upstream's ``user``
field can group a student's requests), useless without the key.
"""

from __future__ import annotations

import hashlib
import hmac


class StudentHasher:
    """Turns a raw student id into its HMAC-SHA256 hex digest."""

    __slots__ = ("_base",)

    def __init__(self, key: str) -> None:
        # Keying once and copying per call skips re-deriving the HMAC pads each time.
        self._base = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)

    def __call__(self, student_id: str) -> str:
        """The hex digest of ``student_id``."""
        mac = self._base.copy()
        mac.update(student_id.encode("utf-8", "surrogateescape"))
        return mac.hexdigest()
