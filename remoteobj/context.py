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
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallContext", "current_context"]


@dataclass(slots=True)
class CallContext:
    """What is known about the current call (server) or the next calls (client)."""

    #: Correlation id of the request chain; sent in the header when set.
    correlation_id: uuid.UUID | None = None
    #: Annotations of the incoming request (server) / to send (client).
    annotations: dict[str, bytes] = field(default_factory=dict)
    #: Annotations the server sends back with the reply to this call.
    response_annotations: dict[str, bytes] = field(default_factory=dict)
    #: ``(host, port)`` of the caller, or the Unix socket path; ``None`` on the client.
    client_address: Any = None
    #: What the client sent as handshake data when it connected.
    handshake: Any = None
    #: Sequence number, flags and serializer id of the request being served.
    seq: int = 0
    flags: int = 0
    serializer_id: int = 0
    #: The server's per-connection state (opaque to user code).
    connection: Any = field(default=None, repr=False)


_context: ContextVar[CallContext] = ContextVar("remoteobj_call_context")


def current_context() -> CallContext:
    """The :class:`CallContext` of this thread or task, created empty on first use."""
    try:
        return _context.get()
    except LookupError:
        ctx = CallContext()
        _context.set(ctx)
        return ctx


def set_context(ctx: CallContext) -> None:
    """Make ``ctx`` the current context (used by the daemon around each call)."""
    _context.set(ctx)
