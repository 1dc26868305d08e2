"""The ``Chain`` object: each link forwards a message to the next until it comes home.

A message is the list of links it has passed. A link that finds its own name
in it closes the chain (``complete at N``); otherwise it appends its name,
forwards the message to ``example.chain.NEXT`` and prefixes the answer with
``passed on from N``. With three links ``1 -> 2 -> 3 -> 1`` the last hop
calls link 1 again *while link 1 is still inside the first call*: the daemon
serves the second call in another worker thread.

The seed's version registered ``example.chainTopology.N`` but looked up
``example.chain.N``, so the chain never closed; here both are
``example.chain.N``.
"""

from __future__ import annotations

import remoteobj

#: Prefix of every link's name in the name server.
NAME_PREFIX = "example.chain."


class Chain:
    """One link of the chain, named ``name``, forwarding to ``next_name``."""

    def __init__(self, name: str, next_name: str, config: remoteobj.Config | None = None) -> None:
        self.name = name
        self.next_name = next_name
        # A proxy connects on first use, so the next link need not be up yet.
        # One proxy serves every call: proxies may be shared between threads.
        self._next = remoteobj.Proxy(f"PYRONAME:{NAME_PREFIX}{next_name}", config=config)

    def __repr__(self) -> str:
        return f"Chain({self.name!r} -> {self.next_name!r})"

    @remoteobj.expose
    def process(self, message: list[str]) -> list[str]:
        """Pass ``message`` along the chain; the trail of links it went through."""
        if self.name in message:
            print(f"Back at {self.name}; the chain is closed!", flush=True)
            return [f"complete at {self.name}"]
        print(f"{self.name} forwarding the message to the object {self.next_name}", flush=True)
        message.append(self.name)
        result: list[str] = self._next.process(message)
        result.insert(0, f"passed on from {self.name}")
        return result

    def close(self) -> None:
        """Close the connection to the next link (local: only ``process`` is exposed)."""
        self._next._release()
