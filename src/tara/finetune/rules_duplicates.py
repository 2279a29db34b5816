"""Duplicate rules: exact and near-duplicate examples, remembered in fixed memory.

Texts are compared as their case-folded words, so spacing and case do not
make two examples different. *Exact* duplicates share a 64-bit BLAKE2b
fingerprint of those words. *Near* duplicates are found with MinHash locality-sensitive hashing over
word bigrams: each bigram gets a CRC-32, the hash range is cut into
``bands`` equal parts, and the ``rows`` smallest hashes in each part (a
bottom-k sketch, taken by bisecting the sorted set, with no Python loop
over the shingles) make that band's key. Two texts share a band's key with
probability about ``J ** rows`` for bigram Jaccard similarity ``J``; they
are near duplicates when any band matches. With the default 4×8 that is
89% of pairs at J = 0.9, 52% at 0.8, and 4·J⁸ per pair below that (1e-5
at 0.2): a corpus of many answers that are all somewhat alike (a fixed
greeting, one template) needs more rows. Texts with few bigrams are only
checked for exact duplicates.

Memory bound: every key goes into one Bloom filter of ``dedup_memory_mb``
bytes with three probes per key, allocated up front and never grown. After
``n`` examples (``1 + bands`` keys each) a new key is wrongly taken as seen
with probability about ``(1 - e^(-3k/m))^3`` for ``k`` keys in ``m`` bits —
32 MB holds a million examples at 0.02% per key; the manifest reports the estimate for the run.
Keys include the language×subject combination, so combinations are
de-duplicated independently and the first occurrence (in log order) wins.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from bisect import bisect_left
from collections.abc import Sequence

EXACT_DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"

_PROBES = 3
_MASK64 = (1 << 64) - 1
_MIN_BAND = 3
"""A band holding fewer bigrams than this gives no key (too easy to match by chance)."""


class BloomFilter:
    """A fixed-size set of 64-bit keys that may answer "seen" for a key it never saw."""

    def __init__(self, memory_bytes: int) -> None:
        bits = 1 << max(6, (memory_bytes * 8).bit_length() - 1)
        self._bits = bytearray(bits >> 3)
        self._mask = bits - 1
        self.size_bits = bits
        self.keys = 0

    def _probes(self, key: int) -> tuple[int, int, int, int, int, int]:
        mask, step = self._mask, (key >> 32) | 1
        p1, p2, p3 = key & mask, (key + step) & mask, (key + 2 * step) & mask
        return p1 >> 3, 1 << (p1 & 7), p2 >> 3, 1 << (p2 & 7), p3 >> 3, 1 << (p3 & 7)

    def add(self, key: int) -> bool:
        """Insert ``key``; return whether it was (probably) present already."""
        bits = self._bits
        i1, b1, i2, b2, i3, b3 = self._probes(key)
        if bits[i1] & b1 and bits[i2] & b2 and bits[i3] & b3:
            return True
        bits[i1] |= b1
        bits[i2] |= b2
        bits[i3] |= b3
        self.keys += 1
        return False

    def __contains__(self, key: int) -> bool:
        bits = self._bits
        i1, b1, i2, b2, i3, b3 = self._probes(key)
        return bool(bits[i1] & b1 and bits[i2] & b2 and bits[i3] & b3)

    def contains_any(self, keys: Sequence[int]) -> bool:
        """Whether any of ``keys`` is (probably) present; one call for a text's band keys."""
        bits, mask = self._bits, self._mask
        for key in keys:
            step = (key >> 32) | 1
            p = key & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                continue
            p = (key + step) & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                continue
            p = (key + 2 * step) & mask
            if bits[p >> 3] & (1 << (p & 7)):
                return True
        return False

    def false_positive_rate(self) -> float:
        """Estimated chance that an unseen key is taken as seen, at the current fill."""
        return (1.0 - math.exp(-_PROBES * self.keys / self.size_bits)) ** _PROBES


def words_of(text: str) -> list[bytes]:
    """The words duplicate checks compare: case-folded, UTF-8, split on whitespace."""
    return text.casefold().encode("utf-8", "surrogatepass").split()


def exact_key(combination: bytes, words: list[bytes]) -> int:
    """64-bit fingerprint of a text's words within its combination (at most 16 bytes)."""
    digest = hashlib.blake2b(b"\x1f".join(words), digest_size=8, person=combination).digest()
    return int.from_bytes(digest, "big")


class NearDuplicateSketch:
    """Band keys of a text's MinHash LSH signature for a given shape."""

    def __init__(self, bands: int, rows: int, min_shingles: int) -> None:
        self._bounds = [(j * (1 << 32)) // bands for j in range(bands + 1)]
        self._rows = rows
        self._min_shingles = min_shingles

    def band_keys(self, combination: bytes, words: list[bytes]) -> list[int]:
        """One key per band; empty for texts with too few bigrams to judge."""
        if len(words) <= self._min_shingles:
            return []
        # crc32(b, crc32(a)) is the CRC of a + b: bigram hashes without building bigrams.
        shingles = sorted(set(map(zlib.crc32, words[1:], map(zlib.crc32, words))))
        salt = zlib.crc32(combination)
        rows, bounds = self._rows, self._bounds
        keys: list[int] = []
        start = 0
        for band in range(1, len(bounds)):
            end = bisect_left(shingles, bounds[band], start)
            if end - start >= _MIN_BAND:
                # Tuples of ints hash alike in every process (no string-hash randomisation).
                row = (salt, band, *shingles[start : min(end, start + rows)])
                keys.append((hash(row) * 0x9E3779B97F4A7C15) & _MASK64)
            start = end
        return keys


class Deduplicator:
    """Remembers what it has kept and names the duplicate rule a new example breaks."""

    def __init__(self, memory_bytes: int, sketch: NearDuplicateSketch) -> None:
        self.seen = BloomFilter(memory_bytes)
        self._sketch = sketch

    def check(self, combination: bytes, words: list[bytes]) -> str | None:
        """``None`` for a new example (now remembered), else the duplicate rule's name."""
        return self.check_keys(
            exact_key(combination, words), self._sketch.band_keys(combination, words)
        )

    def check_keys(self, exact: int, bands: Sequence[int]) -> str | None:
        """:meth:`check` for keys computed beforehand (perhaps in another process)."""
        seen = self.seen
        if seen.add(exact):
            return EXACT_DUPLICATE
        if seen.contains_any(bands):
            return NEAR_DUPLICATE
        for k in bands:
            seen.add(k)
        return None
