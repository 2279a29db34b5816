"""When each trigger last started a fine-tuning run, per scope: ``triggers.json``.

The cooldown ("at most every 2–4 weeks") and the data-volume count ("since
the last run") both read it. The file lives in ``triggers.state_dir``; writes
go to a temporary file renamed over the old one, so a crash leaves the old or
the new state, never half of one. A missing file is an empty state; an
unreadable one is an error (silently forgetting every run would lift every
cooldown at once).
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tara.atomic_files import write_atomically
from tara.triggers.model import Scope

FORMAT = "tara-triggers-state/1"
FILENAME = "triggers.json"


class StateError(Exception):
    """``triggers.json`` exists but cannot be read as trigger state."""


def cooling_down(last_run: float | None, now: float, cooldown: float) -> bool:
    """Whether a run at ``last_run`` is less than ``cooldown`` seconds before ``now``."""
    return last_run is not None and now - last_run < cooldown


class TriggerState:
    """Run start times keyed by trigger and scope, from and to one file or the shared state.

    ``path`` is the file :meth:`save` writes; ``None`` for the copy the
    controller keeps in the shared state (:mod:`tara.retrain.trigger_store`).
    """

    def __init__(
        self, path: Path | None = None, runs: dict[str, dict[str, float]] | None = None
    ) -> None:
        self.path = path
        self._runs: dict[str, dict[str, float]] = runs or {}
        """``{scope key: {trigger: unix time of the last run it started}}``."""

    @classmethod
    def load(cls, state_dir: Path) -> TriggerState:
        """The state in ``state_dir`` (empty when the file does not exist yet)."""
        path = state_dir / FILENAME
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            msg = f"cannot read {path}: {exc.strerror}"
            raise StateError(msg) from exc
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            msg = f"{path} is not JSON: {exc}"
            raise StateError(msg) from exc
        return cls.from_json(data, path, str(path))

    @classmethod
    def from_json(cls, data: object, path: Path | None, where: str) -> TriggerState:
        """The state from its JSON form (:meth:`as_json`); ``where`` names its origin in errors."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            msg = f"{where} is not a {FORMAT} file"
            raise StateError(msg)
        runs = data.get("runs")
        if not isinstance(runs, dict) or not all(
            isinstance(v, dict) and all(isinstance(t, int | float) for t in v.values())
            for v in runs.values()
        ):
            msg = f"{where}: 'runs' must map scope keys to {{trigger: unix time}}"
            raise StateError(msg)
        return cls(path, {k: {t: float(at) for t, at in v.items()} for k, v in runs.items()})

    def as_json(self) -> dict[str, object]:
        """The JSON form saved to ``triggers.json`` and kept in the shared state."""
        return {"format": FORMAT, "runs": self._runs}

    def last_run(self, scope: Scope, trigger: str | None = None) -> float | None:
        """When ``trigger`` (any trigger when ``None``) last started a run for ``scope``."""
        runs = self._runs.get(scope.key, {})
        if trigger is not None:
            return runs.get(trigger)
        return max(runs.values(), default=None)

    def record(self, trigger: str, scope: Scope, at: float) -> None:
        """Remember that ``trigger`` started a run for ``scope`` at ``at`` (call :meth:`save`)."""
        self._runs.setdefault(scope.key, {})[trigger] = at

    def save(self) -> None:
        """Write the state atomically, creating the directory if needed."""
        if self.path is None:
            msg = "this trigger state lives in the shared state, not in a file"
            raise StateError(msg)
        body = orjson.dumps(
            self.as_json(),
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )
        write_atomically(self.path, body)
