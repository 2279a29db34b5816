"""``tara serve`` with tracemalloc on, for the soak benchmark's ``--tracemalloc``.

Starts tracing before the gateway imports anything, then runs ``tara serve``
with the given arguments. On SIGUSR1 it writes the 25 largest allocation
sites (by line, with their size and count) to the file named by
``TARA_SOAK_TRACEMALLOC_OUT`` as JSON, so the soak can take snapshots from
outside while the gateway serves. Each signal also keeps the whole snapshot
beside it (``<out>.<n>.snap``, :meth:`tracemalloc.Snapshot.dump`), so two
moments of one run can be compared with ``Snapshot.compare_to``.

Run: ``python bench/traced_serve.py --port 8080`` (the soak does this itself).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

TOP = 25
_taken = [0]


def dump(_signum: int, _frame: FrameType | None) -> None:
    """Write the largest allocation sites now (a signal handler)."""
    out = os.environ.get("TARA_SOAK_TRACEMALLOC_OUT")
    if not out:
        return
    snapshot = tracemalloc.take_snapshot()
    _taken[0] += 1
    snapshot.dump(f"{out}.{_taken[0]}.snap")
    stats = snapshot.statistics("lineno")
    top = [
        {"where": str(s.traceback[0]), "kib": round(s.size / 1024, 1), "count": s.count}
        for s in stats[:TOP]
    ]
    traced, _peak = tracemalloc.get_traced_memory()
    tmp = Path(out).with_suffix(".part")
    tmp.write_text(json.dumps({"traced_mib": traced / 2**20, "top": top}, indent=1))
    tmp.replace(out)


def main() -> int:
    """Trace, install the dump handler, run ``tara serve``."""
    tracemalloc.start(int(os.environ.get("TARA_SOAK_TRACEMALLOC_FRAMES", "1")))
    signal.signal(signal.SIGUSR1, dump)
    from tara.cli import main as tara_main

    return tara_main(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
