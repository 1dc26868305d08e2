"""``remoteobj-nsc`` prints what Pyro5's ``nsc`` prints, command for command.

Both tools' command handlers run against the same in-process name server
object and their standard output is compared line for line.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import pytest
from Pyro5 import nsc as pyro_nsc

from nameserver.nsc import UsageError, run_command
from nameserver.service import NameServer
from remoteobj.uri import URI

NS_URI = "PYRO:Pyro.NameServer@127.0.0.1:9090"


def fresh_ns() -> NameServer:
    ns = NameServer()
    ns.register_self(URI(NS_URI))
    ns.register("app.one", "PYRO:one@127.0.0.1:5001", metadata={"red"})
    ns.register("app.two", "PYRO:two@127.0.0.1:5002")
    ns.register("other", "PYRO:three@127.0.0.1:5003", metadata={"blue"})
    return ns


def captured(func: Callable[[], Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        func()
    return out.getvalue()


CASES = [
    ("ping", []),
    ("list", []),
    ("list", ["app."]),
    ("listmatching", [r"app\.t.*"]),
    ("lookup", ["app.one"]),
    ("lookup", ["app.two"]),
    ("register", ["new.name", "PYRO:new@127.0.0.1:6000"]),
    ("remove", ["app.two"]),
    ("remove", ["missing"]),
    ("setmeta", ["app.two", "green"]),
    ("setmeta", ["app.one"]),
    ("yplookup_all", ["red"]),
    ("yplookup_any", ["red", "blue"]),
    ("yplookup_all", ["nothing"]),
]


@pytest.mark.parametrize(("command", "args"), CASES)
def test_same_output_as_pyro5(command: str, args: list[str]) -> None:
    ours_ns, theirs_ns = fresh_ns(), fresh_ns()
    ours = captured(lambda: run_command(ours_ns, command, args))
    theirs = captured(lambda: pyro_nsc.handle_command(theirs_ns, command, list(args)))
    assert ours == theirs
    assert ours_ns.list(return_metadata=True) == theirs_ns.list(return_metadata=True)


def test_removematching_asks_first() -> None:
    ns = fresh_ns()
    out = captured(lambda: run_command(ns, "removematching", ["app"], ask=lambda _: "n"))
    assert out == ""
    assert ns.count() == 4
    out = captured(lambda: run_command(ns, "removematching", ["app"], ask=lambda _: "y"))
    assert out == "2 items removed.\n"


def test_metadata_printed_sorted() -> None:
    ns = fresh_ns()
    ns.set_metadata("app.one", ["zeta", "alpha", "mid"])
    out = captured(lambda: run_command(ns, "lookup", ["app.one"]))
    assert out == "PYRO:one@127.0.0.1:5001\nmetadata: {'alpha', 'mid', 'zeta'}\n"


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("lookup", [], "requires one argument: name"),
        ("register", ["only-name"], "requires two arguments: name uri"),
        ("remove", [], "requires one argument: name"),
        ("listmatching", [], "requires one argument: pattern"),
        ("removematching", [], "requires one argument: pattern"),
        ("setmeta", [], "requires arguments: uri and zero or more meta tags"),
        ("yplookup_all", [], "requires at least one metadata tag argument"),
        ("yplookup_any", [], "requires at least one metadata tag argument"),
    ],
)
def test_usage_errors_match_pyro5(command: str, args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}$"):
        run_command(fresh_ns(), command, args)
    with pytest.raises(SystemExit, match=f"^{message}$"):
        pyro_nsc.handle_command(fresh_ns(), command, list(args))
