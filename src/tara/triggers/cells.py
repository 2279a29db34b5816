"""A bounded table of cells (topics or grades of one language×subject) with an ``other`` bucket.

Topics and grades come from clients (or the lexicon), so their number is not
ours to choose; the reader keeps at most ``capacity`` named cells per
language×subject and folds the rest into ``other``. Which names keep a cell
is decided the Space-Saving way (Metwally et al., 2005): a new name, when
the table is full, takes the cell of the name counted least so far, whose
numbers move to ``other``, and starts counting from that name's count plus
one. A name with more than ``1 / capacity`` of the segment's requests
therefore always ends the pass with a cell of its own, whatever order the
requests came in, and memory is ``capacity + 1`` cells per segment. A cell's
numbers are exact from the moment it took its cell; what came before is in
``other``.
"""

from __future__ import annotations

from tara.triggers.model import CellStats
from tara.triggers.topics import OTHER


class CellTable:
    """At most ``capacity`` named cells and ``other``, for one language×subject."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._cells: dict[str, tuple[int, CellStats]] = {}
        """Name → (Space-Saving count, numbers since the name took its cell)."""
        self.other = CellStats()

    def cell(self, name: str) -> CellStats:
        """The cell to add one request of ``name`` into (``other`` for :data:`OTHER`)."""
        if name == OTHER:
            return self.other
        found = self._cells.get(name)
        if found is not None:
            count, stats = found
            self._cells[name] = (count + 1, stats)
            return stats
        count = 0
        if len(self._cells) >= self.capacity:
            victim = min(self._cells, key=lambda n: (self._cells[n][0], n))
            count, evicted = self._cells.pop(victim)
            self.other.merge(evicted)
            self.other.evictions += 1
        stats = CellStats()
        self._cells[name] = (count + 1, stats)
        return stats

    def cells(self) -> dict[str, CellStats]:
        """Every named cell that holds requests, then ``other`` if it does."""
        out = {name: stats for name, (_, stats) in sorted(self._cells.items()) if stats.requests}
        if self.other.requests:
            out[OTHER] = self.other
        return out
