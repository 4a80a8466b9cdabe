"""QMP over ``qemu.qmp``: the async client on a private event-loop thread, sync calls.

The harness is synchronous, but events must be collected while we sleep or poll
(BALLOON_CHANGE, SHUTDOWN...). Running the client's loop in its own thread gives
both, and lets a sampler thread issue commands safely.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from typing import Any

from qemu.qmp import ExecuteError, QMPClient
from qemu.qmp import QMPError as LibraryQMPError

from harness.errors import QMPError

LIBRARY_DISCONNECT_ERRORS = (LibraryQMPError, OSError, EOFError)

# What the library (or the loop under it) raises when QEMU goes away or a call
# hangs: converted to the harness's QMPError here, so no caller needs to know them.
_LIBRARY_ERRORS = (LibraryQMPError, OSError, EOFError, asyncio.TimeoutError,
                   concurrent.futures.TimeoutError, concurrent.futures.CancelledError)


class QMPConnection:
    """A connected QMP session over an already-connected socket (one end of a socketpair)."""

    def __init__(self, sock: socket.socket, name: str = "bh", timeout: float = 30.0):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        try:
            self._call(self._client.connect(sock), timeout)
        except _LIBRARY_ERRORS as e:
            self._stop_loop()
            raise QMPError(f"QMP handshake failed: {type(e).__name__}: {e}", "qmp_capabilities") from e
        except BaseException:
            self._stop_loop()
            raise
        self._collector = self._call(self._start_collector(), timeout)

    def _call(self, coro, timeout: float | None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start_collector(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._collect())

    async def _shutdown(self) -> None:
        self._collector.cancel()
        try:
            await self._collector
        except asyncio.CancelledError:
            pass  # what cancel() is for
        except LIBRARY_DISCONNECT_ERRORS:
            pass  # the event stream ended with the connection: nothing left to collect
        await self._client.disconnect()

    async def _collect(self) -> None:
        async for event in self._client.events:
            with self._cond:
                self._events.append({"time": time.time(), **dict(event)})
                self._cond.notify_all()

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float = 30.0) -> Any:
        """Run one QMP command; any failure is a :class:`harness.errors.QMPError` naming it."""
        try:
            return self._call(self._client.execute(command, arguments), timeout)
        except ExecuteError as e:
            raise QMPError(f"QMP {command} failed: {e.error_class}: {e}", command) from e
        except (concurrent.futures.TimeoutError, asyncio.TimeoutError) as e:
            raise QMPError(f"QMP {command} got no answer within {timeout:.0f}s", command) from e
        except _LIBRARY_ERRORS as e:
            raise QMPError(f"QMP {command}: connection to QEMU lost ({type(e).__name__}: {e})",
                           command) from e

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Events received so far (optionally only ``name``), oldest first."""
        with self._cond:
            return [e for e in self._events if name is None or e.get("event") == name]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._shutdown(), 5.0)
        except _LIBRARY_ERRORS:
            pass  # QEMU already gone: the disconnect has nothing left to close
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()
