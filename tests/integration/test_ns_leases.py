"""Leases end to end: a daemon's names vanish soon after it is SIGKILLed or
SIGSTOPped, a live daemon's names never do, Pyro5-style registrations stay,
and names come back after a name server restart (THREATS G17, short lease).

Everything runs with ``REMOTEOBJ_NS_LEASE=2`` and ``REMOTEOBJ_NS_RENEW=0.5``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

import remoteobj
from remoteobj.errors import NamingError
from tests.procs import Proc, always, free_port, start, start_nameserver, wait_for

LEASE = 2.0
ENV = {"REMOTEOBJ_NS_LEASE": str(LEASE), "REMOTEOBJ_NS_RENEW": "0.5"}
#: Slack on top of a lease: the sweep period, process scheduling, a slow CI box.
SLACK = 2.0

#: A remoteobj daemon whose names are kept alive either by its own
#: ``register(..., name=, ns=)`` (argv[2] == "daemon") or by a LeaseKeeper.
DAEMON = r"""
import sys
import remoteobj
from remoteobj.naming import LeaseKeeper

@remoteobj.expose
class Thing:
    def ping(self):
        return "pong"

config = remoteobj.Config.from_env()
daemon = remoteobj.Daemon("127.0.0.1", 0, config=config)
ns_uri, how, names = sys.argv[1], sys.argv[2], sys.argv[3:]
if how == "daemon":
    for name in names:
        uri = daemon.register(Thing(), name=name, ns=ns_uri)
else:
    uri = daemon.register(Thing(), "thing")
    keeper = LeaseKeeper(ns_uri, config)
    for name in names:
        keeper.add(name, uri)
    keeper.start()
print("READY", uri, flush=True)
daemon.request_loop()
"""


def start_daemon(ns_uri: str, *names: str, how: str = "keeper") -> Proc:
    proc = start(["python", "-c", DAEMON, ns_uri, how, *names], env=ENV)
    proc.wait_for_line("^READY ")
    return proc


def names_in(ns: remoteobj.Proxy) -> set[str]:
    return set(ns.list())


def test_killed_and_hung_daemons_lose_their_names_live_ones_keep_them() -> None:
    ns_proc, ns_uri = start_nameserver(env=ENV)
    daemons: list[Proc] = []
    try:
        with remoteobj.Proxy(ns_uri) as ns:
            ns.register("plain.pyro5style", "PYRO:x@127.0.0.1:1")  # no lease
            live, killed, hung = (
                start_daemon(ns_uri, "lease.live", how="daemon"),
                start_daemon(ns_uri, "lease.killed", how="daemon"),
                start_daemon(ns_uri, "lease.hung"),
            )
            daemons += [live, killed, hung]
            assert {"lease.live", "lease.killed", "lease.hung"} <= names_in(ns)

            killed.send_signal(signal.SIGKILL)
            hung.send_signal(signal.SIGSTOP)
            signalled = time.monotonic()

            def dead_ones_gone() -> bool:
                present = names_in(ns)
                assert "lease.live" in present, "a live daemon's name was removed"
                return not present & {"lease.killed", "lease.hung"}

            wait_for(dead_ones_gone, LEASE + SLACK, message="expired names to go")
            # Not before the lease ran out (the last renewal was at most ns_renew before):
            assert time.monotonic() - signalled > LEASE - 0.8

            # The live daemon keeps its name lease after lease.
            always(lambda: "lease.live" in names_in(ns), 2 * LEASE, message="live name listed")
            assert "plain.pyro5style" in names_in(ns)  # Pyro5 semantics: stays until removed

            # The hung daemon wakes up: its keeper registers the name again.
            hung.send_signal(signal.SIGCONT)
            wait_for(lambda: "lease.hung" in names_in(ns), 3.0, message="re-registration")
            with remoteobj.Proxy("PYRONAME:lease.hung@" + ns_uri.split("@")[1]) as thing:
                assert thing.ping() == "pong"
    finally:
        for proc in daemons:
            proc.kill()
        ns_proc.kill()


@pytest.mark.parametrize("storage", ["memory", "sql"])
def test_names_come_back_after_name_server_restart(storage: str, tmp_path: Path) -> None:
    port = free_port()
    args = ["-p", str(port)] + (["-s", f"sql:{tmp_path / 'ns.db'}"] if storage == "sql" else [])
    ns_proc, ns_uri = start_nameserver(*args, env=ENV)
    daemon = start_daemon(ns_uri, "lease.survivor")
    try:
        ns_proc.send_signal(signal.SIGKILL)
        ns_proc.wait()
        ns_proc, _ = start_nameserver(*args, env=ENV)
        with remoteobj.Proxy(ns_uri) as ns:
            wait_for(lambda: "lease.survivor" in names_in(ns), 3.0, message="re-registration")
            # ... and it stays, renewed by the live daemon, past a whole lease.
            always(lambda: "lease.survivor" in names_in(ns), LEASE + 1, message="name listed")
    finally:
        daemon.kill()
        ns_proc.kill()


def test_stale_names_in_sql_storage_expire_after_restart(tmp_path: Path) -> None:
    """Pyro5's SQL storage keeps a dead daemon's names forever; ours lets them go."""
    port = free_port()
    args = ["-p", str(port), "-s", f"sql:{tmp_path / 'ns.db'}"]
    ns_proc, ns_uri = start_nameserver(*args, env=ENV)
    daemon = start_daemon(ns_uri, "lease.stale")
    daemon.kill()
    ns_proc.kill()
    ns_proc, _ = start_nameserver(*args, env=ENV)
    try:
        with remoteobj.Proxy(ns_uri) as ns:
            assert "lease.stale" in names_in(ns)  # a grace period after the restart ...
            wait_for(lambda: "lease.stale" not in names_in(ns), LEASE + SLACK)  # ... then gone
            with pytest.raises(NamingError, match=r"unknown name: lease\.stale"):
                ns.lookup("lease.stale")
    finally:
        ns_proc.kill()
