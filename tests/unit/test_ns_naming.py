"""Name resolution and leases without sockets: the discovery plan, and the
LeaseKeeper against an in-process name server standing in for the proxy."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from nameserver.service import NameServer
from remoteobj.config import Config
from remoteobj.errors import CommunicationError, NamingError
from remoteobj.naming import LeaseKeeper, _Broadcast, _Direct, _pick, _plan
from remoteobj.uri import URI

NS = "Pyro.NameServer"


def direct(host: str, port: int) -> _Direct:
    return _Direct(URI(f"PYRO:{NS}@{host}:{port}"))


def test_plan_explicit_host_is_the_only_place() -> None:
    cfg = Config(ns_host="10.0.0.1", ns_port=7000)
    assert _plan("192.168.1.5", None, cfg, True, None) == [direct("192.168.1.5", 7000)]
    assert _plan("192.168.1.5", 7100, cfg, True, None) == [direct("192.168.1.5", 7100)]
    assert _plan("./u:/tmp/ns.sock", None, cfg, True, None) == [
        _Direct(URI(f"PYRO:{NS}@./u:/tmp/ns.sock"))
    ]
    assert _plan("::1", 7100, cfg, True, None) == [direct("[::1]", 7100)]


def test_plan_configured_then_broadcast_then_default() -> None:
    cfg = Config(ns_host="10.0.0.1", ns_port=7000, ns_bcport=7001)
    assert _plan(None, None, cfg, True, None) == [
        direct("10.0.0.1", 7000),
        _Broadcast(7001, ("<broadcast>", "0.0.0.0")),
        direct("localhost", 9090),
    ]
    assert _plan(None, None, cfg, False, None) == [
        direct("10.0.0.1", 7000),
        direct("localhost", 9090),
    ]


def test_plan_defaults_not_tried_twice_and_port_doubles_as_bcport() -> None:
    assert _plan(None, None, Config(), True, ["127.0.0.1"]) == [
        direct("localhost", 9090),
        _Broadcast(9091, ("127.0.0.1",)),
    ]
    # As Pyro5: a port without a host is the NS port and the broadcast port.
    assert _plan(None, 5555, Config(), True, ["127.0.0.1"]) == [
        direct("localhost", 5555),
        _Broadcast(5555, ("127.0.0.1",)),
        direct("localhost", 9090),
    ]


def test_pick() -> None:
    target = URI("PYRO:obj@127.0.0.1:5000")
    assert _pick(URI("PYRONAME:x"), target) is target
    assert _pick(URI("PYRONAME:x"), str(target)) == target
    meta = URI("PYROMETA:b,a")
    picks = {str(_pick(meta, {"n1": "PYRO:o1@h:1", "n2": "PYRO:o2@h:2"})) for _ in range(200)}
    assert picks == {"PYRO:o1@h:1", "PYRO:o2@h:2"}  # random, like Pyro5
    with pytest.raises(
        NamingError,
        match=r"^no registrations available with desired metadata properties \{'a', 'b'\}$",
    ):
        _pick(meta, {})


# --- LeaseKeeper -------------------------------------------------------------------------------


class FlakyNs:
    """Forwards to a NameServer; can be made unreachable, or Pyro5-like (no leases:
    our proxy to a Pyro5 name server refuses ``renew`` locally, and the server
    refuses the ``lease`` argument)."""

    def __init__(self, ns: NameServer, *, pyro5: bool = False) -> None:
        self.ns = ns
        self.pyro5 = pyro5
        self.down = False
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.ns, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.down:
                raise CommunicationError("cannot connect to 127.0.0.1:9: refused")
            if self.pyro5 and name == "renew":
                raise AttributeError(
                    "remote object 'PYRO:Pyro.NameServer@h:1' has no exposed method 'renew'"
                )
            if self.pyro5 and "lease" in kwargs:
                raise TypeError(f"NameServer.{name}() got an unexpected keyword argument 'lease'")
            return target(*args, **kwargs)

        return call


@pytest.fixture
def clocked() -> tuple[NameServer, list[float]]:
    from nameserver.registry import Registry

    now = [1000.0]
    return NameServer(registry=Registry(clock=lambda: now[0])), now


CFG = Config(ns_lease=3, ns_renew=1)
U = "PYRO:obj@127.0.0.1:5000"


def test_keeper_registers_with_lease_and_renews(clocked: tuple[NameServer, list[float]]) -> None:
    ns, now = clocked
    keeper = LeaseKeeper(FlakyNs(ns), CFG)  # type: ignore[arg-type]
    keeper.add("svc", U, metadata={"t"})
    assert ns.registry.lookup("svc").expires == 1003.0
    assert ns.lookup("svc", return_metadata=True) == (URI(U), {"t"})
    for _ in range(10):
        now[0] += 1
        assert keeper.renew_now() == []
    assert ns.registry.lookup("svc").expires == now[0] + 3
    now[0] += 3.1  # the process "hung" for longer than a lease
    assert ns.sweep() == ["svc"]
    assert keeper.renew_now() == ["svc"]  # back on the next renewal
    assert ns.lookup("svc", return_metadata=True) == (URI(U), {"t"})


def test_keeper_survives_ns_outage(
    clocked: tuple[NameServer, list[float]], caplog: pytest.LogCaptureFixture
) -> None:
    ns, _ = clocked
    flaky = FlakyNs(ns)
    keeper = LeaseKeeper(flaky, CFG)  # type: ignore[arg-type]
    keeper.add("svc", U)
    flaky.down = True
    with caplog.at_level(logging.WARNING, logger="remoteobj.naming"):
        for _ in range(3):
            assert keeper.renew_now() == []
    assert sum("cannot renew" in r.message for r in caplog.records) == 1  # once per outage
    ns.remove("svc")  # the name server restarted empty meanwhile
    flaky.down = False
    assert keeper.renew_now() == ["svc"]
    assert str(ns.lookup("svc")) == U


def test_keeper_does_not_take_back_a_name_someone_else_registered(
    clocked: tuple[NameServer, list[float]],
) -> None:
    ns, now = clocked
    keeper = LeaseKeeper(FlakyNs(ns), CFG)  # type: ignore[arg-type]
    keeper.add("svc", U)
    ns.register("svc", "PYRO:other@127.0.0.1:6000")  # a plain (Pyro5) registration
    now[0] += 10
    assert keeper.renew_now() == []
    assert str(ns.lookup("svc")) == "PYRO:other@127.0.0.1:6000"
    keeper.stop(unregister=True)  # not ours any more: left alone
    assert str(ns.lookup("svc")) == "PYRO:other@127.0.0.1:6000"


def test_keeper_falls_back_to_plain_registrations_on_pyro5(
    clocked: tuple[NameServer, list[float]],
) -> None:
    ns, _ = clocked
    flaky = FlakyNs(ns, pyro5=True)
    keeper = LeaseKeeper(flaky, CFG)  # type: ignore[arg-type]
    keeper.add("svc", U)
    assert not keeper.leases
    assert ns.registry.lookup("svc").expires is None  # Pyro5 semantics: stays until removed
    assert keeper.renew_now() == []
    assert "renew" not in flaky.calls
    ns.remove("svc")
    assert keeper.renew_now() == ["svc"]


def test_keeper_stop_unregisters_only_its_names(clocked: tuple[NameServer, list[float]]) -> None:
    ns, _ = clocked
    keeper = LeaseKeeper(FlakyNs(ns), CFG)  # type: ignore[arg-type]
    keeper.add("a", U)
    keeper.add("b", U)
    ns.register("unrelated", U)
    keeper.discard("a")
    assert set(ns.list()) == {"b", "unrelated"}
    keeper.discard("b", unregister=False)
    keeper.stop()
    assert set(ns.list()) == {"b", "unrelated"}
    assert keeper.names == {}


def test_keeper_add_reports_refusals(clocked: tuple[NameServer, list[float]]) -> None:
    ns, _ = clocked
    keeper = LeaseKeeper(FlakyNs(ns), CFG)  # type: ignore[arg-type]
    with pytest.raises(NamingError, match="name too long"):
        keeper.add("x" * 1000, U)
    assert keeper.names == {}


def test_keeper_notices_a_pyro5_name_server_replacing_ours(
    clocked: tuple[NameServer, list[float]],
) -> None:
    ns, _ = clocked
    flaky = FlakyNs(ns)
    keeper = LeaseKeeper(flaky, CFG)  # type: ignore[arg-type]
    keeper.add("svc", U)
    assert keeper.leases
    flaky.pyro5 = True  # same address, now Pyro5's name server (empty)
    ns.remove("svc")
    assert keeper.renew_now() == ["svc"]
    assert not keeper.leases
    assert ns.registry.lookup("svc").expires is None
    flaky.pyro5 = False  # and ours again, restarted empty
    ns.remove("svc")
    assert keeper.renew_now() == ["svc"]
    assert keeper.leases
    assert ns.registry.lookup("svc").expires is not None
