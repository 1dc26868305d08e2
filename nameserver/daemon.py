"""A daemon that serves the name server: Pyro5's ``NameServerDaemon``, on our core.

:class:`NameServerDaemon` registers a :class:`~nameserver.service.NameServer`
as ``Pyro.NameServer`` in itself and in its own table (with Pyro5's class
tag), and while it serves it also runs the lease-expiry sweep and, if asked,
the ``GET_NSURI`` broadcast responder, all on its event loop::

    ns = NameServerDaemon("127.0.0.1", 9090, storage="sql:names.db")
    print(ns.uri)
    ns.request_loop()            # or: await ns.serve() in asyncio code
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from remoteobj.auth import require_authenticated
from remoteobj.config import Config
from remoteobj.daemon import Daemon
from remoteobj.uri import URI

from .broadcast import BroadcastResponder, bind_socket, start_responder
from .service import NAMESERVER_NAME, NameServer
from .storage import Storage, open_storage

__all__ = ["NameServerDaemon"]

log = logging.getLogger(__name__)

#: The sweep never runs less often than this (seconds).
MAX_SWEEP_INTERVAL = 1.0


class NameServerDaemon(Daemon):
    """The name server's daemon: serves ``Pyro.NameServer`` and keeps its table clean.

    With ``Config.auth_secret`` set, lookups stay open to everyone (Pyro5
    clients included) while mutations (register, remove, set_metadata, renew)
    need a connection that authenticated (:mod:`remoteobj.auth`).
    """

    #: Clients that do not authenticate are admitted: they may look names up.
    require_auth = False

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        unixsocket: str | None = None,
        storage: str | Storage = "memory",
        config: Config | None = None,
    ) -> None:
        """Bind ``host:port`` (``config.ns_host``/``ns_port`` by default; port 0 picks
        one) or ``unixsocket``, open ``storage`` (``"memory"``, ``"sql:FILE"`` or a
        :class:`Storage`), and register the name server."""
        cfg = config if config is not None else Config()
        if unixsocket is not None:
            super().__init__(unixsocket=unixsocket, config=cfg)
        else:
            super().__init__(
                cfg.ns_host if host is None else host,
                cfg.ns_port if port is None else port,
                config=cfg,
            )
        store = open_storage(storage) if isinstance(storage, str) else storage
        try:
            guard = require_authenticated if cfg.auth_secret else None
            self.nameserver = NameServer(store, config=cfg, authorize=guard)
            self.uri: URI = self.register(self.nameserver, NAMESERVER_NAME)
        except BaseException:
            store.close()
            super().close()
            raise
        self.nameserver.register_self(self.uri)
        self._bc_sock: socket.socket | None = None
        self.responder: BroadcastResponder | None = None
        self._closed = False
        self._stop_requested = False

    def enable_broadcast(self, host: str = "", port: int = 9091) -> tuple[str, int]:
        """Bind the ``GET_NSURI`` responder's UDP socket now (it answers while
        serving); returns the address it is bound to."""
        if self._bc_sock is None:
            self._bc_sock = bind_socket(host, port)
        bound = self._bc_sock.getsockname()
        return str(bound[0]), int(bound[1])

    async def serve(self) -> None:
        """Serve, with the expiry sweep and the broadcast responder, until shutdown.

        A name server daemon that was shut down is not served again.
        """
        transport: asyncio.DatagramTransport | None = None
        if self._bc_sock is not None:
            transport, self.responder = await start_responder(self.uri, self._bc_sock)
            self._bc_sock = None  # the transport owns it now
        sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        try:
            # No await between this check and the server taking note of its loop,
            # so a shutdown() is either seen here or reaches the running server.
            if not self._stop_requested:
                await super().serve()
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if transport is not None:
                transport.close()

    async def _sweep_forever(self) -> None:
        interval = min(MAX_SWEEP_INTERVAL, self.config.ns_lease / 4)
        while True:
            await asyncio.sleep(interval)  # a timer, not a wait for a condition
            try:
                # In a thread: on SQLite storage an expiry is a committed write.
                await asyncio.to_thread(self.nameserver.sweep)
            except Exception:
                log.exception("lease expiry sweep failed; retrying")

    def shutdown(self, grace: float | None = None) -> None:
        """Stop serving (see :meth:`Daemon.shutdown`); also when serving has not started
        yet, so a signal that arrives during start-up is not lost."""
        self._stop_requested = True
        super().shutdown(grace)

    def close(self) -> None:
        """Stop serving and close the storage."""
        super().close()
        if self._bc_sock is not None:
            self._bc_sock.close()
            self._bc_sock = None
        if not self._closed:
            self._closed = True
            self.nameserver.registry.close()  # waits for a sweep in progress
