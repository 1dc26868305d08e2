"""``serve()``: register objects and serve them until interrupted, in one call."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from .config import Config
from .daemon import Daemon

__all__ = ["serve"]


def serve(
    objects: Mapping[Any, str | None],
    *,
    host: str | None = None,
    port: int = 0,
    unixsocket: str | None = None,
    daemon: Daemon | None = None,
    use_ns: bool = True,
    verbose: bool = True,
    config: Config | None = None,
) -> None:
    """Serve ``{object_or_class: name}`` until interrupted (Pyro5's ``serve``).

    With ``use_ns`` each name is registered in the name server that
    :func:`remoteobj.locate_ns` finds, under a lease the daemon keeps renewing,
    so the names vanish if this process dies; without it the name is the
    object id. ``config`` defaults to ``Config.default()`` (the environment).

    SIGINT raises :class:`KeyboardInterrupt` as usual; SIGTERM (when called
    from the main thread) shuts the daemon down gracefully and returns. Either
    way the names are removed from the name server.
    """
    cfg = config if config is not None else Config.default()
    if daemon is None:
        daemon = Daemon(host, port, unixsocket=unixsocket, config=cfg)
    with daemon:
        for obj, name in objects.items():
            if use_ns and name:
                uri = daemon.register(obj, name=name)
            else:
                uri = daemon.register(obj, name or None)
            if verbose:
                print(
                    f"Object {obj!r}:\n    uri = {uri}" + (f"\n    name = {name}" if name else "")
                )
        if verbose:
            print("remoteobj daemon running.", flush=True)
        with _shutdown_on_sigterm(daemon):
            daemon.request_loop()


@contextlib.contextmanager
def _shutdown_on_sigterm(daemon: Daemon) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: daemon.shutdown())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
