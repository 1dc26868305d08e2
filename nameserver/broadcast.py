"""The UDP responder for Pyro5's discovery broadcast.

A client that does not know where the name server is sends the 9-byte
datagram ``GET_NSURI`` to port 9091 (broadcast); the responder answers with
the name server's URI text, latin-1 encoded. When the name server listens on
``0.0.0.0`` the answer names the address of the interface that reaches the
asker, as Pyro5 does. It runs on the name server's event loop: no thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import cast

from remoteobj.uri import URI

__all__ = ["GET_NSURI", "BroadcastResponder", "bind_socket", "start_responder"]

log = logging.getLogger(__name__)

GET_NSURI = b"GET_NSURI"
#: Replies per second, at most. A reply is ~4x the request, so an unlimited
#: responder is a (small) reflection amplifier for spoofed requests.
MAX_REPLIES_PER_SECOND = 200.0


def _interface_ip(peer: str) -> str | None:
    """Our address on the interface that routes to ``peer`` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((peer, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


class BroadcastResponder(asyncio.DatagramProtocol):
    """Answers ``GET_NSURI`` with the name server's URI; ignores everything else."""

    def __init__(self, ns_uri: URI | str, *, rate: float = MAX_REPLIES_PER_SECOND) -> None:
        """Answer with ``ns_uri``; reply to at most ``rate`` requests per second."""
        self.ns_uri = ns_uri if isinstance(ns_uri, URI) else URI(ns_uri)
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0
        self._rate = rate
        self._tokens = rate
        self._refilled = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to reply on."""
        # A cast, not an isinstance check: uvloop's UDP transport is not a
        # subclass of asyncio.DatagramTransport, though it has its methods.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def answer_for(self, peer: str) -> bytes:
        """The reply to a request from ``peer``."""
        uri = self.ns_uri
        if uri.host == "0.0.0.0":  # noqa: S104 - comparing, not binding
            ip = _interface_ip(peer)
            if ip is not None:
                uri = URI(f"{uri.protocol}:{uri.object}@{ip}:{uri.port}")
        return str(uri).encode("iso-8859-1")

    def _allowed(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        """Reply to ``GET_NSURI`` (exactly those bytes, as Pyro5 checks)."""
        if data != GET_NSURI or self.transport is None:
            return
        if not self._allowed():
            log.debug("discovery request from %s dropped: over the reply rate", addr[0])
            return
        reply = self.answer_for(str(addr[0]))
        log.debug("answering discovery request from %s: %s", addr[0], reply)
        self.answered += 1
        self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for an earlier reply: nothing to do but note it."""
        log.debug("broadcast responder: %s", exc)


def bind_socket(host: str = "", port: int = 9091) -> socket.socket:
    """A UDP socket bound to ``host:port`` for the responder (port 0 picks one).

    ``host`` ``""`` (all interfaces) is needed to hear real broadcasts; tests
    bind 127.0.0.1. Bound here, synchronously, so a taken port is reported
    before the name server says it is running.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def start_responder(
    ns_uri: URI | str, sock: socket.socket
) -> tuple[asyncio.DatagramTransport, BroadcastResponder]:
    """Answer ``GET_NSURI`` on ``sock`` (see :func:`bind_socket`) on the running loop.

    Close the returned transport to stop (that closes the socket too).
    """
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: BroadcastResponder(ns_uri), sock=sock
    )
    log.info("name server broadcast responder on %s:%d", *sock.getsockname()[:2])
    return transport, protocol
