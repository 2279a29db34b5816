"""Tests that count or find cyclic garbage: the automatic collector switched off."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """No automatic collection in the block, after freeing what earlier tests left.

    Garbage only saved for inspection stays garbage and would be found again
    (how a gateway garbage test once failed in CI, on an exchange of another
    test's that the collector had not reached yet).
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
