"""The ``Pyro.NameServer`` object: Pyro5's remote API over a :class:`Registry`.

Pyro5 clients call it unchanged: same method names, arguments, return types
(``lookup`` returns a URI object, ``list`` and ``yplookup`` return URI
*strings*, metadata comes back as sets) and the same errors. Two additions
serve remoteobj daemons, and a Pyro5 client never sees them unless it asks:

- ``register(..., lease=seconds)``: the name expires unless renewed;
- ``renew(names, lease=None)``: extend leases; returns the names the server
  does not know (so the daemon registers them again, e.g. after a restart).

Mutations pass through one seam, :attr:`NameServer.authorize`, called with the
operation's name before anything changes: the place for authentication
(issue 7) without touching the methods.
"""

from __future__ import annotations

import builtins
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from remoteobj.config import Config
from remoteobj.exposure import expose
from remoteobj.uri import URI

from .registry import NAMESERVER_NAME, Registry
from .storage import Entry, Storage

__all__ = ["NAMESERVER_CLASS_TAG", "NAMESERVER_NAME", "Authorizer", "NameServer"]

log = logging.getLogger(__name__)

#: The metadata Pyro5's name server registers itself with; tools look for it.
NAMESERVER_CLASS_TAG = "class:Pyro5.nameserver.NameServer"

#: Called with the operation name ("register", "remove", ...) before a change; raises to refuse.
Authorizer = Callable[[str], None]


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> URI:
    # URIs are immutable, so one parsed object per text can be returned to
    # every lookup: a lookup then costs a dict read, not a regex parse.
    return URI(text)


def _with_metadata(entries: Mapping[str, Entry], return_metadata: bool) -> dict[str, Any]:
    if return_metadata:
        return {name: (e.uri, set(e.metadata)) for name, e in entries.items()}
    return {name: e.uri for name, e in entries.items()}


class NameServer:
    """Pyro5's ``Pyro.NameServer`` remote API, with leases.

    Calls arrive on the daemon's worker threads; the :class:`Registry`
    serialises them. The object never blocks on anything but its storage's
    commit.
    """

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        config: Config | None = None,
        authorize: Authorizer | None = None,
        registry: Registry | None = None,
    ) -> None:
        """Serve the table kept in ``storage`` (memory if ``None``), with ``config``'s
        limits and default lease. ``registry`` replaces both (tests pass one
        with a fake clock)."""
        self.config = config if config is not None else Config()
        if registry is None:
            registry = Registry(
                storage,
                max_names=self.config.ns_max_names,
                max_name_length=self.config.ns_max_name_length,
                restart_grace=self.config.ns_lease,
            )
        self.registry = registry
        #: The seam for access control of mutations (``None``: everyone may change names).
        self.authorize = authorize

    def _allow(self, operation: str) -> None:
        if self.authorize is not None:
            self.authorize(operation)

    # --- Pyro5's remote API --------------------------------------------------------

    @expose
    def count(self) -> int:
        """Number of registrations (the name server's own included)."""
        return self.registry.count()

    @expose
    def lookup(self, name: str, return_metadata: bool = False) -> URI | tuple[URI, set[str]]:
        """The URI registered under ``name`` (with its metadata set if asked);
        ``NamingError("unknown name: name")`` if there is none."""
        entry = self.registry.lookup(name)
        uri = _parsed(entry.uri)
        if return_metadata:
            return uri, set(entry.metadata)
        return uri

    @expose
    def register(
        self,
        name: str,
        uri: Any,
        safe: bool = False,
        metadata: Iterable[str] | None = None,
        lease: float | None = None,
    ) -> None:
        """Map ``name`` to ``uri`` (URI or text); refuse an existing name if ``safe``.

        ``metadata`` is an iterable of strings (not a str). ``lease`` (seconds,
        remoteobj only) makes the registration expire unless :meth:`renew`\\ ed.
        """
        self._allow("register")
        self.registry.register(name, uri, safe, metadata, lease=lease)
        log.debug("registered %s -> %s (lease %s)", name, uri, lease)

    @expose
    def set_metadata(self, name: str, metadata: Iterable[str] | None) -> None:
        """Replace the metadata of a registered name."""
        self._allow("set_metadata")
        self.registry.set_metadata(name, metadata)

    @expose
    def remove(
        self, name: str | None = None, prefix: str | None = None, regex: str | None = None
    ) -> int:
        """Remove a name, or all names with a prefix or matching a regex; returns the count.
        ``Pyro.NameServer`` is never removed."""
        self._allow("remove")
        removed = self.registry.remove(name, prefix, regex)
        log.debug("removed %d (name=%r prefix=%r regex=%r)", removed, name, prefix, regex)
        return removed

    @expose
    def list(
        self, prefix: str | None = None, regex: str | None = None, return_metadata: bool = False
    ) -> dict[str, Any]:
        """``{name: uri_text}`` (``{name: (uri_text, metadata)}`` if asked), optionally
        only names with ``prefix`` or matching ``regex`` (not both)."""
        return _with_metadata(self.registry.list(prefix, regex), return_metadata)

    @expose
    def yplookup(
        self, meta_all: Any = None, meta_any: Any = None, return_metadata: bool = True
    ) -> dict[str, Any]:
        """Names whose metadata holds all tags of ``meta_all`` or any of ``meta_any``."""
        return _with_metadata(self.registry.yplookup(meta_all, meta_any), return_metadata)

    @expose
    def ping(self) -> None:
        """Does nothing: a round trip proves the name server is alive."""

    # --- remoteobj additions -------------------------------------------------------------

    @expose
    def renew(
        self, names: Iterable[str] | Mapping[str, str], lease: float | None = None
    ) -> builtins.list[str]:
        """Extend the leases of ``names`` by ``lease`` seconds (the server's
        ``ns_lease`` by default); returns the names not registered here.

        ``names`` may map each name to its URI text, so a name someone else
        has registered since is not kept alive on their behalf.
        """
        self._allow("renew")
        return self.registry.renew(names, self.config.ns_lease if lease is None else lease)

    # --- local (not remote) --------------------------------------------------------------

    def register_self(self, uri: URI) -> None:
        """Register the name server's own URI as Pyro5 does (no lease, class tag)."""
        self.registry.register(NAMESERVER_NAME, uri, metadata={NAMESERVER_CLASS_TAG})

    def sweep(self) -> builtins.list[str]:
        """Remove the registrations whose lease has run out (from storage too)."""
        expired = self.registry.expire()
        if expired:
            log.info("lease expired, removed: %s", ", ".join(sorted(expired)))
        return expired
