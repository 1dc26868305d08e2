"""The name table: Pyro5's semantics and messages, our limits, and leases (fake clock)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from nameserver.registry import MAX_METADATA_TAGS, NAMESERVER_NAME, Registry
from nameserver.storage import Change, Entry, MemoryStorage, Put
from remoteobj.errors import NamingError
from remoteobj.uri import URI

U1 = "PYRO:obj1@127.0.0.1:5001"
U2 = "PYRO:obj2@127.0.0.1:5002"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reg(clock: Clock) -> Registry:
    r = Registry(max_names=10, max_name_length=20, clock=clock)
    r.register(NAMESERVER_NAME, "PYRO:Pyro.NameServer@127.0.0.1:9090", metadata={"class:x"})
    return r


class RecordingStorage(MemoryStorage):
    """Memory storage that records what it was asked to apply, and can refuse."""

    def __init__(self, initial: dict[str, Entry] | None = None) -> None:
        self.applied: list[object] = []
        self.refuse = False
        self.initial = initial or {}

    def load(self) -> dict[str, Entry]:
        return dict(self.initial)

    def apply(self, changes: Sequence[Change]) -> None:
        if self.refuse:
            raise NamingError("storage error: disk full")
        self.applied.extend(changes)


# --- Pyro5 semantics ---------------------------------------------------------------------


def test_register_and_lookup(reg: Registry) -> None:
    reg.register("a", U1, metadata=["x", "y"])
    assert reg.lookup("a") == Entry(U1, frozenset({"x", "y"}))
    reg.register("a", URI(U2))  # replaces, metadata cleared, URI object stored as text
    assert reg.lookup("a") == Entry(U2, frozenset())
    assert reg.count() == 2


def test_uri_text_kept_as_registered(reg: Registry) -> None:
    reg.register("a", "pyro:obj1@127.0.0.1:5001")
    assert reg.lookup("a").uri == "pyro:obj1@127.0.0.1:5001"


def test_unknown_name_message(reg: Registry) -> None:
    with pytest.raises(NamingError, match=r"^unknown name: nope$"):
        reg.lookup("nope")


def test_safe_duplicate(reg: Registry) -> None:
    reg.register("a", U1)
    with pytest.raises(NamingError, match=r"^name already registered: a$"):
        reg.register("a", U2, safe=True)
    assert reg.lookup("a").uri == U1


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"name": 5}, TypeError, "name must be a str"),
        ({"uri": 5}, TypeError, "only URIs or strings can be registered"),
        ({"metadata": "abc"}, TypeError, "metadata should not be a str"),
        ({"metadata": 5}, TypeError, "not iterable"),
        ({"metadata": [1]}, NamingError, "metadata must be strings, not int"),
        ({"metadata": [b"x"]}, NamingError, "metadata must be strings, not bytes"),
        ({"name": "x" * 21}, NamingError, "name too long: 21 characters, the limit is 20"),
        ({"metadata": ["t" * 21]}, NamingError, "metadata tag too long"),
        ({"uri": "not a uri"}, NamingError, "invalid uri 'not a uri'"),
        ({"uri": "PYRO:obj"}, NamingError, "invalid uri"),
        ({"lease": 0}, NamingError, "lease must be a positive number"),
        ({"lease": "5"}, NamingError, "lease must be a positive number"),
        ({"lease": True}, NamingError, "lease must be a positive number"),
        ({"lease": float("nan")}, NamingError, "lease must be a positive number"),
        ({"lease": float("inf")}, NamingError, "lease must be a positive number"),
        ({"uri": "PYRO:" + "o" * 1100 + "@h:1"}, NamingError, "uri too long: 1109 characters"),
    ],
)
def test_bad_input_stores_nothing(
    reg: Registry, kwargs: dict[str, object], exc: type[Exception], message: str
) -> None:
    args: dict[str, object] = {"name": "a", "uri": U1, "metadata": None, "lease": None}
    args.update(kwargs)
    lease = args.pop("lease")
    with pytest.raises(exc, match=message):
        reg.register(args["name"], args["uri"], metadata=args["metadata"], lease=lease)  # type: ignore[arg-type]
    assert reg.count() == 1
    with pytest.raises(NamingError):
        reg.lookup("a")


def test_too_many_tags(clock: Clock) -> None:
    reg = Registry(clock=clock)
    with pytest.raises(NamingError, match="too many metadata tags"):
        reg.register("a", U1, metadata=[f"t{i}" for i in range(MAX_METADATA_TAGS + 1)])
    with pytest.raises(NamingError, match="metadata too large: 4160 characters"):
        reg.register("a", U1, metadata=[f"{i:02}" + "x" * 128 for i in range(32)])
    reg.register("a", U1, metadata=[f"{i:02}" + "x" * 100 for i in range(32)])
    assert reg.count() == 1


def test_registration_cap(reg: Registry) -> None:
    for i in range(9):
        reg.register(f"n{i}", U1)
    assert reg.count() == 10
    with pytest.raises(NamingError, match="name server full: 10 names"):
        reg.register("one-more", U1)
    reg.register("n3", U2)  # replacing an existing name is not a new one
    assert reg.lookup("n3").uri == U2
    reg.remove("n3")
    reg.register("one-more", U1)


def test_storage_refusal_changes_nothing(clock: Clock) -> None:
    storage = RecordingStorage()
    reg = Registry(storage, clock=clock)
    reg.register("a", U1)
    storage.refuse = True
    with pytest.raises(NamingError, match="disk full"):
        reg.register("a", U2)
    with pytest.raises(NamingError, match="disk full"):
        reg.remove("a")
    assert reg.lookup("a").uri == U1


def test_set_metadata(reg: Registry) -> None:
    reg.register("a", U1, metadata={"x"}, lease=10)
    reg.set_metadata("a", ["y", "z"])
    assert reg.lookup("a") == Entry(U1, frozenset({"y", "z"}), 1010.0)
    reg.set_metadata("a", None)
    assert reg.lookup("a").metadata == frozenset()
    with pytest.raises(NamingError, match=r"^unknown name: b$"):
        reg.set_metadata("b", {"x"})
    with pytest.raises(TypeError, match="metadata should not be a str"):
        reg.set_metadata("a", "xyz")


def test_remove(reg: Registry) -> None:
    for name in ("app.a", "app.b", "other.c", "xapp.d"):
        reg.register(name, U1)
    assert reg.remove("app.a") == 1
    assert reg.remove("app.a") == 0
    assert reg.remove(prefix="app.") == 1
    assert reg.remove(regex=r"[ox]") == 2  # re.match: anchored at the start
    assert reg.list() == {NAMESERVER_NAME: reg.lookup(NAMESERVER_NAME)}
    assert reg.remove() == 0


def test_never_removes_nameserver(reg: Registry) -> None:
    assert reg.remove(NAMESERVER_NAME) == 0
    assert reg.remove(prefix="Pyro") == 0
    assert reg.remove(regex=".*") == 0
    assert reg.count() == 1


def test_remove_prefix_wins_over_regex(reg: Registry) -> None:
    reg.register("a1", U1)
    reg.register("b1", U1)
    assert reg.remove(prefix="a", regex="b") == 1
    assert "b1" in reg.list()


def test_list_filters(reg: Registry) -> None:
    reg.register("app.a", U1)
    reg.register("app.b", U2)
    assert set(reg.list(prefix="app.")) == {"app.a", "app.b"}
    assert set(reg.list(regex=r"app\.b")) == {"app.b"}
    assert set(reg.list(regex="pp")) == set()
    with pytest.raises(ValueError, match="you can only filter on one thing at a time"):
        reg.list(prefix="a", regex="b")
    with pytest.raises(NamingError, match=r"^invalid regex: "):
        reg.list(regex="[")
    with pytest.raises(NamingError, match=r"^invalid regex: "):
        reg.remove(regex="(")


def test_yplookup(reg: Registry) -> None:
    reg.register("a", U1, metadata={"red", "big"})
    reg.register("b", U2, metadata={"red"})
    assert set(reg.yplookup(meta_all=["red", "big"])) == {"a"}
    assert set(reg.yplookup(meta_all={"red"})) == {"a", "b"}
    assert set(reg.yplookup(meta_any=["big", "nothing"])) == {"a"}
    assert reg.yplookup() == {}
    with pytest.raises(ValueError, match="you can't use meta_all or meta_any at the same time"):
        reg.yplookup(meta_all=["a"], meta_any=["b"])
    with pytest.raises(TypeError, match="metadata_all should not be a str"):
        reg.yplookup(meta_all="red")
    with pytest.raises(TypeError, match="metadata_any should not be a str"):
        reg.yplookup(meta_any="red")


# --- leases ----------------------------------------------------------------------------------


def test_lease_expires(reg: Registry, clock: Clock) -> None:
    reg.register("leased", U1, lease=5)
    reg.register("forever", U2)
    clock.advance(4.9)
    assert reg.lookup("leased").uri == U1
    clock.advance(0.2)
    # Invisible at once, before any sweep:
    with pytest.raises(NamingError, match="unknown name: leased"):
        reg.lookup("leased")
    assert "leased" not in reg.list()
    assert reg.count() == 2
    assert reg.expire() == ["leased"]
    assert reg.expire() == []
    assert reg.lookup("forever").uri == U2


def test_renew(reg: Registry, clock: Clock) -> None:
    reg.register("a", U1, lease=5)
    reg.register("plain", U2)
    for _ in range(10):
        clock.advance(4)
        assert reg.renew(["a", "plain", "gone"], 5) == ["gone"]
    assert reg.lookup("a").expires == clock.now + 5
    assert reg.lookup("plain").expires is None  # a Pyro5 registration stays lease-less
    clock.advance(5)
    assert reg.expire() == ["a"]
    assert reg.renew(["a"], 5) == ["a"]


def test_renew_mapping_respects_new_owner(reg: Registry, clock: Clock) -> None:
    reg.register("a", U1, lease=5)
    reg.register("a", U2, lease=5)  # someone else took the name
    clock.advance(4)
    assert reg.renew({"a": U1}, 5) == []  # not renewed for the old owner, not "unknown"
    clock.advance(1.5)
    assert reg.renew({"a": U1}, 5) == ["a"]  # the new owner is gone: the old one may return


def test_reregister_without_lease_drops_lease(reg: Registry, clock: Clock) -> None:
    reg.register("a", U1, lease=5)
    reg.register("a", U1)
    clock.advance(100)
    assert reg.expire() == []
    assert reg.lookup("a").expires is None


def test_expired_name_frees_room_and_safe(reg: Registry, clock: Clock) -> None:
    for i in range(9):
        reg.register(f"n{i}", U1, lease=1)
    clock.advance(2)
    reg.register("n0", U2, safe=True)  # the expired one does not count as registered
    reg.register("fresh", U1)
    assert reg.count() == 3
    assert reg.renew(["n1"], 1) == ["n1"]


def test_nameserver_entry_never_leased(reg: Registry, clock: Clock) -> None:
    assert reg.renew([NAMESERVER_NAME], 1) == []
    clock.advance(10)
    reg.expire()
    assert reg.lookup(NAMESERVER_NAME)


def test_restart_grace(clock: Clock) -> None:
    storage = RecordingStorage(
        {
            "old": Entry(U1, frozenset(), expires=clock.now - 100),
            "plain": Entry(U2),
            "later": Entry(U1, frozenset(), expires=clock.now + 500),
        }
    )
    reg = Registry(storage, restart_grace=30, clock=clock)
    assert reg.lookup("old").expires == clock.now + 30
    assert reg.lookup("later").expires == clock.now + 500
    clock.advance(31)
    assert reg.expire() == ["old"]
    assert reg.lookup("plain").expires is None


def test_renewals_stay_in_memory_expiry_is_stored(clock: Clock) -> None:
    storage = RecordingStorage()
    reg = Registry(storage, clock=clock)
    reg.register("a", U1, lease=5)
    assert storage.applied == [Put("a", Entry(U1, frozenset(), clock.now + 5))]
    storage.applied.clear()
    reg.renew(["a"], 5)
    assert storage.applied == []
    clock.advance(6)
    reg.expire()
    assert [type(c).__name__ for c in storage.applied] == ["Delete"]


def test_failed_operations_keep_expiries_due(clock: Clock) -> None:
    storage = RecordingStorage()
    reg = Registry(storage, clock=clock)
    reg.register("a", U1, lease=1)
    reg.register("b", U2)
    clock.advance(2)
    with pytest.raises(NamingError, match="name already registered"):
        reg.register("b", U1, safe=True)
    storage.refuse = True
    with pytest.raises(NamingError, match="disk full"):
        reg.expire()
    storage.refuse = False
    assert reg.expire() == ["a"]
