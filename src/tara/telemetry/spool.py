"""The spool: a bounded local file of log records the store could not take yet.

When the interaction log is unreachable (or not migrated yet), the writer
appends what it cannot write to this file and replays it, in order, once the
store is back; a gateway restarted after a crash replays a spool left behind.

Format: JSON lines, one record each (the dataclass fields): ``{"i": {...}}``
for an interaction, ``{"f": {...}}`` for feedback, ``{"u": {...}}`` for a
user-retry flag. A record is complete when its newline is on disk. Records
whose text is not valid UTF-8 (lone surrogates, as undecodable request
headers become) are written with ASCII escapes so they survive the round
trip; the store then rejects them on replay like any other poison record.

Crash safety: every append is one ``write`` followed by ``fsync``, and the
writer appends at most once per flush interval during an outage, so a power
cut loses at most the last append; a process crash loses nothing appended. A
torn last line (a crash mid-append) is cut off when the spool is opened and
counted; a line that does not decode is skipped and counted. Replay progress
is a byte offset in a side file (``<name>.pos``), replaced atomically and not
fsynced: if it is lost, records are replayed again, which is harmless because
every log write is an idempotent upsert. When everything is replayed the file
is truncated to nothing. One process owns a spool (an exclusive ``flock``).

The size bound (``max_bytes``) counts the whole file, replayed prefix included,
until it is truncated. All file work runs on one worker thread, so the event
loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from tara.telemetry.interactions import Interaction
from tara.telemetry.log import Feedback, UserRetryMark

log = logging.getLogger(__name__)

T = TypeVar("T")

Item = Interaction | Feedback | UserRetryMark
"""What the log writer queues, spools and replays."""

_TAGS: dict[type[Item], str] = {Interaction: "i", Feedback: "f", UserRetryMark: "u"}

_INTERACTION_FIELDS = frozenset(f.name for f in dataclasses.fields(Interaction))
_FEEDBACK_FIELDS = frozenset(f.name for f in dataclasses.fields(Feedback))


def encode(item: Item) -> bytes:
    """One spool line (newline included) for ``item``."""
    tag = _TAGS[type(item)]
    try:
        return orjson.dumps({tag: item}, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # lone surrogates: orjson refuses them, ASCII escapes keep them
        text = json.dumps({tag: dataclasses.asdict(item)}, ensure_ascii=True)
        return text.encode() + b"\n"


def decode(line: bytes) -> Item:
    """The item a spool line holds; raises ``ValueError`` (or a subclass) if it is not one."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        data = json.loads(line)  # the ASCII-escaped form of a record with lone surrogates
    if not isinstance(data, dict) or len(data) != 1:
        msg = "not a spool record"
        raise ValueError(msg)
    ((tag, fields),) = data.items()
    try:
        if tag == "i":
            return Interaction(**{k: v for k, v in fields.items() if k in _INTERACTION_FIELDS})
        if tag == "f":
            return Feedback(**{k: v for k, v in fields.items() if k in _FEEDBACK_FIELDS})
        if tag == "u":
            return UserRetryMark(fields["request_id"])
    except (TypeError, AttributeError, KeyError) as exc:
        raise ValueError(str(exc)) from exc
    msg = f"unknown spool record kind {tag!r}"
    raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Entry:
    """One spooled line as read back: its item (``None`` if unreadable) and where it ends."""

    item: Item | None
    end: int


class SpoolUnavailableError(OSError):
    """The spool file cannot be used (locked by another process, disk error)."""


class Spool:
    """A bounded, crash-safe FIFO of log records in one local file.

    ``path=None`` or ``max_bytes=0`` is a spool of no capacity: every append
    overflows. :meth:`open` must run first (it reads what a previous process
    left behind); the file itself is created by the first append.
    """

    def __init__(self, path: Path | None, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes if path is not None else 0
        self.records = 0
        """Records appended and not yet replayed (readable or not)."""
        self.size = 0
        """Bytes in the file, replayed prefix included (what ``max_bytes`` bounds)."""
        self._read_pos = 0
        self._file: IO[bytes] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tara-spool")

    @property
    def enabled(self) -> bool:
        """Whether anything can be spooled at all."""
        return self.max_bytes > 0

    @property
    def waiting_bytes(self) -> int:
        """Bytes of records not yet replayed."""
        return self.size - self._read_pos

    def _pos_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".pos")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # -- the public, awaitable API -------------------------------------------
    async def open(self) -> int:
        """Take over a file a previous process left; returns how many torn records were cut.

        Raises :class:`SpoolUnavailableError` when another process holds it.
        """
        if not self.enabled or self._file is not None:
            return 0
        return await self._run(self._open, False)

    async def append(self, items: Sequence[Item]) -> int:
        """Append ``items`` in order and fsync; returns how many fit (the rest overflowed).

        Raises :class:`SpoolUnavailableError` (an ``OSError``) if the file cannot be used.
        """
        if not items or not self.enabled:
            return 0
        return await self._run(self._append, items)

    async def read(self, limit: int) -> list[Entry]:
        """Up to ``limit`` records from the oldest not yet replayed (nothing is consumed)."""
        if self._file is None or self.records == 0:
            return []
        return await self._run(self._read, limit)

    async def commit(self, entries: int, end: int) -> None:
        """Mark the first ``entries`` records, ending at byte ``end``, as replayed."""
        if entries:
            await self._run(self._commit, entries, end)

    async def aclose(self) -> None:
        """Close the file (what is in it stays for the next process) and stop the thread."""
        await self._run(self._close)
        self._executor.shutdown(wait=False)

    # -- worker-thread bodies ------------------------------------------------
    def _open(self, create: bool) -> int:
        assert self.path is not None
        if not create and not self.path.exists():
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+b")  # noqa: SIM115 - kept open for the spool's life
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            file.close()
            msg = f"spool {self.path} is in use by another process"
            raise SpoolUnavailableError(msg) from exc
        torn = 0
        size = os.fstat(file.fileno()).st_size
        if size:
            file.seek(max(0, size - 1))
            if file.read(1) != b"\n":
                size = self._last_newline(file, size)
                file.truncate(size)
                os.fsync(file.fileno())
                torn = 1
        self._file, self.size = file, size
        self._read_pos = min(self._saved_pos(), size)
        file.seek(self._read_pos)
        self.records = sum(1 for _ in iter(file.readline, b""))
        if self.records == 0 and size:
            self._reset()
        return torn

    @staticmethod
    def _last_newline(file: IO[bytes], size: int) -> int:
        """Offset just past the last newline before ``size`` (0 if there is none)."""
        step = 65536
        end = size
        while end > 0:
            start = max(0, end - step)
            file.seek(start)
            chunk = file.read(end - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                return start + at + 1
            end = start
        return 0

    def _saved_pos(self) -> int:
        try:
            return max(0, int(self._pos_path().read_text().strip() or 0))
        except (OSError, ValueError):
            return 0

    def _append(self, items: Sequence[Item]) -> int:
        if self._file is None:
            self._open(True)
        assert self._file is not None
        lines: list[bytes] = []
        size = self.size
        for item in items:
            line = encode(item)
            if size + len(line) > self.max_bytes:
                break
            lines.append(line)
            size += len(line)
        if lines:
            file = self._file
            file.seek(0, os.SEEK_END)
            file.write(b"".join(lines))
            file.flush()
            os.fsync(file.fileno())
            self.size = size
            self.records += len(lines)
        return len(lines)

    def _read(self, limit: int) -> list[Entry]:
        assert self._file is not None
        file = self._file
        file.seek(self._read_pos)
        out: list[Entry] = []
        pos = self._read_pos
        while len(out) < limit and pos < self.size:
            line = file.readline()
            if not line:
                break
            pos += len(line)
            try:
                item: Item | None = decode(line)
            except ValueError:
                item = None
            out.append(Entry(item, pos))
        return out

    def _commit(self, entries: int, end: int) -> None:
        self.records -= entries
        self._read_pos = end
        if self.records <= 0 or end >= self.size:
            self._reset()
            return
        tmp = self._pos_path().with_suffix(".tmp")
        tmp.write_text(str(end))
        tmp.replace(self._pos_path())

    def _reset(self) -> None:
        """Everything is replayed: empty the file and forget the offset."""
        assert self._file is not None
        self._file.truncate(0)
        os.fsync(self._file.fileno())
        self.size = self._read_pos = self.records = 0
        with contextlib.suppress(FileNotFoundError):
            self._pos_path().unlink()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None
