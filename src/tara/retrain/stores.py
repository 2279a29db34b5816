"""Where the loop's state lives: fine-tuning runs and the triggers' ledger, next to the rollouts.

Two stores, each a :class:`~typing.Protocol` with a memory backend
(:mod:`tara.retrain.stores_memory`, for ``tara demo``) and a Redis backend
(:mod:`tara.retrain.stores_redis`, shared by every process of a deployment),
opened with the rest of the shared state by :func:`tara.state.open_state`:

* :class:`RunStore` — one record per run, keyed by run id;
* :class:`LedgerStore` — one document: when each segment's triggers last
  started a run (:class:`~tara.triggers.state.TriggerState`), when the
  triggers were last evaluated, and what that look decided.

Writes are check-and-set on a *revision* (``0``: no record yet; each save
adds one) like rollout records, so an operator's ``approve`` or ``cancel``
and the controller's tick never overwrite each other. The controller's
writes also carry its leader lease's fencing token: a save from a leader
whose token is no longer the newest raises
:class:`~tara.rollout.rollout_store.StaleLeaderError`, so a controller that
lost its lease mid-tick can never start a second run or move one back.
Failures to reach the store and malformed records raise :class:`StoreError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

from tara.retrain.run import Run
from tara.triggers.state import StateError, TriggerState

LEDGER_FORMAT = "tara-trigger-ledger/1"
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, StateError)


class StoreError(Exception):
    """The store could not be read or written, or holds a malformed record."""


class StoredRun(NamedTuple):
    """A run as stored, with the revision to pass to the next ``save``."""

    run: Run
    revision: int


class RunStore(Protocol):
    """Load, list and check-and-set fine-tuning runs."""

    async def get(self, run_id: str) -> Run | None:
        """The run, or ``None`` if there is no such record."""
        ...

    async def load(self, run_id: str) -> StoredRun | None:
        """The run and its revision, read together."""
        ...

    async def list(self) -> list[Run]:
        """Every run, oldest first (by ``created_at``, then id)."""
        ...

    async def save(self, run: Run, expected_revision: int, fence: int | None = None) -> bool:
        """Store ``run`` iff the stored revision is ``expected_revision`` (module docstring)."""
        ...


@dataclass(slots=True)
class Ledger:
    """The triggers' bookkeeping: run start times per scope, and the latest look."""

    triggers: TriggerState = field(default_factory=TriggerState)
    checked_at: float | None = None
    """When the leader last evaluated the triggers."""
    decisions: Sequence[Mapping[str, Any]] = ()
    """What that look decided per segment (started, or why not), for ``tara triggers check``."""

    def due(self, now: float, interval: float) -> bool:
        """Whether the triggers should be evaluated again."""
        return self.checked_at is None or now - self.checked_at >= interval

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format": LEDGER_FORMAT,
            "triggers": self.triggers.as_json(),
            "checked_at": self.checked_at,
            "decisions": [dict(d) for d in self.decisions],
        }


class StoredLedger(NamedTuple):
    """The ledger as stored, with the revision to pass to the next ``save``."""

    ledger: Ledger
    revision: int


class LedgerStore(Protocol):
    """Load and check-and-set the one ledger document."""

    async def load(self) -> StoredLedger:
        """The ledger and its revision (an empty ledger at revision 0 before the first save)."""
        ...

    async def save(self, ledger: Ledger, expected_revision: int, fence: int | None = None) -> bool:
        """Store ``ledger`` iff the stored revision is ``expected_revision``."""
        ...


def encode_run(run: Run) -> bytes:
    """The stored JSON form of a run."""
    return orjson.dumps(run.to_dict())


def decode_run(raw: bytes | str) -> Run:
    """Parse a stored run; :class:`StoreError` if it is malformed."""
    try:
        return Run.from_dict(orjson.loads(raw))
    except (*_MALFORMED, orjson.JSONDecodeError) as exc:
        msg = f"stored fine-tuning run is malformed: {type(exc).__name__}: {exc}"
        raise StoreError(msg) from exc


def encode_ledger(ledger: Ledger) -> bytes:
    """The stored JSON form of the ledger."""
    return orjson.dumps(ledger.as_json())


def decode_ledger(raw: bytes | str) -> Ledger:
    """Parse the stored ledger; :class:`StoreError` if it is malformed."""
    try:
        data = orjson.loads(raw)
        if data.get("format") != LEDGER_FORMAT:
            msg = f"not a {LEDGER_FORMAT} document"
            raise ValueError(msg)
        checked = data.get("checked_at")
        return Ledger(
            triggers=TriggerState.from_json(data["triggers"], None, "the stored trigger ledger"),
            checked_at=None if checked is None else float(checked),
            decisions=[dict(d) for d in data.get("decisions", ())],
        )
    except (*_MALFORMED, orjson.JSONDecodeError) as exc:
        msg = f"stored trigger ledger is malformed: {type(exc).__name__}: {exc}"
        raise StoreError(msg) from exc


def oldest_first(runs: list[Run]) -> list[Run]:
    """Sort by creation time, then id, so listings are stable."""
    return sorted(runs, key=lambda r: (r.created_at, r.id))
