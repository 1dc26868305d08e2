"""Name server storage: SQLite round trips, atomicity, Pyro5 file compatibility,
and a state machine of registry operations and restarts against a dict model."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from Pyro5.nameserver import SqlStorage as PyroSqlStorage

from nameserver.registry import Registry
from nameserver.storage import (
    Delete,
    Entry,
    MemoryStorage,
    Put,
    SqliteStorage,
    open_storage,
    snapshot,
)
from remoteobj.errors import NamingError

U1 = "PYRO:obj1@127.0.0.1:5001"
U2 = "PYRO:obj2@127.0.0.1:5002"


def test_open_storage_specs(tmp_path: Path) -> None:
    assert isinstance(open_storage("memory"), MemoryStorage)
    sql = open_storage(f"sql:{tmp_path / 'ns.db'}")
    assert isinstance(sql, SqliteStorage)
    sql.close()
    for bad in ("sql:", "file.db", "", "sqlite:x"):
        with pytest.raises(ValueError, match="invalid storage type"):
            open_storage(bad)
    with pytest.raises(ValueError, match=":memory:"):
        open_storage("sql::memory:")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ns.db"
    store = SqliteStorage(path)
    store.apply([Put("a", Entry(U1, frozenset({"x", "y"}))), Put("b", Entry(U2, expires=123.5))])
    store.apply([Put("a", Entry(U2, frozenset({"z"}))), Delete("b"), Delete("never-there")])
    store.apply([])
    store.close()
    again = SqliteStorage(path)
    assert again.load() == {"a": Entry(U2, frozenset({"z"}))}
    again.close()


def test_wal_and_full_sync(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "ns.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_failed_batch_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "ns.db"
    store = SqliteStorage(path)
    store.apply([Put("keep", Entry(U1))])
    unbindable = Entry([1, 2])  # type: ignore[arg-type]  # sqlite cannot store a list
    with pytest.raises(NamingError, match="storage error"):
        store.apply([Delete("keep"), Put("new", Entry(U2)), Put("bad", unbindable)])
    assert store.load() == {"keep": Entry(U1)}
    store.close()


def test_registry_on_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ns.db"
    reg = Registry(SqliteStorage(path))
    reg.register("a", U1, metadata={"t"})
    reg.register("b", U2, lease=60)
    reg.register("c", U2)
    reg.remove("c")
    reg.close()
    again = Registry(SqliteStorage(path))
    assert again.lookup("a") == Entry(U1, frozenset({"t"}))
    assert again.lookup("b").expires is not None
    assert again.count() == 2
    again.close()


def test_reads_pyro5_database(tmp_path: Path) -> None:
    path = tmp_path / "pyro5.db"
    theirs = PyroSqlStorage(str(path))
    theirs["a"] = (U1, {"x", "y"})
    theirs["b"] = (U2, None)
    assert snapshot(path) == {"a": Entry(U1, frozenset({"x", "y"})), "b": Entry(U2)}
    ours = SqliteStorage(path)
    assert ours.load() == {"a": Entry(U1, frozenset({"x", "y"})), "b": Entry(U2)}
    ours.apply([Put("c", Entry(U1, frozenset({"z"}), expires=5.0)), Delete("a")])
    ours.close()
    # ... and Pyro5 reads what we wrote (it ignores the extra expires column).
    assert theirs.everything(return_metadata=True) == {"b": (U2, set()), "c": (U1, {"z"})}


def test_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(NamingError, match="cannot open name server database"):
        SqliteStorage(path)


def test_second_connection_sees_commits_at_once(tmp_path: Path) -> None:
    """What is acknowledged is in the file: another connection reads it immediately."""
    path = tmp_path / "ns.db"
    reg = Registry(SqliteStorage(path))
    reg.register("a", U1, metadata=["t"])
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT uri FROM pyro_names WHERE name='a'").fetchone() == (U1,)
    assert snapshot(path) == {"a": Entry(U1, frozenset({"t"}))}
    reg.close()


# --- state machine: registry over SQLite vs a dict, with restarts -----------------------------

names = st.sampled_from(["a", "a.b", "a.c", "b", "x.y", "z"])
uris = st.sampled_from([U1, U2, "PYRO:o3@localhost:5003"])
tag_sets = st.frozensets(st.sampled_from(["red", "green", "blue"]), max_size=3)


class SqliteAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ns-sm-")
        self.path = Path(self.dir) / "ns.db"
        self.storage = SqliteStorage(self.path)
        self.reg = Registry(self.storage)
        self.model: dict[str, tuple[str, frozenset[str]]] = {}

    def teardown(self) -> None:
        self.storage.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(name=names, uri=uris, meta=tag_sets, safe=st.booleans())
    def register(self, name: str, uri: str, meta: frozenset[str], safe: bool) -> None:
        if safe and name in self.model:
            with pytest.raises(NamingError):
                self.reg.register(name, uri, safe, meta)
            return
        self.reg.register(name, uri, safe, meta)
        self.model[name] = (uri, meta)

    @rule(name=names)
    def remove(self, name: str) -> None:
        assert self.reg.remove(name) == (1 if self.model.pop(name, None) else 0)

    @rule(prefix=st.sampled_from(["a", "a.", "x", "q"]))
    def remove_prefix(self, prefix: str) -> None:
        gone = [n for n in self.model if n.startswith(prefix)]
        assert self.reg.remove(prefix=prefix) == len(gone)
        for n in gone:
            del self.model[n]

    @rule(name=names, meta=tag_sets)
    def set_metadata(self, name: str, meta: frozenset[str]) -> None:
        if name not in self.model:
            with pytest.raises(NamingError):
                self.reg.set_metadata(name, meta)
            return
        self.reg.set_metadata(name, meta)
        self.model[name] = (self.model[name][0], meta)

    @rule()
    def restart(self) -> None:
        self.storage.close()
        self.storage = SqliteStorage(self.path)
        self.reg = Registry(self.storage)

    @invariant()
    def file_matches_model(self) -> None:
        # A second connection sees only committed data.
        stored = {n: (e.uri, e.metadata) for n, e in snapshot(self.path).items()}
        assert stored == self.model
        assert {n: (e.uri, e.metadata) for n, e in self.reg.list().items()} == self.model


SqliteAgainstModel.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
TestSqliteAgainstModel = SqliteAgainstModel.TestCase


def test_one_name_server_per_database(tmp_path: Path) -> None:
    path = tmp_path / "ns.db"
    first = SqliteStorage(path)
    with pytest.raises(NamingError, match="is in use by another name server"):
        SqliteStorage(path)
    first.close()
    SqliteStorage(path).close()  # free again once the first one is closed
