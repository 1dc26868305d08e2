"""``remoteobj-ns`` (= ``python -m nameserver``): start a name server.

The flags and the printed lines are those of Pyro5's ``pyro5-ns``::

    remoteobj-ns -n 127.0.0.1 -p 9090 -s sql:names.db
    Not starting broadcast server for localhost.
    NS running on 127.0.0.1:9090 (127.0.0.1)
    URI = PYRO:Pyro.NameServer@127.0.0.1:9090

SIGINT or SIGTERM stops it cleanly (``NS shut down.``, exit status 0).

One difference from Pyro5: an explicit ``--bchost`` starts the broadcast
responder even for a name server on localhost (Pyro5 never does), so
discovery can be used, and tested, on a machine's loopback alone.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
from collections.abc import Sequence

from remoteobj.config import Config
from remoteobj.errors import RemoteObjError
from remoteobj.server import run_loop

from .daemon import NameServerDaemon

__all__ = ["main"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remoteobj-ns", description="remoteobj name server (Pyro5-compatible)."
    )
    parser.add_argument("-n", "--host", help="hostname to bind server on")
    parser.add_argument("-p", "--port", type=int, help="port to bind server on (0=random)")
    parser.add_argument("-u", "--unixsocket", help="Unix domain socket name to bind server on")
    parser.add_argument(
        "-s", "--storage", default="memory", help="Storage system to use (memory, sql:file)"
    )
    parser.add_argument("--bchost", help='hostname to bind broadcast server on (default is "")')
    parser.add_argument("--bcport", type=int, help="port to bind broadcast server on (0=random)")
    parser.add_argument(
        "-x", "--nobc", dest="enablebc", action="store_false", default=True,
        help="don't start a broadcast server",
    )  # fmt: skip
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _broadcast_plan(
    daemon: NameServerDaemon, args: argparse.Namespace, config: Config
) -> tuple[tuple[str, int] | None, str | None]:
    """Where the responder listens (or ``None``), and the line explaining why not."""
    if not args.enablebc or args.unixsocket:
        return None, None
    bound = str(daemon.sock.getsockname()[0])
    if ":" in bound:
        return None, "Not starting broadcast server for IPv6."
    if args.bchost is None and _is_loopback(bound):
        return None, "Not starting broadcast server for localhost."
    bchost = args.bchost if args.bchost is not None else (config.ns_bchost or "")
    bcport = args.bcport if args.bcport is not None else config.ns_bcport
    return (bchost, bcport), None


async def _serve(daemon: NameServerDaemon) -> None:
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, daemon.shutdown)
    await daemon.serve()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the name server until SIGINT/SIGTERM; the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = Config.from_env()
        daemon = NameServerDaemon(
            args.host, args.port, unixsocket=args.unixsocket, storage=args.storage, config=config
        )
    except (ValueError, OSError, RemoteObjError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    # From here on a stop signal means a clean stop, even before the loop runs
    # (a supervisor may signal as soon as it sees the URI line).
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda _signum, _frame: daemon.shutdown())
    try:
        broadcast, reason = _broadcast_plan(daemon, args, config)
        if reason:
            print(reason)
        if broadcast is not None:
            try:
                bchost, bcport = daemon.enable_broadcast(*broadcast)
            except OSError as exc:
                # Discovery is a convenience: a taken UDP port (another name
                # server on this host) must not keep this one from serving.
                print(f"Broadcast server not started: {exc}")
            else:
                print(f"Broadcast server running on {bchost}:{bcport}")
        hostip = "Unix domain socket" if args.unixsocket else str(daemon.sock.getsockname()[0])
        existing = daemon.nameserver.count()
        if existing > 1:  # our own registration does not count
            print(f"Persistent store contains {existing} existing registrations.")
        print(f"NS running on {daemon.location} ({hostip})")
        print(f"URI = {daemon.uri}", flush=True)
        run_loop(lambda: _serve(daemon))  # run_loop takes the coroutine function
    finally:
        daemon.close()
    print("NS shut down.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
