"""The ``Pyro.NameServer`` object, checked call for call against Pyro5's own class.

A hypothesis state machine drives our :class:`nameserver.service.NameServer`
and ``Pyro5.nameserver.NameServer`` (memory storage) with the same calls and
requires the same results, or exceptions of the same class name with the same
message. Inputs stay inside what Pyro5 accepts; where we are deliberately
stricter (limits, non-string metadata, malformed URIs) other tests cover it.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from Pyro5.nameserver import NameServer as PyroNameServer

from nameserver.registry import Registry
from nameserver.service import NAMESERVER_CLASS_TAG, NAMESERVER_NAME, NameServer
from remoteobj.config import Config
from remoteobj.errors import NamingError
from remoteobj.exposure import exposed_members
from remoteobj.uri import URI

names = st.sampled_from(["a", "a.b", "a.c", "b", "ab", "x.y.z", NAMESERVER_NAME, "", "Pyro"])
uris = st.sampled_from(
    ["PYRO:o1@127.0.0.1:5001", "PYRO:o2@localhost:5002", "pyro:o3@[::1]:5003", "PYRO:o4@./u:/tmp/s"]
)
tags = st.sampled_from(["red", "green", "blue", "class:foo"])
metadata = st.one_of(
    st.none(),
    st.lists(tags, max_size=3),
    st.frozensets(tags, max_size=3),
    st.just("red"),  # a str: TypeError in both
    st.just(5),  # not iterable: TypeError in both
)
prefixes = st.sampled_from([None, "", "a", "a.", "x", "P", "zzz"])
regexes = st.sampled_from([None, "", "a.*", r"a\.b", "b|x", "[", "(", ".*"])
queries = st.one_of(st.none(), st.lists(tags, max_size=2), st.just("red"))


def outcome(func: Any, *args: Any, **kwargs: Any) -> Any:
    """The result, normalised, or ``(exception class name, message)``."""
    try:
        return normalise(func(*args, **kwargs))
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(normalise(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(value))
    if value is not None and type(value).__name__ == "URI":
        return ("uri", str(value))
    return value


class AgainstPyro5(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ours = NameServer()
        self.theirs = PyroNameServer()
        ns_uri = "PYRO:Pyro.NameServer@127.0.0.1:9090"
        self.ours.register_self(URI(ns_uri))
        self.theirs.register(NAMESERVER_NAME, ns_uri, metadata={NAMESERVER_CLASS_TAG})

    def both(self, method: str, *args: Any, **kwargs: Any) -> Any:
        mine = outcome(getattr(self.ours, method), *args, **kwargs)
        pyro = outcome(getattr(self.theirs, method), *args, **kwargs)
        assert mine == pyro, f"{method}{args}{kwargs}: ours {mine!r} != Pyro5 {pyro!r}"
        return mine

    @rule(name=names, uri=uris, safe=st.booleans(), meta=metadata)
    def register(self, name: str, uri: str, safe: bool, meta: Any) -> None:
        self.both("register", name, uri, safe, meta)

    @rule(name=names, uri=uris)
    def register_uri_object(self, name: str, uri: str) -> None:
        mine = outcome(self.ours.register, name, URI(uri))
        pyro = outcome(self.theirs.register, name, __import__("Pyro5.core").core.URI(uri))
        assert mine == pyro

    @rule(name=names, return_metadata=st.booleans())
    def lookup(self, name: str, return_metadata: bool) -> None:
        self.both("lookup", name, return_metadata)

    @rule(name=names, meta=metadata)
    def set_metadata(self, name: str, meta: Any) -> None:
        self.both("set_metadata", name, meta)

    @rule(name=st.one_of(st.none(), names), prefix=prefixes, regex=regexes)
    def remove(self, name: str | None, prefix: str | None, regex: str | None) -> None:
        self.both("remove", name, prefix, regex)

    @rule(prefix=prefixes, regex=regexes, return_metadata=st.booleans())
    def list(self, prefix: str | None, regex: str | None, return_metadata: bool) -> None:
        self.both("list", prefix, regex, return_metadata)

    @rule(meta_all=queries, meta_any=queries, return_metadata=st.booleans())
    def yplookup(self, meta_all: Any, meta_any: Any, return_metadata: bool) -> None:
        self.both("yplookup", meta_all, meta_any, return_metadata)

    @invariant()
    def same_count(self) -> None:
        self.both("count")
        self.both("ping")


AgainstPyro5.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
TestAgainstPyro5 = AgainstPyro5.TestCase


def test_exposed_surface_is_pyro5s_plus_renew() -> None:
    members = exposed_members(NameServer)
    pyro5 = {"count", "lookup", "register", "set_metadata", "remove", "list", "yplookup", "ping"}
    assert members.methods == pyro5 | {"renew"}
    assert not members.oneway
    assert not members.attrs


def test_lookup_returns_uri_object_list_returns_text() -> None:
    ns = NameServer()
    ns.register("a", "PYRO:obj@127.0.0.1:5000", metadata={"t"})
    uri = ns.lookup("a")
    assert isinstance(uri, URI)
    assert str(uri) == "PYRO:obj@127.0.0.1:5000"
    assert ns.lookup("a", return_metadata=True) == (uri, {"t"})
    assert ns.list() == {"a": "PYRO:obj@127.0.0.1:5000"}
    assert ns.yplookup(meta_all=["t"]) == {"a": ("PYRO:obj@127.0.0.1:5000", {"t"})}


def test_lease_kwarg_and_renew_default_lease() -> None:
    now = [100.0]
    registry = Registry(clock=lambda: now[0])
    ns = NameServer(config=Config(ns_lease=3, ns_renew=1), registry=registry)
    ns.register("a", "PYRO:obj@127.0.0.1:5000", lease=1)
    assert ns.renew(["a", "b"]) == ["b"]  # lease defaults to the server's ns_lease
    now[0] += 2.5
    assert ns.sweep() == []
    now[0] += 1
    assert ns.sweep() == ["a"]
    with pytest.raises(NamingError, match="unknown name: a"):
        ns.lookup("a")


def test_authorize_seam_guards_every_mutation() -> None:
    seen: list[str] = []

    def authorize(operation: str) -> None:
        seen.append(operation)
        if operation != "register":
            raise NamingError(f"not allowed: {operation}")

    ns = NameServer(authorize=authorize)
    ns.register("a", "PYRO:obj@127.0.0.1:5000")
    for call in (
        lambda: ns.remove("a"),
        lambda: ns.set_metadata("a", ["x"]),
        lambda: ns.renew(["a"], 5),
    ):
        with pytest.raises(NamingError, match="not allowed"):
            call()
    assert seen == ["register", "remove", "set_metadata", "renew"]
    assert ns.lookup("a", return_metadata=True) == (URI("PYRO:obj@127.0.0.1:5000"), set())
    ns.lookup("a")  # reads need no authorization
    ns.list()
