"""The socket reads both shells share: into a :class:`MessageReader`, or a large body in place."""

from __future__ import annotations

import socket
import struct

from .protocol import MessageReader

__all__ = ["receive", "receive_body", "timeval"]


def receive(sock: socket.socket, reader: MessageReader) -> int:
    """Read what ``sock`` has (as much as the frame in progress wants) into ``reader``;
    the byte count, 0 at the end of the stream.

    Socket errors (``BlockingIOError`` included) and the reader's
    :class:`~remoteobj.errors.ProtocolError` propagate.
    """
    data = sock.recv(reader.recv_size())
    if data:
        reader.feed(data)
    return len(data)


def receive_body(sock: socket.socket, view: memoryview, wait: float) -> int:
    """Receive into ``view`` (a large body's buffer, see
    :meth:`MessageReader.body_buffer`) until it is full, waiting in the kernel
    for at most ``wait`` seconds: the byte count, -1 if nothing came in time,
    0 at the end of the stream or on a socket error.

    One ``recv(MSG_WAITALL)`` on a socket made blocking for the call: the
    kernel copies each arriving segment as it comes, instead of waking the
    caller for it (about six wake-ups per MiB on loopback). ``sock`` is left
    non-blocking, as a loop-served socket must be.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(wait))
        sock.setblocking(True)
        try:
            return sock.recv_into(view, 0, socket.MSG_WAITALL)
        finally:
            sock.setblocking(False)
    except (BlockingIOError, InterruptedError):  # SO_RCVTIMEO expired with nothing read
        return -1
    except OSError:
        return 0


def timeval(seconds: float | None) -> bytes:
    """``seconds`` as the ``struct timeval`` of SO_RCVTIMEO/SO_SNDTIMEO (``None``: no limit)."""
    if seconds is None:
        return struct.pack("@ll", 0, 0)
    whole = int(seconds)
    micros = max(int((seconds - whole) * 1_000_000), 0)
    if whole == 0 and micros == 0:
        micros = 1  # zero would mean "block forever"
    return struct.pack("@ll", whole, micros)
