"""A fault-injecting TCP proxy in pure Python, after Shopify's Toxiproxy (loopback only).

::

    with ToxiProxy(("127.0.0.1", daemon_port)) as tp:
        uri = f"PYRO:obj@127.0.0.1:{tp.port}"
        tp.add("latency", latency=0.2)              # both directions
        tp.add("timeout", timeout=0)                # blackhole: nothing passes, nothing closes
        tp.clear()

The proxy runs its own asyncio loop in a daemon thread. Toxics apply to every
connection, live ones included, and are checked per chunk, so adding one
changes traffic at once. Each toxic acts on ``"up"`` (client to server),
``"down"`` (server to client) or ``"both"``:

- ``latency``: hold every chunk ``latency`` (+ uniform ``jitter``) seconds;
- ``bandwidth``: at most ``rate`` bytes per second;
- ``slicer``: cut chunks into pieces of ``size`` bytes, ``delay`` seconds apart;
- ``timeout``: stop passing data; close the connection after ``timeout``
  seconds (``0``: never -- a blackhole, like a partition or a hung peer);
- ``reset_peer``: after ``timeout`` seconds, reset both sides (RST, not FIN).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ToxiProxy", "Toxic"]

Direction = Literal["up", "down", "both"]
KINDS = ("latency", "bandwidth", "slicer", "timeout", "reset_peer")
CHUNK = 64 * 1024


@dataclass
class Toxic:
    """One fault: ``kind`` with its parameters, on one direction."""

    kind: str
    direction: Direction = "both"
    params: dict[str, float] = field(default_factory=dict)

    def applies(self, direction: str) -> bool:
        return self.direction in ("both", direction)


class _Link:
    """One proxied client connection: its two sockets and the two pumps between them."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, client: socket.socket, server: socket.socket
    ) -> None:
        self.loop = loop
        self.client = client
        self.server = server
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def abort(self, reset: bool) -> None:
        """Stop both pumps, then close both sockets (RST with ``reset``). Loop thread only."""
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task(self.loop)
        for task in self.tasks:
            if task is not current:
                task.cancel()
        for sock in (self.client, self.server):
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Close after the cancelled reads have unregistered their descriptors.
        self.loop.call_soon(self.client.close)
        self.loop.call_soon(self.server.close)


class ToxiProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream`` with switchable faults."""

    def __init__(
        self, upstream: tuple[str, int], *, listen_port: int = 0, record: bool = False
    ) -> None:
        host, _ = upstream
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the test proxy only forwards to loopback addresses")
        self.upstream = upstream
        self._toxics: list[Toxic] = []
        #: With ``record``: every chunk that passed, as ``(direction, bytes)``.
        self.recorded: list[tuple[str, bytes]] = []
        self._record = record
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="toxiproxy", daemon=True)
        self._thread.start()

    # --- control (any thread) ------------------------------------------------------

    def add(self, kind: str, direction: Direction = "both", **params: float) -> Toxic:
        """Switch a toxic on (see the module docstring for kinds and parameters)."""
        if kind not in KINDS:
            raise ValueError(f"unknown toxic {kind!r}; one of {KINDS}")
        toxic = Toxic(kind, direction, dict(params))
        with self._lock:
            self._toxics.append(toxic)
        if kind in ("timeout", "reset_peer"):
            self._loop.call_soon_threadsafe(self._arm, toxic)
        return toxic

    def remove(self, toxic: Toxic) -> None:
        """Switch one toxic off."""
        with self._lock, contextlib.suppress(ValueError):
            self._toxics.remove(toxic)

    def clear(self) -> None:
        """Switch every toxic off."""
        with self._lock:
            self._toxics.clear()

    @property
    def connections(self) -> int:
        """Client connections currently proxied."""
        return len(self._links)

    def reset_all(self) -> None:
        """Reset (RST) every proxied connection now."""
        self._loop.call_soon_threadsafe(self._abort_all, True)

    def close(self) -> None:
        """Stop listening, drop every connection, end the thread."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> ToxiProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the loop --------------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        accept = loop.create_task(self._accept_forever())
        try:
            loop.run_forever()
        finally:
            accept.cancel()
            self._abort_all(False)
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0.01))
            self._listener.close()
            loop.close()

    def _current(self, direction: str) -> list[Toxic]:
        with self._lock:
            return [t for t in self._toxics if t.applies(direction)]

    async def _accept_forever(self) -> None:
        loop = self._loop
        while True:
            client, _ = await loop.sock_accept(self._listener)
            client.setblocking(False)
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setblocking(False)
            try:
                await loop.sock_connect(server, self.upstream)
            except OSError:
                client.close()
                server.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(loop, client, server)
            self._links.add(link)
            for toxic in self._current("both"):
                if toxic.kind in ("timeout", "reset_peer"):
                    self._arm_link(toxic, link)
            link.tasks.append(loop.create_task(self._pump(link, client, server, "up")))
            link.tasks.append(loop.create_task(self._pump(link, server, client, "down")))

    async def _pump(
        self, link: _Link, src: socket.socket, dst: socket.socket, direction: str
    ) -> None:
        loop = self._loop
        try:
            while not link.closed:
                data = await loop.sock_recv(src, CHUNK)
                if not data:
                    break
                if self._record:
                    self.recorded.append((direction, data))
                await self._deliver(link, dst, data, direction)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(link)
            link.abort(False)

    async def _deliver(self, link: _Link, dst: socket.socket, data: bytes, direction: str) -> None:
        loop = self._loop
        while True:
            toxics = self._current(direction)
            if not any(t.kind == "timeout" for t in toxics):
                break
            await asyncio.sleep(0.05)  # blackholed: hold the bytes while the toxic is on
            if link.closed:
                return
        pieces = [data]
        for toxic in toxics:
            params = toxic.params
            if toxic.kind == "latency":
                delay = params.get("latency", 0.0) + random.uniform(0, params.get("jitter", 0.0))
                await asyncio.sleep(delay)
            elif toxic.kind == "slicer":
                size = max(1, int(params.get("size", 1)))
                pieces = [data[i : i + size] for i in range(0, len(data), size)]
        rate = next((t.params["rate"] for t in toxics if t.kind == "bandwidth"), None)
        delay = next((t.params.get("delay", 0.0) for t in toxics if t.kind == "slicer"), 0.0)
        if rate:
            # At most `rate` bytes per second: pieces worth 10 ms each, each one held
            # for its share of time before it goes out.
            step = max(1, int(rate / 100))
            pieces = [p[i : i + step] for p in pieces for i in range(0, len(p), step)]
        for i, piece in enumerate(pieces):
            if i and delay:
                await asyncio.sleep(delay)
            if rate:
                await asyncio.sleep(len(piece) / rate)
            await loop.sock_sendall(dst, piece)

    def _arm(self, toxic: Toxic) -> None:
        for link in list(self._links):
            self._arm_link(toxic, link)

    def _arm_link(self, toxic: Toxic, link: _Link) -> None:
        after = float(toxic.params.get("timeout", 0.0))
        if toxic.kind == "timeout" and after <= 0:
            return  # blackhole forever (until the toxic is removed)
        reset = toxic.kind == "reset_peer"

        def fire() -> None:
            with self._lock:
                live = toxic in self._toxics
            if live:
                self._links.discard(link)
                link.abort(reset)

        self._loop.call_later(after, fire)

    def _abort_all(self, reset: bool) -> None:
        for link in list(self._links):
            link.abort(reset)
        self._links.clear()


@contextlib.contextmanager
def toxiproxy(upstream: tuple[str, int]) -> Iterator[ToxiProxy]:
    """:class:`ToxiProxy` as a context manager function."""
    proxy = ToxiProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
