"""Every exception remoteobj raises, in one hierarchy.

::

    RemoteObjError (alias PyroError)          anything remoteobj itself reports
    ├── CommunicationError                    the conversation with a peer failed
    │   ├── ConnectionClosedError             the peer went away (see ``.sent``)
    │   ├── TimeoutError                      a deadline passed (also builtins.TimeoutError)
    │   └── ProtocolError                     bytes that are not protocol 502
    │       └── MessageTooLargeError          a frame over ``Config.max_message_size``
    ├── NamingError                           name server: unknown name, bad name, ...
    ├── DaemonError                           daemon: unknown object, registration clash, ...
    ├── SecurityError                         refused: private name, failed authentication, ...
    └── SerializeError                        a value could not be encoded or decoded
        └── MessageTooComplexError            a payload over the decoder's element budget

Exceptions raised by *user code* inside a remote method travel as themselves:
a remote ``ValueError`` is raised as ``ValueError`` in the caller, with the
remote traceback attached as a note (``add_note``), exactly the classes Pyro5
would rebuild. Exceptions of classes the receiver will not rebuild arrive as
:class:`SerializeError` naming the class.

On the wire each class travels under the name of its Pyro5 twin
(``Pyro5.errors.NamingError`` and so on), so Pyro5 peers rebuild our errors and
we rebuild theirs; classes Pyro5 does not have travel as their nearest Pyro5
ancestor.
"""

from __future__ import annotations

import builtins
from typing import ClassVar

__all__ = [
    "CommunicationError",
    "ConnectionClosedError",
    "DaemonError",
    "MessageTooComplexError",
    "MessageTooLargeError",
    "NamingError",
    "ProtocolError",
    "PyroError",
    "RemoteObjError",
    "SecurityError",
    "SerializeError",
    "TimeoutError",
    "wire_name",
]


class RemoteObjError(Exception):
    """Base of every error remoteobj raises on its own account."""

    #: The class name this error travels under on the wire.
    wire_class: ClassVar[str] = "Pyro5.errors.PyroError"


#: Pyro5's name for the base class, for code moving over from Pyro5.
PyroError = RemoteObjError


class CommunicationError(RemoteObjError):
    """Talking to the peer failed: connect refused, reset, closed, timed out, garbled."""

    wire_class = "Pyro5.errors.CommunicationError"


class ConnectionClosedError(CommunicationError):
    """The connection closed before the reply arrived.

    ``sent`` tells whether the request had been handed to the network when the
    connection was lost. When it is true the remote method may have run, so the
    call is never repeated on its own: only the caller knows whether it is safe.
    """

    wire_class = "Pyro5.errors.ConnectionClosedError"

    def __init__(self, *args: object, sent: bool = False) -> None:
        super().__init__(*args)
        self.sent = sent


class TimeoutError(CommunicationError, builtins.TimeoutError):
    """A deadline passed: connecting, a call's reply, a frame's body, a handshake.

    It is also a :class:`builtins.TimeoutError`, so ``except TimeoutError`` from
    the standard library catches it too. A call that timed out may still have
    run on the server; it is never re-sent automatically.
    """

    wire_class = "Pyro5.errors.TimeoutError"


class ProtocolError(CommunicationError):
    """Bytes that break protocol 502: bad tag, version, magic, lengths or sequence.

    ``seq`` and ``serializer_id`` are those of the offending frame when its
    header could be read (so the error reply can name the request), else ``None``.
    """

    wire_class = "Pyro5.errors.ProtocolError"
    seq: int | None = None
    serializer_id: int | None = None


class MessageTooLargeError(ProtocolError):
    """A frame (after decompression) larger than ``Config.max_message_size``.

    Raised as soon as the 40-byte header announcing it is in, before any of the
    body is read or allocated.
    """

    wire_class = "Pyro5.errors.MessageTooLargeError"


class NamingError(RemoteObjError):
    """The name server refused: unknown name, duplicate safe registration, bad arguments."""

    wire_class = "Pyro5.errors.NamingError"


class DaemonError(RemoteObjError):
    """The daemon refused: unknown object id, id already registered, not started."""

    wire_class = "Pyro5.errors.DaemonError"


class SecurityError(RemoteObjError):
    """Refused on purpose: a private or unexposed name, a class not on the allow-list,
    a failed authentication or handshake check."""

    wire_class = "Pyro5.errors.SecurityError"


class SerializeError(RemoteObjError):
    """A value could not be encoded, or a payload could not be decoded safely."""

    wire_class = "Pyro5.errors.SerializeError"


class MessageTooComplexError(SerializeError):
    """A payload with more elements or deeper nesting than the decoder's budget.

    Raised before the payload is parsed, so a hostile request costs nothing in
    proportion to what it would have expanded to.
    """

    wire_class = "Pyro5.errors.SerializeError"


def wire_name(exc_type: type[BaseException]) -> str:
    """The ``__class__`` string an exception of this type travels under."""
    wire = getattr(exc_type, "wire_class", None)
    if isinstance(wire, str):
        return wire
    return f"{exc_type.__module__}.{exc_type.__name__}"


#: Pyro5 class name -> our class, for rebuilding errors that arrive.
BY_WIRE_NAME: dict[str, type[RemoteObjError]] = {
    cls.wire_class: cls
    for cls in (
        RemoteObjError,
        CommunicationError,
        ConnectionClosedError,
        TimeoutError,
        ProtocolError,
        MessageTooLargeError,
        NamingError,
        DaemonError,
        SecurityError,
        SerializeError,
    )
}
