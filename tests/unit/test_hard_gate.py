"""CI gates: no unsafe decoders in the package, and the documented defaults are the real ones.

- No ``pickle`` (or ``_pickle``/``cPickle``/``dill``/``shelve``/``jsonpickle``) import in
  ``remoteobj/`` or ``nameserver/``; ``marshal.load``/``marshal.loads`` called in exactly
  one place, the marshal serializer's decoder, which a daemon uses only when
  ``Config.accepted_serializers`` names marshal (it does not by default).
- Every default that protects a server (THREATS.md §5) is pinned here, and the defaults
  table in SECURITY.md says the same as :class:`remoteobj.Config`.
"""

from __future__ import annotations

import ast
import dataclasses
import marshal
import re
from pathlib import Path
from typing import Any

import pytest

import remoteobj
from remoteobj import Config
from remoteobj import protocol as p
from remoteobj.client import CallCore
from remoteobj.daemon import Session
from remoteobj.uri import URI

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("remoteobj", "nameserver")
FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "dill", "shelve", "jsonpickle", "cloudpickle"}
#: The only place allowed to run the marshal decoder (file, enclosing function).
MARSHAL_DECODERS = {("remoteobj/serializers.py", "MarshalSerializer._decode")}
MiB = 1024 * 1024


def sources() -> list[Path]:
    files = [f for pkg in PACKAGES for f in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 10, "package sources not found"
    return files


class _Scan(ast.NodeVisitor):
    def __init__(self) -> None:
        self.imports: list[tuple[int, str]] = []
        self.marshal_loads: list[tuple[int, str]] = []
        self.scope: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append((node.lineno, alias.name))
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self.imports.append((node.lineno, module))
        if module == "marshal" and any(a.name in ("load", "loads") for a in node.names):
            self.marshal_loads.append((node.lineno, "from marshal import load(s)"))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in ("load", "loads")
            and isinstance(func.value, ast.Name)
            and func.value.id == "marshal"
        ):
            self.marshal_loads.append((node.lineno, ".".join(self.scope)))
        if isinstance(func, ast.Name) and func.id in ("__import__", "eval", "exec"):
            self.imports.append((node.lineno, f"{func.id}()"))
        self.generic_visit(node)


def test_no_pickle_and_marshal_decoded_in_one_opt_in_place_only() -> None:
    bad_imports = []
    loads = set()
    for path in sources():
        rel = path.relative_to(REPO).as_posix()
        scan = _Scan()
        scan.visit(ast.parse(path.read_text(encoding="utf-8"), rel))
        for line, name in scan.imports:
            root = name.split(".")[0]
            if root in FORBIDDEN_MODULES or name in ("__import__()", "eval()", "exec()"):
                bad_imports.append(f"{rel}:{line}: {name}")
        for line, scope in scan.marshal_loads:
            loads.add((rel, scope))
            assert (rel, scope) in MARSHAL_DECODERS, f"{rel}:{line}: marshal decoded in {scope}"
    assert bad_imports == []
    assert loads == MARSHAL_DECODERS  # the gate itself still sees the one real decoder


def test_the_gate_catches_what_it_should() -> None:
    scan = _Scan()
    scan.visit(
        ast.parse("import pickle as p\nimport marshal\ndef f(x):\n    return marshal.loads(x)\n")
    )
    assert (1, "pickle") in scan.imports
    assert scan.marshal_loads == [(4, "f")]


def test_a_default_daemon_never_decodes_marshal() -> None:
    daemon = remoteobj.Daemon("127.0.0.1", 0)
    try:
        assert 2 not in daemon._serializers
        session = Session(("127.0.0.1", 1))
        payload = marshal.dumps({"handshake": "hello", "object": "Pyro.Daemon"})
        reply, accepted = daemon.handle_connect(session, p.Message(p.MSG_CONNECT, 2, 0, payload))
        assert not accepted
        assert b"not accepted" in reply
    finally:
        daemon.close()
    opted_in = Config(accepted_serializers=frozenset({"serpent", "marshal"}))
    daemon = remoteobj.Daemon("127.0.0.1", 0, config=opted_in)
    try:
        assert 2 in daemon._serializers
    finally:
        daemon.close()


def test_a_proxy_reads_a_marshal_connectfail_without_the_marshal_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_: Any) -> Any:
        raise AssertionError("marshal.loads called on a daemon's bytes")

    monkeypatch.setattr(marshal, "loads", refuse)
    core = CallCore(URI("PYRO:x@127.0.0.1:1"), Config())
    for reason in ("invalid msg type 4 received (expected: 1)", "ünïcode reason", "x" * 300):
        msg = p.Message(p.MSG_CONNECTFAIL, 2, 0, marshal.dumps(reason))
        with pytest.raises(remoteobj.errors.CommunicationError, match="rejected") as info:
            core.on_connect_reply(msg)
        assert reason in str(info.value)
    junk = p.Message(p.MSG_CONNECTFAIL, 2, 0, b"\xe3\x00\x00\x00\x00")  # a code object
    with pytest.raises(remoteobj.errors.CommunicationError, match="unreadable"):
        core.on_connect_reply(junk)


# --- the defaults that protect a server (THREATS.md §5), in one place ------------------

PINNED: dict[str, Any] = {
    "max_message_size": 4 * MiB,
    "serpent_max_elements": 100_000,
    "max_nesting": 200,
    "max_concurrent_decodes": 2,
    "first_frame_timeout": 10.0,
    "frame_timeout": 10.0,
    "ssl_handshake_timeout": 10.0,
    "max_connections": 1024,
    "max_inflight_per_conn": 16,
    "max_inflight": 256,
    "max_batch": 1000,
    "oneway_workers": 32,
    "oneway_queue": 1024,
    "write_high_water": 1 * MiB,
    "write_timeout": 30.0,
    "commtimeout": 30.0,
    "connect_timeout": 10.0,
    "keepalive": (60, 10, 3),
    "tcp_user_timeout": 30.0,
    "compression": False,
    "ns_lease": 30.0,
    "ns_renew": 10.0,
    "ns_max_names": 100_000,
    "ns_max_name_length": 256,
    "auth_secret": None,
    "ssl": False,
}


def test_protective_defaults_are_pinned() -> None:
    cfg = Config()
    assert {name: getattr(cfg, name) for name in PINNED} == PINNED
    assert "marshal" not in cfg.accepted_serializers


def _security_md_table() -> dict[str, str]:
    text = (REPO / "SECURITY.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*`([a-z_]+)`\s*\|\s*`([^`]*)`\s*\|", text, re.MULTILINE)
    assert rows, "SECURITY.md has no defaults table"
    return dict(rows)


def test_security_md_documents_every_config_field_with_its_real_default() -> None:
    documented = _security_md_table()
    fields = {f.name: f for f in dataclasses.fields(Config)}
    assert set(documented) == set(fields), (
        f"missing from SECURITY.md: {sorted(set(fields) - set(documented))}; "
        f"not Config fields: {sorted(set(documented) - set(fields))}"
    )
    cfg = Config()
    for name, text in documented.items():
        value = getattr(cfg, name)
        if isinstance(value, frozenset):
            expected = "{" + ", ".join(sorted(value)) + "}"
        else:
            expected = repr(value)
        assert text == expected, f"SECURITY.md says {name} = {text}, Config has {expected}"
