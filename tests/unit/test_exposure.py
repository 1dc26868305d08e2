"""Exposure rules: only exposed public names are remote, computed once per class."""

from __future__ import annotations

import pytest

import remoteobj.exposure as ex


@ex.expose
class Everything:
    def method(self) -> int:
        return 1

    @ex.oneway
    def fire(self) -> None: ...

    async def coro(self) -> int:
        return 2

    @property
    def value(self) -> int:
        return 3

    @property
    def writable(self) -> int:
        return 4

    @writable.setter
    def writable(self, v: int) -> None: ...

    def _private(self) -> None: ...

    def __len__(self) -> int:
        return 0

    @staticmethod
    def static() -> int:
        return 5

    @classmethod
    def klass(cls) -> int:
        return 6


class Partly:
    @ex.expose
    def shown(self) -> None: ...

    def hidden(self) -> None: ...

    @ex.expose
    @property
    def prop(self) -> int:
        return 1


def test_class_expose_covers_every_public_member() -> None:
    m = ex.exposed_members(Everything)
    assert m.methods == {"method", "fire", "coro", "static", "klass"}
    assert m.oneway == {"fire"}
    assert m.attrs == {"value", "writable"}
    assert m.writable == {"writable"}
    assert m.coroutines == {"coro"}


def test_private_and_dunder_names_are_never_exposed() -> None:
    m = ex.exposed_members(Everything)
    for name in ("_private", "__len__", "__init__", "__class__", "__dict__"):
        assert name not in m.methods | m.attrs


def test_member_expose_exposes_only_that_member() -> None:
    m = ex.exposed_members(Partly)
    assert m.methods == {"shown"}
    assert m.attrs == {"prop"}


def test_inherited_members_keep_their_own_marking() -> None:
    @ex.expose
    class Child(Partly):
        def own(self) -> None: ...

    assert ex.exposed_members(Child).methods == {"shown", "own"}


def test_metadata_matches_what_pyro5_clients_read() -> None:
    meta = ex.exposed_members(Partly).as_meta()
    assert meta == {"methods": {"shown"}, "oneway": set(), "attrs": {"prop"}}


def test_exposing_a_private_name_is_an_error_at_decoration_time() -> None:
    def _secret() -> None: ...

    with pytest.raises(AttributeError, match="private"):
        ex.expose(_secret)


def test_expose_refuses_things_that_are_not_members() -> None:
    with pytest.raises(TypeError):
        ex.expose(42)


def test_behavior_sets_instance_mode_and_checks_it() -> None:
    @ex.behavior(instance_mode="single")
    class One: ...

    assert ex.instance_mode_of(One) == ("single", None)
    with pytest.raises(ValueError, match="instance_mode"):
        ex.behavior(instance_mode="sometimes")  # type: ignore[arg-type]


def test_default_instance_mode_is_session() -> None:
    assert ex.instance_mode_of(Partly) == ("session", None)


def test_pyro5_decorated_classes_are_understood() -> None:
    from Pyro5.api import expose, oneway

    @expose
    class ByPyro5:
        def a(self) -> None: ...

        @oneway
        def b(self) -> None: ...

    m = ex.exposed_members(ByPyro5)
    assert m.methods == {"a", "b"}
    assert m.oneway == {"b"}
