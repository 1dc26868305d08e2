"""Start the chain: ``python examples/chain/client.py``.

Sends ``["hello"]`` to ``example.chain.1`` and prints the trail, which with
the three servers of this directory running is::

    Result=['passed on from 1', 'passed on from 2', 'passed on from 3', 'complete at 1']
"""

from __future__ import annotations

import sys

import remoteobj


def main() -> int:
    """Call the first link of the chain and print what came back."""
    try:
        # REMOTEOBJ_NS_HOST/REMOTEOBJ_NS_PORT, when set, say where the name server is.
        with remoteobj.Proxy("PYRONAME:example.chain.1") as first:
            print(f"Result={first.process(['hello'])}")
    except remoteobj.errors.NamingError as exc:
        print(f"{exc} (are the name server and the three chain servers running?)",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
