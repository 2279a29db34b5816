"""The spool file: order, bound, crash safety (torn and unreadable lines), one owner."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tara.telemetry.interactions import Interaction
from tara.telemetry.log import Feedback, UserRetryMark
from tara.telemetry.spool import Spool, SpoolUnavailableError, decode, encode

T0 = 1_700_000_000.0


def make(n: int, **changes: object) -> Interaction:
    ix = Interaction(
        request_id=f"req-{n:06d}",
        created_at=T0 + n,
        track="tara-tutor",
        segment="default",
        variant="stable",
        model="tara-stable",
        student_hash="ef" * 32,
        subject="physics",
        language="hi",
        grade="9",
        status=200,
        messages=[{"role": "user", "content": "गुरुत्वाकर्षण क्या है?"}],
        answer="एक बल।",
    )
    return dataclasses.replace(ix, **changes)  # type: ignore[arg-type]


def test_every_item_survives_the_round_trip_lone_surrogates_included() -> None:
    items = [
        make(1),
        make(2, subject="\udcff", tags=["wrong"], rating=2, rated_at=T0 + 5),
        Feedback("req-000001", 4, ["cultural"], 0.5, "நன்றி", T0 + 9),
        Feedback("req-000002", 1, [], None, "\udcfe", T0 + 10),
        UserRetryMark("req-000002"),
    ]
    for item in items:
        line = encode(item)
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        assert decode(line) == item


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"[1, 2]\n",
        b'{"x": {}}\n',
        b'{"i": {"request_id": "r"}}\n',
        b"{}\n",
        b'{"u": {}}\n',
    ],
)
def test_a_line_that_is_no_record_does_not_decode(line: bytes) -> None:
    with pytest.raises(ValueError):
        decode(line)


async def read_all(spool: Spool) -> list[object]:
    entries = await spool.read(1000)
    return [e.item for e in entries]


async def test_records_come_back_in_order_and_a_commit_consumes_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s" / "spool.jsonl", 1 << 20)
    assert await spool.open() == 0
    assert await spool.append([make(n) for n in range(5)]) == 5
    entries = await spool.read(3)
    assert [e.item for e in entries] == [make(0), make(1), make(2)]
    await spool.commit(2, entries[1].end)
    assert spool.records == 3
    assert await read_all(spool) == [make(2), make(3), make(4)]
    await spool.aclose()
    again = Spool(tmp_path / "s" / "spool.jsonl", 1 << 20)  # the next process
    await again.open()
    assert again.records == 3
    assert await read_all(again) == [make(2), make(3), make(4)]
    last = (await again.read(10))[-1]
    await again.commit(3, last.end)
    assert (again.records, again.size, again.path.read_bytes()) == (0, 0, b"")
    assert not (tmp_path / "s" / "spool.jsonl.pos").exists()
    await again.aclose()


async def test_the_bound_keeps_what_fits_in_order(tmp_path: Path) -> None:
    one = len(encode(make(0)))
    spool = Spool(tmp_path / "spool.jsonl", one * 3)
    await spool.open()
    assert await spool.append([make(n) for n in range(5)]) == 3
    assert await spool.append([make(9)]) == 0
    assert await read_all(spool) == [make(0), make(1), make(2)]
    await spool.aclose()


async def test_a_torn_last_line_is_cut_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    whole = encode(make(1)) + encode(make(2))
    path.write_bytes(whole + encode(make(3))[:40])  # a crash in the middle of an append
    spool = Spool(path, 1 << 20)
    assert await spool.open() == 1
    assert path.read_bytes() == whole
    assert await spool.append([make(4)]) == 1
    assert await read_all(spool) == [make(1), make(2), make(4)]
    await spool.aclose()


async def test_an_unreadable_line_is_handed_back_as_nothing(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    path.write_bytes(encode(make(1)) + b"\x00garbage\n" + encode(make(2)))
    spool = Spool(path, 1 << 20)
    await spool.open()
    assert spool.records == 3
    assert await read_all(spool) == [make(1), None, make(2)]
    await spool.aclose()


async def test_one_process_owns_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool.jsonl", 1 << 20)
    await first.open()
    assert not first.path.exists()  # created by the first append, not before
    await first.append([make(1)])
    second = Spool(tmp_path / "spool.jsonl", 1 << 20)
    with pytest.raises(SpoolUnavailableError):
        await second.open()
    with pytest.raises(SpoolUnavailableError):
        await second.append([make(2)])
    await second.aclose()
    await first.aclose()


async def test_a_spool_without_a_path_takes_nothing(tmp_path: Path) -> None:
    spool = Spool(None, 1 << 20)
    assert not spool.enabled
    assert await spool.open() == 0
    assert await spool.append([make(1)]) == 0
    assert await spool.read(10) == []
    await spool.aclose()
