"""The Pyro4-style compatibility module and the echo server, as separate processes.

The seed's chain (three servers and a client written for Pyro4) runs on
``remoteobj.compat.pyro4``: the code below is the seed's, character for
character, except for the import line and the seed's three bugs, each fixed by
one exact replacement listed in :data:`SEED_FIXES` (the same fixes a real Pyro4
would need).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import remoteobj
from tests.integration.feat_support import serving
from tests.procs import LOOPBACK, Proc, start, start_nameserver, wait_for

# --- the seed's chain code, verbatim ------------------------------------------------------

SEED_CLIENT = """# test.py
from __future__ import print_function
import Pyro4

obj = Pyro4.core.Proxy("PYRONAME:example.chain.A")
print("Result=%s" % obj.process(["hello"]))
"""

SEED_SERVER_1 = """# server_1.py
from __future__ import print_function
import Pyro4
import chainTopology


this = "1"
next = "2"

servername = "example.chainTopology." + this

daemon = Pyro4.core.Daemon()
obj = chainTopology.Chain(this, next)
uri = daemon.register(obj)
ns = Pyro4.naming.locateNS()
ns.register(servername, uri)

# 进入服务循环
print("server_%s started " % this)
daemon.requstLoop()
"""

SEED_CHAIN_TOPOLOGY = """# chainTopology.py
from __future__ import print_function
import Pyro4


class Chain(object):
    def __init__(self, name, next):
        self.name = name
        self.nextName = next
        self.next = None

    def process(self, message):
        if self.next is None:
            self.next = Pyro4.core.Proxy("PYRONAME:example.chain." + self.nextName)
        if self.name in message:
            print("Back at %s; the chain is closed!" % self.name)
            return ["complete at " + self.name]
        else:
            print("%s forwarding the message to the object %s" % (self.name, self.nextName))
            message.append(self.name)
            result = self.next.process(message)
            result.insert(0, "passed on from " + self.name)
            return result
"""

#: The one-line import change.
IMPORT_CHANGE = ("import Pyro4\n", "import remoteobj.compat.pyro4 as Pyro4\n")
#: The seed's bugs, which break it under Pyro4 too: the servers register
#: "example.chainTopology.N" but Chain looks up "example.chain.N"; the servers call
#: ``requstLoop``; the client asks for server "A", which nobody registers.
SEED_FIXES = {
    "server": [
        ('servername = "example.chainTopology." + this', 'servername = "example.chain." + this'),
        ("daemon.requstLoop()", "daemon.requestLoop()"),
    ],
    "client": [('"PYRONAME:example.chain.A"', '"PYRONAME:example.chain.1"')],
    "topology": [],
}


def adapt(code: str, kind: str) -> str:
    """The seed code with the import line changed and its bugs fixed, nothing else."""
    for old, new in [IMPORT_CHANGE, *SEED_FIXES[kind]]:
        assert code.count(old) == 1, f"seed text changed: {old!r}"
        code = code.replace(old, new)
    return code


def server_code(this: str, nxt: str) -> str:
    # server_2.py and server_3.py are server_1.py with other numbers (as in the seed).
    code = SEED_SERVER_1.replace("server_1.py", f"server_{this}.py")
    return code.replace('this = "1"\nnext = "2"', f'this = "{this}"\nnext = "{nxt}"')


@pytest.fixture(scope="module")
def nameserver() -> Iterator[str]:
    proc, uri = start_nameserver()
    try:
        yield uri
    finally:
        proc.stop()


def ns_env(ns_uri: str) -> dict[str, str]:
    uri = remoteobj.URI(ns_uri)
    return {
        "REMOTEOBJ_NS_HOST": str(uri.host),
        "REMOTEOBJ_NS_PORT": str(uri.port),
        "REMOTEOBJ_HOST": LOOPBACK,
    }


def test_the_seeds_chain_runs_on_the_compat_module(nameserver: str, tmp_path: Path) -> None:
    (tmp_path / "chainTopology.py").write_text(adapt(SEED_CHAIN_TOPOLOGY, "topology"))
    for this, nxt in (("1", "2"), ("2", "3"), ("3", "1")):
        (tmp_path / f"server_{this}.py").write_text(adapt(server_code(this, nxt), "server"))
    (tmp_path / "test.py").write_text(adapt(SEED_CLIENT, "client"))
    env = ns_env(nameserver)
    servers = [start(["python", f"server_{n}.py"], env=env, cwd=tmp_path) for n in "123"]
    try:
        for n, proc in zip("123", servers, strict=True):
            proc.wait_for_line(f"server_{n} started", timeout=15)
        client = start(["python", "test.py"], env=env, cwd=tmp_path)
        assert client.wait(20) == 0, client.output
        assert client.output.splitlines()[-1] == (
            "Result=['passed on from 1', 'passed on from 2', 'passed on from 3', 'complete at 1']"
        )
        # Server 1 was re-entered while its first call was still running.
        servers[0].wait_for_line("Back at 1; the chain is closed!", timeout=5)
        assert any("has no @expose" in line for line in servers[0].lines)  # the warning
    finally:
        for proc in servers:
            proc.kill()


# --- the echo server --------------------------------------------------------------------


def start_echo(*args: str, env: dict[str, str] | None = None) -> tuple[Proc, str]:
    proc = start(["python", "-m", "remoteobj.echoserver", "-H", LOOPBACK, *args], env=env)
    try:
        uri = proc.wait_for_line(r"echo uri: (\S+)", timeout=15).group(1)
    except BaseException:
        proc.kill()
        raise
    return proc, uri


def test_echo_server_serves_pyro5_and_remoteobj_clients() -> None:
    from Pyro5.api import Proxy as PyroProxy

    proc, uri = start_echo()
    try:
        assert uri.startswith("PYRO:test.echoserver@127.0.0.1:")
        with PyroProxy(uri) as p:
            assert p.echo([1, "two"]) == [1, "two"]
            assert list(p.generator()) == ["one", "two", "three"]
            with pytest.raises(ValueError, match="the message of the error"):
                p.error_with_text()
            p.oneway_echo("fire and forget")
            assert p.verbose is False
        with remoteobj.Proxy(uri) as r:
            assert r.echo({"a": (1, 2)}) == {"a": (1, 2)}
            assert r.inf() == float("inf")
            assert list(r.generator()) == ["one", "two", "three"]
            r.shutdown()
        assert proc.wait(10) == 0
        assert "echoserver stopped." in proc.output
    finally:
        proc.kill()


@pytest.mark.parametrize("pyro5_ns", [False, True], ids=["remoteobj-ns", "pyro5-ns"])
def test_echo_server_registers_in_a_name_server(pyro5_ns: bool) -> None:
    ns_proc, ns_uri = start_nameserver(pyro5=pyro5_ns)
    try:
        uri = remoteobj.URI(ns_uri)
        proc, echo_uri = start_echo("-n", "--nshost", str(uri.host), "--nsport", str(uri.port))
        try:
            with remoteobj.Proxy(ns_uri) as ns:
                assert str(ns.lookup("test.echoserver")) == echo_uri
            with remoteobj.Proxy(
                "PYRONAME:test.echoserver",
                config=remoteobj.Config(ns_host=str(uri.host), ns_port=int(str(uri.port))),
            ) as echo:
                assert echo.echo("via the name server") == "via the name server"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
            with remoteobj.Proxy(ns_uri) as ns:  # the name left with the server
                wait_for(lambda: "test.echoserver" not in ns.list(), 5, message="name removed")
        finally:
            proc.kill()
    finally:
        ns_proc.stop()


# --- Pyro4-style callbacks ---------------------------------------------------------------


@remoteobj.expose
class Caller:
    def call_back(self, listener: Any, value: Any) -> Any:
        return listener.notify(value)


class Pyro4Listener:  # no @expose, as Pyro4 < 4.46 code
    def __init__(self) -> None:
        self.got: list[Any] = []

    def notify(self, value: Any) -> str:
        self.got.append(value)
        return f"got {value}"


def test_pyro4_style_callback_passes_the_registered_object_itself() -> None:
    import remoteobj.compat.pyro4 as Pyro4  # noqa: N812 - the name user code gives it

    results: list[Any] = []

    def client(server_uri: str) -> None:
        # In its own thread: the registering thread's context is where objects
        # registered with a compat daemon travel as proxies.
        daemon = Pyro4.Daemon(host=LOOPBACK)
        listener = Pyro4Listener()
        daemon.register(listener)
        with serving(daemon), Pyro4.Proxy(server_uri) as server:
            results.append(server.call_back(listener, 42))
        results.append(listener.got)

    with serving(remoteobj.Daemon(LOOPBACK, 0)) as server_daemon:
        thread = threading.Thread(target=client, args=(str(server_daemon.register(Caller())),))
        thread.start()
        thread.join(20)
    assert results == ["got 42", [42]]
