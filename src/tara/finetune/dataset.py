"""The dataset on disk: chat-format JSONL lines, the spool, and the final split files.

While the log streams past, each example that passes the stateless rules is
serialised once and appended to one spool file, with its duplicate keys in
another. Only at the end is it known which examples are duplicates (the
best-rated one of a group is kept), which combinations have enough
interactions (``min_interactions``) and how each splits exactly, so
:func:`finalize` copies the spool into ``train.jsonl``, ``validation.jsonl``
and ``test.jsonl`` by a destination per example, hashing as it writes.
Disk holds the dataset twice for a moment. Examples keep the log's order,
so every combination is spread through each file.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson

from tara.finetune.split import SPLITS


def example_line(system: str, question: str, answer: str) -> bytes:
    """One training example in OpenAI chat format, as a JSONL line."""
    return (
        orjson.dumps(
            {
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
        + b"\n"
    )


class Spool:
    """Scratch files of a build: every screened example's line, and its duplicate keys.

    Example ``i`` is the ``i``-th line of ``examples.spool`` (log order); its
    byte offset is remembered so that duplicate resolution can read back a
    few lines. ``keys.spool`` holds ``width`` uint64 keys per example.
    """

    def __init__(self, directory: Path, width: int) -> None:
        self.directory = directory
        self.width = width
        self._lines: BinaryIO = self.lines_path.open("wb", buffering=1 << 20)
        self._keys: BinaryIO = self.keys_path.open("wb", buffering=1 << 20)
        self.offsets = array("Q")
        self._end = 0
        self._pending = array("Q")
        self._reader: BinaryIO | None = None

    @property
    def lines_path(self) -> Path:
        """Where the example lines are."""
        return self.directory / "examples.spool"

    @property
    def keys_path(self) -> Path:
        """Where the duplicate keys are."""
        return self.directory / "keys.spool"

    def write(self, line: bytes, keys: Sequence[int]) -> None:
        """Append one example line and its keys (at most ``width``)."""
        self._lines.write(line)
        self.offsets.append(self._end)
        self._end += len(line)
        pending = self._pending
        pending.extend(keys)
        if len(keys) < self.width:
            pending.extend(_ZEROS[: self.width - len(keys)])
        if len(pending) >= 1 << 16:
            pending.tofile(self._keys)
            del pending[:]

    def close(self) -> None:
        """Flush and close the scratch files (they are read back at the end of the build)."""
        self._pending.tofile(self._keys)
        del self._pending[:]
        self._lines.close()
        self._keys.close()

    def read(self, indexes: Iterable[int]) -> dict[int, bytes]:
        """The lines of some examples (after :meth:`close`)."""
        if self._reader is None:
            self._reader = self.lines_path.open("rb")
        f, out = self._reader, {}
        for i in sorted(set(indexes)):
            f.seek(self.offsets[i])
            out[i] = f.readline()
        return out

    def close_reader(self) -> None:
        """Close the file :meth:`read` keeps open."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


_ZEROS = array("Q", bytes(8 * 64))


@dataclass(slots=True)
class WrittenFile:
    """One output file: name, example count, size and SHA-256."""

    name: str
    examples: int = 0
    bytes: int = 0
    sha256: str = ""
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)


NOWHERE = 255
"""Destination of an example that goes to no file."""


def finalize(spool: Spool, destinations: np.ndarray, output_dir: Path) -> dict[str, WrittenFile]:
    """Copy spooled lines into the split files and return what was written.

    ``destinations[i]`` is the index in :data:`SPLITS` of the file example
    ``i`` goes to, or :data:`NOWHERE`. Files are written under temporary
    names and renamed into place, so a crash never leaves half a dataset.
    """
    written = [WrittenFile(f"{s}.jsonl") for s in SPLITS]
    outputs = [(output_dir / f"{s}.jsonl.tmp").open("wb", buffering=1 << 20) for s in SPLITS]
    try:
        with spool.lines_path.open("rb", buffering=1 << 20) as f:
            for line, target in zip(f, destinations.tolist(), strict=True):
                if target == NOWHERE:
                    continue
                outputs[target].write(line)
                out = written[target]
                out._digest.update(line)
                out.examples += 1
                out.bytes += len(line)
    finally:
        for f in outputs:
            f.close()
    for split, out in zip(SPLITS, written, strict=True):
        os.replace(output_dir / f"{split}.jsonl.tmp", output_dir / out.name)
        out.sha256 = out._digest.hexdigest()
    return dict(zip(SPLITS, written, strict=True))
