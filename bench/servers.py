"""The servers ``bench/run.py`` measures: one ``Bench`` object, served by remoteobj or Pyro5.

``python bench/servers.py KIND PORT`` (KIND: ``remoteobj``, ``remoteobj-nopoll``,
``pyro5``, ``raw-thread``, ``raw-loop``, ``raw-poll``) binds 127.0.0.1:PORT (0:
any free port) and prints ``READY <uri-or-port>`` once it accepts connections;
it serves until killed. ``bench/run.py`` starts it pinned
to the server CPU and kills it by PID.

Both RPC servers use their library's defaults (remoteobj: ``Config.from_env()``,
which is ``Config()`` unless ``REMOTEOBJ_*`` variables are set;
Pyro5 5.17: the thread-pool server, ``THREADPOOL_SIZE`` 80), so the figures
are what a user gets out of the box; ``remoteobj-nopoll`` turns the daemon's
busy-poll off (``request_spin=0``) for the reference rows. The ``raw-*``
servers echo bytes on plain sockets: the ceiling a Python RPC server on this
machine can approach, sleeping in ``recv`` or (``raw-poll``) polling first.
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"
OBJECT_ID = "bench"


def _to_bytes(x: Any) -> Any:
    """Serpent sends bytes as ``{"data": base64, "encoding": "base64"}``; a server turns it back."""
    if isinstance(x, dict) and x.get("encoding") == "base64":
        import serpent

        return serpent.tobytes(x)
    return x


def make_bench(
    expose: Callable[[type], type], oneway: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> type:
    """The benchmark service class, exposed with the given library's decorators."""

    class Bench:
        def __init__(self) -> None:
            self._count = 0
            self._lock = threading.Lock()

        def ping(self) -> None:
            """The smallest call: no argument, ``None`` back."""

        def echo(self, x: Any) -> Any:
            """Returns its argument."""
            return x

        def take(self, x: Any) -> int:
            """Receives a (big) argument (serpent bytes turned back into bytes); its length."""
            return len(_to_bytes(x))

        @oneway
        def fire(self, x: Any) -> None:
            """Oneway: counts the calls that arrived."""
            with self._lock:
                self._count += 1

        def count(self) -> int:
            """How many ``fire`` calls have run."""
            with self._lock:
                return self._count

        def dropped(self) -> int:
            """Oneway calls the daemon dropped past its queue bound (remoteobj's
            ``oneway_queue``, see SECURITY.md; Pyro5 has no bound and drops none)."""
            return 0

    exposed: type = expose(Bench)
    return exposed


def serve_remoteobj(port: int, *, busy_poll: bool = True) -> None:
    import remoteobj

    bench = make_bench(remoteobj.expose, remoteobj.oneway)
    # Defaults, unless REMOTEOBJ_* variables say otherwise (bench/run.py clears them).
    config = remoteobj.Config.from_env()
    if not busy_poll:
        config = config.replace(request_spin=0.0)
    daemon = remoteobj.Daemon(HOST, port, config=config)

    @remoteobj.expose
    class Bench(bench):  # type: ignore[valid-type, misc]
        def dropped(self) -> int:
            return int(getattr(daemon._server, "_oneway_dropped", 0))

    uri = daemon.register(Bench(), OBJECT_ID)
    print("READY", uri, flush=True)
    daemon.request_loop()


def serve_pyro5(port: int) -> None:
    import Pyro5.api

    cls = make_bench(Pyro5.api.expose, Pyro5.api.oneway)
    daemon = Pyro5.api.Daemon(host=HOST, port=port)
    uri = daemon.register(cls(), OBJECT_ID)
    print("READY", uri, flush=True)
    daemon.requestLoop()


def serve_raw_thread(port: int) -> None:
    """A thread per connection doing blocking recv/sendall (Pyro5's model, no protocol)."""
    lsock = socket.create_server((HOST, port), backlog=1024)
    print("READY", lsock.getsockname()[1], flush=True)

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    while True:
        conn, _ = lsock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def serve_raw_poll(port: int) -> None:
    """``raw-thread`` with a busy-poll before every read (remoteobj's SocketWatch with
    its daemon's default budget): the ceiling for servers that poll."""
    import remoteobj
    from remoteobj.spinning import SocketWatch

    lsock = socket.create_server((HOST, port), backlog=1024)
    print("READY", lsock.getsockname()[1], flush=True)

    def echo(conn: socket.socket) -> None:
        watch = SocketWatch(conn.fileno(), remoteobj.Config().request_spin)
        with conn:
            while True:
                watch.spin()
                if not (data := conn.recv(65536)):
                    return
                conn.sendall(data)

    while True:
        conn, _ = lsock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def serve_raw_loop(port: int) -> None:
    """One thread, epoll, non-blocking echo: no thread switch at all."""
    lsock = socket.create_server((HOST, port), backlog=1024)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    print("READY", lsock.getsockname()[1], flush=True)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                conn, _ = lsock.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, True)
                continue
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                continue
            sock.send(data)  # tiny echoes always fit the socket buffer


SERVERS = {
    "remoteobj": serve_remoteobj,
    "remoteobj-nopoll": lambda port: serve_remoteobj(port, busy_poll=False),
    "pyro5": serve_pyro5,
    "raw-thread": serve_raw_thread,
    "raw-loop": serve_raw_loop,
    "raw-poll": serve_raw_poll,
}


def main() -> None:
    kind = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    SERVERS[kind](port)


if __name__ == "__main__":
    main()
