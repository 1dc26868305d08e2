"""The one step both shells take to read a socket into a :class:`MessageReader`."""

from __future__ import annotations

import socket

from .protocol import MessageReader

__all__ = ["receive"]


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
