"""The chaos suite: every test is marked ``chaos`` and prints what it measured at the end."""

from __future__ import annotations

import json

import pytest
from chaos_support import FIGURES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/chaos/ as ``chaos``."""
    for item in items:
        if "/tests/chaos/" in str(item.path):
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures the chaos tests measured (``docs/reliability.md`` quotes them)."""
    if FIGURES:
        terminalreporter.section("chaos figures")
        for test, numbers in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{test}: {json.dumps(numbers, sort_keys=True)}")
