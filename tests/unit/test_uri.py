"""URI parsing and printing, checked against Pyro5's own ``core.URI``."""

from __future__ import annotations

import copy

import Pyro5.core
import Pyro5.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

from remoteobj.errors import RemoteObjError
from remoteobj.uri import NS_PORT, URI

# Text both libraries accept, with what they print for it.
SAME_AS_PYRO5 = [
    "PYRO:obj@host:9999",
    "pyro:obj@host:9999",
    "PyRo:Pyro.NameServer@localhost:9090",
    "PYRO:obj_123abc@127.0.0.1:0",
    "PYRO:obj@[::1]:9999",
    "PYRO:obj@[fe80::1%25]:9",
    "PYRO:obj@[2001:db8::ff00:42:8329]:65535",
    "PYRO:obj@./u:/tmp/pyro.sock",
    "PYRO:a:b@host:1",
    "PYRO:a@b@host:9",  # the object is the shortest run before "@"
    "PYRONAME:name",
    "pyroname:name",
    "PYRONAME:name@host",
    "PYRONAME:name@host:",
    "PYRONAME:name@host:1234",
    "PYRONAME:name@[::1]",
    "PYRONAME:name@[::1]:1234",
    "PYRONAME:name@./u:/tmp/ns.sock",
    "PYRONAME:name@",  # "@" with nothing after it is part of the name, as in Pyro5
    "PYROMETA:tag",
    "PYROMETA:tag@host",
    "PYROMETA:tag@host:1234",
    "PYRO:x@h:9\n",  # Pyro5's regex ends in "$", which allows one trailing newline
]


@pytest.mark.parametrize("text", SAME_AS_PYRO5)
def test_parse_and_print_like_pyro5(text: str) -> None:
    ours = URI(text)
    theirs = Pyro5.core.URI(text)
    assert str(ours) == str(theirs)
    assert ours.to_state() == theirs.__getstate__()
    assert ours.location == theirs.location
    assert (ours.protocol, ours.sockname, ours.host, ours.port) == (
        theirs.protocol,
        theirs.sockname,
        theirs.host,
        theirs.port,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PYRO:obj@host:9999", ("PYRO", "obj", "host", 9999, None, "host:9999")),
        ("PYRO:obj@[::1]:1", ("PYRO", "obj", "::1", 1, None, "[::1]:1")),
        ("PYRO:obj@./u:/s", ("PYRO", "obj", None, None, "/s", "./u:/s")),
        ("PYRONAME:n", ("PYRONAME", "n", None, None, None, None)),
        ("PYRONAME:n@h", ("PYRONAME", "n", "h", NS_PORT, None, f"h:{NS_PORT}")),
        ("PYROMETA:b,a@h:5", ("PYROMETA", "a,b", "h", 5, None, "h:5")),
    ],
)
def test_fields(text: str, expected: tuple[object, ...]) -> None:
    """(protocol, object, host, port, sockname, location)"""
    uri = URI(text)
    assert (uri.protocol, uri.object, uri.host, uri.port, uri.sockname, uri.location) == expected


def test_default_name_server_port_is_pyro5s() -> None:
    assert NS_PORT == Pyro5.core.URI("PYRONAME:x@h").port == 9090


def test_pyrometa_tags_are_a_canonical_set() -> None:
    uri = URI("PYROMETA:b,a,b,c")
    assert uri.tags == frozenset({"a", "b", "c"})
    assert uri.object == "a,b,c"
    assert str(uri) == "PYROMETA:a,b,c"
    # Pyro5 holds the same set (and prints it in hash order).
    assert Pyro5.core.URI("PYROMETA:b,a,b,c").object == set(uri.tags)
    assert URI("PYROMETA:c,b,a") == uri
    assert hash(URI("PYROMETA:c,b,a")) == hash(uri)
    assert URI("PYRO:x@h:1").tags == frozenset()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected PYRO:"),
        ("obj@host:9", "expected PYRO:"),
        ("http://example.com", "expected PYRO:"),
        ("PYRO:", "empty object"),
        ("PYRO:@h:1", "missing location"),  # the whole "@h:1" reads as the object
        ("PYROX:x@h:1", "unknown protocol 'PYROX'"),
        ("PYRO:x", "missing location"),
        ("PYRO:x@host", "missing port"),
        ("PYRO:x@host:", "missing port"),
        ("PYRO:x@:9", "missing host"),
        ("PYRO:x@host:port", "bad port 'port'"),
        ("PYRO:x@host:+9", "bad port '+9'"),
        ("PYRO:x@host:9_0", "bad port '9_0'"),
        ("PYRO:x@host: 9", "bad port ' 9'"),
        ("PYRO:x@host:65536", "bad port '65536'"),
        ("PYRO:x@host:123456", "bad port"),
        ("PYRO:x@[::1]", "missing port"),
        ("PYRO:x@[::1]:9xyz", "bad IPv6"),
        ("PYRO:x@[[::1]]:9", "bad IPv6"),
        ("PYRO:x@[host]:9", "bad IPv6"),
        ("PYRO:x@./u:", "bad unix socket path"),
        ("PYRO:x@./u:/a:b", "bad unix socket path"),
        ("PYRONAME:x@h:99999", "bad port"),
    ],
)
def test_invalid_text_names_the_fault(text: str, why: str) -> None:
    with pytest.raises(RemoteObjError, match="invalid uri") as info:
        URI(text)
    assert why in str(info.value)


def test_errors_are_pyro_errors() -> None:
    from remoteobj.errors import PyroError

    with pytest.raises(PyroError):
        URI("PYRO:x")


def test_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        URI(42)  # type: ignore[arg-type]


def test_copy_from_uri_is_equal_and_independent_value() -> None:
    uri = URI("PYRO:obj@host:1")
    again = URI(uri)
    assert again == uri
    assert hash(again) == hash(uri)
    assert again is not uri
    assert copy.copy(uri) == uri
    assert copy.deepcopy(uri) == uri


def test_frozen() -> None:
    uri = URI("PYRO:obj@host:1")
    with pytest.raises(AttributeError):
        uri.port = 2  # type: ignore[misc]


def test_equality_and_hash() -> None:
    a = URI("pyro:obj@host:1")
    assert a == URI("PYRO:obj@host:1")
    assert a != URI("PYRO:obj@host:2")
    assert a != URI("PYRO:other@host:1")
    assert a != "PYRO:obj@host:1"
    assert len({a, URI("PYRO:obj@host:1"), URI("PYRO:obj@host:2")}) == 2


def test_repr_round_trips_the_text() -> None:
    assert repr(URI("PYRO:obj@[::1]:5")) == "URI('PYRO:obj@[::1]:5')"


def test_for_object() -> None:
    assert str(URI.for_object("obj", "localhost", 5)) == "PYRO:obj@localhost:5"
    assert str(URI.for_object("obj", "::1", 5)) == "PYRO:obj@[::1]:5"
    assert str(URI.for_object("obj", "[::1]", 5)) == "PYRO:obj@[::1]:5"
    assert URI.for_object("obj", "::1", 5).host == "::1"
    assert URI.for_object("o", "h", 0).port == 0


@pytest.mark.parametrize(
    ("object_id", "host", "port"),
    [
        ("", "h", 1),
        ("a b", "h", 1),
        ("a@b", "h", 1),
        ("o", "", 1),
        ("o", "[]", 1),
        ("o", "h", -1),
        ("o", "h", 65536),
        ("o", "h", True),
    ],
)
def test_for_object_rejects(object_id: str, host: str, port: int) -> None:
    with pytest.raises(RemoteObjError):
        URI.for_object(object_id, host, port)


def test_for_unix() -> None:
    uri = URI.for_unix("obj", "/tmp/s.sock")
    assert str(uri) == "PYRO:obj@./u:/tmp/s.sock"
    assert (uri.sockname, uri.host, uri.port) == ("/tmp/s.sock", None, None)
    for bad in ("", "/a:b"):
        with pytest.raises(RemoteObjError, match="unix socket path"):
            URI.for_unix("obj", bad)


def test_state_round_trip_and_pyro5_state() -> None:
    theirs = Pyro5.core.URI("PYROMETA:a,b@h:3")
    ours = URI.from_state(theirs.__getstate__())
    assert ours == URI("PYROMETA:a,b@h:3")
    assert URI.from_state(list(URI("PYRO:o@h:1").to_state())) == URI("PYRO:o@h:1")
    assert URI.from_state(("PYROMETA", ["b", "a"], None, None, None)).object == "a,b"
    # Pyro5 can rebuild ours.
    back = Pyro5.core.URI.__new__(Pyro5.core.URI)
    back.__setstate__(URI("PYRO:o@[::1]:1").to_state())
    assert str(back) == "PYRO:o@[::1]:1"


@pytest.mark.parametrize(
    "state",
    [
        None,
        (),
        ("PYRO", "o", None, "h"),
        ("HTTP", "o", None, "h", 1),
        (1, "o", None, "h", 1),
        ("PYRO", "", None, "h", 1),
        ("PYRO", "o o", None, "h", 1),
        ("PYRO", 5, None, "h", 1),
        ("PYRO", "o", None, "h", "1"),
        ("PYRO", "o", None, "h", True),
        ("PYRO", "o", None, "h", 70000),
        ("PYRO", "o", None, "h", None),
        ("PYRO", "o", None, None, 5),
        ("PYRO", "o", None, "", 5),
        ("PYRO", "o", "/s", "h", 5),
        ("PYRO", "o", "a:b", None, None),
        ("PYRO", "o", None, None, None),
        ("PYROMETA", [1], None, None, None),
    ],
)
def test_from_state_rejects_bad_state(state: object) -> None:
    with pytest.raises(RemoteObjError, match="URI state"):
        URI.from_state(state)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------

_ident = st.text(
    st.characters(codec="utf-8", exclude_categories=["Z", "C"], exclude_characters="@"), min_size=1
)
_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)


@given(_ident, _host, st.integers(0, 65535))
def test_for_object_round_trips_through_text(object_id: str, host: str, port: int) -> None:
    uri = URI.for_object(object_id, host, port)
    assert URI(str(uri)) == uri
    assert (uri.object, uri.host, uri.port) == (object_id, host, port)
    assert str(Pyro5.core.URI(str(uri))) == str(uri)


@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_pyro_error(text: str) -> None:
    try:
        uri = URI(text)
    except RemoteObjError:
        return
    assert URI(str(uri)) == uri
    # Whatever we accept, Pyro5 accepts and prints the same way (PYROMETA order aside).
    theirs = Pyro5.core.URI(text)
    if uri.protocol != "PYROMETA":
        assert str(theirs) == str(uri)
    assert (theirs.host, theirs.port, theirs.sockname) == (uri.host, uri.port, uri.sockname)


@given(
    st.sampled_from(["PYRO", "pyro", "PYRONAME", "PyroName", "PYROMETA"]),
    _ident.filter(lambda s: "," not in s),
    st.one_of(
        st.none(),
        st.tuples(_host, st.one_of(st.none(), st.integers(0, 65535))),
        st.from_regex(r"/[a-z/]{1,10}", fullmatch=True),
    ),
)
def test_composed_uris_match_pyro5(protocol: str, obj: str, where: object) -> None:
    if where is None:
        text = f"{protocol}:{obj}"
    elif isinstance(where, str):
        text = f"{protocol}:{obj}@./u:{where}"
    else:
        host, port = where  # type: ignore[misc]
        shown = f"[{host}]" if ":" in host else host
        text = f"{protocol}:{obj}@{shown}" + ("" if port is None else f":{port}")
    try:
        theirs = Pyro5.core.URI(text)
    except Pyro5.errors.PyroError:
        with pytest.raises(RemoteObjError):
            URI(text)
        return
    ours = URI(text)
    assert str(ours) == str(theirs)
    assert ours.to_state() == theirs.__getstate__()
