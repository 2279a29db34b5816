"""Duplicate rules: the keys that find duplicate candidates.

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

Keys include the language×subject combination, so combinations are
de-duplicated independently.
"""

from __future__ import annotations

import hashlib
import zlib
from bisect import bisect_left

EXACT_DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"

_MASK64 = (1 << 64) - 1
_MIN_BAND = 3
"""A band holding fewer bigrams than this gives no key (too easy to match by chance)."""


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
        """One key per band, in band order (0 for a band with too few bigrams to give one);
        empty for texts with too few bigrams to judge."""
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
                keys.append((hash(row) * 0x9E3779B97F4A7C15) & _MASK64 or 1)
            else:
                keys.append(0)
            start = end
        return keys
