"""A loopback TCP relay that records the protocol-502 frames passing through it.

``with WireTap(("127.0.0.1", port)) as tap:`` listens on ``tap.port`` and relays each
accepted connection to the target, recording for every frame its direction
(``"c2s"``/``"s2c"``), message type, raw header flags (before decompression),
sequence number, annotation keys and correlation id. Used to check what really
goes over the wire (compression, stream annotations, correlation ids).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

HEADER = struct.Struct("!4sHBBHHII16sHH")
ANNOTATION = struct.Struct("!4sI")


@dataclass
class Frame:
    direction: str
    type: int
    flags: int
    seq: int
    data_size: int
    corr_id: bytes
    annotations: dict[str, bytes] = field(default_factory=dict)


class _Parser:
    def __init__(self, direction: str, frames: list[Frame], lock: threading.Lock) -> None:
        self.direction = direction
        self.buf = bytearray()
        self.frames = frames
        self.lock = lock

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= HEADER.size:
            (_, _, mtype, _, flags, seq, dlen, alen, corr, _, _) = HEADER.unpack_from(self.buf)
            end = HEADER.size + alen + dlen
            if len(self.buf) < end:
                return
            ann: dict[str, bytes] = {}
            pos = HEADER.size
            while pos < HEADER.size + alen:
                key, size = ANNOTATION.unpack_from(self.buf, pos)
                pos += ANNOTATION.size
                ann[key.decode("ascii")] = bytes(self.buf[pos : pos + size])
                pos += size
            with self.lock:
                self.frames.append(Frame(self.direction, mtype, flags, seq, dlen, corr, ann))
            del self.buf[:end]


class WireTap:
    """Relay 127.0.0.1:``port`` -> ``target``, recording frames in :attr:`frames`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frames: list[Frame] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    def __enter__(self) -> WireTap:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def uri(self, object_id: str) -> str:
        return f"PYRO:{object_id}@127.0.0.1:{self.port}"

    def snapshot(self) -> list[Frame]:
        with self._lock:
            return list(self.frames)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
            for src, dst, direction in ((client, server, "c2s"), (server, client, "s2c")):
                parser = _Parser(direction, self.frames, self._lock)
                t = threading.Thread(target=self._pump, args=(src, dst, parser), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, parser: _Parser) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            parser.feed(data)
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks, self._socks = self._socks, []
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
        self._listener.close()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(5)
