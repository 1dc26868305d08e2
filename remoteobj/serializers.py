"""The four wire serializers of Pyro5 protocol 502, byte-compatible with Pyro5 5.17.

=======  ==  ============================================================
name     id  notes
=======  ==  ============================================================
serpent   1  the default; Python literal text read without ``eval``
marshal   2  always dumpable (Pyro5 answers bad handshakes in marshal);
             not safe to *load* from strangers, so daemons keep it off
json      3  ``{"object", "method", "params", "kwargs"}`` for calls
msgpack   4  only when the ``msgpack`` package is installed
=======  ==  ============================================================

Every serializer encodes a call, a result, an exception, a URI, a proxy and a
batch item exactly as Pyro5 5.17 does, so either side of a connection can be
Pyro5. Values Pyro5 refuses to encode in a serializer (``bytes`` or
``frozenset`` in json, ``Enum`` members, ``datetime.time``, values nested
inside containers in marshal, ...) are encoded the way serpent encodes them
instead, which Pyro5 peers decode as plain values.

Decoding is the attack surface, so it is guarded:

* Only an allow-list of classes is rebuilt from ``{"__class__": ...}`` dicts:
  :class:`~remoteobj.uri.URI`, :class:`ExceptionWrapper`, Pyro5's error classes
  (as :mod:`remoteobj.errors`), built-in ``Exception`` classes, ``sqlite3``
  errors, ``struct.error`` and whatever was registered with
  :func:`register_dict_to_class`. A class name containing ``"__"`` raises
  :class:`~remoteobj.errors.SecurityError`; any other raises
  :class:`~remoteobj.errors.SerializeError`. Nothing is ever imported by name
  and nothing is unpickled.
* :class:`DecodeLimits` bounds the elements (commas and opening brackets, or
  container items) and the nesting depth of a payload, and is checked before
  the expensive part of decoding: an over-budget payload raises
  :class:`~remoteobj.errors.MessageTooComplexError`.
* Whatever the input, ``loads``/``loads_call`` raise only
  :class:`~remoteobj.errors.SerializeError` (or a subclass) or
  :class:`~remoteobj.errors.SecurityError`.

Serpent payloads are parsed by a small tokenizer written for the subset of
Python literals serpent writes (2-5x faster than ``ast.literal_eval`` and
without its ~1 KiB-per-element syntax tree). Text outside that subset falls
back to ``ast.literal_eval``, but only for payloads no larger than the element
budget in bytes, which bounds the parser's memory and time.
"""

from __future__ import annotations

import array
import ast
import base64
import binascii
import builtins
import codecs
import collections
import datetime
import decimal
import enum
import json
import marshal
import math
import numbers
import re
import struct
import sys
import threading
import uuid
from collections.abc import Callable, ItemsView, Iterable, KeysView, Mapping, Sequence, ValuesView
from contextvars import ContextVar, Token
from itertools import chain, compress
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple, NoReturn, TypeGuard

from remoteobj import errors
from remoteobj.errors import MessageTooComplexError, SecurityError, SerializeError
from remoteobj.uri import URI

if TYPE_CHECKING:
    from remoteobj.config import Config

try:
    import msgpack as _msgpack
except ImportError:  # pragma: no cover - msgpack is optional
    _msgpack = None

__all__ = [
    "AVAILABLE_SERIALIZERS",
    "DEFAULT_LIMITS",
    "SERIALIZER_IDS",
    "DaemonPlaceholder",
    "DecodeLimits",
    "ExceptionWrapper",
    "JsonSerializer",
    "MarshalSerializer",
    "MsgpackSerializer",
    "Serializer",
    "SerpentSerializer",
    "daemon_to_dict",
    "exception_to_dict",
    "get_serializer",
    "push_autoproxy",
    "register_class_to_dict",
    "register_dict_to_class",
    "reset_autoproxy",
    "tobytes",
    "unregister_class_to_dict",
    "unregister_dict_to_class",
]

#: Converts an object to the dict that travels for it (with a ``"__class__"`` key).
ClassToDict = Callable[[Any], dict[str, Any]]
#: Rebuilds an object from ``(classname, dict)``.
DictToClass = Callable[[str, dict[str, Any]], Any]
# Writes a value as serpent text: (value, output pieces, nesting level).
#: serpent text being written: str pieces, and the bytes of big base64 runs (see _s_bytes).
_Pieces = list[str | bytes]
_Writer = Callable[[Any, _Pieces, int], None]


class DecodeLimits(NamedTuple):
    """How much structure one payload may hold before it is refused.

    ``max_elements`` counts commas and opening brackets for the text formats
    (serpent, json), and container items for the binary ones (msgpack,
    marshal); ``max_nesting`` is the deepest nesting of containers, the
    outermost one being depth 1.
    """

    max_elements: int = 100_000
    max_nesting: int = 200

    @classmethod
    def from_config(cls, cfg: Config) -> DecodeLimits:
        """The limits a :class:`~remoteobj.config.Config` asks for."""
        return cls(max_elements=cfg.serpent_max_elements, max_nesting=cfg.max_nesting)


DEFAULT_LIMITS: Final = DecodeLimits()

#: Wire id of every serializer this module knows, installed or not.
#: :meth:`Serializer.dumps_call_buffer` hands out payloads at least this big as views.
BUFFER_PAYLOAD: Final = 64 * 1024

SERIALIZER_IDS: Final[Mapping[str, int]] = {"serpent": 1, "marshal": 2, "json": 3, "msgpack": 4}

_URI_CLASS: Final = "Pyro5.core.URI"
_PROXY_CLASS: Final = "Pyro5.client.Proxy"
_DAEMON_CLASS: Final = "Pyro5.server.Daemon"
_WRAPPER_CLASS: Final = "Pyro5.core._ExceptionWrapper"


# =============================================================================
# Values with a special shape on the wire
# =============================================================================


class ExceptionWrapper:
    """An exception travelling as a value: the failed item of a batch reply.

    On the wire it is Pyro5's ``Pyro5.core._ExceptionWrapper``.
    """

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception

    def raise_if_exception(self) -> NoReturn:
        """Raise the wrapped exception (a wrapper always holds one)."""
        # A fresh traceback each time, so raising twice does not chain frames.
        raise self.exception.with_traceback(None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExceptionWrapper):
            return NotImplemented
        a, b = self.exception, other.exception
        return type(a) is type(b) and a.args == b.args

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ExceptionWrapper({self.exception!r})"


class DaemonPlaceholder:
    """What a ``Pyro5.server.Daemon`` sent as a value decodes to.

    Pyro5 serializes a daemon as an empty state on purpose, so that objects
    referring to their daemon can travel; the far side gets an unusable
    stand-in, and so do we. It encodes back to the same dict.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<DaemonPlaceholder (a Pyro5 daemon sent as a value)>"


def _fresh(name: str) -> str:
    """A new copy of ``name``.

    marshal flags every object referenced more than once (FLAG_REF); Pyro5
    formats class names anew for each dict, so fresh copies keep marshal
    output byte-identical to Pyro5's.
    """
    return "".join((name, ""))


def daemon_to_dict(_daemon: object) -> dict[str, Any]:
    """The dict Pyro5 sends for a daemon object; register it for your daemon class."""
    return {"__class__": _fresh(_DAEMON_CLASS), "state": ()}


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    """The dict an exception travels as: Pyro5's shape, under its wire class name.

    ``attributes`` is the exception's ``__dict__`` (not a copy), as Pyro5
    sends it: ``_pyroTraceback`` and any custom attributes ride along.
    """
    return {
        "__class__": _fresh(errors.wire_name(type(exc))),
        "__exception__": True,
        "args": exc.args,
        "attributes": vars(exc),
    }


def tobytes(value: object) -> bytes:
    """Bytes from a bytes-like value or from serpent's ``{'data', 'encoding': 'base64'}`` dict.

    Serpent (and this module's json) send ``bytes`` as that dict and, as in
    Pyro5, it arrives as a dict; this turns it back. Raises :class:`TypeError`
    for anything else and :class:`~remoteobj.errors.SerializeError` for bad
    base64.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict) and value.get("encoding") == "base64" and "data" in value:
        data = value["data"]
        if isinstance(data, str | bytes):
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise SerializeError(f"bad base64 data: {exc}") from None
    raise TypeError("expected bytes or a serpent base64 bytes dict")


def _bytes_dict(value: bytes | bytearray | memoryview) -> dict[str, str]:
    return {"data": base64.b64encode(value).decode("ascii"), "encoding": "base64"}


# =============================================================================
# Class <-> dict registries (copy-on-write: readers never lock)
# =============================================================================


class _Tables:
    """The registries. Writers copy, change and swap a table under the lock, so
    readers (every encode and decode) never lock and never see a half-made table."""

    __slots__ = ("from_dict", "serpent_specials", "to_dict_chain", "user_to_dict")

    def __init__(self) -> None:
        #: User converters in registration order: cls -> (converter, serpent_too).
        self.user_to_dict: dict[type, tuple[ClassToDict, bool]] = {}
        #: classname -> converter.
        self.from_dict: dict[str, DictToClass] = {}
        #: What class_to_dict consults, in order: built-ins overlaid by user converters.
        self.to_dict_chain: dict[type, ClassToDict] = {}
        #: serpent's special classes, in order (filled in once the serpent writers exist).
        self.serpent_specials: dict[type, _Writer] = {}


_registry_lock = threading.Lock()
_tables = _Tables()


def _uri_to_dict(uri: URI) -> dict[str, Any]:
    return {"__class__": _fresh(_URI_CLASS), "state": uri.to_state()}


def _wrapper_to_dict(wrapper: ExceptionWrapper) -> dict[str, Any]:
    return {"__class__": _WRAPPER_CLASS, "exception": _class_to_dict(wrapper.exception)}


# The built-in converters come first, as Pyro5's core registers URI and
# _ExceptionWrapper at import, before any user code can.
_BUILTIN_TO_DICT: Final[dict[type, ClassToDict]] = {
    URI: _uri_to_dict,
    ExceptionWrapper: _wrapper_to_dict,
    DaemonPlaceholder: daemon_to_dict,
}
_tables.to_dict_chain = dict(_BUILTIN_TO_DICT)


def register_class_to_dict(cls: type, converter: ClassToDict, serpent_too: bool = True) -> None:
    """Encode instances of ``cls`` (and subclasses) as ``converter(obj)``.

    The converter returns a dict with a ``"__class__"`` key naming the class
    on the wire. With ``serpent_too=False`` serpent keeps encoding the class its
    own way (``vars()`` or ``__getstate__``), as in Pyro5.
    """
    with _registry_lock:
        user = dict(_tables.user_to_dict)
        user[cls] = (converter, serpent_too)
        _rebuild(user)


def unregister_class_to_dict(cls: type) -> None:
    """Forget the converter registered for ``cls`` (the built-in ones stay)."""
    with _registry_lock:
        if cls in _tables.user_to_dict:
            user = dict(_tables.user_to_dict)
            del user[cls]
            _rebuild(user)


def _rebuild(user: dict[type, tuple[ClassToDict, bool]]) -> None:
    chain = dict(_BUILTIN_TO_DICT)
    specials = dict(_SERPENT_BUILTIN_SPECIALS)
    for cls, (converter, serpent_too) in user.items():
        # A class already in the table keeps its place and takes the new converter,
        # as in Pyro5 (and serpent's own registry).
        chain[cls] = converter
        if serpent_too:
            specials[cls] = _serpent_converter(converter)
    _tables.user_to_dict = user
    _tables.to_dict_chain = chain
    _tables.serpent_specials = specials


def register_dict_to_class(classname: str, converter: DictToClass) -> None:
    """Decode dicts whose ``"__class__"`` is ``classname`` with ``converter(classname, d)``.

    Registered names are accepted even when they contain ``"__"`` (as in
    Pyro5). The converter sees the raw dict: nested class dicts in it are not
    rebuilt yet. Whatever it raises is reported as a
    :class:`~remoteobj.errors.SerializeError`.
    """
    with _registry_lock:
        table = dict(_tables.from_dict)
        table[classname] = converter
        _tables.from_dict = table


def unregister_dict_to_class(classname: str) -> None:
    """Forget the converter registered for ``classname``."""
    with _registry_lock:
        if classname in _tables.from_dict:
            table = dict(_tables.from_dict)
            del table[classname]
            _tables.from_dict = table


def _checked_dict(value: object, cls: type) -> dict[str, Any]:
    if type(value) is not dict:
        raise SerializeError(
            f"converter for {cls.__name__} returned {type(value).__name__}, not dict"
        )
    return value


def _class_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}"


def _has_own_getstate(cls: type) -> bool:
    # Python 3.11 gave every object a __getstate__; only an overriding one counts.
    return getattr(cls, "__getstate__", None) is not object.__getstate__


# --- autoproxy ------------------------------------------------------------------
# An object registered with a daemon travels as a proxy to it (Pyro5's
# ``Pyro5.client.Proxy`` dict), as Pyro5's type replacement does. Which daemons
# apply is context, not global state: a daemon pushes its resolver while it
# runs a call (results, stream items, arguments of nested calls), and client
# code can push one with ``Daemon.autoproxy()``.

#: Returns the proxy dict for a registered object, ``None`` for any other.
AutoproxyResolver = Callable[[Any], dict[str, Any] | None]
_autoproxy: ContextVar[tuple[AutoproxyResolver, ...]] = ContextVar(
    "remoteobj_autoproxy", default=()
)


def push_autoproxy(resolver: AutoproxyResolver) -> Token[tuple[AutoproxyResolver, ...]]:
    """Serialize objects ``resolver`` knows as proxies in this context (until reset)."""
    current = _autoproxy.get()
    return _autoproxy.set((resolver, *current) if current else (resolver,))


def reset_autoproxy(token: Token[tuple[AutoproxyResolver, ...]]) -> None:
    """Undo the :func:`push_autoproxy` that returned ``token``."""
    _autoproxy.reset(token)


def _autoproxied(obj: Any) -> dict[str, Any] | None:
    for resolver in _autoproxy.get():
        found = resolver(obj)
        if found is not None:
            return found
    return None


def _class_to_dict(obj: Any) -> dict[str, Any]:
    """Pyro5's ``SerializerBase.class_to_dict``: the dict json/msgpack/marshal send."""
    proxied = _autoproxied(obj)
    if proxied is not None:
        return proxied
    for cls, converter in _tables.to_dict_chain.items():
        if isinstance(obj, cls):
            return _checked_dict(converter(obj), cls)
    if type(obj) in (set, dict, tuple, list):
        raise SerializeError(f"can't serialize type {type(obj)} into a dict")
    if isinstance(obj, BaseException):
        return exception_to_dict(obj)
    if _has_own_getstate(type(obj)):
        state = obj.__getstate__()
        if isinstance(state, dict):
            # Pyro5 sends a __getstate__ dict as is, without a "__class__" key.
            return state
    return _instance_state(obj)


def _instance_state(obj: Any) -> dict[str, Any]:
    """``vars(obj)`` (or its ``__slots__`` values) plus the ``__class__`` key, as serpent does."""
    try:
        value = dict(vars(obj))
    except TypeError:
        slots = getattr(obj, "__slots__", None)
        if slots is None:
            raise SerializeError(
                f"don't know how to serialize class {type(obj)}. "
                "Give it vars() or an appropriate __getstate__"
            ) from None
        value = {slot: getattr(obj, slot) for slot in slots}
    value["__class__"] = _class_name(obj)
    return value


# Conversions serpent applies to non-native values; the other serializers use
# them for values Pyro5 cannot encode there at all (it raises instead).
_TRANSLATE: Final[dict[type, Callable[[Any], Any]]] = {
    collections.deque: list,
    collections.UserDict: dict,
    collections.UserList: list,
    collections.UserString: str,
}


def _common_convert(obj: Any) -> Any:
    """Serpent's plain-value stand-in for ``obj``, or ``obj`` itself when it has none."""
    translate = _TRANSLATE.get(type(obj))
    if translate is not None:
        return translate(obj)
    if isinstance(obj, KeysView | ValuesView | ItemsView | frozenset):
        return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, uuid.UUID | decimal.Decimal | datetime.time):
        return str(obj)
    if isinstance(obj, datetime.date):  # datetime.datetime too
        return obj.isoformat()
    if isinstance(obj, datetime.timedelta):
        return obj.total_seconds()
    if isinstance(obj, array.array):
        return obj.tounicode() if obj.typecode == "u" else obj.tolist()
    return obj


# =============================================================================
# Decoding: class dicts back to objects
# =============================================================================


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _make_exception(
    cls: type[BaseException], classname: str, data: dict[str, Any]
) -> BaseException:
    args = data.get("args", ())
    if not isinstance(args, list | tuple):
        raise SerializeError(f"bad args for {classname}")
    try:
        exc = cls(*args)
    except Exception as err:
        raise SerializeError(f"cannot rebuild {classname}: {_short(err)}") from None
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        return exc
    for name, value in attributes.items():
        if not isinstance(name, str):
            continue
        if name.startswith("__"):
            # Dunders would reach into the object model (__class__, __traceback__, ...);
            # only notes added with add_note() are carried over.
            if name == "__notes__" and _is_str_list(value):
                exc.__notes__ = list(value)
            continue
        try:
            setattr(exc, name, value)
        except (AttributeError, TypeError, ValueError):
            continue  # a read-only or typed slot of a built-in exception: keep what args gave
    traceback = attributes.get("_pyroTraceback")
    if _is_str_list(traceback):
        note = "Remote traceback:\n" + "".join(traceback)
        if note not in getattr(exc, "__notes__", ()):
            exc.add_note(note)
    return exc


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _builtin_exception(short: str) -> type[BaseException] | None:
    cls = getattr(builtins, short, None)
    # Exception, not BaseException: a peer does not get to raise SystemExit,
    # KeyboardInterrupt or GeneratorExit inside this process.
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    return None


def _sqlite_exception(short: str) -> type[BaseException] | None:
    try:
        import sqlite3  # a fixed stdlib module, imported only when needed
    except ImportError:  # pragma: no cover - Python built without sqlite
        return None
    cls = getattr(sqlite3, short, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    return None


def _float_from(value: object) -> float:
    if isinstance(value, dict) and value.get("__class__") == "float":
        value = value.get("value")
    if isinstance(value, str):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError("not a float")


def _dict_to_class(data: dict[str, Any], serpent: bool) -> Any:
    """Rebuild the object a class dict stands for, from the allow-list only."""
    classname = data["__class__"]
    if not isinstance(classname, str):
        raise SerializeError("invalid __class__ value")
    if serpent:
        # Serpent has no literal for NaN (or a complex holding one) and writes these dicts.
        if classname == "float":
            try:
                return _float_from(data.get("value"))
            except (ValueError, OverflowError):
                raise SerializeError("bad serialized float") from None
        if classname == "complex":
            try:
                return complex(_float_from(data.get("real")), _float_from(data.get("imag")))
            except (ValueError, OverflowError):
                raise SerializeError("bad serialized complex") from None
    converter = _tables.from_dict.get(classname)
    if converter is not None:
        try:
            return converter(classname, data)
        except (SerializeError, SecurityError):
            raise
        except Exception as err:
            raise SerializeError(f"converter for {classname} failed: {_short(err)}") from None
    if "__" in classname:
        raise SecurityError(
            f"refused to deserialize types with double underscores in their name: {classname}"
        )
    if classname == _URI_CLASS:
        try:
            return URI.from_state(data.get("state", ()))
        except errors.RemoteObjError as err:
            raise SerializeError(str(err)) from None
    if classname == _WRAPPER_CLASS:
        exc = data.get("exception")
        if isinstance(exc, dict) and "__class__" in exc:
            exc = _dict_to_class(exc, serpent)
        if not isinstance(exc, BaseException):
            raise SerializeError("exception wrapper without an exception")
        return ExceptionWrapper(exc)
    if classname == _PROXY_CLASS:
        # Without the client module's converter, a proxy is at least its URI.
        state = data.get("state")
        if isinstance(state, list | tuple) and state and isinstance(state[0], str):
            try:
                return URI(state[0])
            except errors.RemoteObjError as err:
                raise SerializeError(str(err)) from None
        raise SerializeError("bad serialized proxy")
    if classname == _DAEMON_CLASS:
        return DaemonPlaceholder()
    exc_type: type[BaseException] | None = None
    if classname.startswith("Pyro5.errors."):
        exc_type = errors.BY_WIRE_NAME.get(classname)
    elif classname == "struct.error":
        exc_type = struct.error
    elif data.get("__exception__"):
        namespace, _, short = classname.partition(".")
        if namespace == "builtins":
            exc_type = _builtin_exception(short)
        elif namespace == "sqlite3" and short.endswith("Error"):
            exc_type = _sqlite_exception(short)
    if exc_type is not None:
        return _make_exception(exc_type, classname, data)
    raise SerializeError(f"unsupported serialized class: {classname}")


def _too_deep(limit: int) -> MessageTooComplexError:
    return MessageTooComplexError(f"payload nested deeper than {limit} levels")


def _too_many(limit: int) -> MessageTooComplexError:
    return MessageTooComplexError(f"payload holds more than {limit} elements")


def _recreate(value: Any, depth: int, limit: int, serpent: bool) -> Any:
    """Replace class dicts by objects, top-down, as Pyro5's ``recreate_classes`` does.

    Containers are fresh from the decoder, so lists and dicts are updated in
    place; ``depth`` is the nesting of ``value`` (the outermost container is 1).
    """
    kind = type(value)
    if kind is dict:
        if "__class__" in value:
            return _dict_to_class(value, serpent)
        if depth > limit:
            raise _too_deep(limit)
        for key, item in value.items():
            if type(item) in _WALKED:
                value[key] = _recreate(item, depth + 1, limit, serpent)
        return value
    if kind is list:
        if depth > limit:
            raise _too_deep(limit)
        for index, item in enumerate(value):
            if type(item) in _WALKED:
                value[index] = _recreate(item, depth + 1, limit, serpent)
        return value
    if kind is tuple:
        if depth > limit:
            raise _too_deep(limit)
        items = [
            _recreate(item, depth + 1, limit, serpent) if type(item) in _WALKED else item
            for item in value
        ]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return tuple(items)
        return value
    return value


# Set members and dict keys are hashable, so never dicts: only these can hold class dicts.
_WALKED: Final = frozenset({dict, list, tuple})
_CONTAINERS: Final = frozenset({dict, list, tuple, set, frozenset})


_is_container = _CONTAINERS.__contains__
_is_dict = frozenset({dict}).__contains__


def _is_not_dict(kind: type) -> bool:
    return kind is not dict


def _check_shape(value: Any, limits: DecodeLimits, plain: frozenset[type] | None = None) -> None:
    """Walk a decoded value: depth, total container items and (for marshal) leaf types.

    The walk goes one nesting level at a time and leaves the per-element work
    (type lookups, filtering, flattening) to C: Python loops once per level,
    not once per container, which keeps it near the cost of the decoding itself.
    """
    max_elements, max_nesting = limits
    frontier: list[Any] = [value]
    depth = elements = 0
    while True:
        if plain is not None:
            kinds = set(map(type, frontier))
            if not plain.issuperset(kinds):
                bad = next(iter(kinds - plain))
                raise SerializeError(f"unsupported type in payload: {bad.__name__}")
            if kinds.isdisjoint(_CONTAINERS):
                return
        elif _CONTAINERS.isdisjoint(map(type, frontier)):
            # A level of leaves (a long list of numbers, say) ends the walk at half the
            # cost of filtering it; it stops at the first container of a level that has one.
            return
        containers = list(compress(frontier, map(_is_container, map(type, frontier))))
        depth += 1
        if depth > max_nesting:
            raise _too_deep(max_nesting)
        dicts = list(compress(containers, map(_is_dict, map(type, containers))))
        if dicts:
            parts = [
                chain.from_iterable(compress(containers, map(_is_not_dict, map(type, containers)))),
                chain.from_iterable(map(dict.values, dicts)),
            ]
            if plain is not None:  # marshal dict keys may be tuples
                parts.append(chain.from_iterable(map(dict.keys, dicts)))
            frontier = list(chain.from_iterable(parts))
        else:
            frontier = list(chain.from_iterable(containers))
        elements += len(frontier)
        if elements > max_elements:
            raise _too_many(max_elements)


# =============================================================================
# The serializer interface
# =============================================================================


def _as_bytes(data: object) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise SerializeError(f"payload must be bytes, not {type(data).__name__}")


def _call_arguments(
    args: Sequence[Any], kwargs: Mapping[str, Any] | None
) -> tuple[tuple[Any, ...] | list[Any], dict[str, Any] | None]:
    """A call's arguments as encoders write them: a tuple or list, and a dict or None."""
    if not isinstance(args, tuple | list):
        args = tuple(args)
    if kwargs is not None and not isinstance(kwargs, dict):
        kwargs = dict(kwargs)
    return args, kwargs


def _call_tuple(value: Any) -> tuple[str, str, tuple[Any, ...] | list[Any], dict[str, Any] | None]:
    if type(value) not in (tuple, list) or len(value) != 4:
        raise SerializeError("malformed call payload")
    obj, method, args, kwargs = value
    return _checked_call(obj, method, args, kwargs)


def _checked_call(
    obj: Any, method: Any, args: Any, kwargs: Any
) -> tuple[str, str, tuple[Any, ...] | list[Any], dict[str, Any] | None]:
    if type(obj) is not str or type(method) is not str:
        raise SerializeError("malformed call payload: object id and method must be strings")
    if type(args) is not tuple and type(args) is not list:
        raise SerializeError("malformed call payload: arguments must be a list")
    if kwargs is not None:
        if type(kwargs) is not dict:
            raise SerializeError("malformed call payload: keyword arguments must be a dict")
        for key in kwargs:
            if type(key) is not str:
                raise SerializeError("malformed call payload: keyword names must be strings")
    return obj, method, args, kwargs


class Serializer:
    """One wire serializer. Instances are stateless and shared by all threads.

    ``dumps``/``dumps_call`` raise :class:`~remoteobj.errors.SerializeError`
    for values they cannot encode; ``loads``/``loads_call`` raise only
    :class:`~remoteobj.errors.SerializeError` (including
    :class:`~remoteobj.errors.MessageTooComplexError`) and
    :class:`~remoteobj.errors.SecurityError`.
    """

    #: Name used in configuration: serpent, marshal, json or msgpack.
    name: ClassVar[str] = ""
    #: Id in the message header.
    serializer_id: ClassVar[int] = 0

    def dumps(self, obj: Any) -> bytes:
        """Encode one value (a result, a handshake dict, an exception...)."""
        raise NotImplementedError

    def loads(
        self, data: bytes | bytearray | memoryview, limits: DecodeLimits = DEFAULT_LIMITS
    ) -> Any:
        """Decode one value, rebuilding allow-listed classes."""
        try:
            return self._loads(data, limits)
        except (SerializeError, SecurityError):
            raise
        except Exception as err:
            raise _decode_error(err) from None

    def dumps_call(
        self, obj_id: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> bytes:
        """Encode the payload of an INVOKE message.

        ``kwargs`` is ``None`` only for batch calls (then ``args`` is the list of
        ``(method, args, kwargs)`` items), as in Pyro5.
        """
        raise NotImplementedError

    def dumps_call_buffer(
        self, obj_id: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> bytes | memoryview:
        """:meth:`dumps_call`, but a large payload may come back as a view of the
        encoder's own buffer instead of a copy of it: for sending at once."""
        return self.dumps_call(obj_id, method, args, kwargs)

    def loads_call(
        self, data: bytes | bytearray | memoryview, limits: DecodeLimits = DEFAULT_LIMITS
    ) -> tuple[str, str, tuple[Any, ...] | list[Any], dict[str, Any] | None]:
        """Decode an INVOKE payload into ``(object_id, method, args, kwargs)``.

        The shape is checked: ids and keyword names are strings, ``args`` a
        tuple or list, ``kwargs`` a dict or ``None``.
        """
        try:
            return self._loads_call(data, limits)
        except (SerializeError, SecurityError):
            raise
        except Exception as err:
            raise _decode_error(err) from None

    # Subclasses decode here; the public methods above guarantee that nothing but
    # SerializeError and SecurityError escapes, whatever a payload provokes
    # (a RecursionError in a converter, an OverflowError in float(), ...).

    #: Whether this serializer's own class dicts (serpent's NaN) are rebuilt too.
    _serpent_dicts: ClassVar[bool] = False

    def _decode(
        self, data: bytes | bytearray | memoryview, limits: DecodeLimits
    ) -> tuple[Any, bool]:
        """Parse ``data`` into plain values, within ``limits``; also say whether
        class dicts may be inside (then they are rebuilt by the allow-list)."""
        raise NotImplementedError

    def _call_parts(
        self, value: Any
    ) -> tuple[str, str, tuple[Any, ...] | list[Any], dict[str, Any] | None]:
        """Split a decoded INVOKE payload (a 4-tuple in all but json)."""
        return _call_tuple(value)

    def _loads(self, data: bytes | bytearray | memoryview, limits: DecodeLimits) -> Any:
        value, has_class = self._decode(data, limits)
        if has_class:
            return _recreate(value, 1, limits.max_nesting, self._serpent_dicts)
        return value

    def _loads_call(
        self, data: bytes | bytearray | memoryview, limits: DecodeLimits
    ) -> tuple[str, str, tuple[Any, ...] | list[Any], dict[str, Any] | None]:
        value, has_class = self._decode(data, limits)
        obj, method, args, kwargs = self._call_parts(value)
        if has_class:
            args = _recreate(args, 2, limits.max_nesting, self._serpent_dicts)
            kwargs = _recreate(kwargs, 2, limits.max_nesting, self._serpent_dicts)
        return obj, method, args, kwargs

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} id={self.serializer_id}>"


def _decode_error(err: Exception) -> SerializeError:
    if isinstance(err, RecursionError):
        return MessageTooComplexError("payload nested too deeply to decode")
    return SerializeError(f"cannot decode: {type(err).__name__}: {_short(err)}")


def _encode_error(err: Exception) -> SerializeError:
    if isinstance(err, SerializeError):
        return err
    if isinstance(err, RecursionError):
        return SerializeError("value nested too deeply (or circular) to serialize")
    return SerializeError(f"cannot serialize: {type(err).__name__}: {_short(err)}")


# =============================================================================
# serpent
# =============================================================================

_SERPENT_HEADER: Final = "# serpent utf-8 python3.2\n"
# serpent refuses to write values nested deeper than this (sys.getrecursionlimit() // 5
# with Python's default recursion limit); the same data then fails the same way here.
_SERPENT_MAX_LEVEL: Final = 200

_REPR_TYPES: Final = frozenset({str, int, bool, type(None)})


def _s_too_deep() -> SerializeError:
    return SerializeError(f"value nested deeper than {_SERPENT_MAX_LEVEL} levels (or circular)")


def _s_value(obj: Any, out: _Pieces, level: int) -> None:
    if level > _SERPENT_MAX_LEVEL:
        raise _s_too_deep()
    writer = _S_EXACT.get(type(obj))
    if writer is None:
        _s_other(obj, out, level)
    else:
        writer(obj, out, level)


def _s_repr(obj: Any, out: _Pieces, level: int) -> None:
    out.append(repr(obj))


def _s_float(obj: float, out: _Pieces, level: int) -> None:
    if obj - obj == 0.0:  # finite (inf - inf and nan - nan are nan)
        out.append(repr(obj))
    elif math.isnan(obj):  # NaN has no literal
        out.append("{'__class__':'float','value':'nan'}")
    else:  # a literal that overflows to +-inf when read back
        out.append("1e30000" if obj > 0 else "-1e30000")


def _s_complex(obj: complex, out: _Pieces, level: int) -> None:
    real, imag = obj.real, obj.imag
    if math.isnan(real) or math.isnan(imag):
        out.append("{'__class__':'complex','real':")
        _s_float(real, out, level)
        out.append(",'imag':")
        _s_float(imag, out, level)
        out.append("}")
        return
    out.append("(")
    _s_float(real, out, level)
    if imag >= 0 and math.copysign(1.0, imag) > 0:  # -0.0 gets no "+", as in serpent
        out.append("+")
    _s_float(imag, out, level)
    out.append("j)")


def _s_items(items: Iterable[Any], out: _Pieces, level: int) -> None:
    """Write items, each followed by a comma; they are one level deeper."""
    level += 1
    if level > _SERPENT_MAX_LEVEL:
        raise _s_too_deep()
    append = out.append
    for item in items:
        # str/int/bool/None inline: no call per element on the hot path.
        if type(item) in _REPR_TYPES:
            append(repr(item))
        else:
            _s_value(item, out, level)
        append(",")


def _s_tuple(obj: tuple[Any, ...], out: _Pieces, level: int) -> None:
    out.append("(")
    if obj:
        _s_items(obj, out, level)
        if len(obj) > 1:
            out.pop()  # (a,b) but (a,)
    out.append(")")


def _s_list(obj: list[Any], out: _Pieces, level: int) -> None:
    out.append("[")
    if obj:
        _s_items(obj, out, level)
        out.pop()
    out.append("]")


def _s_set(obj: set[Any] | frozenset[Any], out: _Pieces, level: int) -> None:
    if not obj:
        out.append("()")  # there is no empty-set literal; serpent writes an empty tuple
        return
    for item in obj:
        _s_check_key(type(item))
    out.append("{")
    _s_items(obj, out, level)
    out.pop()
    out.append("}")


def _s_check_key(kind: type) -> None:
    if kind is str or kind in (bool, bytes, tuple) or issubclass(kind, numbers.Number | enum.Enum):
        return
    raise SerializeError(
        f"one of the keys in a dict or set is not of a primitive hashable type: {kind}. "
        "Use simple types as keys or use a list or tuple as container."
    )


def _s_dict(obj: dict[Any, Any], out: _Pieces, level: int) -> None:
    append = out.append
    append("{")
    if obj:
        level += 1
        if level > _SERPENT_MAX_LEVEL:
            raise _s_too_deep()
        for key, value in obj.items():
            if type(key) is str:
                append(repr(key))
            else:
                _s_check_key(type(key))
                _s_value(key, out, level)
            append(":")
            if type(value) in _REPR_TYPES:
                append(repr(value))
            else:
                _s_value(value, out, level)
            append(",")
        out.pop()
    append("}")


def _s_bytes(obj: bytes | bytearray | memoryview, out: _Pieces, level: int) -> None:
    # repr() of serpent's {"data": ..., "encoding": "base64"} dict, spaces included.
    encoded = binascii.b2a_base64(obj, newline=False)
    if len(encoded) < _BIG_BASE64:
        out.append(f"{{'data': '{encoded.decode('ascii')}', 'encoding': 'base64'}}")
        return
    # Big: the ASCII bytes go out as they are (see _s_encode); a round trip through
    # str would copy them three more times, each copy a fresh megabyte to fault in.
    out.append("{'data': '")
    out.append(encoded)
    out.append("', 'encoding': 'base64'}")


#: Base64 runs from this size on stay bytes while serpent text is written.
_BIG_BASE64 = 64 * 1024


def _s_encode(out: _Pieces) -> bytes:
    """The UTF-8 bytes of the pieces written (str, and bytes for big base64 runs)."""
    try:
        return "".join(out).encode("utf-8")  # type: ignore[arg-type]
    except TypeError:  # a big base64 run among them
        pass
    parts: list[bytes] = []
    start = 0
    for i, piece in enumerate(out):
        if type(piece) is bytes:
            parts.append("".join(out[start:i]).encode("utf-8"))  # type: ignore[arg-type]
            parts.append(piece)
            start = i + 1
    parts.append("".join(out[start:]).encode("utf-8"))  # type: ignore[arg-type]
    return b"".join(parts)


_S_EXACT: Final[dict[type, _Writer]] = {
    str: _s_repr,
    int: _s_repr,
    bool: _s_repr,
    type(None): _s_repr,
    float: _s_float,
    complex: _s_complex,
    tuple: _s_tuple,
    list: _s_list,
    dict: _s_dict,
    set: _s_set,
    frozenset: _s_set,
    bytes: _s_bytes,
    bytearray: _s_bytes,
    memoryview: _s_bytes,
}


def _s_as_str(obj: Any, out: _Pieces, level: int) -> None:
    out.append(repr(str(obj)))


def _s_isoformat(obj: datetime.date, out: _Pieces, level: int) -> None:
    out.append(repr(obj.isoformat()))


def _s_timedelta(obj: datetime.timedelta, out: _Pieces, level: int) -> None:
    out.append(repr(obj.total_seconds()))


def _s_exception(obj: BaseException, out: _Pieces, level: int) -> None:
    _s_dict(exception_to_dict(obj), out, level)


def _s_array(obj: array.array[Any], out: _Pieces, level: int) -> None:
    _s_value(obj.tounicode() if obj.typecode == "u" else obj.tolist(), out, level)


# serpent's dispatch table, consulted by exact type and then along the MRO.
_S_DISPATCH: Final[dict[type, _Writer]] = {
    float: _s_float,
    complex: _s_complex,
    tuple: _s_tuple,
    list: _s_list,
    dict: _s_dict,
    set: _s_set,
    frozenset: _s_set,
    decimal.Decimal: _s_as_str,
    datetime.datetime: _s_isoformat,
    datetime.date: _s_isoformat,
    datetime.timedelta: _s_timedelta,
    datetime.time: _s_as_str,
    uuid.UUID: _s_as_str,
    BaseException: _s_exception,
    array.array: _s_array,
}


def _s_view(obj: Iterable[Any], out: _Pieces, level: int) -> None:
    _s_list(list(obj), out, level)


def _s_ordered_dict(obj: collections.OrderedDict[Any, Any], out: _Pieces, level: int) -> None:
    _s_dict({"__class__": "collections.OrderedDict", "items": list(obj.items())}, out, level)


def _s_enum(obj: enum.Enum, out: _Pieces, level: int) -> None:
    _s_value(obj.value, out, level)


def _serpent_converter(converter: ClassToDict) -> _Writer:
    def write(obj: Any, out: _Pieces, level: int) -> None:
        _s_dict(_checked_dict(converter(obj), type(obj)), out, level)

    return write


# serpent's special-class registry: checked with isinstance, in this order, before the dispatch.
_SERPENT_BUILTIN_SPECIALS: Final[dict[type, _Writer]] = {
    KeysView: _s_view,
    ValuesView: _s_view,
    ItemsView: _s_view,
    collections.OrderedDict: _s_ordered_dict,
    enum.Enum: _s_enum,
    URI: _serpent_converter(_uri_to_dict),
    ExceptionWrapper: _serpent_converter(_wrapper_to_dict),
    DaemonPlaceholder: _serpent_converter(daemon_to_dict),
}
_tables.serpent_specials = dict(_SERPENT_BUILTIN_SPECIALS)


def _s_other(obj: Any, out: _Pieces, level: int) -> None:
    proxied = _autoproxied(obj)
    if proxied is not None:
        _s_dict(proxied, out, level)
        return
    kind = type(obj)
    translate = _TRANSLATE.get(kind)
    if translate is not None:
        _s_value(translate(obj), out, level)
        return
    for cls, writer in _tables.serpent_specials.items():
        if isinstance(obj, cls):
            writer(obj, out, level)
            return
    found = _S_DISPATCH.get(kind)
    if found is None:
        for base in kind.__mro__:
            found = _S_DISPATCH.get(base)
            if found is not None:
                break
        else:
            found = _s_default_class
    found(obj, out, level)


def _s_default_class(obj: Any, out: _Pieces, level: int) -> None:
    """serpent's ``ser_default_class``: ``__getstate__``, ``vars()`` or ``__slots__``."""
    value: Any
    if _has_own_getstate(type(obj)):
        value = obj.__getstate__()
        if isinstance(value, dict):
            if "__class__" not in value:
                value = dict(value)
                value["__class__"] = _class_name(obj)
            _s_dict(value, out, level)
            return
    else:
        value = _instance_state(obj)
    _s_value(value, out, level)


# ---- serpent decoding ---------------------------------------------------------

# One token per match, whitespace before it skipped: a string without a prefix,
# a bytes literal, a run of name/number characters, or any other single character.
_S_TOKEN: Final = re.compile(
    r"""[ \t\f\r\n]*(
        '[^'\\\n\r]*(?:\\[^\r][^'\\\n\r]*)*'
      | "[^"\\\n\r]*(?:\\[^\r][^"\\\n\r]*)*"
      | [bB](?:'[^'\\\n\r]*(?:\\[^\r][^'\\\n\r]*)*'|"[^"\\\n\r]*(?:\\[^\r][^"\\\n\r]*)*")
      | [A-Za-z0-9_.+\-]+
      | .
    )""",
    re.VERBOSE | re.DOTALL,
)
# The tokenizer's string literals, alone: stripped to count structure outside strings.
_S_STRINGS: Final = re.compile(
    r"""
        '[^'\\\n\r]*(?:\\[^\r][^'\\\n\r]*)*'
      | "[^"\\\n\r]*(?:\\[^\r][^"\\\n\r]*)*"
    """,
    re.VERBOSE,
)
_S_CONSTANTS: Final[dict[str, Any]] = {"True": True, "False": False, "None": None}
_NUMBER_CHARS: Final = frozenset("0123456789.eE+-")
_COMPLEX_RE: Final = re.compile(
    r"(?P<real>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)??"
    r"(?P<op>[+-])?(?P<imag>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[jJ]"
)
# The escapes repr() writes (plus a few more with the same meaning in both decoders).
_S_ESCAPES: Final = frozenset("\\'\"abfnrtvxuU\n")
_S_BYTES_ESCAPES: Final = frozenset("\\'\"abfnrtvx\n")
_ESCAPE_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_BLANKS: Final = frozenset(" \t\f\r\n")
_OPEN, _VALUE, _COMMA, _COLON = 0, 1, 2, 3


#: Dicts and sets at least this big have their keys' hashes checked before they are built.
_HASH_CHECK_AT: Final = 1024


def _check_hashes(keys: list[Any]) -> None:
    """Refuse keys that share hashes wholesale. ``hash(int)`` is not randomized (it is
    the value modulo 2**61 - 1), so a payload can carry thousands of distinct ints
    with one hash, and building a dict or set of n of them costs n**2 / 2 probes:
    50,000 such keys (a 1.3 MB payload) held the GIL for 15 s. Distinct keys
    from honest data (str hashes are randomized) almost never share a hash."""
    if len(set(map(hash, keys))) * 2 < len(keys):
        raise MessageTooComplexError(
            f"payload refused: {len(keys)} dict or set keys, most of them with the same hash"
        )


class _NotFast(Exception):
    """The fast serpent parser met syntax outside its subset: use ast.literal_eval."""


def _unescape(inner: str) -> str:
    if not _S_ESCAPES.issuperset(_ESCAPE_RE.findall(inner)):
        raise _NotFast
    if not inner.isascii():
        # unicode_escape reads its input as latin-1; escape the rest first so it round-trips.
        inner = inner.encode("ascii", "backslashreplace").decode("ascii")
    try:
        return codecs.decode(inner, "unicode_escape")
    except UnicodeDecodeError:
        raise _NotFast from None


def _s_number(text: str) -> int | float:
    if "." in text or "e" in text or "E" in text:
        return float(text)
    digits = text.lstrip("+-")
    if len(text) - len(digits) > 1 or (len(digits) > 1 and digits[0] == "0" and digits.strip("0")):
        raise _NotFast  # "--1", "007": literal_eval's business
    return int(text)


def _s_atom(token: str) -> Any:
    value = _S_CONSTANTS.get(token, _NotFast)
    if value is not _NotFast:
        return value
    first = token[0]
    if first in "bB" and len(token) > 2 and token[1] in "'\"":
        if not token.isascii() or not _S_BYTES_ESCAPES.issuperset(_ESCAPE_RE.findall(token)):
            raise _NotFast
        try:
            return ast.literal_eval(token)  # a single bytes token: no syntax tree to speak of
        except SyntaxError:  # b'\x4': a broken escape, for literal_eval to report
            raise _NotFast from None
    if not token.isascii():
        raise _NotFast
    if token[-1] in "jJ":
        match = _COMPLEX_RE.fullmatch(token)
        if match is None:
            raise _NotFast
        imag = complex(0.0, float(match["imag"]))
        if match["real"] is None:  # 2j, -2j: a unary sign applied to an imaginary literal
            op = match["op"]
            return -imag if op == "-" else imag
        if match["op"] is None:
            raise _NotFast
        real = _s_number(match["real"])
        # Python's own arithmetic on the parts, exactly as literal_eval evaluates "a+bj".
        return real + imag if match["op"] == "+" else real - imag
    if not _NUMBER_CHARS.issuperset(token):
        raise _NotFast
    return _s_number(token)


def _structure(text: str, start: int = 0, end: int | None = None) -> int:
    """Commas and opening brackets: the element count the budget is about."""
    return (
        text.count(",", start, end)
        + text.count("(", start, end)
        + text.count("[", start, end)
        + text.count("{", start, end)
    )


# Bodies from this size on are tokenized around their string literals. Once
# that many strings averaged fewer characters than this, the rest goes to one
# findall: below ~150 characters a string costs the regex less than Python.
# (Variables, not constants: tests send small bodies through each path.)
_S_HYBRID_MIN = 64 * 1024
_S_HYBRID_STRINGS = 64
_S_HYBRID_AVERAGE = 160


def _s_findall(text: str, pos: int, budget: int, max_elements: int) -> list[str]:
    """``_S_TOKEN.findall(text, pos)``, refused first if ``budget`` structure
    characters outside strings would not suffice (counting is ~50x cheaper)."""
    if len(text) - pos > budget and _structure(text, pos) > budget:
        skeleton = _S_STRINGS.sub("", text[pos:] if pos else text)
        if _structure(skeleton) > budget:
            raise _too_many(max_elements)
    tokens: list[str] = _S_TOKEN.findall(text, pos)
    return tokens


def _s_tokens(text: str, pos: int, max_elements: int, cuts: list[str]) -> list[str]:
    """``_S_TOKEN.findall(text, pos)``; MessageTooComplexError rather than building
    the tokens of more than ``max_elements`` commas and brackets (outside strings).

    Big bodies skip over their string literals with ``str.find`` (memchr speed)
    and run the regex only on the text between them, which it walks ~100x more
    slowly: a 1 MiB base64 argument is one string. The tokens are findall's: a
    quote-free stretch tokenizes alone as it does in the whole, but for trailing
    blanks (skipped before the string instead) and a ``b`` prefix (joined to it);
    a string spanning a backslash or a line end is the regex's to match. Plain
    strings are cut out (without their quotes, appended to ``cuts``) and stand
    as their bare opening quote in the tokens; the regex's own bare quotes (an
    unterminated string) come only after the last cut. Once the strings prove
    short on average, the rest of the body goes to one findall.
    """
    size = len(text)
    if size - pos < _S_HYBRID_MIN:
        return _s_findall(text, pos, max_elements, max_elements)
    find = text.find
    findall = _S_TOKEN.findall
    blanks = _BLANKS
    tokens: list[str] = []
    append = tokens.append
    cut = cuts.append
    # Structure left in the budget: at first an upper bound (stretch lengths,
    # not counted), exact once that runs out (then every stretch is counted).
    slack = max_elements
    exact = False
    strings = chars = 0
    # The next ' and " at or after pos, and the next backslash, LF and CR after
    # the last string's start (special: the first of these three); size when
    # there is none left, never searched for again.
    single = double = backslash = newline = linefeed = special = -1
    while True:
        if single < pos:
            single = find("'", pos)
            if single < 0:
                single = size
        if double < pos:
            double = find('"', pos)
            if double < 0:
                double = size
        quote = single if single < double else double
        start = quote
        length = quote - pos
        if length:
            if exact:
                slack -= _structure(text, pos, quote)
            elif length <= slack:
                slack -= length
            else:
                slack = max_elements - _structure(text, pos, quote) - _s_counted(tokens)
                exact = True
            if slack < 0:
                raise _too_many(max_elements)
            if length == 1 and quote < size:  # "," or ":" between strings: no regex
                last = text[pos]
                if last in {"b", "B"}:
                    start -= 1
                elif last not in blanks:
                    append(last)
            else:
                segment: list[str] = findall(text, pos, quote)
                if quote < size:
                    last = segment[-1]
                    if last in blanks:
                        segment.pop()  # the regex's last resort at the stretch's end
                    elif last in {"b", "B"}:
                        segment.pop()
                        start -= 1
                if len(segment) > len(tokens):  # the fewer references to copy
                    segment[:0] = tokens
                    tokens = segment
                    append = tokens.append
                else:
                    tokens += segment
        if quote == size:
            return tokens
        mark = text[quote]
        close = find(mark, quote + 1)
        if close < 0:
            close = size
        if mark == "'":
            single = close
        else:
            double = close
        if special <= quote:
            if backslash <= quote:
                backslash = find("\\", quote + 1)
                if backslash < 0:
                    backslash = size
            if newline <= quote:
                newline = find("\n", quote + 1)
                if newline < 0:
                    newline = size
            if linefeed <= quote:
                linefeed = find("\r", quote + 1)
                if linefeed < 0:
                    linefeed = size
            special = min(backslash, newline, linefeed)
        if close < special:
            pos = close + 1
            if start == quote:
                append(mark)
                cut(text[quote + 1 : close])
            else:
                append(text[start:pos])
        else:
            match = _S_TOKEN.match(text, start)
            if match is None:  # pragma: no cover - "." matches any character
                raise _NotFast
            token: str = match[1]
            if len(token) == 1:  # a bare quote: no more cuts, or it would read as one
                pos = start
                break
            pos = match.end()
            append(token)
        strings += 1
        chars += pos - start
        if strings >= _S_HYBRID_STRINGS and chars < strings * _S_HYBRID_AVERAGE:
            break
    # The rest in one findall, within what the budget has left.
    if not exact:
        slack = max_elements - _s_counted(tokens)
    rest = _s_findall(text, pos, slack, max_elements)
    rest[:0] = tokens
    return rest


def _s_counted(tokens: list[str]) -> int:
    """The structure among tokens: what the budget counts."""
    return tokens.count(",") + tokens.count("(") + tokens.count("[") + tokens.count("{")


def _serpent_parse(
    text: str, max_elements: int, max_nesting: int, start: int = 0
) -> tuple[Any, bool]:
    """Parse serpent's literal subset from ``text[start:]``; raise _NotFast for
    anything else. Also says whether a dict with a ``__class__`` key was built.

    Budgets are exact here: elements are counted on real tokens (commas and
    brackets inside strings do not count) and depth is the container stack.
    """
    if start >= len(text) or text[start] in _BLANKS or text[-1] in _BLANKS:
        raise _NotFast  # leading/trailing blank lines carry indentation rules
    size = len(text) - start
    if size < _S_HYBRID_MIN and size <= max_elements:  # most bodies: nothing to refuse early
        tokens: list[str] = _S_TOKEN.findall(text, start)
        cuts: Sequence[str] = ()
    else:
        cut_out: list[str] = []
        tokens = _s_tokens(text, start, max_elements, cut_out)
        cuts = cut_out
    if len(tokens) > max_elements and _s_counted(tokens) > max_elements:
        raise _too_many(max_elements)
    cut = 0
    classes = False
    stack: list[tuple[str, list[Any], int]] = []
    kind = ""  # "" at the top level, else the open bracket
    items: list[Any] = []
    mode = 0  # "(": 1 once a comma was seen; "{": 0 undecided, 1 dict, 2 set
    after = _OPEN
    value: Any
    for token in tokens:
        first = token[0]
        if first in {"'", '"'}:
            if len(token) == 1:
                if cut == len(cuts):
                    raise _NotFast  # an unterminated string
                value = cuts[cut]  # a plain string, cut out by the tokenizer
                cut += 1
            else:
                value = token[1:-1]
                if "\\" in value:
                    value = _unescape(value)
        elif first == ",":
            if after != _VALUE or not kind:
                raise _NotFast
            if kind == "(":
                mode = 1
            elif kind == "{":
                if mode == 0:
                    mode = 2
                elif mode == 1 and len(items) & 1:
                    raise _NotFast
            after = _COMMA
            continue
        elif first in {"(", "[", "{"}:
            if after == _VALUE:
                raise _NotFast
            stack.append((kind, items, mode))
            if len(stack) > max_nesting:
                raise _too_deep(max_nesting)
            kind = first
            items = []
            mode = 0
            after = _OPEN
            continue
        elif first in {")", "]", "}"}:
            if after == _COLON:
                raise _NotFast
            if first == ")":
                if kind != "(":
                    raise _NotFast
                value = items[0] if len(items) == 1 and not mode else tuple(items)
            elif first == "]":
                if kind != "[":
                    raise _NotFast
                value = items
            else:
                if kind != "{":
                    raise _NotFast
                if mode == 1:
                    if len(items) & 1:
                        raise _NotFast
                    keys = items[::2]
                    if len(keys) >= _HASH_CHECK_AT:
                        _check_hashes(keys)
                    value = dict(zip(keys, items[1::2], strict=True))
                    if "__class__" in value:
                        classes = True
                elif items:
                    if len(items) >= _HASH_CHECK_AT:
                        _check_hashes(items)
                    value = set(items)
                else:
                    value = {}
            kind, items, mode = stack.pop()
            items.append(value)
            after = _VALUE
            continue
        elif first == ":":
            if kind != "{" or after != _VALUE:
                raise _NotFast
            if mode == 0 and len(items) == 1:
                mode = 1
            elif mode != 1 or not len(items) & 1:
                raise _NotFast
            after = _COLON
            continue
        else:
            value = _s_atom(token)
        if after == _VALUE:
            raise _NotFast
        items.append(value)
        after = _VALUE
    if kind or len(items) != 1:
        raise _NotFast
    return items[0], classes


class SerpentSerializer(Serializer):
    """serpent (id 1): Python literal text, Pyro5's default."""

    name = "serpent"
    serializer_id = 1
    _serpent_dicts = True

    def dumps(self, obj: Any) -> bytes:
        out: _Pieces = [_SERPENT_HEADER]
        try:
            _s_value(obj, out, 0)
            return _s_encode(out)
        except Exception as err:
            raise _encode_error(err) from None

    def dumps_call(
        self, obj_id: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> bytes:
        arguments, keywords = _call_arguments(args, kwargs)
        if type(obj_id) is not str or type(method) is not str:
            return self.dumps((obj_id, method, arguments, keywords))
        # The envelope (obj_id, method, args, kwargs) written directly: the hot path.
        out: _Pieces = [_SERPENT_HEADER, "(", repr(obj_id), ",", repr(method), ","]
        try:
            if isinstance(arguments, list):
                _s_list(arguments, out, 1)
            else:
                _s_tuple(arguments, out, 1)
            out.append(",")
            if keywords is None:
                out.append("None")
            else:
                _s_dict(keywords, out, 1)
            out.append(")")
            return _s_encode(out)
        except Exception as err:
            raise _encode_error(err) from None

    def _decode(
        self, data: bytes | bytearray | memoryview, limits: DecodeLimits
    ) -> tuple[Any, bool]:
        """The parsed value, and whether it may hold class dicts."""
        if type(data) is not bytes and type(data) is not bytearray:  # both decode to text
            data = _as_bytes(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SerializeError("serpent data is not valid UTF-8") from None
        if "\x00" in text:
            raise SerializeError("serpent data contains NUL characters")
        start = 0
        if text.startswith("#"):
            # The header line ("# serpent utf-8 python3.2" from Pyro5; other
            # implementations write other versions) is a comment: skip it.
            start = text.find("\n") + 1 or len(text)
        try:
            return _serpent_parse(text, limits.max_elements, limits.max_nesting, start)
        except MessageTooComplexError:
            raise
        except Exception:
            value = self._literal_eval(text, len(data), limits)
        # A key spelled with escapes or split over adjacent literals is still
        # "__class__", but needs a "_" or a backslash somewhere in the text.
        return value, "_" in text or "\\" in text

    @staticmethod
    def _literal_eval(text: str, size: int, limits: DecodeLimits) -> Any:
        # ast.literal_eval builds ~1 KiB of syntax tree per element and can be
        # made to build far more per byte (operator chains): allowed only on
        # payloads small enough that this stays within the element budget.
        if size > limits.max_elements:
            raise SerializeError(
                f"invalid serpent data (or syntax only accepted in payloads up to "
                f"{limits.max_elements} bytes)"
            )
        try:
            value = ast.literal_eval(text)
        except Exception as err:
            raise SerializeError(
                f"invalid serpent data: {type(err).__name__}: {_short(err)}"
            ) from None
        _check_shape(value, limits)
        return value


# =============================================================================
# marshal
# =============================================================================

_MARSHAL_ATOMS: Final = frozenset({type(None), bool, int, float, complex, str, bytes})
# What marshal.loads can produce that we accept (no code objects, no Ellipsis...).
_MARSHAL_PLAIN: Final = _MARSHAL_ATOMS | {tuple, list, dict, set, frozenset}
_MARSHAL_BASES: Final[tuple[type[Any], ...]] = (
    dict,
    list,
    tuple,
    set,
    frozenset,
    str,
    bytes,
    bool,
    int,
    float,
    complex,
)
# What marshal.dumps writes as is (buffers become bytes), as Pyro5 lets it.
_MARSHAL_DIRECT: Final = _MARSHAL_PLAIN | {bytearray, memoryview}


def _marshal_prepare(obj: Any, level: int = 0) -> Any:
    """``obj`` with every value marshal cannot write replaced; ``obj`` itself if none.

    Pyro5 converts only the top level; nested values are converted here too.
    """
    if level > _SERPENT_MAX_LEVEL:
        raise _s_too_deep()
    kind = type(obj)
    if kind in _MARSHAL_ATOMS or kind is bytearray or kind is memoryview:
        return obj
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        items = [_marshal_prepare(item, level + 1) for item in obj]
        if all(new is old for new, old in zip(items, obj, strict=True)):
            return obj
        return kind(items)
    if kind is dict:
        pairs = [
            (_marshal_prepare(k, level + 1), _marshal_prepare(v, level + 1)) for k, v in obj.items()
        ]
        if all(k is ok and v is ov for (k, v), (ok, ov) in zip(pairs, obj.items(), strict=True)):
            return obj
        return dict(pairs)
    converted = _common_convert(obj)  # Enum members included, before their int/str base
    if converted is obj:
        # marshal writes exact types only: a namedtuple, an OrderedDict or a str
        # subclass goes as its base type (Pyro5's marshal raises on them).
        for base in _MARSHAL_BASES:
            if isinstance(obj, base):
                converted = base(obj)
                break
        else:
            converted = _class_to_dict(obj)
    return _marshal_prepare(converted, level)


# marshal's type codes (CPython Python/marshal.c, format version 4). FLAG_REF (0x80)
# may be set on any of them.
_M_FLAG_REF: Final = 0x80
_M_FIXED: Final[dict[int, int]] = {  # code -> payload bytes
    ord("N"): 0,  # None
    ord("F"): 0,  # False
    ord("T"): 0,  # True
    ord("i"): 4,  # int32
    ord("g"): 8,  # binary float
    ord("y"): 16,  # binary complex
    ord("r"): 4,  # reference to an earlier object
}
_M_SIZED: Final = frozenset(map(ord, "sutaA"))  # int32 length, then bytes
_M_SHORT: Final = frozenset(map(ord, "zZf"))  # 1-byte length, then bytes
_M_CONTAINERS: Final = frozenset(map(ord, "([<>"))  # int32 count, then items
_M_INT32: Final = struct.Struct("<i")


def _marshal_precheck(data: bytes, limits: DecodeLimits) -> None:
    """Walk marshal's framing without building anything.

    marshal.loads trusts the lengths it reads: five bytes claiming a tuple of
    2**28 items cost it seconds and gigabytes before it notices the data ends.
    Here every claimed length must fit in the bytes left (an item takes at least
    one), only plain-data type codes pass (no code objects), and the element and
    depth budgets hold.
    """
    pos, end = 0, len(data)
    elements = 0
    # Open containers: [items still expected, or -1 for a dict; dict items read].
    stack: list[list[int]] = []
    while True:
        if pos >= end:
            raise SerializeError("invalid marshal data: truncated")
        code = data[pos] & ~_M_FLAG_REF
        pos += 1
        complete = True
        if code in _M_FIXED:
            pos += _M_FIXED[code]
        elif code in _M_SIZED or code == ord("l"):
            if pos + 4 > end:
                raise SerializeError("invalid marshal data: truncated")
            (size,) = _M_INT32.unpack_from(data, pos)
            # A long is a signed count of 2-byte digits.
            pos += 4 + (2 * abs(size) if code == ord("l") else size)
            if size < 0 and code != ord("l"):
                raise SerializeError("invalid marshal data: negative length")
        elif code in _M_SHORT:
            if pos >= end:
                raise SerializeError("invalid marshal data: truncated")
            pos += 1 + data[pos]
        elif code == ord("x"):  # complex as two short decimal strings
            for _ in range(2):
                if pos >= end:
                    raise SerializeError("invalid marshal data: truncated")
                pos += 1 + data[pos]
        elif code in _M_CONTAINERS or code == ord(")"):
            if code == ord(")"):
                if pos >= end:
                    raise SerializeError("invalid marshal data: truncated")
                count = data[pos]
                pos += 1
            else:
                if pos + 4 > end:
                    raise SerializeError("invalid marshal data: truncated")
                (count,) = _M_INT32.unpack_from(data, pos)
                pos += 4
            if count < 0 or count > end - pos:
                raise SerializeError("invalid marshal data: container longer than the data")
            elements += count
            if elements > limits.max_elements:
                raise _too_many(limits.max_elements)
            if count:
                stack.append([count, 0])
                complete = False
        elif code == ord("{"):
            stack.append([-1, 0])
            complete = False
        elif code == ord("0"):  # NULL: ends a dict, where a key would come
            if not stack or stack[-1][0] != -1 or stack[-1][1] & 1:
                raise SerializeError("invalid marshal data: misplaced NULL")
            stack.pop()
        else:
            raise SerializeError(f"unsupported marshal type code {chr(code)!r}")
        if pos > end:
            raise SerializeError("invalid marshal data: truncated")
        if len(stack) > limits.max_nesting:
            raise _too_deep(limits.max_nesting)
        while complete and stack:
            frame = stack[-1]
            if frame[0] < 0:
                frame[1] += 1
                elements += 1
                if elements > limits.max_elements:
                    raise _too_many(limits.max_elements)
                break
            frame[0] -= 1
            if frame[0]:
                break
            stack.pop()  # a finished container is an item of the one around it
        if not stack:
            break
    if pos != end:
        raise SerializeError("invalid marshal data: trailing bytes")


class MarshalSerializer(Serializer):
    """marshal (id 2). Always dumpable; loading is for peers you trust."""

    name = "marshal"
    serializer_id = 2

    def dumps(self, obj: Any) -> bytes:
        try:
            if type(obj) in _MARSHAL_DIRECT:
                try:
                    return marshal.dumps(obj)
                except ValueError:
                    pass  # something inside needs converting
            return marshal.dumps(_marshal_prepare(obj))
        except Exception as err:
            raise _encode_error(err) from None

    def dumps_call(
        self, obj_id: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> bytes:
        # Pyro5 sends (id, method, [args], {kwargs}) with fresh list and dict.
        arg_list = list(args)
        kw = None if kwargs is None else dict(kwargs)
        try:
            try:
                return marshal.dumps((obj_id, method, arg_list, kw))
            except ValueError:
                pass
            # Held in locals like Pyro5's, so marshal's reference flags come out the same.
            prepared_args = [_marshal_prepare(a, 2) for a in arg_list]
            prepared_kw = None if kw is None else {k: _marshal_prepare(v, 2) for k, v in kw.items()}
            return marshal.dumps((obj_id, method, prepared_args, prepared_kw))
        except Exception as err:
            raise _encode_error(err) from None

    def _decode(
        self, data: bytes | bytearray | memoryview, limits: DecodeLimits
    ) -> tuple[Any, bool]:
        data = _as_bytes(data)
        _marshal_precheck(data, limits)
        try:
            value = marshal.loads(data)  # noqa: S302 - framing checked above, value below
        except Exception as err:
            raise SerializeError(
                f"invalid marshal data: {type(err).__name__}: {_short(err)}"
            ) from None
        # References can still share (or loop) containers: walk what was built.
        _check_shape(value, limits, _MARSHAL_PLAIN)
        return value, b"__class__" in data


# =============================================================================
# json
# =============================================================================


def _json_default(obj: Any) -> Any:
    # Pyro5's JsonSerializer.default, in its order...
    if isinstance(obj, set):
        return tuple(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, datetime.datetime | datetime.date):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, array.array):
        return obj.tounicode() if obj.typecode == "u" else obj.tolist()
    for cls in _tables.to_dict_chain:
        if isinstance(obj, cls):
            return _class_to_dict(obj)
    # ...then what Pyro5 cannot encode in json at all, the way serpent writes it.
    if isinstance(obj, bytes | bytearray | memoryview):
        return _bytes_dict(obj)
    converted = _common_convert(obj)
    if converted is not obj:
        return converted
    return _class_to_dict(obj)


# json.dumps(obj, ensure_ascii=False, default=...) builds this encoder per call; one will do.
_JSON_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, default=_json_default)
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS: Final = bytes.maketrans(b"[{}]", b"(())")
_NOT_BRACKETS: Final = bytes(c for c in range(256) if c not in b"[{}]()")


def _depth_exceeds(skeleton: bytes, limit: int) -> bool:
    """Whether the brackets of ``skeleton`` (strings already removed) nest deeper than ``limit``.

    Each round deletes the innermost pairs, so a depth of d takes d rounds.
    """
    brackets = skeleton.translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        if b"()" not in brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return b"()" in brackets


def _check_json_text(data: bytes, limits: DecodeLimits) -> None:
    """Element and depth budgets of a json payload, checked on the raw bytes."""
    size = len(data)
    max_elements, max_nesting = limits
    if size <= max_nesting and size <= max_elements:
        return  # too short to break either budget
    opens = data.count(b"[") + data.count(b"{")
    skeleton: bytes | None = None
    if size > limits.max_elements and data.count(b",") + opens > limits.max_elements:
        # Commas and brackets inside strings do not count: look again without strings.
        skeleton = _JSON_STRING.sub(b'""', data)
        count = skeleton.count(b",") + skeleton.count(b"[") + skeleton.count(b"{")
        if count > limits.max_elements:
            raise _too_many(limits.max_elements)
    if opens > limits.max_nesting:
        if skeleton is None:
            skeleton = _JSON_STRING.sub(b'""', data)
        if _depth_exceeds(skeleton, limits.max_nesting):
            raise _too_deep(limits.max_nesting)


class JsonSerializer(Serializer):
    """json (id 3): UTF-8 JSON; tuples and sets arrive as lists."""

    name = "json"
    serializer_id = 3

    def dumps(self, obj: Any) -> bytes:
        try:
            return _JSON_ENCODER.encode(obj).encode("utf-8")
        except Exception as err:
            raise _encode_error(err) from None

    def dumps_call(
        self, obj_id: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> bytes:
        args, kwargs = _call_arguments(args, kwargs)
        return self.dumps({"object": obj_id, "method": method, "params": args, "kwargs": kwargs})

    def _decode(
        self, data: bytes | bytearray | memoryview, limits: DecodeLimits
    ) -> tuple[Any, bool]:
        if type(data) is not bytes:
            data = _as_bytes(data)
        _check_json_text(data, limits)
        try:
            value = json.loads(data.decode("utf-8"))
        except Exception as err:
            raise SerializeError(
                f"invalid json data: {type(err).__name__}: {_short(err)}"
            ) from None
        return value, b"__class__" in data

    def _call_parts(
        self, value: Any
    ) -> tuple[str, str, tuple[Any, ...] | list[Any], dict[str, Any] | None]:
        # Pyro5's json calls are a dict, not a tuple.
        if type(value) is not dict:
            raise SerializeError("malformed call payload")
        try:
            obj, method = value["object"], value["method"]
            args, kwargs = value["params"], value["kwargs"]
        except KeyError as err:
            raise SerializeError(f"malformed call payload: no {err}") from None
        return _checked_call(obj, method, args, kwargs)


# =============================================================================
# msgpack
# =============================================================================

# Pyro5 packs these with native struct formats ("dd", "d", "l"); pinned to what
# x86-64 Linux produces, so other platforms stay compatible with it.
_EXT_COMPLEX: Final = 0x30
_EXT_INT: Final = 0x31
_EXT_DATETIME: Final = 0x32
_EXT_DATE: Final = 0x33
_PACK_COMPLEX: Final = struct.Struct("<dd")
_PACK_DOUBLE: Final = struct.Struct("<d")
_PACK_ORDINAL: Final = struct.Struct("<q")


def _msgpack_default(obj: Any) -> Any:
    # Pyro5's MsgpackSerializer.default, in its order...
    if isinstance(obj, set):
        return tuple(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, complex):
        return _msgpack.ExtType(_EXT_COMPLEX, _PACK_COMPLEX.pack(obj.real, obj.imag))
    if isinstance(obj, datetime.datetime):
        if obj.tzinfo:
            raise SerializeError("msgpack cannot serialize datetime with timezone info")
        return _msgpack.ExtType(_EXT_DATETIME, _PACK_DOUBLE.pack(obj.timestamp()))
    if isinstance(obj, datetime.date):
        return _msgpack.ExtType(_EXT_DATE, _PACK_ORDINAL.pack(obj.toordinal()))
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, numbers.Integral):
        # Ints past 64 bits (msgpack's native range) travel as decimal text.
        return _msgpack.ExtType(_EXT_INT, str(int(obj)).encode("ascii"))
    if isinstance(obj, array.array):
        return obj.tounicode() if obj.typecode == "u" else obj.tolist()
    for cls in _tables.to_dict_chain:
        if isinstance(obj, cls):
            return _class_to_dict(obj)
    # ...then what Pyro5 cannot encode in msgpack at all, the way serpent writes it.
    converted = _common_convert(obj)
    if converted is not obj:
        return converted
    return _class_to_dict(obj)


def _msgpack_ext(code: int, data: bytes) -> Any:
    if code == _EXT_COMPLEX:
        real, imag = _PACK_COMPLEX.unpack(data)
        return complex(real, imag)
    if code == _EXT_INT:
        return int(data)
    if code == _EXT_DATETIME:
        return datetime.datetime.fromtimestamp(
            _PACK_DOUBLE.unpack(data)[0]
        )  # naive local time, as Pyro5
    if code == _EXT_DATE:
        return datetime.date.fromordinal(_PACK_ORDINAL.unpack(data)[0])
    raise SerializeError(f"invalid ext code for msgpack: {code}")


class _ElementBudget:
    """Counts container items and containers as msgpack completes them.

    Over ``limit`` items it aborts the unpacking (too many elements). Over
    ``max_containers`` containers it aborts with :class:`_ManyContainers`: a
    payload with no more containers than the nesting limit nests no deeper
    and needs no walk for its depth, and one with more pays for a few hook
    calls only before it is unpacked again plainly and walked.
    """

    __slots__ = ("containers", "has_class", "left", "limit", "max_containers")

    def __init__(self, limit: int, max_containers: int = sys.maxsize) -> None:
        self.limit = limit
        self.left = limit
        self.max_containers = max_containers
        #: Whether a map with a ``__class__`` key was seen (cheaper here than
        #: searching a large payload for the marker: ~3 GB/s, 300 us per MiB).
        self.has_class = False
        #: Containers seen: the payload nests no deeper than this.
        self.containers = 0

    def list_hook(self, value: list[Any]) -> list[Any]:
        self.left -= len(value) + 1
        self.containers += 1
        if self.left < 0:
            raise _too_many(self.limit)
        if self.containers > self.max_containers:
            raise _ManyContainers
        return value

    def map_hook(self, value: dict[Any, Any]) -> dict[Any, Any]:
        self.left -= 2 * len(value) + 1
        self.containers += 1
        if self.left < 0:
            raise _too_many(self.limit)
        if self.containers > self.max_containers:
            raise _ManyContainers
        if "__class__" in value:
            self.has_class = True
        return value


class _ManyContainers(Exception):
    """More containers than the nesting limit: the depth must be walked."""


def _msgpack_unpack(
    data: bytes | bytearray, hooks: _ElementBudget | None = None, max_len: int = 0
) -> Any:
    """``msgpack.unpackb`` as the decoder calls it: with a hook object's list and map
    hooks, and ``max_len`` as the longest container accepted (``0``: msgpack's own
    bound, the payload's length)."""
    if hooks is None:
        return _msgpack.unpackb(data, raw=False, ext_hook=_msgpack_ext)
    bounds = {"max_array_len": max_len, "max_map_len": max_len} if max_len else {}
    return _msgpack.unpackb(
        data,
        raw=False,
        ext_hook=_msgpack_ext,
        list_hook=hooks.list_hook,
        object_hook=hooks.map_hook,
        **bounds,
    )


class MsgpackSerializer(Serializer):
    """msgpack (id 4): binary, compact and fast; needs the ``msgpack`` package."""

    name = "msgpack"
    serializer_id = 4

    def dumps(self, obj: Any) -> bytes:
        try:
            result: bytes = _msgpack.packb(obj, use_bin_type=True, default=_msgpack_default)
        except Exception as err:
            raise _encode_error(err) from None
        return result

    def dumps_call(
        self, obj_id: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> bytes:
        args, kwargs = _call_arguments(args, kwargs)
        return self.dumps((obj_id, method, args, kwargs))

    def dumps_call_buffer(
        self, obj_id: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> bytes | memoryview:
        args, kwargs = _call_arguments(args, kwargs)
        # packb packs into the packer's buffer, then copies it out as bytes; here the
        # buffer itself is handed out when it is large (~30 us less per MiB).
        packer = _msgpack.Packer(use_bin_type=True, default=_msgpack_default, autoreset=False)
        try:
            packer.pack((obj_id, method, args, kwargs))
        except Exception as err:
            raise _encode_error(err) from None
        view: memoryview = packer.getbuffer()
        if len(view) < BUFFER_PAYLOAD:
            with view:
                return bytes(view)
        return view

    def _decode(
        self, data: bytes | bytearray | memoryview, limits: DecodeLimits
    ) -> tuple[Any, bool]:
        if type(data) is not bytes and type(data) is not bytearray:  # msgpack reads both
            data = _as_bytes(data)
        size = len(data)
        max_elements, max_nesting = limits
        budget = _ElementBudget(max_elements) if size > max_elements else None
        try:
            if budget is not None:
                value = _msgpack_unpack(data, budget, max_len=max_elements)
            elif size > max_nesting:
                # Every item takes at least a byte: a short payload cannot break the
                # budget, but may nest too deep. Counting its containers costs a hook
                # call each; walking it, a look at every item (2x the unpacking for a
                # list of 10k numbers).
                count = _ElementBudget(sys.maxsize, max_containers=max_nesting)
                try:
                    value = _msgpack_unpack(data, count)
                except _ManyContainers:
                    value = _msgpack_unpack(data)
                else:
                    return value, count.has_class
            else:
                value = _msgpack_unpack(data)
        except (SerializeError, SecurityError):
            raise
        except ValueError as err:
            if "exceeds max_" in str(err):  # a container header claiming more than the budget
                raise _too_many(max_elements) from None
            raise SerializeError(f"invalid msgpack data: ValueError: {_short(err)}") from None
        except Exception as err:
            raise SerializeError(
                f"invalid msgpack data: {type(err).__name__}: {_short(err)}"
            ) from None
        has_class = budget.has_class if budget is not None else b"__class__" in data
        # Depth: bounded by the size, and by the count of containers when it is known.
        deep = size > max_nesting and (budget is None or budget.containers > max_nesting)
        if deep and not has_class:
            _check_shape(value, limits._replace(max_elements=size))  # depth only
        return value, has_class


# =============================================================================
# Lookup
# =============================================================================

_BY_NAME: Final[dict[str, Serializer]] = {
    s.name: s for s in (SerpentSerializer(), MarshalSerializer(), JsonSerializer())
}
if _msgpack is not None:
    _BY_NAME["msgpack"] = MsgpackSerializer()
_BY_ID: Final[dict[int, Serializer]] = {s.serializer_id: s for s in _BY_NAME.values()}

#: Names of the serializers usable in this process (msgpack only if installed).
AVAILABLE_SERIALIZERS: Final[tuple[str, ...]] = tuple(_BY_NAME)


def get_serializer(name_or_id: str | int) -> Serializer:
    """The serializer with this name (``"json"``) or wire id (``3``).

    Raises :class:`~remoteobj.errors.SerializeError` for an unknown one, or
    for msgpack when the package is not installed.
    """
    if isinstance(name_or_id, str):
        found = _BY_NAME.get(name_or_id)
    elif isinstance(name_or_id, int) and not isinstance(name_or_id, bool):
        found = _BY_ID.get(name_or_id)
    else:
        found = None
    if found is None:
        if not isinstance(name_or_id, bool) and (
            name_or_id in SERIALIZER_IDS or name_or_id in SERIALIZER_IDS.values()
        ):
            raise SerializeError(f"serializer {name_or_id!r} is not available (not installed)")
        raise SerializeError(f"unknown serializer {name_or_id!r}")
    return found
