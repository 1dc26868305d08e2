"""The one step both shells take to read a socket into a :class:`MessageReader`."""

from __future__ import annotations

import socket

from .protocol import MessageReader

__all__ = ["receive"]


def receive(sock: socket.socket, reader: MessageReader) -> int:
    """Read what ``sock`` has into ``reader``; the byte count, 0 at the end of the stream.

    The body of a large frame goes straight into the reader's buffer
    (``recv_into``, no copy); anything else is read and fed. Socket errors
    (``BlockingIOError`` included) and the reader's
    :class:`~remoteobj.errors.ProtocolError` propagate.
    """
    if reader.in_body:
        return reader.fill(sock.recv_into)
    data = sock.recv(reader.recv_size())
    if data:
        reader.feed(data)
    return len(data)
