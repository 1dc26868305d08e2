"""Where the name table lives between restarts: nowhere (memory) or an SQLite file.

The :class:`~nameserver.registry.Registry` keeps the whole table in memory and
serves every read from there; a storage only *records* changes and gives the
table back at start-up. :meth:`Storage.apply` receives the changes of one
operation and must make them durable, all or nothing, before it returns --
the registry acknowledges an operation only after that.

``sql:FILE`` uses Pyro5's table layout (``pyro_names``, ``pyro_metadata``) with
one extra nullable column, ``pyro_names.expires``, for leases; Pyro5's name
server can open our file and we can open Pyro5's. The database runs in WAL
mode with ``synchronous=FULL``: a committed transaction survives the process
being killed at any instant (and a power cut too).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from remoteobj.errors import NamingError

__all__ = [
    "Change",
    "Delete",
    "Entry",
    "MemoryStorage",
    "Put",
    "SqliteStorage",
    "Storage",
    "open_storage",
    "snapshot",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One registration: the URI text as registered, its tags, and its lease expiry."""

    uri: str
    metadata: frozenset[str] = frozenset()
    #: Wall-clock time after which the entry is gone; ``None``: no lease, never expires.
    expires: float | None = None

    def live(self, now: float) -> bool:
        """Whether the entry still exists at ``now``."""
        return self.expires is None or self.expires > now


@dataclass(frozen=True, slots=True)
class Put:
    """A change: ``name`` now maps to ``entry`` (inserted or replaced)."""

    name: str
    entry: Entry


@dataclass(frozen=True, slots=True)
class Delete:
    """A change: ``name`` is gone (a no-op if it was not there)."""

    name: str


Change = Put | Delete


class Storage(Protocol):
    """What the registry needs from a store."""

    def load(self) -> dict[str, Entry]:
        """Every stored entry, once, at start-up."""
        ...

    def apply(self, changes: Sequence[Change]) -> None:
        """Record ``changes`` in order, durably and atomically, before returning.

        Raises :class:`NamingError` if they could not be recorded; then none of
        them is.
        """
        ...

    def close(self) -> None:
        """Release the store; no call follows."""
        ...


class MemoryStorage:
    """No persistence: a restart forgets every registration (Pyro5's default too)."""

    def load(self) -> dict[str, Entry]:
        """Nothing was kept."""
        return {}

    def apply(self, changes: Sequence[Change]) -> None:
        """Nothing to record: the registry's own table is the only copy."""

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pyro_names (
        id integer PRIMARY KEY,
        name nvarchar NOT NULL UNIQUE,
        uri nvarchar NOT NULL,
        expires real
    )""",
    """CREATE TABLE IF NOT EXISTS pyro_metadata (
        object integer NOT NULL,
        metadata nvarchar NOT NULL,
        FOREIGN KEY(object) REFERENCES pyro_names(id)
    )""",
    # Pyro5 has no index here; deleting a registration's tags would scan the table.
    "CREATE INDEX IF NOT EXISTS remoteobj_metadata_object ON pyro_metadata(object)",
)


class SqliteStorage:
    """Registrations in an SQLite file, every change committed before it is acknowledged."""

    def __init__(self, path: str | Path) -> None:
        """Open (creating if needed) the database at ``path``.

        A database made by Pyro5's name server is adopted as it is, gaining
        the ``expires`` column.
        """
        if str(path) == ":memory:":
            raise ValueError(
                "the sqlite :memory: database is not supported; use the memory storage"
            )
        self.path = Path(path)
        self._lock = threading.Lock()
        self._owner: BinaryIO | None = None
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        # check_same_thread=False: the name server calls from worker threads,
        # always one at a time (self._lock).
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _cannot_open(self.path, exc) from exc
        try:
            self._claim()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                for statement in _SCHEMA:
                    self._db.execute(statement)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(pyro_names)")}
                if "expires" not in columns:  # a database written by Pyro5
                    self._db.execute("ALTER TABLE pyro_names ADD COLUMN expires real")
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error):
                raise _cannot_open(self.path, exc) from exc
            raise

    def _claim(self) -> None:
        """Hold an exclusive lock on the file while this storage is open.

        The registry serves from memory, so a second name server on the same
        file would answer from a copy that silently diverges. ``flock`` locks
        are separate from SQLite's own (POSIX) locks, and the kernel drops
        them when the process dies, however it dies.
        """
        self._owner = open(self.path, "rb")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._owner.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NamingError(
                f"name server database {str(self.path)!r} is in use by another name server"
            ) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the block raised."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # also when COMMIT itself failed
                self._db.execute("ROLLBACK")
            raise

    def load(self) -> dict[str, Entry]:
        """Read the whole table."""
        with self._lock:
            return _read_table(self._db)

    def apply(self, changes: Sequence[Change]) -> None:
        """Record ``changes`` in one transaction, committed (fsynced) before returning."""
        if not changes:
            return
        with self._lock:
            try:
                with self._transaction():
                    for change in changes:
                        self._delete(change.name)
                        if isinstance(change, Put):
                            self._insert(change.name, change.entry)
            except sqlite3.Error as exc:
                log.error("name server storage %s refused a change: %s", self.path, exc)
                raise NamingError(f"storage error: {exc}") from exc

    def _delete(self, name: str) -> None:
        row = self._db.execute("SELECT id FROM pyro_names WHERE name=?", (name,)).fetchone()
        if row is not None:
            self._db.execute("DELETE FROM pyro_metadata WHERE object=?", row)
            self._db.execute("DELETE FROM pyro_names WHERE id=?", row)

    def _insert(self, name: str, entry: Entry) -> None:
        cursor = self._db.execute(
            "INSERT INTO pyro_names(name, uri, expires) VALUES (?, ?, ?)",
            (name, entry.uri, entry.expires),
        )
        object_id = cursor.lastrowid
        self._db.executemany(
            "INSERT INTO pyro_metadata(object, metadata) VALUES (?, ?)",
            [(object_id, tag) for tag in sorted(entry.metadata)],
        )

    def close(self) -> None:
        """Close the database (the WAL is checkpointed by SQLite on the last close)."""
        with self._lock:
            self._db.close()
            if self._owner is not None:
                self._owner.close()  # releases the flock
                self._owner = None


def _read_table(db: sqlite3.Connection) -> dict[str, Entry]:
    tags: dict[int, set[str]] = {}
    for object_id, tag in db.execute("SELECT object, metadata FROM pyro_metadata"):
        tags.setdefault(object_id, set()).add(tag)
    columns = {row[1] for row in db.execute("PRAGMA table_info(pyro_names)")}
    expires = "expires" if "expires" in columns else "NULL"  # a Pyro5 file not yet adopted
    return {
        name: Entry(uri, frozenset(tags.get(object_id, ())), expiry)
        for object_id, name, uri, expiry in db.execute(
            f"SELECT id, name, uri, {expires} FROM pyro_names"  # noqa: S608 - a fixed word
        )
    }


def snapshot(path: str | Path) -> dict[str, Entry]:
    """What the database at ``path`` holds now, read through a separate read-only
    connection (it works while a name server has the file open)."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return _read_table(db)


def _cannot_open(path: Path, exc: Exception) -> NamingError:
    return NamingError(f"cannot open name server database {str(path)!r}: {exc}")


def open_storage(spec: str) -> Storage:
    """The storage named by ``spec``: ``"memory"`` or ``"sql:FILE"`` (as ``pyro5-ns -s``)."""
    if spec == "memory":
        return MemoryStorage()
    if spec.startswith("sql:") and len(spec) > 4:
        return SqliteStorage(spec[4:])
    raise ValueError(f"invalid storage type '{spec}' (expected memory or sql:FILE)")
