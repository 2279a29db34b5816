"""A loopback TCP relay that tests cut and restore to simulate a store outage.

Used for Redis (:class:`RedisProxy`, the ``redis_proxy`` fixture) and for
PostgreSQL: the real server stays up, the relay in front of it dies, just as
a network partition or a crashed server looks to the client. :meth:`TcpRelay.freeze`
is the other kind of outage: connections stay open and nothing comes back
(a black-holed network), so a client without timeouts hangs.
"""

from __future__ import annotations

import asyncio
import contextlib

from tara.serving import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


class TcpRelay:
    """Relays ``127.0.0.1:port`` to ``127.0.0.1:target_port`` until :meth:`stop`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def freeze(self) -> None:
        """Hold every byte in both directions, connections open, until :meth:`thaw`."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Let bytes flow again (what was held is delivered)."""
        self._flowing.set()

    async def start(self) -> None:
        """Accept connections (again, on the same port)."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and abort the open ones: an outage as clients see it."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            with contextlib.suppress(OSError):
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            if up_writer is not None:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            # Aborted however the relay ends (a stop can cancel it mid-connect): a writer
            # left open is garbage-collected after its loop closed, and warns then.
            for w in (writer, up_writer):
                if w is not None:
                    w.transport.abort()
            self._tasks.discard(task)


class RedisProxy(TcpRelay):
    """A relay to the machine's Redis; ``url`` reaches Redis through it."""

    def __init__(self) -> None:
        super().__init__(6379)
        self.url = f"redis://127.0.0.1:{self.port}/0"
