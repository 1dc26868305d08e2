"""The name table of the name server: names -> (URI text, metadata tags, lease).

Pure: no sockets, no files, no clock of its own. Persistence is a
:class:`~nameserver.storage.Storage` handed in by the caller; every change is
given to it (and committed there) *before* the in-memory table changes and the
call returns, so an acknowledged change is a durable one and a change the
storage refused leaves no trace.

The semantics and error messages are those of Pyro5's ``NameServer``
(``NamingError("unknown name: x")``, duplicate ``safe`` registrations,
exclusive ``prefix``/``regex`` filters, ``TypeError`` for a ``str`` given as
metadata, ``Pyro.NameServer`` never removed), plus what Pyro5 lacks:

- **limits**: a cap on the number of names and on name length, metadata must
  be strings, malformed URIs are refused -- each a clear ``NamingError`` with
  nothing stored;
- **leases**: a registration made with ``lease=seconds`` lives that long
  unless :meth:`Registry.renew` extends it; expired entries are invisible at
  once and removed by :meth:`Registry.expire`. Registrations without a lease
  (what every Pyro5 client makes) stay until removed, as in Pyro5.

Expiry times are wall-clock (the injected ``clock``, ``time.time`` by default)
so that they mean the same thing after the name server restarts on a
persistent store.
"""

from __future__ import annotations

import builtins
import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from remoteobj.errors import NamingError
from remoteobj.uri import URI

from .patterns import compile_pattern, select
from .storage import Change, Delete, Entry, MemoryStorage, Put, Storage

__all__ = [
    "MAX_METADATA_CHARS",
    "MAX_METADATA_TAGS",
    "MAX_URI_LENGTH",
    "NAMESERVER_NAME",
    "Change",
    "Delete",
    "Entry",
    "Put",
    "Registry",
]

#: The name server's own registration; it is never removed.
NAMESERVER_NAME = "Pyro.NameServer"

#: Most metadata tags one registration may carry (each no longer than a name) ...
MAX_METADATA_TAGS = 64
#: ... and most characters in all its tags together.
MAX_METADATA_CHARS = 4096
#: Longest URI text accepted (real ones are well under 300 characters).
MAX_URI_LENGTH = 1024

Clock = Callable[[], float]


def _check_name(name: object, max_length: int) -> str:
    if not isinstance(name, str):
        raise TypeError("name must be a str")
    if len(name) > max_length:
        raise NamingError(f"name too long: {len(name)} characters, the limit is {max_length}")
    return name


def _check_metadata(metadata: object, max_length: int) -> frozenset[str]:
    """Validate metadata the way Pyro5 does, then our own rules (strings, bounded)."""
    if metadata is None:
        return frozenset()
    if isinstance(metadata, str):
        raise TypeError("metadata should not be a str, but another iterable (set, list, etc)")
    tags = list(cast(Iterable[Any], metadata))  # TypeError if it is not iterable
    for tag in tags:
        if not isinstance(tag, str):
            raise NamingError(f"metadata must be strings, not {type(tag).__name__}: {tag!r:.60}")
        if len(tag) > max_length:
            raise NamingError(
                f"metadata tag too long: {len(tag)} characters, the limit is {max_length}"
            )
    result = frozenset(tags)
    if len(result) > MAX_METADATA_TAGS:
        raise NamingError(
            f"too many metadata tags: {len(result)}, the limit is {MAX_METADATA_TAGS}"
        )
    size = sum(map(len, result))
    if size > MAX_METADATA_CHARS:
        raise NamingError(
            f"metadata too large: {size} characters, the limit is {MAX_METADATA_CHARS}"
        )
    return result


def _check_uri(uri: object) -> str:
    """The text to store for ``uri``: a URI object's text, or a string that parses as one."""
    if isinstance(uri, URI):
        return str(uri)
    if not isinstance(uri, str):
        raise TypeError("only URIs or strings can be registered")
    if len(uri) > MAX_URI_LENGTH:
        raise NamingError(f"uri too long: {len(uri)} characters, the limit is {MAX_URI_LENGTH}")
    try:
        URI(uri)
    except Exception as exc:  # whatever the parser raises, the caller sees one clear error
        raise NamingError(f"invalid uri {uri!r:.200}: {exc}") from None
    return uri


def _check_lease(lease: object) -> float:
    if (
        isinstance(lease, bool)
        or not isinstance(lease, int | float)
        or not 0 < lease < math.inf  # also refuses NaN
    ):
        raise NamingError(f"lease must be a positive number of seconds, not {lease!r:.40}")
    return float(lease)


def _check_tags_query(tags: object, what: str) -> frozenset[Any]:
    if isinstance(tags, str):
        raise TypeError(f"{what} should not be a str, but another iterable (set, list, etc)")
    return frozenset(cast(Iterable[Any], tags))


class Registry:
    """The name table, its limits and its leases.

    Thread-safe: mutations and scans hold one lock, so calls from the
    daemon's worker threads and the expiry sweep never interleave; a lookup
    is a single (atomic) dict read and takes no lock. Reads never touch the
    storage; mutations commit to it first.
    """

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        max_names: int = 100_000,
        max_name_length: int = 256,
        restart_grace: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        """Load the table from ``storage`` (memory if ``None``).

        Leased entries loaded from a persistent store get at least
        ``restart_grace`` seconds more: their daemons could not renew while
        the name server was down, and a live daemon must not lose its names
        because of that. A dead daemon's names still go one lease later.
        """
        self._storage = MemoryStorage() if storage is None else storage
        self._max_names = max_names
        self._max_name_length = max_name_length
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        #: (expires, name) of leased entries; stale items are skipped when popped.
        self._expiries: list[tuple[float, str]] = []
        now = clock()
        for name, stored in self._storage.load().items():
            entry = stored
            if stored.expires is not None:
                entry = Entry(stored.uri, stored.metadata, max(stored.expires, now + restart_grace))
            self._set(name, entry)

    # --- internals -------------------------------------------------------------

    def _set(self, name: str, entry: Entry) -> None:
        self._entries[name] = entry
        if entry.expires is not None:
            heapq.heappush(self._expiries, (entry.expires, name))

    def _apply(self, changes: Sequence[Change]) -> None:
        """Commit ``changes`` to storage, then to memory (so a storage error changes nothing)."""
        if not changes:
            return
        self._storage.apply(changes)
        for change in changes:
            if isinstance(change, Put):
                self._set(change.name, change.entry)
            else:
                self._entries.pop(change.name, None)

    def _expire_due(self, now: float) -> builtins.list[str]:
        """Delete (storage first) the entries whose lease has run out by ``now``."""
        heap = self._expiries
        popped: builtins.list[tuple[float, str]] = []
        due: builtins.list[Change] = []
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            popped.append(item)
            entry = self._entries.get(item[1])
            # The heap keeps stale items (renewed, replaced, removed); only a
            # match on the current expiry means this entry really ran out.
            if entry is not None and entry.expires == item[0]:
                due.append(Delete(item[1]))
        try:
            self._apply(due)
        except BaseException:
            for item in popped:  # not deleted after all: keep them due
                heapq.heappush(heap, item)
            raise
        return [c.name for c in due]

    def _get(self, name: str, now: float) -> Entry | None:
        entry = self._entries.get(name)
        if entry is None or not entry.live(now):
            return None
        return entry

    def _live_items(self, now: float) -> Iterable[tuple[str, Entry]]:
        return ((n, e) for n, e in self._entries.items() if e.live(now))

    # --- Pyro5's operations ------------------------------------------------------

    def count(self) -> int:
        """Number of live registrations (the name server's own included)."""
        with self._lock:
            now = self._clock()
            if self._expiries and self._expiries[0][0] <= now:
                return sum(1 for _ in self._live_items(now))
            return len(self._entries)

    def lookup(self, name: str) -> Entry:
        """The entry of ``name``; ``NamingError("unknown name: name")`` if there is none."""
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        entry = self._entries.get(name)  # one dict read: atomic, no lock needed
        if entry is None or (entry.expires is not None and not entry.live(self._clock())):
            raise NamingError("unknown name: " + name)
        return entry

    def register(
        self,
        name: str,
        uri: object,
        safe: bool = False,
        metadata: object = None,
        *,
        lease: float | None = None,
    ) -> None:
        """Map ``name`` to ``uri`` (a URI or its text), replacing any entry unless ``safe``.

        ``lease`` (seconds) makes the entry expire unless renewed; without it
        the entry stays until removed. Every argument is checked before
        anything is stored.
        """
        text = _check_uri(uri)
        name = _check_name(name, self._max_name_length)
        tags = _check_metadata(metadata, self._max_name_length)
        seconds = None if lease is None else _check_lease(lease)
        with self._lock:
            now = self._clock()
            exists = self._get(name, now) is not None
            if safe and exists:
                raise NamingError("name already registered: " + name)
            if not exists and len(self._entries) >= self._max_names:
                self._expire_due(now)  # expired entries still take room until swept
                if len(self._entries) >= self._max_names:
                    raise NamingError(
                        f"name server full: {self._max_names} names registered, the limit"
                    )
            expires = None if seconds is None else now + seconds
            self._apply([Put(name, Entry(text, tags, expires))])

    def set_metadata(self, name: str, metadata: object) -> None:
        """Replace the metadata of an existing registration (its URI and lease stay)."""
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        tags = _check_metadata(metadata, self._max_name_length)
        with self._lock:
            now = self._clock()
            entry = self._get(name, now)
            if entry is None:
                raise NamingError("unknown name: " + name)
            self._apply([Put(name, Entry(entry.uri, tags, entry.expires))])

    def remove(
        self, name: str | None = None, prefix: str | None = None, regex: str | None = None
    ) -> int:
        """Remove one name, or every name with ``prefix`` or matching ``regex``.

        Returns how many were removed. As in Pyro5 the first non-empty
        argument wins, and ``Pyro.NameServer`` is never removed.
        """
        with self._lock:
            now = self._clock()
            if name and name != NAMESERVER_NAME:
                if self._get(name, now) is None:
                    return 0
                self._apply([Delete(name)])
                return 1
            if prefix or regex:
                victims = [n for n in self._select(prefix, regex, now) if n != NAMESERVER_NAME]
                self._apply([Delete(n) for n in victims])
                return len(victims)
            return 0

    def _select(self, prefix: str | None, regex: str | None, now: float) -> builtins.list[str]:
        if prefix:
            return [n for n, _ in self._live_items(now) if n.startswith(prefix)]
        if regex:
            # Refused before it runs when it could be costly, and cut off at a time budget:
            # matching holds this lock and the GIL (see nameserver.patterns).
            return select(compile_pattern(regex), (n for n, _ in self._live_items(now)))
        return [n for n, _ in self._live_items(now)]

    def list(self, prefix: str | None = None, regex: str | None = None) -> dict[str, Entry]:
        """Live entries, all of them or those with ``prefix`` / matching ``regex`` (anchored)."""
        if prefix and regex:
            raise ValueError("you can only filter on one thing at a time")
        with self._lock:
            now = self._clock()
            return {n: self._entries[n] for n in self._select(prefix, regex, now)}

    def yplookup(self, meta_all: object = None, meta_any: object = None) -> dict[str, Entry]:
        """Entries carrying all tags of ``meta_all``, or any tag of ``meta_any``."""
        if meta_all and meta_any:
            raise ValueError("you can't use meta_all or meta_any at the same time")
        if meta_all:
            wanted = _check_tags_query(meta_all, "metadata_all")
            with self._lock:
                now = self._clock()
                return {n: e for n, e in self._live_items(now) if wanted <= e.metadata}
        if meta_any:
            wanted = _check_tags_query(meta_any, "metadata_any")
            with self._lock:
                now = self._clock()
                return {n: e for n, e in self._live_items(now) if wanted & e.metadata}
        return {}

    # --- leases --------------------------------------------------------------------

    def renew(self, names: Iterable[str] | Mapping[str, str], lease: float) -> builtins.list[str]:
        """Extend the leases of ``names`` to ``lease`` seconds from now.

        Returns the names that are not registered (never were, expired, or
        removed, e.g. by a name server restart on memory storage), so their
        owner can register them again. ``names`` may map each name to the URI
        its owner registered: then an entry that now points elsewhere (someone
        re-registered the name) is left alone and not reported. Entries
        registered without a lease keep having none.
        """
        seconds = _check_lease(lease)
        if isinstance(names, str):
            raise TypeError("names should not be a str, but another iterable (list, dict, etc)")
        owners: Mapping[str, str] | None = names if isinstance(names, Mapping) else None
        wanted = builtins.list(names)
        with self._lock:
            now = self._clock()
            unknown: list[str] = []
            renewed: list[tuple[str, Entry]] = []
            expires = now + seconds
            for name in wanted:
                entry = self._get(name, now)
                if entry is None:
                    unknown.append(name)
                elif entry.expires is None or name == NAMESERVER_NAME:
                    continue  # never leased: nothing to extend
                elif owners is not None and owners[name] != entry.uri:
                    continue  # re-registered by someone else since: not ours to keep
                elif expires > entry.expires:
                    renewed.append((name, Entry(entry.uri, entry.metadata, expires)))
            # Renewals stay in memory: a restart gives every leased entry a
            # fresh grace period anyway (see __init__), so writing each renewal
            # to disk would buy nothing and cost a commit per daemon per tick.
            for name, entry in renewed:
                self._set(name, entry)
            return unknown

    def expire(self) -> builtins.list[str]:
        """Remove every entry whose lease has run out; returns their names."""
        with self._lock:
            return self._expire_due(self._clock())

    def close(self) -> None:
        """Close the storage; the registry is not used afterwards."""
        with self._lock:
            self._storage.close()

    def next_expiry(self) -> float | None:
        """The earliest lease expiry (possibly of a stale item), or ``None`` with no leases."""
        with self._lock:
            return self._expiries[0][0] if self._expiries else None
