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
from .batch import AsyncBatchProxy, BatchProxy
from .blob import SerializedBlob
from .client import AsyncProxy, Proxy
from .config import Config
from .context import CallContext, current_context
from .daemon import Daemon, track_resource, untrack_resource
from .exposure import behavior, callback, expose, oneway
from .naming import locate_ns
from .serializers import register_class_to_dict, register_dict_to_class
from .serving import serve
from .streams import AsyncStreamIterator, StreamIterator
from .uri import URI

__all__ = [
    "URI",
    "AsyncBatchProxy",
    "AsyncProxy",
    "AsyncStreamIterator",
    "BatchProxy",
    "CallContext",
    "Config",
    "Daemon",
    "Proxy",
    "SerializedBlob",
    "StreamIterator",
    "behavior",
    "callback",
    "current_context",
    "errors",
    "expose",
    "locate_ns",
    "oneway",
    "register_class_to_dict",
    "register_dict_to_class",
    "serve",
    "track_resource",
    "untrack_resource",
]

__version__ = "0.1.0"
