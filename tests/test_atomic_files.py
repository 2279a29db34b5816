"""``write_atomically``: the whole new file or the old one, and no leftovers on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tara.atomic_files import write_atomically


def test_writes_creating_the_directory_and_replaces_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    write_atomically(path, b"first")
    assert path.read_bytes() == b"first"
    before = path.stat().st_ino
    write_atomically(path, b"second")
    assert path.read_bytes() == b"second"
    assert path.stat().st_ino != before  # a new file renamed over the old, not rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_a_failed_replace_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "runs.json"
    target.mkdir()  # renaming a file over a directory fails
    (target / "keep").write_bytes(b"old")
    with pytest.raises(OSError):
        write_atomically(target, b"new")
    assert (target / "keep").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.json"]
