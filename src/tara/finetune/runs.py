"""The local run registry: which job each training run became, in a small JSON file.

``runs.json`` sits next to the dataset (or in ``finetune.state_dir``) and
maps a run key (the dataset hash plus the training settings, see
:func:`tara.finetune.train.run_key`) to a :class:`RunRecord`. It is the
first place ``tara finetune start`` looks before creating a job; the
backend's own job list, searched by metadata, is the second, so losing
this file never causes a duplicate job. Writes go to a temporary file
that is renamed over the old one, so a crash leaves the old or the new
registry, never half of one; an ``flock`` on ``runs.json.lock`` keeps two
``start`` commands on one machine from racing.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from tara.atomic_files import write_atomically

FORMAT = "tara-finetune-runs/1"
FILENAME = "runs.json"


@dataclass(slots=True)
class RunRecord:
    """One training run: its dataset, its uploaded files, its job and how that ended."""

    run_key: str
    dataset_hash: str
    dataset_dir: str
    backend: str
    base_model: str
    created_at: float
    updated_at: float
    attempt: int = 1
    training_file: str | None = None
    validation_file: str | None = None
    job_id: str | None = None
    status: str | None = None
    fine_tuned_model: str | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return asdict(self)


_FIELDS = frozenset(f.name for f in fields(RunRecord))


class RunRegistry:
    """The records of one ``runs.json``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILENAME

    def load(self) -> dict[str, RunRecord]:
        """Every record by run key; an absent file is an empty registry."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = orjson.loads(raw)
            runs = data["runs"]
            return {
                key: RunRecord(**{k: v for k, v in value.items() if k in _FIELDS})
                for key, value in runs.items()
            }
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            msg = f"{self.path} is not a run registry ({exc}); move it away to start afresh"
            raise ValueError(msg) from exc

    def get(self, run_key: str) -> RunRecord | None:
        """The record of a run, if any."""
        return self.load().get(run_key)

    def latest(self, dataset_hash: str) -> RunRecord | None:
        """The most recently updated record of any run on this dataset."""
        matching = [r for r in self.load().values() if r.dataset_hash == dataset_hash]
        return max(matching, key=lambda r: r.updated_at, default=None)

    def put(self, record: RunRecord) -> None:
        """Add or replace a record, atomically."""
        runs = self.load()
        runs[record.run_key] = record
        body = orjson.dumps(
            {"format": FORMAT, "runs": {k: r.as_json() for k, r in sorted(runs.items())}},
            option=orjson.OPT_INDENT_2,
        )
        write_atomically(self.path, body)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's lock (blocks while another process holds it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / f"{FILENAME}.lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
