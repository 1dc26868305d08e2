"""``remoteobj-nsc`` (= ``python -m nameserver.nsc``): name server control.

Pyro5's ``nsc`` commands, flags and output, against any Pyro5-compatible name
server (ours or Pyro5's)::

    remoteobj-nsc -n 127.0.0.1 -p 9090 list
    remoteobj-nsc register example.greeting PYRO:obj@127.0.0.1:5000
    remoteobj-nsc yplookup_all red big

Unlike Pyro5's, a failure -- no name server, an unknown name, a refused
change -- prints one line (``Error: NamingError - unknown name: x``) on
stderr and exits with status 1 instead of a traceback or status 0. Metadata
sets are printed sorted, so the output is stable from run to run.
``removematching`` asks for confirmation like Pyro5's unless ``-y`` is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from remoteobj.client import Proxy
from remoteobj.config import Config
from remoteobj.errors import RemoteObjError
from remoteobj.naming import locate_ns

__all__ = ["COMMANDS", "main", "run_command"]

COMMANDS = (
    "list", "lookup", "register", "remove", "removematching", "listmatching",
    "yplookup_all", "yplookup_any", "setmeta", "ping",
)  # fmt: skip


class UsageError(Exception):
    """Wrong arguments for a command (exit status 1, as Pyro5's ``SystemExit(message)``)."""


def _tags(metadata: Any) -> str:
    """A metadata set as Python prints one, but in sorted order."""
    return "{" + ", ".join(repr(t) for t in sorted(metadata, key=str)) + "}"


def _print_list(result: Mapping[str, Any], title: str = "") -> None:
    print(f"--------START LIST {title}")
    for name, (uri, metadata) in sorted(result.items()):
        print(f"{name} --> {uri}")
        if metadata:
            print("    metadata:", _tags(metadata))
    print(f"--------END LIST {title}")


def run_command(
    ns: Any, command: str, args: Sequence[str], *, ask: Callable[[str], str] = input
) -> None:
    """Run one nsc ``command`` with its ``args`` on the name server proxy ``ns``.

    Raises :class:`UsageError` for wrong arguments and lets the name
    server's errors through.
    """

    def need(count: int, what: str, at_least: bool = False) -> None:
        if (len(args) < count) if at_least else (len(args) != count):
            raise UsageError(what)

    if command == "ping":
        ns.ping()
        print("Name server ping ok.")
    elif command == "list":
        if args:
            _print_list(ns.list(prefix=args[0], return_metadata=True), f"- prefix '{args[0]}'")
        else:
            _print_list(ns.list(return_metadata=True))
    elif command == "listmatching":
        need(1, "requires one argument: pattern")
        _print_list(ns.list(regex=args[0], return_metadata=True), f"- regex '{args[0]}'")
    elif command == "lookup":
        need(1, "requires one argument: name")
        uri, metadata = ns.lookup(args[0], return_metadata=True)
        print(uri)
        if metadata:
            print("metadata:", _tags(metadata))
    elif command == "register":
        need(2, "requires two arguments: name uri")
        ns.register(args[0], args[1], safe=True)
        print(f"Registered {args[0]}")
    elif command == "remove":
        need(1, "requires one argument: name")
        print(f"Removed {args[0]}" if ns.remove(args[0]) > 0 else "Nothing removed")
    elif command == "removematching":
        need(1, "requires one argument: pattern")
        try:
            sure = ask(
                "Potentially removing lots of items from the Name server. Are you sure (y/n)?"
            ).strip()
        except EOFError:
            sure = ""
        if sure in ("y", "Y"):
            print(f"{ns.remove(regex=args[0])} items removed.")
    elif command == "setmeta":
        need(1, "requires arguments: uri and zero or more meta tags", at_least=True)
        metadata = set(args[1:])
        ns.set_metadata(args[0], metadata)
        print("Metadata updated" if metadata else "Metadata cleared")
    elif command in ("yplookup_all", "yplookup_any"):
        need(1, "requires at least one metadata tag argument", at_least=True)
        if command == "yplookup_all":
            found = ns.yplookup(meta_all=list(args), return_metadata=True)
        else:
            found = ns.yplookup(meta_any=list(args), return_metadata=True)
        _print_list(found, " - searched by metadata")
    else:
        raise UsageError(f"unknown command: {command}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remoteobj-nsc", description="remoteobj name server control utility."
    )
    parser.add_argument("-n", "--host", dest="host", default="", help="hostname of the NS")
    parser.add_argument(
        "-p", "--port", dest="port", type=int,
        help="port of the NS (or bc-port if host isn't specified)",
    )  # fmt: skip
    parser.add_argument("-u", "--unixsocket", help="Unix domain socket name of the NS")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    parser.add_argument(
        "-y", "--yes", action="store_true", help="removematching: do not ask for confirmation"
    )
    parser.add_argument("command", choices=COMMANDS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status (0 ok, 1 failure)."""
    options, rest = _parser().parse_known_args(argv)
    if options.verbose:
        print("Locating name server...")
    host = "./u:" + options.unixsocket if options.unixsocket else (options.host or None)
    try:
        ns: Proxy = locate_ns(host, options.port, config=Config.from_env())
    except (RemoteObjError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    with ns:
        if options.verbose:
            print("Name server found:", ns._uri)
        ask = (lambda _prompt: "y") if options.yes else input
        try:
            run_command(ns, options.command, rest, ask=ask)
        except UsageError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        except Exception as exc:  # any failure, remote or local: one line, status 1
            print(f"Error: {type(exc).__name__} - {exc}", file=sys.stderr)
            return 1
    if options.verbose:
        print("Done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
