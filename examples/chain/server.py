"""One link of the chain: ``python examples/chain/server.py THIS NEXT``.

Serves a :class:`Chain` named ``THIS`` as ``example.chain.THIS``, forwarding
to ``example.chain.NEXT``, until Ctrl-C or SIGTERM. Start three::

    python examples/chain/server.py 1 2
    python examples/chain/server.py 2 3
    python examples/chain/server.py 3 1

The name server is the one :func:`remoteobj.locate_ns` finds
(``REMOTEOBJ_NS_HOST``/``REMOTEOBJ_NS_PORT``); the daemon binds to
``REMOTEOBJ_HOST`` on a free port.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from chain import NAME_PREFIX, Chain

import remoteobj


def main(argv: Sequence[str] | None = None) -> int:
    """Serve link ``THIS`` of the chain until interrupted."""
    parser = argparse.ArgumentParser(description="Serve one link of the chain.")
    parser.add_argument("this", help="this link's name (1, 2, 3...)")
    parser.add_argument("next", help="the name of the link to forward to")
    args = parser.parse_args(argv)
    # Ctrl-C and `kill` both unwind serve() (KeyboardInterrupt), which unregisters
    # the name; SIGINT is set explicitly as a shell's background jobs ignore it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    link = Chain(args.this, args.next)
    try:
        remoteobj.serve({link: NAME_PREFIX + args.this})
    except KeyboardInterrupt:
        pass
    except remoteobj.errors.NamingError as exc:
        print(f"{exc}: start one first with `remoteobj-ns`", file=sys.stderr)
        return 1
    finally:
        link.close()
    print(f"server_{args.this} stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
