"""Leakage clusters: examples that must land in the same split, and the key of each.

A student who asks the same question again — retyped with other case,
spacing, punctuation or word order, or retried because the first answer did
not help (the gateway's user-retry detector matches questions the same way)
— gives examples whose answers teach the same thing. Were one in training
and another in test, the test split would measure memory, not
generalisation. So the examples of one student whose questions have the
same *set of normalised words* form one cluster, within a language×subject
combination, and the split (:mod:`tara.finetune.split`) keeps clusters whole.
Questions differing by a word are not joined: that would need every
student's questions in memory, and a cluster per student would make exact
shares impossible for heavy users.

An example without a student id (or without words in its question) is a
cluster of its own. Keys are BLAKE2b hashes keyed with the split seed: of the
student and question words for a cluster, of the request id for a lone
example, so the key says what a cluster is, never where it was in the log,
and examples with the same key are one cluster (memory: 8 bytes an example).
"""

from __future__ import annotations

import hashlib

from tara.telemetry.user_retries import normalise_question


def seed_key(seed: int) -> bytes:
    """The BLAKE2b key of a split seed."""
    return seed.to_bytes(16, "big", signed=True)


def cluster_key(
    key: bytes, combination: bytes, student: str | None, question: str, request_id: str
) -> int:
    """The 64-bit key of the example's cluster: examples with the same key form one."""
    words = sorted(set(normalise_question(question).split())) if student else []
    text = f"q\x1f{student}\x1f{' '.join(words)}" if words else f"r\x1f{request_id}"
    data = combination + text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "big")
