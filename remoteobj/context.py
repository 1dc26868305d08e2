"""The call context, carried in :mod:`contextvars` (never ``threading.local``).

On the server, :func:`current_context` inside a remote method describes the
call being served: who called, the correlation id, the request's annotations,
the connection's handshake data; annotations put in ``response_annotations``
travel back with the reply.

On the client, what you set on :func:`current_context` applies to the calls
this thread or task makes next: ``correlation_id`` is sent in the header and
``annotations`` with each request. Inside a remote method both are already
set from the incoming call, so a daemon that calls another daemon passes the
correlation id along on its own.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token
from typing import Any

__all__ = ["CallContext", "current_context"]


class CallContext:
    """What is known about the current call (server) or the next calls (client).

    Attributes: ``correlation_id`` (a :class:`uuid.UUID` or ``None``; sent in
    the header when set), ``annotations`` (of the incoming request on the
    server, to send on the client), ``response_annotations`` (sent back with
    the reply to this call), ``client_address`` (``(host, port)`` or a Unix
    socket path; ``None`` on the client), ``handshake`` (what the client sent
    when it connected), ``seq``, ``flags``, ``serializer_id`` (of the request
    being served) and ``connection`` (the server's per-connection state,
    opaque to user code).
    """

    __slots__ = ("_corr", "annotations", "client_address", "connection", "flags", "handshake",
                 "response_annotations", "seq", "serializer_id")  # fmt: skip

    def __init__(
        self,
        correlation_id: uuid.UUID | None = None,
        *,
        corr_id: bytes | None = None,
        annotations: dict[str, bytes] | None = None,
        response_annotations: dict[str, bytes] | None = None,
        client_address: Any = None,
        handshake: Any = None,
        seq: int = 0,
        flags: int = 0,
        serializer_id: int = 0,
        connection: Any = None,
    ) -> None:
        # The id is kept as the 16 wire bytes; the UUID object is only built when
        # user code asks for it (most calls never do, and it costs a microsecond).
        self._corr = correlation_id.bytes if correlation_id is not None else corr_id
        self.annotations = annotations if annotations is not None else {}
        self.response_annotations = response_annotations if response_annotations is not None else {}
        self.client_address = client_address
        self.handshake = handshake
        self.seq = seq
        self.flags = flags
        self.serializer_id = serializer_id
        self.connection = connection

    @property
    def correlation_id(self) -> uuid.UUID | None:
        """The correlation id of the request chain, or ``None``."""
        return uuid.UUID(bytes=self._corr) if self._corr is not None else None

    @correlation_id.setter
    def correlation_id(self, value: uuid.UUID | None) -> None:
        self._corr = value.bytes if value is not None else None

    @property
    def corr_id(self) -> bytes | None:
        """The correlation id as the 16 bytes sent on the wire, or ``None``."""
        return self._corr

    def __repr__(self) -> str:
        return (f"CallContext(correlation_id={self.correlation_id}, client_address="
                f"{self.client_address!r}, annotations={self.annotations!r})")  # fmt: skip


_context: ContextVar[CallContext] = ContextVar("remoteobj_call_context")


def current_context() -> CallContext:
    """The :class:`CallContext` of this thread or task, created empty on first use."""
    try:
        return _context.get()
    except LookupError:
        ctx = CallContext()
        _context.set(ctx)
        return ctx


def set_context(ctx: CallContext) -> Token[CallContext]:
    """Make ``ctx`` the current context; give the token to :func:`reset_context` after."""
    return _context.set(ctx)


def reset_context(token: Token[CallContext]) -> None:
    """Restore the context that was current before :func:`set_context`."""
    _context.reset(token)
