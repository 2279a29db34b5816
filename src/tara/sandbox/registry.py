"""The models the sandbox serves, changeable while it runs.

``GET /v1/models`` lists it, ``POST /sandbox/models/{name}`` sets a model's
behaviour, and later features (fine-tuning jobs that produce ``ft:...``
models) register new models into it with :meth:`ModelRegistry.register`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tara.sandbox.config import ModelBehaviour

BUILTIN_CREATED = 1_700_000_000
"""``created`` of models present at start-up, fixed so listings are reproducible."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A served model: its behaviour and when it appeared."""

    behaviour: ModelBehaviour
    created: int
    root: str | None = None
    """Where a LoRA adapter was loaded from (vLLM's ``root``); None for other models."""
    parent: str | None = None
    """The base model a LoRA adapter applies to (vLLM's ``parent``)."""


class ModelRegistry:
    """Name → behaviour; reads are plain dict lookups on the hot path."""

    def __init__(self, models: Mapping[str, ModelBehaviour]) -> None:
        self._entries = {name: Entry(b, BUILTIN_CREATED) for name, b in models.items()}

    def get(self, name: str) -> ModelBehaviour | None:
        """The model's behaviour, or None if the sandbox does not serve it."""
        entry = self._entries.get(name)
        return entry.behaviour if entry is not None else None

    def entry(self, name: str) -> Entry | None:
        """The model's entry (behaviour and ``created``), or None."""
        return self._entries.get(name)

    def register(
        self,
        name: str,
        behaviour: ModelBehaviour,
        created: int | None = None,
        *,
        root: str | None = None,
        parent: str | None = None,
    ) -> None:
        """Add a model or replace its behaviour (keeping its ``created`` time and origin)."""
        old = self._entries.get(name)
        if created is None:
            created = old.created if old is not None else int(time.time())
        if old is not None and root is None:
            root, parent = old.root, old.parent
        self._entries[name] = Entry(behaviour, created, root, parent)

    def remove(self, name: str) -> bool:
        """Stop serving a model; False if it was not served."""
        return self._entries.pop(name, None) is not None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        return iter(sorted(self._entries.items()))

    def __len__(self) -> int:
        return len(self._entries)
