"""Duplicate rules: the keys that find duplicate candidates, and their fixed-size memory.

Texts are compared as their case-folded words (question, a separator, then
answer), so spacing and case do not make two examples different. *Exact*
duplicates share a 64-bit BLAKE2b fingerprint of those words. *Near*
duplicate candidates are found with locality-sensitive hashing over word
bigrams: each bigram gets a CRC-32, the hash range is cut into ``bands``
equal parts, and the ``rows`` smallest hashes in each part (a bottom-k
sketch, taken by bisecting the sorted set, with no Python loop over the
shingles) make that band's key. Two texts share a band's key when the
bigrams that fall in that part agree, which near duplicates' mostly do:
one edited word changes at most four bigrams, so it spoils at most four of
the default eight bands. Texts with few bigrams get no band keys and are
only checked for exact duplicates.

Keys only *nominate*: :mod:`tara.finetune.dedup` confirms every candidate
with the exact bigram Jaccard similarity before anything is dropped.

Memory bound: every key goes into one Bloom filter of ``dedup_memory_mb``
bytes with three probes per key, allocated up front and never grown. After
``n`` examples (``1 + bands`` keys each) a new key is wrongly taken as seen
with probability about ``(1 - e^(-3k/m))^3`` for ``k`` keys in ``m`` bits —
32 MB holds a million examples at 0.1% per key; such a false positive costs
one comparison, never an example. Keys include the language×subject
combination, so combinations are de-duplicated independently.
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

    def add_all(self, keys: Sequence[int]) -> bool:
        """Insert every key; whether any of them was (probably) present already.

        :meth:`add` inlined in one loop: a build calls this for every example.
        """
        bits, mask = self._bits, self._mask
        present = False
        added = 0
        for key in keys:
            step = (key >> 32) | 1
            p1, p2, p3 = key & mask, (key + step) & mask, (key + 2 * step) & mask
            i1, b1, i2, b2, i3, b3 = (
                p1 >> 3,
                1 << (p1 & 7),
                p2 >> 3,
                1 << (p2 & 7),
                p3 >> 3,
                1 << (p3 & 7),
            )
            if bits[i1] & b1 and bits[i2] & b2 and bits[i3] & b3:
                present = True
                continue
            bits[i1] |= b1
            bits[i2] |= b2
            bits[i3] |= b3
            added += 1
        self.keys += added
        return present

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
    """Remembers every key seen and says which examples may have a duplicate seen before."""

    def __init__(self, memory_bytes: int) -> None:
        self.seen = BloomFilter(memory_bytes)

    def observe(self, keys: Sequence[int]) -> bool:
        """Remember an example's keys (exact, then bands); whether any was (probably) seen."""
        return self.seen.add_all(keys)
