"""remoteobj: Pyro5-wire-compatible remote objects on an asyncio core.

::

    import remoteobj

    @remoteobj.expose
    class Greeter:
        def welcome_message(self, name: str) -> str:
            return f"Hi welcome {name}"

    remoteobj.serve({Greeter: "example.greeting"}, use_ns=True)

    with remoteobj.Proxy("PYRONAME:example.greeting") as g:
        print(g.welcome_message("LiLei"))
"""

from __future__ import annotations

from . import errors
from .client import AsyncProxy, Proxy
from .config import Config
from .context import CallContext, current_context
from .daemon import Daemon
from .exposure import behavior, callback, expose, oneway
from .naming import locate_ns
from .serving import serve
from .uri import URI

__all__ = [
    "URI",
    "AsyncProxy",
    "CallContext",
    "Config",
    "Daemon",
    "Proxy",
    "behavior",
    "callback",
    "current_context",
    "errors",
    "expose",
    "locate_ns",
    "oneway",
    "serve",
]

__version__ = "0.1.0"
