"""Pyro URIs: the addresses of remote objects and name-server lookups.

A :class:`URI` is an immutable value, parsed from the same text Pyro5 reads
and printed as the same text Pyro5 prints::

    PYRO:obj@host:port            an object in a daemon on TCP
    PYRO:obj@[::1]:port           ... on an IPv6 address
    PYRO:obj@./u:/path/sock       ... on a Unix domain socket
    PYRONAME:name[@host[:port]]   a name to look up in a name server (port 9090)
    PYROMETA:tag1,tag2[@host[:port]]   objects carrying all these metadata tags

The protocol is case-insensitive and stored upper-cased. Parsing follows the
regular expression of Pyro5's ``core.URI``; where Pyro5 silently accepts text it
then prints differently (an empty host, a port written ``+9`` or ``9_0``, junk
after an IPv6 port) this class refuses it with a message naming the fault, so a
URI always survives ``URI(str(uri)) == uri``.

Differences from Pyro5 worth knowing:

* ``object`` is always a ``str``. For ``PYROMETA`` it is the tag list in a
  canonical order (stripped, de-duplicated, sorted, comma-joined) and
  :attr:`URI.tags` holds the set; Pyro5 keeps a ``set`` and prints it in hash
  order, so equal Pyro5 URIs can print differently. Equality is the same as
  Pyro5's: the tags as a set.
* URIs are hashable and compare equal field by field; they do not order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from remoteobj.errors import RemoteObjError

__all__ = ["NS_PORT", "PROTOCOLS", "URI"]

#: Default port of a name server, used by PYRONAME/PYROMETA URIs with a host but no port.
NS_PORT: Final = 9090
#: The protocols a URI may have.
PROTOCOLS: Final = frozenset({"PYRO", "PYRONAME", "PYROMETA"})

# Pyro5 core.URI.uriRegEx, verbatim: the object part is the shortest run of
# non-blanks before an optional "@location", so "PYRO:a@b@h:9" has object "a".
_URI_RE: Final = re.compile(
    r"(?P<protocol>[Pp][Yy][Rr][Oo][a-zA-Z]*):(?P<object>\S+?)(@(?P<location>.+))?$"
)
# Pyro5 accepts "[" hex digits, colons and "%" "]" ":port"; we also require the
# whole location to match, where Pyro5 ignores anything after the port.
_IPV6_RE: Final = re.compile(r"\[(?P<host>[0-9a-fA-F:%]+)\](?::(?P<port>[0-9]*))?")
_PORT_RE: Final = re.compile(r"[0-9]{1,5}")
_UNIX_PREFIX: Final = "./u:"


def _bad(text: object, why: str) -> RemoteObjError:
    return RemoteObjError(f"invalid uri {text!r}: {why}")


def _port(text: object, port: str | None, default: int | None) -> int | None:
    if not port:
        if default is None:
            raise _bad(text, "missing port")
        return default
    # int() would also take "+9", " 9" and "9_0"; a port is plain decimal digits.
    if not _PORT_RE.fullmatch(port) or int(port) > 65535:
        raise _bad(text, f"bad port {port!r} (expected 0-65535)")
    return int(port)


def _canonical_tags(tags: Any) -> str:
    """Tag text in canonical order from a comma-separated str or an iterable of str."""
    items = tags.split(",") if isinstance(tags, str) else list(tags)
    if not all(isinstance(t, str) for t in items):
        raise RemoteObjError("PYROMETA tags must be strings")
    return ",".join(sorted({t.strip() for t in items}))


@dataclass(frozen=True, slots=True, init=False, repr=False)
class URI:
    """An immutable Pyro URI; ``URI(text)`` parses, ``str(uri)`` prints.

    ``URI(other_uri)`` makes an equal copy. Invalid text raises
    :class:`~remoteobj.errors.RemoteObjError` (``PyroError``) naming the fault:
    unknown protocol, empty object, missing location, missing host, bad port,
    bad IPv6 address or bad socket path.
    """

    #: ``"PYRO"``, ``"PYRONAME"`` or ``"PYROMETA"``.
    protocol: str
    #: Object id (PYRO), name (PYRONAME) or canonical comma-joined tags (PYROMETA).
    object: str
    #: Path of the Unix domain socket, when the location is ``./u:PATH``.
    sockname: str | None
    #: Host name or address (IPv6 without brackets), when the location is TCP.
    host: str | None
    #: TCP port, when the location is TCP.
    port: int | None

    def __init__(self, uri: str | URI) -> None:
        if isinstance(uri, URI):
            self._set(uri.protocol, uri.object, uri.sockname, uri.host, uri.port)
            return
        if not isinstance(uri, str):
            raise TypeError(f"URI() takes a str or URI, not {type(uri).__name__}")
        match = _URI_RE.match(uri)
        if match is None:
            if ":" not in uri or not uri.lower().startswith("pyro"):
                raise _bad(uri, "expected PYRO:, PYRONAME: or PYROMETA: followed by an object")
            raise _bad(uri, "empty object name")
        protocol = match.group("protocol").upper()
        obj = match.group("object")
        location = match.group("location")
        if protocol not in PROTOCOLS:
            raise _bad(uri, f"unknown protocol {protocol!r}")
        if protocol == "PYRO":
            if not location:
                raise _bad(uri, "missing location (@host:port or @./u:path)")
            sockname, host, port = self._parse_location(uri, location, None)
        else:
            if protocol == "PYROMETA":
                obj = _canonical_tags(obj)
            sockname, host, port = (
                self._parse_location(uri, location, NS_PORT) if location else (None, None, None)
            )
        self._set(protocol, obj, sockname, host, port)

    @staticmethod
    def _parse_location(
        text: str, location: str, default_port: int | None
    ) -> tuple[str | None, str | None, int | None]:
        if location.startswith(_UNIX_PREFIX):
            sockname = location[len(_UNIX_PREFIX) :]
            if not sockname or ":" in sockname:
                raise _bad(text, "bad unix socket path (empty or containing ':')")
            return sockname, None, None
        if location.startswith("["):
            v6 = _IPV6_RE.fullmatch(location)
            if v6 is None:
                raise _bad(text, "bad IPv6 location (expected [address]:port)")
            return None, v6.group("host"), _port(text, v6.group("port"), default_port)
        host, _, port = location.partition(":")
        if not host:
            raise _bad(text, "missing host")
        return None, host, _port(text, port, default_port)

    def _set(
        self, protocol: str, obj: str, sockname: str | None, host: str | None, port: int | None
    ) -> None:
        # The dataclass is frozen: fields are written once, here, bypassing __setattr__.
        setter = object.__setattr__
        setter(self, "protocol", protocol)
        setter(self, "object", obj)
        setter(self, "sockname", sockname)
        setter(self, "host", host)
        setter(self, "port", port)

    # --- constructors ----------------------------------------------------------

    @classmethod
    def for_object(cls, object_id: str, host: str, port: int) -> URI:
        """The ``PYRO:`` URI of object ``object_id`` in a daemon at ``host:port``.

        An IPv6 host may be given with or without brackets.
        """
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise RemoteObjError(f"bad port {port!r} (expected 0-65535)")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise RemoteObjError("missing host")
        location = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return cls._checked(object_id, location)

    @classmethod
    def for_unix(cls, object_id: str, path: str) -> URI:
        """The ``PYRO:`` URI of object ``object_id`` in a daemon on Unix socket ``path``."""
        if not path or ":" in path:
            raise RemoteObjError(f"bad unix socket path {path!r} (empty or containing ':')")
        return cls._checked(object_id, _UNIX_PREFIX + path)

    @classmethod
    def _checked(cls, object_id: str, location: str) -> URI:
        # An id with blanks or "@" would print as text that parses differently.
        if not object_id or "@" in object_id or any(c.isspace() for c in object_id):
            raise RemoteObjError(
                f"bad object id {object_id!r} (empty, or containing '@' or blanks)"
            )
        uri = cls(f"PYRO:{object_id}@{location}")
        if uri.object != object_id:
            raise RemoteObjError(f"bad object id {object_id!r}")
        return uri

    @classmethod
    def from_state(cls, state: Sequence[Any]) -> URI:
        """Rebuild a URI from Pyro5's serialized state ``[protocol, object, sockname, host, port]``.

        The state comes off the wire, so every field is type-checked; for
        ``PYROMETA`` the object may be a set, list or tuple of tags.
        """
        if not isinstance(state, list | tuple) or len(state) != 5:
            raise RemoteObjError("invalid URI state (expected 5 fields)")
        protocol, obj, sockname, host, port = state
        if not isinstance(protocol, str) or protocol.upper() not in PROTOCOLS:
            raise RemoteObjError(f"invalid URI state: protocol {protocol!r}")
        protocol = protocol.upper()
        if protocol == "PYROMETA" and isinstance(obj, set | frozenset | list | tuple | str):
            try:
                obj = _canonical_tags(obj)
            except RemoteObjError:
                raise RemoteObjError("invalid URI state: PYROMETA tags must be strings") from None
        if not isinstance(obj, str) or not obj or any(c.isspace() for c in obj):
            raise RemoteObjError("invalid URI state: object")
        if not (
            sockname is None or (isinstance(sockname, str) and sockname and ":" not in sockname)
        ):
            raise RemoteObjError("invalid URI state: sockname")
        if not (host is None or (isinstance(host, str) and host)):
            raise RemoteObjError("invalid URI state: host")
        if port is not None and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535
        ):
            raise RemoteObjError("invalid URI state: port")
        if (host is None) != (port is None) or (host is not None and sockname is not None):
            raise RemoteObjError("invalid URI state: inconsistent location")
        if protocol == "PYRO" and host is None and sockname is None:
            raise RemoteObjError("invalid URI state: PYRO needs a location")
        uri = cls.__new__(cls)
        uri._set(protocol, obj, sockname, host, port)
        return uri

    def to_state(self) -> tuple[str, str | set[str], str | None, str | None, int | None]:
        """Pyro5's state tuple ``(protocol, object, sockname, host, port)``.

        For ``PYROMETA`` the object is a ``set`` of tags, as in Pyro5.
        """
        obj: str | set[str] = set(self.tags) if self.protocol == "PYROMETA" else self.object
        return (self.protocol, obj, self.sockname, self.host, self.port)

    # --- derived views -----------------------------------------------------------

    @property
    def location(self) -> str | None:
        """``host:port``, ``[v6addr]:port``, ``./u:path``, or ``None`` when there is none."""
        if self.host:
            if ":" in self.host:
                return f"[{self.host}]:{self.port}"
            return f"{self.host}:{self.port}"
        if self.sockname:
            return _UNIX_PREFIX + self.sockname
        return None

    @property
    def tags(self) -> frozenset[str]:
        """The metadata tags of a ``PYROMETA`` URI (empty for other protocols)."""
        if self.protocol != "PYROMETA":
            return frozenset()
        return frozenset(self.object.split(","))

    def __str__(self) -> str:
        location = self.location
        if location:
            return f"{self.protocol}:{self.object}@{location}"
        return f"{self.protocol}:{self.object}"

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"
