"""``tara serve`` with tracemalloc on, for the soak benchmark's ``--tracemalloc``.

Starts tracing before the gateway imports anything, then runs ``tara serve``
with the given arguments. On SIGUSR1 it writes the 25 largest allocation
sites (by line, with their size and count) to the file named by
``TARA_SOAK_TRACEMALLOC_OUT`` as JSON, so the soak can take snapshots from
outside while the gateway serves. Each signal also keeps the whole snapshot
beside it (``<out>.<n>.snap``, :meth:`tracemalloc.Snapshot.dump`), so two
moments of one run can be compared with ``Snapshot.compare_to``.
``TARA_SOAK_TRACEMALLOC_FRAMES`` is the traceback depth (1); ``0`` traces
nothing (tracing doubles the heap and changes how malloc fragments) and
writes only the census.

The census, in every dump, is what no allocation trace shows: glibc's
``mallinfo2`` (bytes in use and free inside malloc's arenas: free bytes
there are fragmentation RSS cannot give back), SQLite's own allocator
(``sqlite3_memory_used``, page cache included), the size of each memory-state
bound (found among the live objects) and the garbage collector's counts.

Run: ``python bench/traced_serve.py --port 8080`` (the soak does this itself).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

TOP = 25
_taken = [0]
_telemetry: list[Any] = []
"""The gateway's telemetry (its bounded parts), kept when built: the census reads it.
(``gc.get_objects`` cannot find it: the server freezes its start-up heap.)"""


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def census() -> dict[str, Any]:
    """Memory that allocation traces do not show, and how full each bound is."""
    out: dict[str, Any] = {}
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        out["malloc_mib"] = {
            "arena_brk_and_threads": info.arena / 2**20,
            "mmapped": info.hblkhd / 2**20,
            "in_use": info.uordblks / 2**20,
            "free_inside": info.fordblks / 2**20,
        }
    sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    out["sqlite_mib"] = sqlite.sqlite3_memory_used() / 2**20
    telemetry = _telemetry[0] if _telemetry else None
    if telemetry is not None:
        index, detector, store = telemetry.index, telemetry.detector, telemetry.store
        out["bounds"] = {
            "request_index": len(getattr(index, "_entries", ())),
            "retry_memory_questions": len(getattr(detector._memory, "_asks", ())),
            "retry_backlog": detector.pending,
            "window_buckets": len(store) if hasattr(store, "__len__") else None,
            "log_queue": len(telemetry.writer._pending),
        }
    out["gc_counts"] = gc.get_count()
    out["gc_frozen"] = gc.get_freeze_count()
    return out


def dump(_signum: int, _frame: FrameType | None) -> None:
    """Write the largest allocation sites and the census now (a signal handler)."""
    out = os.environ.get("TARA_SOAK_TRACEMALLOC_OUT")
    if not out:
        return
    result: dict[str, Any] = {"census": census()}
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        _taken[0] += 1
        snapshot.dump(f"{out}.{_taken[0]}.snap")
        stats = snapshot.statistics("lineno")
        result["top"] = [
            {"where": str(s.traceback[0]), "kib": round(s.size / 1024, 1), "count": s.count}
            for s in stats[:TOP]
        ]
        result["traced_mib"] = tracemalloc.get_traced_memory()[0] / 2**20
    tmp = Path(out).with_suffix(".part")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)


def main() -> int:
    """Trace (unless told not to), install the dump handler, run ``tara serve``."""
    frames = int(os.environ.get("TARA_SOAK_TRACEMALLOC_FRAMES", "1"))
    if frames > 0:
        tracemalloc.start(frames)
    signal.signal(signal.SIGUSR1, dump)
    from tara.cli import main as tara_main
    from tara.telemetry.pipeline import Telemetry

    built = Telemetry.__init__

    def keep(self: Any, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        _telemetry.append(self)

    Telemetry.__init__ = keep  # type: ignore[method-assign]

    return tara_main(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
