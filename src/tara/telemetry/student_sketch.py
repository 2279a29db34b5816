"""Distinct students of a window bucket, as the memory store keeps them.

Window stats count requests by adding; distinct students do not add (a
student asking in two buckets is one student), so each bucket keeps a sketch
of the students it saw and a read takes the union of its buckets' sketches.
The Redis store uses Redis's own HyperLogLog; :class:`StudentSketch` gives the
memory store the same precision.

Its registers are a ``bytearray``: counting a student (every request, on the
gateway) is plain Python, and numpy (~16 MiB of RSS) is loaded only by the
reads that merge and count sketches (the controller, the admin API), never
by serving.
"""

from __future__ import annotations

import hashlib
import math


class StudentSketch:
    """Distinct students of a bucket: exact while few, then a HyperLogLog.

    The Redis store uses Redis's own HyperLogLog (``PFADD``/``PFCOUNT``); this
    one serves the memory store with the same precision: 2**14 registers, a
    standard error of 0.81%. Up to :attr:`EXACT_UP_TO` names it keeps their
    64-bit hashes and counts exactly. Sketches merge by union.
    """

    __slots__ = ("_hashes", "_registers")

    PRECISION = 14
    EXACT_UP_TO = 256

    def __init__(self) -> None:
        self._hashes: set[int] | None = set()
        self._registers: bytearray | None = None

    @staticmethod
    def hash(name: str) -> int:
        """The 64-bit hash a name is counted by."""
        digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def add(self, name: str) -> None:
        """Count ``name`` (again is harmless)."""
        self._add_hash(self.hash(name))

    def _add_hash(self, h: int) -> None:
        if self._hashes is not None:
            self._hashes.add(h)
            if len(self._hashes) > self.EXACT_UP_TO:
                self._densify()
            return
        assert self._registers is not None
        rest_bits = 64 - self.PRECISION
        rest = h & ((1 << rest_bits) - 1)
        rank = rest_bits - rest.bit_length() + 1
        index = h >> rest_bits
        if rank > self._registers[index]:
            self._registers[index] = rank

    def _densify(self) -> None:
        hashes, self._hashes = self._hashes or set(), None
        self._registers = bytearray(1 << self.PRECISION)
        for h in hashes:
            self._add_hash(h)

    def merge(self, other: StudentSketch) -> None:
        """Add every student of ``other`` into this sketch."""
        if other._hashes is not None:
            for h in other._hashes:
                self._add_hash(h)
            return
        if self._registers is None:
            self._densify()
        assert self._registers is not None
        assert other._registers is not None
        import numpy as np

        mine = np.frombuffer(self._registers, dtype=np.uint8)  # a writable view
        np.maximum(mine, np.frombuffer(other._registers, dtype=np.uint8), out=mine)

    def count(self) -> int:
        """Distinct students added, exact up to :attr:`EXACT_UP_TO`, estimated beyond."""
        if self._hashes is not None:
            return len(self._hashes)
        assert self._registers is not None
        import numpy as np

        registers = np.frombuffer(self._registers, dtype=np.uint8)
        m = registers.size
        zeros = int(np.count_nonzero(registers == 0))
        if zeros:
            linear = m * math.log(m / zeros)  # small counts: linear counting is more exact
            if linear <= 2.5 * m:
                return round(linear)
        harmonic = float(np.sum(np.exp2(-registers.astype(np.float64))))
        return round(0.7213 / (1 + 1.079 / m) * m * m / harmonic)
