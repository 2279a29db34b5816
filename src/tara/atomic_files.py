"""Writing a whole file so that readers see the old contents or the new, never half of either.

Trigger state, the fine-tuning run registry and the dataset and evaluation
reports are rewritten in place while other processes may read them, and a
crash mid-write must not leave a torn file (a lost run record would start a
second, paid fine-tuning job).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step, creating its directory if needed.

    The bytes go to a uniquely named temporary file in the same directory,
    are flushed to disk, and the file is renamed over ``path`` (atomic on
    POSIX); on any failure the temporary file is removed and ``path`` is
    left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
