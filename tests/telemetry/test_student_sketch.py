"""The memory store's distinct-student sketch: exact while small, HyperLogLog beyond."""

from __future__ import annotations

import pytest

from tara.telemetry.student_sketch import StudentSketch


def sketch(names: range, prefix: str = "s") -> StudentSketch:
    out = StudentSketch()
    for i in names:
        out.add(f"{prefix}{i}")
    return out


@pytest.mark.parametrize("n", [0, 1, 10, StudentSketch.EXACT_UP_TO])
def test_small_counts_are_exact(n: int) -> None:
    assert sketch(range(n)).count() == n


@pytest.mark.parametrize("n", [StudentSketch.EXACT_UP_TO + 1, 2_000, 30_000])
def test_large_counts_are_within_a_few_standard_errors(n: int) -> None:
    assert sketch(range(n)).count() == pytest.approx(n, rel=4 * 0.0081)


def test_the_same_student_twice_counts_once() -> None:
    s = sketch(range(100))
    for i in range(100):
        s.add(f"s{i}")
    assert s.count() == 100


@pytest.mark.parametrize(
    ("first", "second", "union"),
    [(range(50), range(25, 75), 75), (range(500), range(250, 750), 750),
     (range(10), range(5, 1005), 1005), (range(1000), range(5), 1000)],
)  # fmt: skip
def test_merging_is_a_union(first: range, second: range, union: int) -> None:
    a, b = sketch(first), sketch(second)
    a.merge(b)
    assert a.count() == pytest.approx(union, rel=0.03)
