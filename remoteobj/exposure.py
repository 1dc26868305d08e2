"""What a remote caller may reach: ``@expose``, ``@oneway``, ``@behavior``, ``@callback``.

Nothing is remote unless it is exposed, and no name starting with ``_`` is ever
remote, whatever the decorators say. The exposed members of a class are
computed once (:func:`exposed_members`) and that set is the single access
check for every path into user code: calls, oneway calls, batches, property
reads and writes, and the metadata sent to clients.

The markers are the attributes Pyro5 uses (``_pyroExposed``, ``_pyroOneway``,
``_pyroInstancing``, ``_pyroCallback``), so a class decorated with Pyro5's
decorators is served the same way by a remoteobj daemon.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = [
    "ExposedMembers",
    "behavior",
    "callback",
    "expose",
    "exposed_members",
    "instance_mode_of",
    "is_private",
    "oneway",
]

T = TypeVar("T")
InstanceMode = Literal["single", "session", "percall"]
INSTANCE_MODES: tuple[InstanceMode, ...] = ("single", "session", "percall")


def is_private(name: str) -> bool:
    """Whether ``name`` is never reachable remotely: any name starting with ``_``."""
    return name.startswith("_")


def _mark(func: Any, attr: str) -> None:
    # staticmethod/classmethod wrap the function; the marker goes on the function.
    target = getattr(func, "__func__", func)
    setattr(target, attr, True)


def _refuse_private(name: str) -> None:
    if is_private(name):
        raise AttributeError(f"exposing private names (starting with _) is not allowed: {name!r}")


def expose(member: T) -> T:
    """Make a class, method or property reachable by remote callers.

    On a class, every public method and property defined in that class body is
    exposed (inherited members keep their own marking). On a property, both
    reading and writing are exposed (a read-only property stays read-only).
    Exposing a name that starts with ``_`` raises :class:`AttributeError` at
    decoration time rather than being silently ignored.
    """
    if isinstance(member, property):
        func = member.fget or member.fset or member.fdel
        if func is not None:
            _refuse_private(func.__name__)
        for accessor in (member.fget, member.fset, member.fdel):
            if accessor is not None:
                _mark(accessor, "_pyroExposed")
        return member
    if inspect.isclass(member):
        _refuse_private(member.__name__)
        for name, value in vars(member).items():
            if is_private(name):
                continue
            if isinstance(value, property):
                expose(value)
            elif isinstance(value, (staticmethod, classmethod)) or inspect.isfunction(value):
                _mark(value, "_pyroExposed")
        member._pyroExposed = True  # type: ignore[attr-defined]
        return member
    if isinstance(member, (staticmethod, classmethod)):
        _refuse_private(member.__func__.__name__)
        _mark(member, "_pyroExposed")
        return member
    member_name = getattr(member, "__name__", None)
    if not isinstance(member_name, str) or not callable(member):
        raise TypeError(f"@expose applies to classes, methods and properties, not {member!r}")
    _refuse_private(member_name)
    _mark(member, "_pyroExposed")
    return member


def oneway(method: T) -> T:
    """Mark a method as oneway: callers send the request and return at once.

    The caller never receives the result or any exception. The decision is the
    client's (it reads it from the metadata), as in Pyro5.
    """
    if not callable(method) and not isinstance(method, (staticmethod, classmethod)):
        raise TypeError(f"@oneway applies to methods, not {method!r}")
    _mark(method, "_pyroOneway")
    return method


def callback(method: T) -> T:
    """Mark a method as a callback: an exception it raises is also raised in the
    daemon serving it (logged there) rather than only sent back to the caller."""
    _mark(method, "_pyroCallback")
    return method


def behavior(
    instance_mode: InstanceMode = "session",
    instance_creator: Callable[[type[Any]], Any] | None = None,
) -> Callable[[type[T]], type[T]]:
    """Choose how instances are made when a *class* is registered with a daemon.

    - ``"session"`` (default): one instance per client connection, dropped
      when the connection closes;
    - ``"single"``: one instance for the whole daemon, created on first use;
    - ``"percall"``: a fresh instance for every call.

    ``instance_creator(cls)`` replaces ``cls()`` for making instances.
    """
    if instance_mode not in INSTANCE_MODES:
        raise ValueError(f"instance_mode must be one of {INSTANCE_MODES}, not {instance_mode!r}")
    if instance_creator is not None and not callable(instance_creator):
        raise TypeError("instance_creator must be callable")

    def decorate(cls: type[T]) -> type[T]:
        if not inspect.isclass(cls):
            raise TypeError("@behavior applies to classes")
        cls._pyroInstancing = (instance_mode, instance_creator)  # type: ignore[attr-defined]
        return cls

    return decorate


def instance_mode_of(cls: type[Any]) -> tuple[InstanceMode, Callable[[type[Any]], Any] | None]:
    """The ``(instance_mode, instance_creator)`` of a class (``("session", None)`` by default)."""
    mode, creator = getattr(cls, "_pyroInstancing", ("session", None))
    return typing.cast(InstanceMode, mode), creator


@dataclass(frozen=True, slots=True)
class ExposedMembers:
    """The remote surface of a class: what clients may call, and how."""

    methods: frozenset[str]
    oneway: frozenset[str]
    attrs: frozenset[str]
    #: The subset of ``attrs`` that can be assigned.
    writable: frozenset[str]
    #: The subset of ``methods`` that are coroutine functions (run on the event loop).
    coroutines: frozenset[str]

    def as_meta(self) -> dict[str, set[str]]:
        """The ``meta`` dict of a CONNECTOK reply, as Pyro5 clients read it."""
        return {"methods": set(self.methods), "oneway": set(self.oneway), "attrs": set(self.attrs)}


_cache: dict[type[Any], ExposedMembers] = {}


def exposed_members(cls: type[Any]) -> ExposedMembers:
    """Compute (once per class) the exposed public members of ``cls``."""
    try:
        return _cache[cls]
    except KeyError:
        pass
    methods: set[str] = set()
    one: set[str] = set()
    attrs: set[str] = set()
    writable: set[str] = set()
    coroutines: set[str] = set()
    for name in dir(cls):
        if is_private(name):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, property):
            if value.fget is not None and getattr(value.fget, "_pyroExposed", False):
                attrs.add(name)
                if value.fset is not None:
                    writable.add(name)
            continue
        func = getattr(value, "__func__", value)
        if callable(func) and getattr(func, "_pyroExposed", False):
            methods.add(name)
            if getattr(func, "_pyroOneway", False):
                one.add(name)
            if inspect.iscoroutinefunction(func):
                coroutines.add(name)
    members = ExposedMembers(
        frozenset(methods),
        frozenset(one),
        frozenset(attrs),
        frozenset(writable),
        frozenset(coroutines),
    )
    _cache[cls] = members
    return members
