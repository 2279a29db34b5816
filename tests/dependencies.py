"""Skipping a test for a missing tool, in a way CI turns into a failure.

``scripts/setup`` installs everything the tests need, so a missing tool means
a broken set-up. Locally such a test is skipped with a reason saying what to
run; under CI (the ``CI`` environment variable set, as ``.ci/run`` does) the
hook in ``tests/conftest.py`` reports the skip as a failure, so a green CI run
never hides tests that did not run.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

MISSING_DEPENDENCY = "missing dependency"
"""How every skip for a missing tool begins; the conftest hook looks for it."""


def missing(what: str) -> NoReturn:
    """Skip the calling test because ``what`` is not installed (a failure under CI)."""
    pytest.skip(f"{MISSING_DEPENDENCY}: {what}")


def in_ci() -> bool:
    """Whether the tests run in CI (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
