"""Finding the name server, resolving ``PYRONAME:``/``PYROMETA:``, keeping leases.

- :func:`locate_ns` returns a :class:`~remoteobj.Proxy` for a name server.
  With no host it tries, in order: ``Config.ns_host:ns_port`` (which
  ``REMOTEOBJ_NS_HOST``/``REMOTEOBJ_NS_PORT`` set), a ``GET_NSURI`` UDP
  broadcast on ``ns_bcport`` (Pyro5's discovery, so a Pyro5 name server is
  found too), then the built-in default ``localhost:9090``.
- :func:`resolve` / :func:`resolve_async` turn a ``PYRONAME:`` or
  ``PYROMETA:`` URI into the ``PYRO:`` URI of an object, as Pyro5's
  ``core.resolve`` does (``PYROMETA`` picks one match at random). The name
  server connection is kept and reused, one per name-server address, rather
  than opened for every lookup.
- :class:`LeaseKeeper` keeps a daemon's names registered: it registers them
  with a lease and renews them in the background, so they vanish from the
  name server soon after the daemon dies or hangs, and come back on their own
  after a name server restart. Against a Pyro5 name server (no leases) it
  falls back to plain registrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .client import AsyncProxy, Proxy
from .config import Config
from .errors import CommunicationError, NamingError, RemoteObjError, TimeoutError
from .uri import URI

__all__ = [
    "DEFAULT_BROADCAST_ADDRS",
    "NAMESERVER_NAME",
    "LeaseKeeper",
    "discover_ns",
    "locate_ns",
    "resolve",
    "resolve_async",
]

log = logging.getLogger(__name__)

#: Object id of the name server in its daemon.
NAMESERVER_NAME = "Pyro.NameServer"
#: Where Pyro5 sends its discovery datagram (``config.BROADCAST_ADDRS``).
DEFAULT_BROADCAST_ADDRS: tuple[str, ...] = ("<broadcast>", "0.0.0.0")  # noqa: S104 - a destination
GET_NSURI = b"GET_NSURI"
#: Pyro5's discovery rhythm: three rounds, 0.7 s each, replies of at most 100 bytes.
BROADCAST_ROUNDS = 3
BROADCAST_TIMEOUT = 0.7
#: The built-in defaults, for the last place :func:`locate_ns` looks.
_DEFAULT = Config()

T = TypeVar("T")


# --- locating ------------------------------------------------------------------------------


def _ns_uri(host: str, port: int) -> URI:
    """``PYRO:Pyro.NameServer@host:port`` (or ``@./u:path`` for a Unix socket)."""
    if host.startswith("./u:"):
        return URI.for_unix(NAMESERVER_NAME, host[4:])
    return URI.for_object(NAMESERVER_NAME, host, port)


@dataclass(frozen=True, slots=True)
class _Direct:
    uri: URI


@dataclass(frozen=True, slots=True)
class _Broadcast:
    port: int
    addrs: tuple[str, ...]


def _plan(
    host: str | None,
    port: int | None,
    config: Config,
    broadcast: bool,
    broadcast_addrs: Sequence[str] | None,
) -> list[_Direct | _Broadcast]:
    """The places to look, in order (shared by the sync and async paths).

    As in Pyro5, ``port`` without ``host`` is the name server port *and* the
    broadcast port.
    """
    if host:
        return [_Direct(_ns_uri(host, port or config.ns_port))]
    steps: list[_Direct | _Broadcast] = [_Direct(_ns_uri(config.ns_host, port or config.ns_port))]
    if broadcast:
        addrs = tuple(DEFAULT_BROADCAST_ADDRS if broadcast_addrs is None else broadcast_addrs)
        steps.append(_Broadcast(port or config.ns_bcport, addrs))
    default = _Direct(_ns_uri(_DEFAULT.ns_host, _DEFAULT.ns_port))
    if default != steps[0]:
        steps.append(default)
    return steps


def discover_ns(
    port: int,
    addrs: Sequence[str] = DEFAULT_BROADCAST_ADDRS,
    *,
    rounds: int = BROADCAST_ROUNDS,
    timeout: float = BROADCAST_TIMEOUT,
) -> URI | None:
    """Ask for the name server's URI with a ``GET_NSURI`` datagram to ``addrs:port``.

    Returns the first valid answer, or ``None`` after ``rounds`` rounds of
    ``timeout`` seconds. Addresses that cannot be sent to (no broadcast route,
    say) are skipped.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.settimeout(timeout)
        for _ in range(rounds):
            for addr in addrs:
                try:
                    sock.sendto(GET_NSURI, (addr, port))
                except OSError as exc:
                    log.debug("broadcast to %s:%d failed: %s", addr, port, exc)
            try:
                while True:
                    data, sender = sock.recvfrom(100)
                    try:
                        uri = URI(data.decode("iso-8859-1"))
                    except Exception:  # a stray datagram, not an answer
                        log.debug("ignoring a non-URI reply from %s", sender)
                        continue
                    log.debug("broadcast: %s answered %s", sender, uri)
                    return uri
            except TimeoutError:
                continue
            except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                log.debug("broadcast receive failed: %s", exc)
                continue
    return None


def locate_ns(
    host: str | None = None,
    port: int | None = None,
    *,
    config: Config | None = None,
    broadcast: bool = True,
    broadcast_addrs: Sequence[str] | None = None,
) -> Proxy:
    """A connected proxy for a name server.

    With ``host`` (a hostname, an address, or ``./u:/path`` for a Unix
    socket) it connects there. Without, it tries ``config.ns_host:ns_port``
    (``Config.default()``, the environment, when no config is given, so
    ``REMOTEOBJ_NS_HOST``/``REMOTEOBJ_NS_PORT`` apply), then a ``GET_NSURI``
    broadcast to ``broadcast_addrs`` (Pyro5's ``<broadcast>`` and ``0.0.0.0``
    by default) on ``ns_bcport``, then ``localhost:9090``. Raises
    :class:`NamingError` ("Failed to locate the nameserver") when all fail.
    """
    cfg = config if config is not None else Config.default()
    last: Exception | None = None
    for step in _plan(host, port, cfg, broadcast, broadcast_addrs):
        if isinstance(step, _Broadcast):
            found = discover_ns(step.port, step.addrs)
            if found is None:
                continue
            uri = found
        else:
            uri = step.uri
        proxy = Proxy(uri, config=cfg)
        try:
            proxy._bind()
        except RemoteObjError as exc:
            log.debug("no name server at %s: %s", uri, exc)
            last = exc
            continue
        log.debug("located the name server at %s", uri)
        return proxy
    raise NamingError("Failed to locate the nameserver") from last


async def _locate_ns_async(host: str | None, port: int | None, config: Config) -> AsyncProxy:
    last: Exception | None = None
    for step in _plan(host, port, config, True, None):
        if isinstance(step, _Broadcast):
            # Three blocking rounds of UDP: done in a thread, not on the loop.
            found = await asyncio.to_thread(discover_ns, step.port, step.addrs)
            if found is None:
                continue
            uri = found
        else:
            uri = step.uri
        proxy = AsyncProxy(uri, config=config)
        try:
            await proxy._bind()
        except RemoteObjError as exc:
            log.debug("no name server at %s: %s", uri, exc)
            last = exc
            continue
        return proxy
    raise NamingError("Failed to locate the nameserver") from last


# --- resolving -------------------------------------------------------------------------------


def _ns_key(uri: URI, config: Config) -> tuple[Any, ...]:
    """Which name server a magic URI asks: its ``@host:port``, or "the located one"."""
    if uri.host or uri.sockname:
        return ("at", uri.sockname or uri.host, uri.port or config.ns_port, config)
    return ("locate", config)


def _ns_address(uri: URI) -> str | None:
    if uri.sockname:
        return f"./u:{uri.sockname}"
    return uri.host


def _pick(uri: URI, ns_answer: Any) -> URI:
    """The PYRO URI from the name server's answer to :func:`_ask`."""
    if uri.protocol == "PYRONAME":
        return ns_answer if isinstance(ns_answer, URI) else URI(str(ns_answer))
    if not ns_answer:
        # Pyro5 prints the tag set; sorted here so the message is stable.
        tags = "{" + ", ".join(repr(t) for t in sorted(uri.tags)) + "}"
        raise NamingError(f"no registrations available with desired metadata properties {tags}")
    choice = random.choice(list(ns_answer.values()))
    log.debug("resolved %s to candidate %s", uri, choice)
    return URI(str(choice))


def _check_magic(uri: URI | str) -> URI:
    uri = uri if isinstance(uri, URI) else URI(uri)
    if uri.protocol not in ("PYRO", "PYRONAME", "PYROMETA"):
        raise RemoteObjError("invalid uri protocol")
    return uri


class _NsProxies:
    """Name-server proxies kept for reuse, per name-server address (and per event loop).

    A process that forks starts over: a connection must never be shared with
    the parent.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._sync: dict[tuple[Any, ...], Proxy] = {}
        self._async: dict[asyncio.AbstractEventLoop, dict[tuple[Any, ...], AsyncProxy]] = {}
        self._async_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def _fresh(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._sync = {}
            self._async = {}
            self._async_locks = {}

    def call(self, uri: URI, config: Config, ask: Callable[[Any], T]) -> T:
        """``ask(ns_proxy)`` on the kept proxy for ``uri``'s name server.

        Name-server queries are idempotent, so when the kept connection turns
        out dead (the name server restarted, or moved) the proxy is dropped
        and the query made once more on a fresh one. A timeout is not retried:
        a hung name server would only make the caller wait twice as long.
        """
        self._fresh()
        key = _ns_key(uri, config)
        for attempt in (1, 2):
            with self._lock:
                proxy = self._sync.get(key)
            if proxy is None:
                fresh = locate_ns(_ns_address(uri), uri.port, config=config)
                with self._lock:
                    proxy = self._sync.setdefault(key, fresh)
                if proxy is not fresh:  # another thread was quicker
                    fresh._release()
            try:
                return ask(proxy)
            except CommunicationError as exc:
                with self._lock:
                    if self._sync.get(key) is proxy:
                        del self._sync[key]
                proxy._release()
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise
        raise AssertionError("unreachable")

    async def call_async(self, uri: URI, config: Config, ask: Callable[[Any], Any]) -> Any:
        """:meth:`call` for asyncio: one :class:`AsyncProxy` per loop and name server."""
        self._fresh()
        loop = asyncio.get_running_loop()
        key = _ns_key(uri, config)
        for attempt in (1, 2):
            with self._lock:
                for closed in [lp for lp in self._async if lp.is_closed()]:
                    del self._async[closed]
                    self._async_locks.pop(closed, None)
                proxies = self._async.get(loop)
                if proxies is None:
                    proxies = self._async[loop] = {}
                    self._async_locks[loop] = asyncio.Lock()
                    closer = loop.create_task(_close_at_loop_end(proxies))
                    _background.add(closer)
                    closer.add_done_callback(_background.discard)
                creating = self._async_locks[loop]
            proxy = proxies.get(key)
            if proxy is None:
                async with creating:  # one connection per name server, even under a burst
                    proxy = proxies.get(key)
                    if proxy is None:
                        proxy = await _locate_ns_async(_ns_address(uri), uri.port, config)
                        proxies[key] = proxy
            try:
                return await ask(proxy)
            except CommunicationError as exc:
                if proxies.get(key) is proxy:
                    del proxies[key]
                await proxy._release()
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise
        raise AssertionError("unreachable")

    def clear(self) -> None:
        """Close and forget every kept synchronous proxy (async ones go with their loop)."""
        with self._lock:
            proxies = list(self._sync.values())
            self._sync.clear()
        for proxy in proxies:
            proxy._release()


#: Strong references to the per-loop closer tasks (the loop keeps only weak ones).
_background: set[asyncio.Task[None]] = set()


async def _close_at_loop_end(proxies: dict[tuple[Any, ...], AsyncProxy]) -> None:
    """Wait until the event loop winds down, then close the loop's kept proxies.

    ``asyncio.run()`` cancels every task before it closes the loop, so this
    ``finally`` runs while the loop still can close connections cleanly.
    """
    try:
        await asyncio.get_running_loop().create_future()  # resolved by nobody: until cancelled
    finally:
        kept = list(proxies.values())
        proxies.clear()
        for proxy in kept:
            await proxy._release()


_proxies = _NsProxies()


def _ask(uri: URI) -> Callable[[Any], Any]:
    if uri.protocol == "PYRONAME":
        name = str(uri.object)
        return lambda ns: ns.lookup(name)
    tags = sorted(uri.tags)
    return lambda ns: ns.yplookup(meta_all=tags, return_metadata=False)


def resolve(uri: URI | str, config: Config | None = None) -> URI:
    """The ``PYRO:`` URI a ``PYRONAME:``/``PYROMETA:`` URI stands for (a ``PYRO:`` URI as is).

    ``PYRONAME:name@host:port`` asks the name server there; without a
    location the one :func:`locate_ns` finds. ``PYROMETA:a,b`` picks at
    random among the registrations carrying all the tags. Raises
    :class:`NamingError` for an unknown name, no match, or no name server.
    """
    uri = _check_magic(uri)
    if uri.protocol == "PYRO":
        return uri
    cfg = config if config is not None else Config.default()
    return _pick(uri, _proxies.call(uri, cfg, _ask(uri)))


async def resolve_async(uri: URI | str, config: Config | None = None) -> URI:
    """:func:`resolve` for asyncio code: the name server is asked on the running loop."""
    uri = _check_magic(uri)
    if uri.protocol == "PYRO":
        return uri
    cfg = config if config is not None else Config.default()
    return _pick(uri, await _proxies.call_async(uri, cfg, _ask(uri)))


# --- resolutions kept for proxies ----------------------------------------------------------


class _Resolutions:
    """``PYRONAME`` resolutions made for proxies, kept ``Config.ns_cache_ttl`` seconds.

    A process that makes proxy after proxy for one name (a proxy per request,
    say) then asks the name server about once a TTL instead of once a proxy.
    Pyro5 asks every time; ``ns_cache_ttl=0`` does that here too. A kept
    address that refuses the connection is forgotten and looked up afresh at
    once (see :func:`forget_resolution`), so a daemon that restarted elsewhere
    is found without waiting out the TTL. ``PYROMETA`` picks at random among
    matches on every resolution and is never kept.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], tuple[URI, float]] = {}

    def get(self, key: tuple[Any, ...]) -> URI | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if time.monotonic() >= hit[1]:
            self._entries.pop(key, None)
            return None
        return hit[0]

    def put(self, key: tuple[Any, ...] | None, uri: URI, ttl: float) -> None:
        if key is None:
            return
        if len(self._entries) >= RESOLUTIONS_KEPT:
            self._entries.clear()  # rarely reached; starting over keeps this simple and bounded
        self._entries[key] = (uri, time.monotonic() + ttl)

    def forget(self, key: tuple[Any, ...]) -> None:
        self._entries.pop(key, None)


#: Resolutions kept at most (see :class:`_Resolutions`).
RESOLUTIONS_KEPT = 4096
_resolutions = _Resolutions()


def _resolution_key(uri: URI, config: Config) -> tuple[Any, ...] | None:
    """Where a proxy's resolution of ``uri`` is kept; ``None``: it is not kept."""
    if uri.protocol != "PYRONAME" or config.ns_cache_ttl <= 0:
        return None
    return (_ns_key(uri, config), uri.object)


def resolve_for_proxy(uri: URI, config: Config) -> tuple[URI, bool]:
    """What a proxy connects to: ``(PYRO: URI, whether it is a kept resolution)``.

    Like :func:`resolve`, but a ``PYRONAME`` resolution made less than
    ``config.ns_cache_ttl`` seconds ago is reused.
    """
    key, kept = _kept(uri, config)
    if kept is not None:
        return kept, True
    target = resolve(uri, config)
    _resolutions.put(key, target, config.ns_cache_ttl)
    return target, False


async def resolve_for_proxy_async(uri: URI, config: Config) -> tuple[URI, bool]:
    """:func:`resolve_for_proxy` for asyncio code."""
    key, kept = _kept(uri, config)
    if kept is not None:
        return kept, True
    target = await resolve_async(uri, config)
    _resolutions.put(key, target, config.ns_cache_ttl)
    return target, False


def _kept(uri: URI, config: Config) -> tuple[tuple[Any, ...] | None, URI | None]:
    """Where ``uri``'s resolution is kept (``None``: never) and the one kept now."""
    key = _resolution_key(uri, config)
    return key, None if key is None else _resolutions.get(key)


def forget_resolution(uri: URI, config: Config) -> None:
    """Drop the kept resolution of ``uri``: its address failed."""
    key = _resolution_key(uri, config)
    if key is not None:
        _resolutions.forget(key)


# --- leases --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Held:
    uri: str
    metadata: frozenset[str]


class LeaseKeeper:
    """Keeps a daemon's names registered in a name server while the daemon lives.

    ::

        keeper = LeaseKeeper(None, config)        # None: locate_ns(config=config)
        keeper.add("example.greeting", uri, metadata={"greeter"})
        keeper.start()                            # renew every config.ns_renew seconds
        ...
        keeper.stop()                             # unregister and stop

    Names are registered with ``lease=config.ns_lease``; a background thread
    renews them every ``config.ns_renew`` seconds and registers again any the
    name server no longer knows (it restarted, or the lease ran out while
    this process was stopped). When the process dies or hangs, renewals stop
    and the name server drops the names one lease later. A Pyro5 name server
    has no leases: there the names are registered plainly (they stay until
    removed, as in Pyro5) and re-registered if they disappear.
    """

    def __init__(self, ns: URI | str | Proxy | None = None, config: Config | None = None) -> None:
        """Keep names in the name server ``ns``: a proxy (used as it is, and left
        open by :meth:`stop`), its URI, or ``None`` to locate one with ``config``."""
        self.config = config if config is not None else Config.default()
        self._target: URI | None = None
        self._proxy: Any = None
        self._own_proxy = True
        if isinstance(ns, str | URI):
            self._target = URI(ns)
        elif ns is not None:
            self._proxy, self._own_proxy = ns, False
        self._names: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._ns_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: False once the name server turned out to be a Pyro5 one (no ``lease`` argument).
        self.leases = True
        self._ns_down = False

    @property
    def names(self) -> dict[str, str]:
        """``{name: uri}`` of every name kept."""
        with self._lock:
            return {name: held.uri for name, held in self._names.items()}

    def _ns(self) -> Any:
        with self._ns_lock:  # add() and the renewal thread may both get here first
            if self._proxy is None:
                if self._target is None:
                    proxy = locate_ns(config=self.config)
                else:
                    proxy = Proxy(self._target, config=self.config)
                # A renewal must come back well within a lease, or it is no use.
                proxy._timeout = min(self.config.ns_renew, proxy._timeout or self.config.ns_renew)
                self._proxy = proxy
            return self._proxy

    def _drop_proxy(self) -> None:
        # Only a proxy we made is dropped; a caller's proxy reconnects by itself.
        with self._ns_lock:
            proxy = self._proxy if self._own_proxy else None
            if proxy is not None:
                self._proxy = None
        if proxy is not None:
            proxy._release()

    def _register(self, name: str, held: _Held, *, safe: bool = False) -> None:
        ns = self._ns()
        metadata = sorted(held.metadata)
        if self.leases:
            try:
                ns.register(name, held.uri, safe, metadata, lease=self.config.ns_lease)
                return
            except TypeError as exc:
                if "lease" not in str(exc):
                    raise
                log.info("the name server has no leases (Pyro5?): plain registrations")
                self.leases = False
        ns.register(name, held.uri, safe, metadata)

    def add(self, name: str, uri: URI | str, metadata: Iterable[str] | None = None) -> None:
        """Register ``name`` -> ``uri`` now (errors are raised here) and keep it registered."""
        held = _Held(str(uri), frozenset(metadata or ()))
        self._register(name, held)
        with self._lock:
            self._names[name] = held

    def discard(self, name: str, *, unregister: bool = True) -> None:
        """Stop keeping ``name``; remove it from the name server if it still points at us."""
        with self._lock:
            held = self._names.pop(name, None)
        if held is not None and unregister:
            self._remove_if_ours(name, held)

    def _remove_if_ours(self, name: str, held: _Held) -> None:
        try:
            ns = self._ns()
            try:
                current = ns.lookup(name)
            except NamingError:
                return  # gone already
            if str(current) == str(URI(held.uri)):
                ns.remove(name)
        except RemoteObjError as exc:
            log.warning("could not unregister %s: %s", name, exc)

    def start(self) -> None:
        """Start renewing in a background thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="remoteobj-lease-keeper", daemon=True
        )
        self._thread.start()

    def stop(self, unregister: bool = True) -> None:
        """Stop renewing; with ``unregister``, remove our names from the name server."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        if unregister:
            with self._lock:
                held = dict(self._names)
            for name, h in held.items():
                self._remove_if_ours(name, h)
        self._drop_proxy()

    def _run(self) -> None:
        # Event.wait is the timer: stop() wakes it at once.
        while not self._stop.wait(self.config.ns_renew):
            try:
                self.renew_now()
            except Exception:  # the keeper must outlive any one bad round
                log.exception("lease renewal failed; trying again in %s s", self.config.ns_renew)

    def renew_now(self) -> list[str]:
        """One renewal round (the thread does this every ``ns_renew`` s); returns
        the names that had to be registered again."""
        with self._lock:
            held = dict(self._names)
        if not held:
            return []
        try:
            ns = self._ns()
            if self.leases:
                try:
                    missing = ns.renew({n: h.uri for n, h in held.items()}, self.config.ns_lease)
                except (TypeError, AttributeError) as exc:
                    # A Pyro5 name server answers at that address now: our proxy
                    # refuses a method its metadata lacks (AttributeError), a
                    # foreign one lets the server refuse it (TypeError).
                    if "renew" not in str(exc):
                        raise
                    self.leases = False
                    missing = [n for n in held if not self._known(ns, n)]
            else:
                missing = [n for n in held if not self._known(ns, n)]
            if missing:
                # The name server lost them (restarted): try leases again, it may
                # be a remoteobj one now; _register falls back if not.
                self.leases = True
            again = []
            for name in missing:
                if name in held:
                    with contextlib.suppress(NamingError):  # someone else took it meanwhile
                        self._register(name, held[name], safe=True)
                        again.append(name)
        except RemoteObjError as exc:
            if not self._ns_down:
                log.warning("cannot renew names in the name server: %s", exc)
            self._ns_down = True
            self._drop_proxy()
            return []
        if self._ns_down:
            log.info("name server reachable again")
            self._ns_down = False
        if again:
            log.info("registered again: %s", ", ".join(sorted(again)))
        return again

    @staticmethod
    def _known(ns: Any, name: str) -> bool:
        try:
            ns.lookup(name)
        except NamingError:
            return False
        return True
