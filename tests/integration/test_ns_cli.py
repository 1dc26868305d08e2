"""``remoteobj-ns`` and ``remoteobj-nsc`` as processes, and Pyro5's ``nsc`` against ours."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import LOOPBACK, REPO, child_env, free_port, start, start_nameserver

NS = "Pyro.NameServer"


def run(
    *argv: str, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion with this interpreter (``python -m ...``)."""
    return subprocess.run(
        [sys.executable, *argv],
        env=child_env(),
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def nsc(port: int, *args: str, pyro5: bool = False, **kw: str) -> subprocess.CompletedProcess[str]:
    module = "Pyro5.nsc" if pyro5 else "nameserver.nsc"
    return run("-m", module, "-n", LOOPBACK, "-p", str(port), *args, **kw)  # type: ignore[arg-type]


def port_of(uri: str) -> int:
    return int(uri.rsplit(":", 1)[1])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ns_prints_like_pyro5_and_stops_cleanly(sig: signal.Signals) -> None:
    proc, uri = start_nameserver("-n", LOOPBACK, "-p", "0")
    try:
        port = port_of(uri)
        assert uri == f"PYRO:{NS}@{LOOPBACK}:{port}"
        lines = proc.output.splitlines()
        # -x given: Pyro5 prints nothing about broadcast then either.
        assert lines == [f"NS running on {LOOPBACK}:{port} ({LOOPBACK})", f"URI = {uri}"]
        assert nsc(port, "ping").stdout == "Name server ping ok.\n"
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert proc.output.splitlines()[-1] == "NS shut down."
    finally:
        proc.kill()


def test_no_broadcast_on_localhost_like_pyro5() -> None:
    proc = start(["python", "-m", "nameserver", "-n", LOOPBACK, "-p", "0"])
    try:
        proc.wait_for_line(r"^URI = ")
        assert proc.output.splitlines()[0] == "Not starting broadcast server for localhost."
    finally:
        proc.stop()


def test_explicit_bchost_starts_the_responder_on_loopback() -> None:
    bcport = free_port(__import__("socket").SOCK_DGRAM)
    proc = start(
        ["python", "-m", "nameserver", "-n", LOOPBACK, "-p", "0",
         "--bchost", LOOPBACK, "--bcport", str(bcport)]
    )  # fmt: skip
    try:
        proc.wait_for_line(r"^URI = ")
        assert proc.output.splitlines()[0] == f"Broadcast server running on {LOOPBACK}:{bcport}"
    finally:
        assert proc.stop() == 0


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ns.sock")
    proc = start(["python", "-m", "nameserver", "-u", path])
    try:
        uri = proc.wait_for_line(r"^URI = (\S+)$").group(1)
        assert uri == f"PYRO:{NS}@./u:{path}"
        assert f"NS running on ./u:{path} (Unix domain socket)" in proc.output
        result = run("-m", "nameserver.nsc", "-u", path, "ping")
        assert result.stdout == "Name server ping ok.\n", result.stderr
    finally:
        assert proc.stop() == 0


def test_bad_storage_fails_with_one_line() -> None:
    result = run("-m", "nameserver", "-n", LOOPBACK, "-p", "0", "-x", "-s", "nosuch:thing")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: invalid storage type 'nosuch:thing' (expected memory or sql:FILE)"
    ]


def test_persistent_store_reports_existing(tmp_path: Path) -> None:
    db = f"sql:{tmp_path / 'ns.db'}"
    proc, uri = start_nameserver("-s", db)
    try:
        assert nsc(port_of(uri), "register", "keep.me", "PYRO:o@127.0.0.1:5000").returncode == 0
    finally:
        assert proc.stop() == 0
    proc, uri = start_nameserver("-s", db)
    try:
        assert "Persistent store contains 2 existing registrations." in proc.output
        assert nsc(port_of(uri), "lookup", "keep.me").stdout == "PYRO:o@127.0.0.1:5000\n"
    finally:
        assert proc.stop() == 0


def test_pyro5_nsc_against_our_ns() -> None:
    proc, uri = start_nameserver()
    port = port_of(uri)
    try:

        def pyro(*args: str) -> str:
            result = nsc(port, *args, pyro5=True)
            assert result.returncode == 0, result.stdout + result.stderr
            return result.stdout

        assert pyro("ping") == "Name server ping ok.\n"
        assert pyro("register", "app.one", "PYRO:one@127.0.0.1:5001") == "Registered app.one\n"
        assert pyro("lookup", "app.one") == "PYRO:one@127.0.0.1:5001\n"
        assert pyro("setmeta", "app.one", "red") == "Metadata updated\n"
        assert pyro("lookup", "app.one") == "PYRO:one@127.0.0.1:5001\nmetadata: {'red'}\n"
        assert pyro("list") == (
            "--------START LIST \n"
            f"{NS} --> {uri}\n"
            "    metadata: {'class:Pyro5.nameserver.NameServer'}\n"
            "app.one --> PYRO:one@127.0.0.1:5001\n"
            "    metadata: {'red'}\n"
            "--------END LIST \n"
        )
        assert pyro("yplookup_all", "red") == (
            "--------START LIST  - searched by metadata\n"
            "app.one --> PYRO:one@127.0.0.1:5001\n"
            "    metadata: {'red'}\n"
            "--------END LIST  - searched by metadata\n"
        )
        assert pyro("remove", "app.one") == "Removed app.one\n"
        assert pyro("remove", "app.one") == "Nothing removed\n"
        # Pyro5's nsc reports our NamingError by its Pyro5 name and message.
        failed = nsc(port, "lookup", "app.one", pyro5=True)
        assert "Error: NamingError - unknown name: app.one" in failed.stdout
    finally:
        assert proc.stop() == 0


def test_our_nsc_commands_and_errors() -> None:
    proc, uri = start_nameserver()
    port = port_of(uri)
    try:
        assert nsc(port, "register", "a.one", "PYRO:one@127.0.0.1:5001").stdout == (
            "Registered a.one\n"
        )
        assert nsc(port, "setmeta", "a.one", "red", "big").stdout == "Metadata updated\n"
        assert nsc(port, "register", "a.two", "PYRO:two@127.0.0.1:5002").returncode == 0
        assert nsc(port, "list", "a.").stdout == (
            "--------START LIST - prefix 'a.'\n"
            "a.one --> PYRO:one@127.0.0.1:5001\n"
            "    metadata: {'big', 'red'}\n"
            "a.two --> PYRO:two@127.0.0.1:5002\n"
            "--------END LIST - prefix 'a.'\n"
        )
        assert nsc(port, "listmatching", r"a\.t").stdout == (
            "--------START LIST - regex 'a\\.t'\n"
            "a.two --> PYRO:two@127.0.0.1:5002\n"
            "--------END LIST - regex 'a\\.t'\n"
        )
        assert "a.one --> " in nsc(port, "yplookup_any", "big", "nothing").stdout
        assert nsc(port, "removematching", "a", stdin="n\n").stdout.endswith("(y/n)?")
        assert nsc(port, "-y", "removematching", "a").stdout == "2 items removed.\n"
        assert nsc(port, "-v", "ping").stdout == (
            f"Locating name server...\nName server found: {uri}\nName server ping ok.\nDone.\n"
        )
        # Failures: one line on stderr, status 1.
        for args, line in [
            (("lookup", "nope"), "Error: NamingError - unknown name: nope"),
            (("register", "a.one", "garbage"), "Error: NamingError - invalid uri 'garbage': "),
            (("lookup",), "requires one argument: name"),
        ]:
            result = nsc(port, *args)
            assert result.returncode == 1
            assert result.stdout == ""
            assert len(result.stderr.splitlines()) == 1
            assert result.stderr.startswith(line)
        assert nsc(port, "register", "a.one", "PYRO:x@127.0.0.1:1").returncode == 0
        result = nsc(port, "register", "a.one", "PYRO:x@127.0.0.1:1")  # nsc registers safely
        assert result.returncode == 1
        assert result.stderr == "Error: NamingError - name already registered: a.one\n"
    finally:
        assert proc.stop() == 0


def test_nsc_unreachable_name_server() -> None:
    result = nsc(free_port(), "ping")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "Error: Failed to locate the nameserver\n"


def test_nsc_against_pyro5_name_server() -> None:
    proc, uri = start_nameserver(pyro5=True)
    port = port_of(uri)
    try:
        assert nsc(port, "ping").stdout == "Name server ping ok.\n"
        assert nsc(port, "register", "p.one", "PYRO:one@127.0.0.1:5001").returncode == 0
        assert nsc(port, "setmeta", "p.one", "red").returncode == 0
        assert nsc(port, "lookup", "p.one").stdout == "PYRO:one@127.0.0.1:5001\nmetadata: {'red'}\n"
        assert nsc(port, "yplookup_all", "red").stdout == (
            "--------START LIST  - searched by metadata\n"
            "p.one --> PYRO:one@127.0.0.1:5001\n"
            "    metadata: {'red'}\n"
            "--------END LIST  - searched by metadata\n"
        )
        assert nsc(port, "list", "p.").stdout.count(" --> ") == 1
        assert nsc(port, "remove", "p.one").stdout == "Removed p.one\n"
        failed = nsc(port, "lookup", "p.one")
        assert (failed.returncode, failed.stderr) == (
            1,
            "Error: NamingError - unknown name: p.one\n",
        )
    finally:
        proc.stop()
