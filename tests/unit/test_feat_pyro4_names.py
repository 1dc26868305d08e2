"""The Pyro4-style names of ``remoteobj.compat.pyro4``, without sockets."""

from __future__ import annotations

import logging

import pytest

import remoteobj
import remoteobj.compat.pyro4 as Pyro4  # noqa: N812 - the name user code gives it
from remoteobj.exposure import exposed_members


def test_pyro4_names_resolve_to_remoteobj_objects() -> None:
    assert Pyro4.core.Proxy is Pyro4.Proxy and issubclass(Pyro4.Proxy, remoteobj.Proxy)
    assert Pyro4.core.Daemon is Pyro4.Daemon and issubclass(Pyro4.Daemon, remoteobj.Daemon)
    assert Pyro4.naming.locateNS is Pyro4.locateNS
    assert Pyro4.core.URI is remoteobj.URI
    assert Pyro4.errors.NamingError is remoteobj.errors.NamingError
    assert Pyro4.errors.PyroError is remoteobj.errors.RemoteObjError
    assert Pyro4.expose is remoteobj.expose and Pyro4.oneway is remoteobj.oneway


def test_proxy_local_controls_need_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTEOBJ_COMMTIMEOUT", "7")
    proxy = Pyro4.Proxy("PYRONAME:server")  # resolved only when used
    assert proxy._pyroTimeout == 7
    proxy._pyroTimeout = 2.5
    assert proxy._timeout == 2.5
    assert str(proxy._pyroUri) == "PYRONAME:server"
    assert isinstance(proxy._pyroBatch(), remoteobj.BatchProxy)
    proxy._pyroRelease()


def test_config_reads_the_environment_and_refuses_assignment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REMOTEOBJ_NS_PORT", "9999")
    assert Pyro4.config.NS_PORT == 9999
    with pytest.raises(AttributeError, match="REMOTEOBJ_SERIALIZER"):
        Pyro4.config.SERIALIZER = "pickle"
    with pytest.raises(AttributeError, match="no setting"):
        _ = Pyro4.config.NO_SUCH_THING


def test_unmarked_classes_are_exposed_as_pyro4_did(caplog: pytest.LogCaptureFixture) -> None:
    class Base:
        def inherited(self) -> int:
            return 1

    class Legacy(Base):
        def welcome(self, name: str) -> str:
            return name

        @property
        def size(self) -> int:
            return 1

        def _hidden(self) -> None:
            pass

    caplog.set_level(logging.WARNING, logger="remoteobj.compat.pyro4")
    Pyro4._expose_legacy(Legacy)
    members = exposed_members(Legacy)
    assert members.methods == {"welcome", "inherited"}
    assert members.attrs == {"size"}
    assert "has no @expose" in caplog.text and "Legacy" in caplog.text


def test_classes_with_any_expose_follow_the_normal_rules() -> None:
    class Modern:
        @remoteobj.expose
        def shown(self) -> None:
            pass

        def not_shown(self) -> None:
            pass

    Pyro4._expose_legacy(Modern)
    assert exposed_members(Modern).methods == {"shown"}
