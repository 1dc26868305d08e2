"""An echo server for quick checks, like Pyro5's ``python -m Pyro5.utils.echoserver``.

::

    python -m remoteobj.echoserver                 # localhost, a free port
    python -m remoteobj.echoserver -H 127.0.0.1 -p 9999 -v
    python -m remoteobj.echoserver -n              # also register test.echoserver in the NS

It serves :class:`EchoServer` as ``test.echoserver`` (the same object id and
methods as Pyro5's, so Pyro5 clients and tools use it unchanged) and prints::

    object name: test.echoserver
    echo uri: PYRO:test.echoserver@127.0.0.1:9999
    echoserver running.

``-n`` registers the name in the name server that :func:`remoteobj.locate_ns`
finds (``--nshost``/``--nsport`` to point at one), under a lease that is
dropped when the server stops. The remote ``shutdown()`` method, SIGINT and
SIGTERM stop it cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .config import Config
from .daemon import Daemon
from .exposure import expose, oneway

__all__ = ["OBJECT_NAME", "EchoServer", "main"]

#: The object id (and name server name) the echo server is served under.
OBJECT_NAME = "test.echoserver"


@expose
class EchoServer:
    """The echo object: every method Pyro5's echo server has (``slow`` waits 5 s)."""

    def __init__(self, daemon: Daemon | None = None, verbose: bool = False) -> None:
        self._daemon = daemon
        self._verbose = verbose

    def _say(self, text: str) -> None:
        if self._verbose:
            print(f"{time.asctime()} - {text}", flush=True)

    def echo(self, message: Any) -> Any:
        """Return the message."""
        self._say(f"echo: {message!r}")
        return message

    def error(self) -> None:
        """Raise a ValueError."""
        self._say("error: generating exception")
        raise ValueError("this is the generated error from echoserver echo() method")

    def error_with_text(self) -> None:
        """Raise a ValueError with a message."""
        self._say("error: generating exception")
        raise ValueError("the message of the error")

    @oneway
    def oneway_echo(self, message: Any) -> str:
        """Like echo, but oneway: the caller does not wait."""
        self._say(f"oneway_echo: {message!r}")
        return "bogus return value"

    def slow(self) -> str:
        """Answer after 5 seconds."""
        self._say("slow: waiting a bit...")
        time.sleep(5)
        return "Finally, an answer!"

    def generator(self) -> Iterator[str]:
        """Stream three items (a remote iterator)."""
        yield "one"
        yield "two"
        yield "three"

    def nan(self) -> float:
        """Return NaN."""
        return float("nan")

    def inf(self) -> float:
        """Return infinity."""
        return float("inf")

    @oneway
    def oneway_slow(self) -> str:
        """Take 5 seconds, oneway."""
        self._say("oneway_slow: waiting a bit...")
        time.sleep(5)
        return "bogus return value"

    def shutdown(self) -> None:
        """Stop the echo server (after this call is answered)."""
        self._say("shutting down")
        if self._daemon is not None:
            self._daemon.shutdown()

    @property
    def verbose(self) -> bool:
        """Whether calls are printed."""
        return self._verbose

    @verbose.setter
    def verbose(self, onoff: bool) -> None:
        self._verbose = bool(onoff)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m remoteobj.echoserver", description="remoteobj test echo server."
    )
    parser.add_argument("-H", "--host", default=None, help="host to bind (default: localhost)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port to bind (default: any)")
    parser.add_argument("-u", "--unixsocket", help="Unix domain socket to bind instead")
    parser.add_argument(
        "-n", "--naming", action="store_true", help="register in the name server too"
    )
    parser.add_argument("--nshost", default=None, help="name server host (default: locate it)")
    parser.add_argument("--nsport", type=int, default=None, help="name server port")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every call")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the echo server until it is shut down; the exit status."""
    args = _parser().parse_args(argv)
    if args.verbose:
        args.quiet = False
    cfg = Config.from_env()
    host = args.host if args.host is not None or args.unixsocket else cfg.host
    daemon = Daemon(host, args.port, unixsocket=args.unixsocket, config=cfg)
    echo = EchoServer(daemon, verbose=args.verbose)
    with daemon:
        if args.naming:
            from .naming import locate_ns

            with locate_ns(args.nshost, args.nsport, config=cfg) as ns:
                ns_uri = ns._uri
            uri = daemon.register(echo, OBJECT_NAME, name=OBJECT_NAME, ns=ns_uri)
            if args.verbose:
                print(f"using name server at {ns_uri}")
        else:
            uri = daemon.register(echo, OBJECT_NAME)
        if not args.quiet:
            print("Starting remoteobj's test echo server.")
            print(f"object name: {OBJECT_NAME}")
            print(f"echo uri: {uri}")
            print("echoserver running.", flush=True)

        def stop(signum: int, frame: Any) -> None:
            daemon.shutdown()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        daemon.request_loop()
    if not args.quiet:
        print("echoserver stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
