"""The greeting client on asyncio: ``python examples/greeting/async_client.py [NAME ...]``.

Greets every ``NAME`` through one :class:`remoteobj.AsyncProxy`: the calls
are all in flight at once on a single connection, and the answers are
printed in the order of the names, one ``Hi welcome NAME`` per line.
Without names it asks for one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import remoteobj


async def greet(names: Sequence[str]) -> list[str]:
    """The greetings for ``names``, asked for concurrently over one connection."""
    async with remoteobj.AsyncProxy("PYRONAME:example.greeting") as greeter:
        return list(await asyncio.gather(*(greeter.welcome_message(n) for n in names)))


def main(argv: Sequence[str] | None = None) -> int:
    """Greet every name given (or the name typed in)."""
    parser = argparse.ArgumentParser(description="Ask the greeting server, with asyncio.")
    parser.add_argument("names", nargs="*", help="who to greet (asked for when none is given)")
    args = parser.parse_args(argv)
    names = args.names or [input("What is your name? ").strip()]
    try:
        greetings = asyncio.run(greet(names))
    except remoteobj.errors.NamingError as exc:
        print(f"{exc} (is the name server running, and the greeting server?)", file=sys.stderr)
        return 1
    for line in greetings:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
