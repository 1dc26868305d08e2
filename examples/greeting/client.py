"""The greeting client: ``python examples/greeting/client.py [NAME]``.

Calls ``welcome_message`` on the object registered as ``example.greeting``
and prints the answer (``Hi welcome NAME``). Without ``NAME`` it asks for
one. The name server is found as the server found it (``REMOTEOBJ_NS_HOST``,
``REMOTEOBJ_NS_PORT``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import remoteobj


def main(argv: Sequence[str] | None = None) -> int:
    """Greet ``NAME`` (or the name typed in) through the remote greeter."""
    parser = argparse.ArgumentParser(description="Ask the greeting server for a greeting.")
    parser.add_argument("name", nargs="?", help="who to greet (asked for when not given)")
    args = parser.parse_args(argv)
    name = args.name if args.name is not None else input("What is your name? ").strip()
    try:
        # REMOTEOBJ_NS_HOST/REMOTEOBJ_NS_PORT, when set, say where the name server is.
        with remoteobj.Proxy("PYRONAME:example.greeting") as greeter:
            print(greeter.welcome_message(name))
    except remoteobj.errors.NamingError as exc:
        print(f"{exc} (is the name server running, and the greeting server?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
