"""The remoteobj name server: Pyro5's ``Pyro.NameServer``, persistent, with leases.

- :mod:`nameserver.registry` -- the name table (pure): semantics, limits, leases
- :mod:`nameserver.storage` -- memory or SQLite (``sql:FILE``) persistence
- :mod:`nameserver.service` -- the exposed ``Pyro.NameServer`` object
- :mod:`nameserver.daemon` -- the daemon serving it, with expiry sweep and discovery
- :mod:`nameserver.broadcast` -- the ``GET_NSURI`` UDP responder
- :mod:`nameserver.cli` / :mod:`nameserver.nsc` -- ``remoteobj-ns`` / ``remoteobj-nsc``

Clients use :func:`remoteobj.locate_ns` and ``PYRONAME:`` URIs (:mod:`remoteobj.naming`).
"""

from .registry import NAMESERVER_NAME, Registry
from .service import NameServer
from .storage import MemoryStorage, SqliteStorage, open_storage

__all__ = [
    "NAMESERVER_NAME",
    "MemoryStorage",
    "NameServer",
    "Registry",
    "SqliteStorage",
    "open_storage",
]
