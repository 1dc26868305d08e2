"""Pyro4's API over remoteobj: change ``import Pyro4`` into one line and go.

::

    import remoteobj.compat.pyro4 as Pyro4

    daemon = Pyro4.Daemon()                  # or Pyro4.core.Daemon()
    ns = Pyro4.locateNS()                    # or Pyro4.naming.locateNS()
    uri = daemon.register(Server())
    ns.register("server", uri)
    daemon.requestLoop()

    server = Pyro4.Proxy("PYRONAME:server")  # or Pyro4.core.Proxy(...)
    print(server.welcomeMessage("LiLei"))

What differs from Pyro4, on purpose:

- **The wire is Pyro5's protocol 502.** Peers must be remoteobj or Pyro5
  programs, not Pyro4 ones (Pyro4 speaks protocol 48).
- **Configuration comes from the environment**, read when an object is made
  (``Config.from_env()``: ``REMOTEOBJ_HOST``, ``REMOTEOBJ_NS_HOST``,
  ``REMOTEOBJ_NS_PORT``...). There is no global ``Pyro4.config`` to assign:
  reading ``Pyro4.config.NS_PORT`` works, assigning it raises an error that
  says which variable to set.
- **Unmarked classes.** Pyro4 before 4.46 exposed every public method of a
  class that carries no ``@expose`` at all, and code written like that
  (the classic tutorials) has none. :class:`Daemon` keeps that behaviour for
  such classes -- it marks their public methods and properties exposed and
  logs a warning naming them. A class with any ``@expose`` follows the normal
  rules. Names starting with ``_`` are never remote either way.
- Proxies may be shared by threads (Pyro4's are owned by one thread), and
  pickle/dill serializers do not exist (serpent, json, marshal, msgpack do).
- Objects registered with a compat :class:`Daemon` travel as proxies when
  passed as arguments from the thread that registered them, as in Pyro4
  (see :meth:`remoteobj.Daemon.autoproxy`).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .. import client as _client
from .. import daemon as _daemon
from .. import errors
from ..batch import BatchProxy
from ..blob import SerializedBlob
from ..config import Config
from ..context import current_context
from ..exposure import behavior, callback, expose, oneway
from ..naming import locate_ns, resolve
from ..serializers import push_autoproxy
from ..uri import URI

__all__ = [
    "URI",
    "BatchProxy",
    "Daemon",
    "Proxy",
    "SerializedBlob",
    "batch",
    "behavior",
    "callback",
    "config",
    "core",
    "current_context",
    "errors",
    "expose",
    "locateNS",
    "naming",
    "oneway",
    "resolve",
]

log = logging.getLogger(__name__)


class Proxy(_client.Proxy):
    """A :class:`remoteobj.Proxy` configured from the environment, with Pyro4's
    local method names (``_pyroBind``, ``_pyroRelease``, ``_pyroTimeout``...)."""

    def __init__(self, uri: URI | str, *, config: Config | None = None) -> None:
        super().__init__(uri, config=config if config is not None else Config.from_env())

    def _pyroBind(self) -> bool:  # noqa: N802 - Pyro4's name
        """Connect now (Pyro4's ``_pyroBind``)."""
        self._bind()
        return True

    def _pyroRelease(self) -> None:  # noqa: N802 - Pyro4's name
        """Close the connection (Pyro4's ``_pyroRelease``)."""
        self._release()

    def _pyroReconnect(self, tries: int = 100_000_000) -> None:  # noqa: N802 - Pyro4's name
        """Drop the connection and connect again."""
        self._release()
        self._bind()

    def _pyroBatch(self) -> BatchProxy:  # noqa: N802 - Pyro4's name
        """A batch proxy for this proxy (Pyro4's ``_pyroBatch``)."""
        return BatchProxy(self)

    @property
    def _pyroUri(self) -> URI:  # noqa: N802 - Pyro4's name
        """The URI this proxy was made for."""
        return self._uri

    @property
    def _pyroTimeout(self) -> float | None:  # noqa: N802 - Pyro4's name
        """Seconds a call may take (``None``: no limit)."""
        return self._timeout

    @_pyroTimeout.setter
    def _pyroTimeout(self, value: float | None) -> None:  # noqa: N802 - Pyro4's name
        object.__setattr__(self, "_timeout", value)

    def __copy__(self) -> Proxy:
        return Proxy(self._uri, config=self._config)


def _marked(cls: type[Any]) -> bool:
    """Whether the class or any of its members carries an ``@expose`` mark."""
    if getattr(cls, "_pyroExposed", False):
        return True
    for name in dir(cls):
        value = inspect.getattr_static(cls, name)
        if isinstance(value, property):
            value = value.fget
        if getattr(getattr(value, "__func__", value), "_pyroExposed", False):
            return True
    return False


def _expose_legacy(cls: type[Any]) -> None:
    """Pyro4 < 4.46: a class without any ``@expose`` has all its public members exposed."""
    if _marked(cls):
        return
    for klass in cls.__mro__:
        if klass.__module__ != "builtins":
            expose(klass)
    from .. import exposure

    exposure._cache.pop(cls, None)  # computed before the marks, if ever
    members = exposure.exposed_members(cls)
    log.warning(
        "class %s has no @expose; exposing its public members as Pyro4 < 4.46 did: %s",
        cls.__qualname__,
        ", ".join(sorted(members.methods | members.attrs)),
    )


class Daemon(_daemon.Daemon):
    """A :class:`remoteobj.Daemon` with Pyro4's method names, configured from the
    environment (``REMOTEOBJ_HOST`` is the default host)."""

    def __init__(
        self,
        host: str | None = None,
        port: int = 0,
        unixsocket: str | None = None,
        nathost: str | None = None,
        natport: int | None = None,
        *,
        config: Config | None = None,
    ) -> None:
        self._autoproxy_pushed = False
        super().__init__(
            host,
            port,
            unixsocket=unixsocket,
            config=config if config is not None else Config.from_env(),
            nathost=nathost,
            natport=natport,
        )

    def register(  # type: ignore[override]
        self,
        obj: Any,
        objectId: str | None = None,  # noqa: N803 - Pyro4's name
        force: bool = False,
        **kw: Any,
    ) -> URI:
        """Register an object or class (Pyro4's ``register(obj, objectId, force)``).

        Classes without any ``@expose`` get their public members exposed (see the
        module docstring). In the calling thread the object travels as a proxy
        when passed as an argument afterwards, as in Pyro4.
        """
        _expose_legacy(obj if inspect.isclass(obj) else type(obj))
        uri = super().register(obj, objectId, force=force, **kw)
        if objectId != _daemon.DAEMON_NAME and not self._autoproxy_pushed:
            # Pyro4's type replacement is global; the context of the registering
            # thread is the nearest thing without global state.
            push_autoproxy(self._autoproxy_resolver)
            self._autoproxy_pushed = True
        return uri

    def requestLoop(self, loopCondition: Callable[[], bool] | None = None) -> None:  # noqa: N802,N803
        """Serve until :meth:`shutdown`, or until ``loopCondition()`` turns false
        (checked every 0.1 s)."""
        if loopCondition is None:
            self.request_loop()
            return
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.1):
                if not loopCondition():
                    self.shutdown()
                    return

        watcher = threading.Thread(target=watch, name="requestLoop-condition", daemon=True)
        watcher.start()
        try:
            self.request_loop()
        finally:
            stop.set()
            watcher.join()

    def uriFor(self, objectOrId: Any) -> URI:  # noqa: N802,N803
        """The URI of a registered object (Pyro4's ``uriFor``)."""
        return self.uri_for(objectOrId)

    def proxyFor(self, objectOrId: Any) -> _client.Proxy:  # noqa: N802,N803
        """A proxy for a registered object (Pyro4's ``proxyFor``)."""
        return self.proxy_for(objectOrId)

    @property
    def locationStr(self) -> str:  # noqa: N802
        """``host:port`` this daemon serves on."""
        return self.location

    @property
    def objectsById(self) -> dict[str, Any]:  # noqa: N802
        """Registered objects by id (a copy; Pyro4 exposed its dict)."""
        return {oid: reg.target for oid, reg in self._objects.items()}

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802
        """Override to accept or refuse a connection (Pyro4's hook)."""
        return "hello"

    def clientDisconnect(self, conn: Any) -> None:  # noqa: N802
        """Override to clean up after a client (Pyro4's hook)."""

    def validate_handshake(self, session: _daemon.Session, data: Any) -> Any:
        return self.validateHandshake(session, data)

    def client_disconnected(self, session: _daemon.Session) -> None:
        self.clientDisconnect(session)

    @staticmethod
    def serveSimple(  # noqa: N802, PLR0917 - Pyro4's signature
        objects: Mapping[Any, str | None],
        host: str | None = None,
        port: int = 0,
        daemon: Daemon | None = None,
        ns: bool = True,
        verbose: bool = True,
    ) -> None:
        """Register ``{object: name}`` and serve until interrupted (Pyro4's ``serveSimple``)."""
        from ..serving import serve

        serve(
            objects,
            host=host,
            port=port,
            daemon=daemon or Daemon(host, port),
            use_ns=ns,
            verbose=verbose,
        )


def locateNS(  # noqa: N802
    host: str | None = None,
    port: int | None = None,
    broadcast: bool = True,
    hmac_key: Any = None,
) -> Proxy:
    """A proxy for the name server (Pyro4's ``locateNS``); ``hmac_key`` is not supported."""
    if hmac_key is not None:
        raise errors.SecurityError("hmac_key is Pyro4-only; use Config.auth_secret")
    found = locate_ns(host, port, config=Config.from_env(), broadcast=broadcast)
    uri = found._uri
    found._release()
    proxy = Proxy(uri)
    proxy._bind()
    return proxy


def batch(proxy: _client.Proxy) -> BatchProxy:
    """A batch proxy (Pyro4's ``Pyro4.batch(proxy)``)."""
    return BatchProxy(proxy)


class _Config:
    """Read-only view of ``Config.from_env()`` under Pyro4's upper-case names."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return getattr(Config.from_env(), name.lower())
        except AttributeError:
            raise AttributeError(f"remoteobj has no setting {name}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"remoteobj has no global configuration: set REMOTEOBJ_{name.upper()} in the "
            "environment, or pass a Config to Daemon/Proxy"
        )


#: Pyro4's ``Pyro4.config``, read-only (see :class:`_Config`).
config = _Config()


class core:  # noqa: N801 - Pyro4's module name
    """Pyro4's ``Pyro4.core`` names."""

    Proxy = Proxy
    Daemon = Daemon
    DaemonObject = _daemon.DaemonObject
    URI = URI
    BatchProxy = BatchProxy
    SerializedBlob = SerializedBlob
    current_context = staticmethod(current_context)
    batch = staticmethod(batch)


class naming:  # noqa: N801 - Pyro4's module name
    """Pyro4's ``Pyro4.naming`` names."""

    locateNS = staticmethod(locateNS)  # noqa: N815
    resolve = staticmethod(resolve)
