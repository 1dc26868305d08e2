"""The greeting server: ``python examples/greeting/server.py``.

Registers ``example.greeting`` in the name server that
:func:`remoteobj.locate_ns` finds (``REMOTEOBJ_NS_HOST``/``REMOTEOBJ_NS_PORT``
say where; ``localhost:9090`` by default), binds to ``REMOTEOBJ_HOST``
(``localhost`` by default) on a free port, and serves until Ctrl-C or
SIGTERM. The name is held under a lease: it leaves the name server when the
server stops, and within a lease (30 s) if the process is killed.
"""

from __future__ import annotations

import signal
import sys

import remoteobj


@remoteobj.expose
class Greeter:
    """The remote object: every public method of an exposed class is remote."""

    def welcome_message(self, name: str) -> str:
        """The greeting for ``name``."""
        return f"Hi welcome {name}"


def main() -> int:
    """Serve a :class:`Greeter` as ``example.greeting`` until interrupted."""
    # Ctrl-C and `kill` stop the server the same way: KeyboardInterrupt, which
    # unwinds serve() so it unregisters the name and closes its sockets.
    # SIGINT is set explicitly too: a shell starts background jobs with it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    try:
        remoteobj.serve({Greeter(): "example.greeting"})
    except KeyboardInterrupt:
        pass
    except remoteobj.errors.NamingError as exc:
        print(f"{exc}: start one first with `remoteobj-ns`", file=sys.stderr)
        return 1
    print("Server stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
