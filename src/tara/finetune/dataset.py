"""The dataset on disk: chat-format JSONL lines, the spool, and the final split files.

While the log streams past, each kept example is serialised once and
appended to a spool file for its split, tagged with its combination's
index. Only at the end is it known which combinations have enough
interactions (``min_interactions``) and enough kept examples to split, so
:func:`finalize` copies the spool into ``train.jsonl``, ``validation.jsonl``
and ``test.jsonl``, skipping excluded combinations and hashing as it writes.
Memory stays flat; disk holds the dataset twice for a moment. Examples keep
the log's order, so every combination is spread through each file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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
    """Per-split scratch files of tagged example lines, in a scratch directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, BinaryIO] = {
            s: (directory / f"{s}.spool").open("wb", buffering=1 << 20) for s in SPLITS
        }

    def write(self, split: str, tag: bytes, line: bytes) -> None:
        """Append one example line; ``tag`` is its combination's ``b"<index>\\t"``."""
        f = self._files[split]
        f.write(tag)
        f.write(line)

    def close(self) -> None:
        """Flush and close the scratch files (they are read back by :func:`finalize`)."""
        for f in self._files.values():
            f.close()

    def path(self, split: str) -> Path:
        """Where a split's scratch file is."""
        return self.directory / f"{split}.spool"


@dataclass(slots=True)
class WrittenFile:
    """One output file: name, example count, size and SHA-256."""

    name: str
    examples: int = 0
    bytes: int = 0
    sha256: str = ""
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)


def finalize(
    spool: Spool, destinations: Mapping[bytes, Mapping[str, str]], output_dir: Path
) -> dict[str, WrittenFile]:
    """Copy spooled lines into the split files and return what was written.

    ``destinations[tag][split]`` names the file a combination's spooled split
    goes to (``"train"`` for a tiny combination kept whole); a combination
    or split missing from it is left out. Files are written under temporary
    names and renamed into place, so a crash never leaves half a dataset.
    """
    written = {s: WrittenFile(f"{s}.jsonl") for s in SPLITS}
    outputs = {s: (output_dir / f"{s}.jsonl.tmp").open("wb", buffering=1 << 20) for s in SPLITS}
    try:
        for split in SPLITS:
            with spool.path(split).open("rb", buffering=1 << 20) as f:
                for tagged in f:
                    tag, _, line = tagged.partition(b"\t")
                    target = destinations.get(tag, {}).get(split)
                    if target is None:
                        continue
                    outputs[target].write(line)
                    out = written[target]
                    out._digest.update(line)
                    out.examples += 1
                    out.bytes += len(line)
    finally:
        for f in outputs.values():
            f.close()
    for split, out in written.items():
        os.replace(output_dir / f"{split}.jsonl.tmp", output_dir / out.name)
        out.sha256 = out._digest.hexdigest()
    return written
