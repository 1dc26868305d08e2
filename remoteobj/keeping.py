"""The connections one daemon worker keeps: busy ones it reads itself, watched by one poller.

Why a worker keeps several: a request handed from the event loop to a worker
thread costs a thread wake-up and a GIL hand-over per call, and with many
busy clients that hop, not the calls, is what the daemon spends its time on
(``BENCHMARKS.md``, "64 threads"). A worker that watches a few busy
connections with one ``epoll`` reads and runs their calls one after the
other, staying awake while requests keep coming. Requests pipelined on one
connection (threads sharing a proxy) wait in the set's queue and run there
too, one after the other, rather than each going to a thread of its own.
The server decides which connections a worker keeps and when it hands them
back (``server.py``); this module only holds the set, its queue, and waits
on it.

On platforms without ``epoll`` a poller cannot take new sockets while a
thread waits on it, so a worker keeps one connection there.
"""

from __future__ import annotations

import collections
import contextlib
import select
import threading
import time
from typing import Generic, TypeVar

from .protocol import Message
from .spinning import Spinner

__all__ = ["CONNS_PER_WORKER", "KeptSet"]

C = TypeVar("C")

_EPOLL = hasattr(select, "epoll")
#: Connections one worker may keep (one where the poller cannot grow while waited on).
CONNS_PER_WORKER = 64 if _EPOLL else 1


class KeptSet(Generic[C]):
    """Connections (keyed by file descriptor) one worker thread reads; other threads
    may add or remove connections while it waits (under ``lock``).

    ``busy_since`` is when the call the worker runs began (``0.0``: none), so a
    watchdog can hand the other connections back when a call takes long.
    ``receiving`` is true while the worker waits for a large body of its only
    connection; nothing may join it then, nor a ``solo`` set. ``queue`` holds
    requests read but not yet run, with their connections, in order.
    """

    __slots__ = (
        "_events",
        "_poll",
        "_poller",
        "_scale",
        "busy_since",
        "conns",
        "last_event",
        "lock",
        "partial",
        "queue",
        "receiving",
        "solo",
        "spinner",
    )

    def __init__(self, spin: float) -> None:
        self.conns: dict[int, C] = {}
        self.lock = threading.Lock()
        self.busy_since = 0.0
        #: When a wait last found a connection readable.
        self.last_event = time.monotonic()
        self.receiving = False
        #: A read left a frame unfinished (maybe a large body to receive in place).
        self.partial = False
        #: Made for a connection whose call was slow: nobody joins it.
        self.solo = False
        self.queue: collections.deque[tuple[C, Message]] = collections.deque()
        self._poller: select.epoll | select.poll = select.epoll() if _EPOLL else select.poll()
        self._poll = self._poller.poll
        self._scale = 1.0 if _EPOLL else 1000.0  # epoll waits in seconds, poll in milliseconds
        self._events: list[tuple[int, int]] = []  # what the last spin found
        self.spinner = Spinner(spin)

    def __len__(self) -> int:
        return len(self.conns)

    def add(self, fd: int, conn: C) -> None:
        """Watch ``conn`` (at once, even while another thread waits in :meth:`wait`)."""
        with self.lock:
            self.conns[fd] = conn
            try:
                self._poller.register(fd, select.POLLIN)
            except FileExistsError:  # a descriptor number reused before its removal
                self._poller.modify(fd, select.POLLIN)

    def discard(self, fd: int) -> list[Message]:
        """Stop watching ``fd`` (if watched); its connection's queued requests, taken
        off the queue in order (they are not to run here)."""
        with self.lock:
            conn = self.conns.pop(fd, None)
            if conn is None:
                return []
            with contextlib.suppress(OSError, ValueError, KeyError):  # closed already
                self._poller.unregister(fd)
            if not self.queue:
                return []
            mine = [msg for c, msg in self.queue if c is conn]
            if mine:
                self.queue = collections.deque(item for item in self.queue if item[0] is not conn)
            return mine

    def push(self, conn: C, msgs: list[Message]) -> None:
        """Queue requests read from ``conn`` (the worker runs them in order)."""
        with self.lock:
            self.queue.extend((conn, msg) for msg in msgs)

    def pop(self) -> tuple[C, Message] | None:
        """The oldest queued request, taken off the queue (``None``: none)."""
        with self.lock:
            return self.queue.popleft() if self.queue else None

    def wait(self, timeout: float, *, spin: bool) -> list[tuple[int, int]]:
        """The ``(fd, events)`` ready within ``timeout`` seconds (``[]``: none).
        ``spin``: busy-poll first (see :class:`~remoteobj.spinning.Spinner`)."""
        if spin and self.spinner.wait(self._ready):
            return self._events
        return self._poll(timeout * self._scale)

    def _ready(self) -> bool:
        self._events = self._poll(0)  # looks without waiting
        return bool(self._events)

    def close(self) -> None:
        """Release the poller (the set is empty and nobody waits on it)."""
        if isinstance(self._poller, select.epoll):
            self._poller.close()
