"""The daemon: registered objects and the dispatch of decoded calls.

A :class:`Daemon` holds objects under ids, answers handshakes and turns an
INVOKE message into a call of user code and a RESULT message. It opens no
sockets itself: :mod:`remoteobj.server` does the I/O and calls
:meth:`Daemon.handle_connect`, :meth:`Daemon.prepare`, :meth:`Daemon.run_sync`
and :meth:`Daemon.run_async`.

The only way into user code is :meth:`Daemon.prepare`, and it checks every
name against the exposed members of the target's class
(:func:`remoteobj.exposure.exposed_members`): plain calls, oneway calls,
batches, property reads and writes alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import socket
import threading
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextvars import Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from . import protocol as p
from .auth import AUTH_KEY, ServerAuth
from .blob import unpack_blob_call
from .config import Config
from .context import CallContext, current_context, reset_context, set_context
from .errors import (
    DaemonError,
    ProtocolError,
    RemoteObjError,
    SecurityError,
    SerializeError,
)
from .exposure import ExposedMembers, expose, exposed_members, instance_mode_of
from .serializers import (
    AutoproxyResolver,
    DecodeLimits,
    ExceptionWrapper,
    Serializer,
    get_serializer,
    push_autoproxy,
    reset_autoproxy,
)
from .streams import STREAM_ANNOTATION, STREAM_RESULT_TEXT, StreamRegistry, is_stream
from .uri import URI

if TYPE_CHECKING:
    from .client import Proxy
    from .server import Server

__all__ = [
    "DAEMON_NAME",
    "Call",
    "Daemon",
    "DaemonObject",
    "Session",
    "track_resource",
    "untrack_resource",
]

log = logging.getLogger(__name__)

#: Object id of the daemon's own built-in object.
DAEMON_NAME = "Pyro.Daemon"
MARSHAL_ID = 2
_CORR_PREFIX = os.urandom(8)
_corr_counter = itertools.count(1)
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - recognised, not bound to
BATCH_METHOD = "<batch>"
#: CONNECTOK payloads a daemon keeps (one per serializer, object id and response).
CONNECT_REPLIES_KEPT = 256


class Session:
    """What the daemon keeps per client connection (handed in by the server)."""

    __slots__ = (
        "address",
        "auth_nonce",
        "authenticated",
        "closed",
        "corr_id",
        "handshake",
        "handshaken",
        "instances",
        "resources",
        "streams",
    )

    def __init__(self, address: Any) -> None:
        self.address = address
        self.handshake: Any = None
        self.handshaken = False
        self.corr_id = p.NO_CORR_ID
        #: Session-mode instances, per registered class.
        self.instances: dict[type[Any], Any] = {}
        #: Ids of the streamed results this connection reads.
        self.streams: set[str] = set()
        #: Whether the connection has closed (set when the server releases it).
        self.closed = False
        #: Objects closed when the connection closes (:func:`track_resource`).
        self.resources: weakref.WeakSet[Any] = weakref.WeakSet()
        #: The auth challenge this connection was sent and must answer (remoteobj.auth).
        self.auth_nonce: bytes | None = None
        #: Whether the client proved it knows ``Config.auth_secret``.
        self.authenticated = False


@dataclass(slots=True)
class _Registration:
    target: Any  # an instance, or a class instantiated per instance mode
    members: ExposedMembers
    is_class: bool
    single: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(slots=True)
class Call:
    """A decoded, access-checked request, ready to run on a thread or the loop."""

    msg: p.Message
    serializer: Serializer
    ctx: CallContext
    func: Callable[..., Any]
    args: Any
    kwargs: dict[str, Any]
    is_coroutine: bool
    oneway: bool
    batch: list[tuple[Callable[..., Any], Any, dict[str, Any]]] | None = None


@expose
class DaemonObject:
    """The built-in ``Pyro.Daemon`` object every daemon serves, as in Pyro5."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def registered(self) -> list[str]:
        """Ids of every registered object."""
        return self._daemon.registered()

    def ping(self) -> None:
        """Does nothing; a round trip proves the daemon is alive."""

    def info(self) -> str:
        """A line describing this daemon."""
        d = self._daemon
        count = len(d.registered())
        return f"{type(d).__name__} bound on {d.location}, with {count} objects registered"

    def get_metadata(self, objectId: str) -> dict[str, set[str]]:  # noqa: N803 - Pyro5's name
        """The exposed members of a registered object (Pyro5's metadata dict)."""
        return self._daemon.metadata(objectId)

    def get_next_stream_item(self, streamId: str) -> Any:  # noqa: N803 - Pyro5's name
        """The next item of a streamed result (a remote ``StopIteration`` at its end)."""
        return self._daemon._streams.next_item(streamId, current_context().connection)

    def close_stream(self, streamId: str) -> None:  # noqa: N803 - Pyro5's name
        """Stop a streamed result early (clients send it oneway)."""
        self._daemon._streams.close(streamId)


class Daemon:
    """Serves registered objects to remote callers (Pyro5-compatible).

    ::

        daemon = Daemon(host="127.0.0.1", port=0)
        uri = daemon.register(Greeter(), "example.greeting")
        daemon.request_loop()          # or: async with daemon: await daemon.serve()

    The constructor opens nothing. :meth:`bind` binds the listening socket
    (``register`` calls it when it needs the address for the URI);
    :meth:`request_loop` / :meth:`serve` serve until :meth:`shutdown`.
    Coroutine methods run on the daemon's event loop, other methods in worker
    threads, so a blocking method never stalls other clients.

    With ``Config.auth_secret`` set, clients must prove they know the secret
    in the handshake (:mod:`remoteobj.auth`); with ``Config.ssl``, the daemon
    speaks TLS only (:mod:`remoteobj.tls`).
    """

    #: With ``Config.auth_secret``: refuse clients that do not authenticate. A
    #: subclass that sets it False admits them unauthenticated and guards single
    #: methods with :func:`remoteobj.auth.require_authenticated` (the name server).
    require_auth: ClassVar[bool] = True

    def __init__(
        self,
        host: str | None = None,
        port: int = 0,
        *,
        unixsocket: str | None = None,
        config: Config | None = None,
        nathost: str | None = None,
        natport: int | None = None,
    ) -> None:
        self.config = config if config is not None else Config.default()
        if unixsocket is not None and (host is not None or port):
            raise ValueError("give either host/port or unixsocket, not both")
        self._host = host if host is not None else self.config.host
        self._port = port
        self._unixsocket = unixsocket
        self._nathost = nathost
        self._natport = natport
        self._objects: dict[str, _Registration] = {}
        self._ids_by_instance: dict[int, str] = {}
        self._lock = threading.Lock()
        self._limits = DecodeLimits.from_config(self.config)
        secret = self.config.auth_secret
        self._auth = ServerAuth(secret, required=self.require_auth) if secret else None
        self._serializers: dict[int, Serializer] = {}
        for name in self.config.accepted_serializers:
            with contextlib.suppress(SerializeError):  # msgpack may not be installed
                ser = get_serializer(name)
                self._serializers[ser.serializer_id] = ser
        #: CONNECTOK payloads already made (see _connect_payload).
        self._connect_replies: dict[tuple[int, str, str | None], tuple[ExposedMembers, bytes]] = {}
        #: Whether a subclass overrides annotations() (replies ask it only then).
        self._own_annotations = type(self).annotations is not Daemon.annotations
        self._sock: socket.socket | None = None
        self._server: Server | None = None
        self._lease_keeper: Any = None
        self._stop_before_start: float | None = None
        #: Open streamed results (remote iterators).
        self._streams = StreamRegistry(self.config)
        # Bound once: pushed for every call so registered objects travel as proxies.
        self._autoproxy_resolver: AutoproxyResolver = self._autoproxy_dict
        self.add(DaemonObject(self), DAEMON_NAME)

    # --- registry -------------------------------------------------------------

    def register(
        self,
        obj: Any,
        object_id: str | None = None,
        *,
        force: bool = False,
        name: str | None = None,
        metadata: set[str] | None = None,
        ns: Any = None,
    ) -> URI:
        """Register an object (or a class, instantiated per its ``@behavior``) under an id.

        Returns the object's ``PYRO:`` URI; binds the daemon first if it is not
        bound yet, since the URI carries the address. Without ``object_id`` one
        is made up (``obj_<hex>``). Registering an id twice raises
        :class:`DaemonError` unless ``force`` is set.

        With ``name`` the object is also registered in the name server (``ns``:
        a proxy or URI of one; by default the one :func:`remoteobj.locate_ns`
        finds) under a lease of ``Config.ns_lease`` seconds that this daemon
        renews every ``Config.ns_renew`` seconds: if the process dies or hangs,
        the name disappears; :meth:`close` removes it at once.
        """
        uri = self.uri_for(self.add(obj, object_id, force=force))
        if name is not None:
            self._leases(ns).add(name, uri, metadata)
        return uri

    def _leases(self, ns: Any) -> Any:
        if self._lease_keeper is None:
            from .naming import LeaseKeeper  # the name service sits above daemons

            # With ns=None (or True) the keeper locates the name server itself and owns
            # that connection (its timeout capped below the renewal interval).
            self._lease_keeper = LeaseKeeper(None if ns is None or ns is True else ns, self.config)
            self._lease_keeper.start()
        return self._lease_keeper

    def add(self, obj: Any, object_id: str | None = None, *, force: bool = False) -> str:
        """Register like :meth:`register`, but return the id and leave the daemon unbound."""
        if object_id is None:
            object_id = f"obj_{uuid.uuid4().hex}"
        if not isinstance(object_id, str) or not object_id:
            raise DaemonError("object id must be a non-empty string")
        is_class = inspect.isclass(obj)
        members = exposed_members(obj if is_class else type(obj))
        if not members.methods and not members.attrs:
            raise DaemonError(
                f"{obj!r} exposes nothing: decorate the class or its members with @expose"
            )
        with self._lock:
            if not force and object_id in self._objects:
                raise DaemonError(f"object or class already registered: {object_id}")
            if not force and not is_class and id(obj) in self._ids_by_instance:
                raise DaemonError(f"object already registered: {obj!r}")
            self._objects[object_id] = _Registration(obj, members, is_class)
            # Classes too: their instances travel as proxies to the class (autoproxy).
            self._ids_by_instance[id(obj)] = object_id
        return object_id

    def unregister(self, obj_or_id: Any) -> None:
        """Remove a registered object (by id or by the object itself); unknown ones are ignored."""
        with self._lock:
            object_id = self._id_of(obj_or_id)
            if object_id is None or object_id == DAEMON_NAME:
                return
            reg = self._objects.pop(object_id, None)
            if reg is not None and self._ids_by_instance.get(id(reg.target)) == object_id:
                del self._ids_by_instance[id(reg.target)]

    def _id_of(self, obj_or_id: Any) -> str | None:
        if isinstance(obj_or_id, str):
            return obj_or_id if obj_or_id in self._objects else None
        if isinstance(obj_or_id, URI):
            return obj_or_id.object if obj_or_id.object in self._objects else None
        found = self._ids_by_instance.get(id(obj_or_id))
        if found is None and inspect.isclass(obj_or_id):
            for oid, reg in self._objects.items():
                if reg.target is obj_or_id:
                    return oid
        return found

    def uri_for(self, obj_or_id: Any) -> URI:
        """The ``PYRO:`` URI of a registered object (or of an id, registered or not)."""
        object_id = obj_or_id if isinstance(obj_or_id, str) else self._id_of(obj_or_id)
        if object_id is None:
            raise DaemonError(f"not registered: {obj_or_id!r}")
        self.bind()
        if self._unixsocket is not None:
            return URI.for_unix(object_id, self._unixsocket)
        host, port = self._advertised()
        return URI.for_object(object_id, host, port)

    def proxy_for(self, obj_or_id: Any) -> Proxy:
        """A proxy for a registered object, knowing its metadata (Pyro5's ``proxyFor``).

        Pass it as an argument (a callback, say) or return it: it travels as
        Pyro5's proxy dict with the full metadata.
        """
        from . import client  # proxies sit beside daemons, not below them

        object_id = obj_or_id if isinstance(obj_or_id, str) else self._id_of(obj_or_id)
        reg = self._objects.get(object_id) if object_id is not None else None
        if object_id is None or reg is None:
            raise DaemonError(f"not registered: {obj_or_id!r}")
        proxy = client.Proxy(self.uri_for(object_id), config=self.config)
        members = reg.members
        meta = client.RemoteMeta(members.methods, members.oneway, members.attrs)
        object.__setattr__(proxy, "_preset_meta", meta)
        return proxy

    @contextlib.contextmanager
    def autoproxy(self) -> Iterator[None]:
        """Within the block, objects registered here travel as proxies to them.

        Calls served by this daemon do this on their own (results, stream
        items, arguments of calls they make); client code that passes a
        registered object (a callback) as an argument uses this block, or
        :meth:`proxy_for`.
        """
        token = push_autoproxy(self._autoproxy_resolver)
        try:
            yield
        finally:
            reset_autoproxy(token)

    def _autoproxy_dict(self, obj: Any) -> dict[str, Any] | None:
        """Pyro5's proxy dict for an object registered here (or an instance of a
        registered class), else ``None``. Called by the serializers."""
        if self._sock is None:
            return None  # not bound (or closed): nobody could reach the object
        object_id = self._ids_by_instance.get(id(obj))
        if object_id is None:
            object_id = self._ids_by_instance.get(id(type(obj)))
            if object_id is None:
                return None
            reg = self._objects.get(object_id)
            if reg is None or not reg.is_class or reg.target is not type(obj):
                return None
        else:
            reg = self._objects.get(object_id)
            if reg is None or reg.target is not obj:
                return None
        members = reg.members
        return {
            "__class__": "Pyro5.client.Proxy",
            "state": (
                str(self.uri_for(object_id)),
                tuple(sorted(members.oneway)),
                tuple(sorted(members.methods)),
                tuple(sorted(members.attrs)),
                self.config.handshake,
                None,  # no serializer preference: the receiver uses its own
            ),
        }

    def registered(self) -> list[str]:
        """Ids of every registered object, the built-in ``Pyro.Daemon`` included."""
        with self._lock:
            return list(self._objects)

    def metadata(self, object_id: str) -> dict[str, set[str]]:
        """Pyro5's metadata dict of a registered object; :class:`DaemonError` if unknown."""
        reg = self._objects.get(object_id)
        if reg is None:
            raise DaemonError("unknown object")
        return reg.members.as_meta()

    # --- addresses and lifecycle ------------------------------------------------

    def bind(self) -> None:
        """Bind and listen (once). Idempotent; ``register`` and ``serve`` call it."""
        if self._sock is not None:
            return
        from .server import listen  # local import: the registry must not need the I/O layer

        with self._lock:  # uri_for() and serve() may race from two threads
            if self._sock is None:
                self._sock = listen(self._host, self._port, self._unixsocket, self.config)

    @property
    def sock(self) -> socket.socket:
        """The listening socket (binding it if needed)."""
        self.bind()
        assert self._sock is not None
        return self._sock

    def _advertised(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        if host in _WILDCARDS:  # bound to every interface: advertise a name peers can reach
            host = self._host if self._host not in _WILDCARDS else socket.gethostname()
        return self._nathost or host, self._natport or port

    @property
    def location(self) -> str:
        """``host:port`` (``[v6]:port``) or ``./u:path`` this daemon serves on."""
        if self._unixsocket is not None:
            return f"./u:{self._unixsocket}"
        host, port = self._advertised()
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def serve(self) -> None:
        """Serve on the running event loop until :meth:`shutdown` (asyncio programs)."""
        from .server import Server

        self.bind()
        if self._server is None or self._server.finished:
            self._server = Server(self, self.sock)
            if self._stop_before_start is not None:
                self._server.stop(self._stop_before_start)
                self._stop_before_start = None
        self._streams.attach(asyncio.get_running_loop())
        try:
            await self._server.serve()
        finally:
            self._streams.close_all()  # nobody can read them any more

    def request_loop(self) -> None:
        """Serve in this thread until :meth:`shutdown` (uvloop when installed)."""
        from .server import run_loop

        run_loop(self.serve)

    def shutdown(self, grace: float | None = None) -> None:
        """Stop serving: refuse new connections, let calls in flight finish for up to
        ``grace`` seconds (``Config.shutdown_grace`` by default), then close.
        Safe to call from any thread or a signal handler; returns at once."""
        grace = self.config.shutdown_grace if grace is None else grace
        server = self._server
        if server is None:
            self._stop_before_start = grace  # remembered: the next serve() stops at once
        else:
            server.stop(grace)

    def close(self) -> None:
        """Shut down, remove this daemon's names from the name server, release the socket."""
        self.shutdown(0)
        server = self._server
        if server is not None:
            server.wait_finished(5.0)  # from another thread: let the loop let go of the socket
        self._streams.close_all()
        keeper, self._lease_keeper = self._lease_keeper, None
        if keeper is not None:
            keeper.stop(unregister=True)
        if (self._server is None or self._server.finished) and self._sock is not None:
            self._sock.close()
            self._sock = None
            if self._unixsocket is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._unixsocket)

    def __enter__(self) -> Daemon:
        self.bind()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Daemon:
        self.bind()
        return self

    async def __aexit__(self, *exc: object) -> None:
        server = self._server
        self.shutdown()
        if server is not None:
            await server.wait_closed()
        self.close()

    # --- hooks for subclasses -------------------------------------------------------

    def validate_handshake(self, session: Session, data: Any) -> Any:
        """Accept or refuse a new connection; override to check ``data``.

        Return what the client receives as handshake response, or raise to
        refuse (the client gets CONNECTFAIL with the exception text). Runs on
        the event loop: it must not block.
        """
        return "hello"

    def client_disconnected(self, session: Session) -> None:
        """Called when a client connection closes; override to clean up."""

    # --- protocol handling (called by the server) -------------------------------

    def release_session(self, session: Session) -> None:
        """A connection closed: drop its session-mode instances and let its streams
        linger (``Config.iter_stream_linger``) or close, then call
        :meth:`client_disconnected`. Called by the server on the event loop."""
        session.instances.clear()
        resources = list(session.resources)
        session.resources.clear()
        try:
            self._streams.release(session)
            if resources:  # user code: not on the event loop
                self._streams.offload(lambda: _close_resources(resources))
        finally:
            self.client_disconnected(session)

    def handle_connect(self, session: Session, msg: p.Message) -> tuple[bytes, bool]:
        """Answer a CONNECT: ``(CONNECTOK frame, True)`` or ``(CONNECTFAIL frame, False)``.

        With ``Config.auth_secret`` the first CONNECT may get an authentication
        challenge: a CONNECTFAIL after which ``session.auth_nonce`` is set and
        the connection stays open for the answer (see :mod:`remoteobj.auth`).
        """
        session.corr_id = msg.corr_id if msg.flags & p.FLAGS_CORR_ID else _new_corr_id()
        ser = self._serializers.get(msg.serializer_id)
        challenged, session.auth_nonce = session.auth_nonce, None  # one answer per challenge
        try:
            if ser is None:
                raise SerializeError(f"serializer id {msg.serializer_id} is not accepted")
            data = ser.loads(msg.data, self._limits)
            if not isinstance(data, dict) or not isinstance(data.get("object"), str):
                raise ProtocolError("invalid connect payload")
            proof = None
            if self._auth is not None:
                step, session.auth_nonce = self._auth.step(
                    data.get(AUTH_KEY), challenged, data["object"]
                )
                if step.challenge is not None:
                    challenge = p.Message(
                        p.MSG_CONNECTFAIL,
                        ser.serializer_id,
                        msg.seq,
                        ser.dumps(step.challenge),
                        annotations=self._annotate({}),
                        corr_id=session.corr_id,
                    )
                    return p.encode(challenge), False
                session.authenticated = step.authenticated
                proof = step.proof
            response = self.validate_handshake(session, data.get("handshake"))
            payload = self._connect_payload(ser, data["object"], response, proof)
        except Exception as exc:
            session.auth_nonce = None
            log.debug("handshake refused: %s", exc)
            fail_ser = ser if ser is not None else get_serializer(MARSHAL_ID)
            reply = p.Message(
                p.MSG_CONNECTFAIL,
                fail_ser.serializer_id,
                msg.seq,
                fail_ser.dumps(str(exc)),
                annotations=self._annotate({}),
                corr_id=session.corr_id,
            )
            return p.encode(reply), False
        session.handshake = data.get("handshake")
        session.handshaken = True
        reply = p.Message(
            p.MSG_CONNECTOK,
            ser.serializer_id,
            msg.seq,
            payload,
            annotations=self._annotate({}),
            corr_id=session.corr_id,
        )
        return p.encode(reply), True

    def _connect_payload(
        self, ser: Serializer, object_id: str, response: Any, proof: Any | None
    ) -> bytes:
        """The CONNECTOK payload: the handshake response and the object's metadata.

        Clients that connect to the same object get the same bytes, so they are
        made once per serializer, object class and handshake response (a plain
        string or None) and kept; an auth proof, a subclass's own ``metadata()``
        or a re-registered id of another class makes them anew.
        """
        cacheable = (
            proof is None
            and (response is None or type(response) is str)
            and type(self).metadata is Daemon.metadata
        )
        if not cacheable:
            answer: dict[str, Any] = {"handshake": response, "meta": self.metadata(object_id)}
            if proof is not None:
                answer[AUTH_KEY] = proof
            return ser.dumps(answer)
        reg = self._objects.get(object_id)
        if reg is None:
            raise DaemonError("unknown object")
        key = (ser.serializer_id, object_id, response)
        kept = self._connect_replies.get(key)
        if kept is not None and kept[0] is reg.members:
            return kept[1]
        payload = ser.dumps({"handshake": response, "meta": reg.members.as_meta()})
        if len(self._connect_replies) >= CONNECT_REPLIES_KEPT:
            self._connect_replies.clear()  # ids come and go; start over rather than grow
        self._connect_replies[key] = (reg.members, payload)
        return payload

    def annotations(self) -> dict[str, bytes]:
        """Override to send these annotations with every reply of this daemon, as Pyro5's
        ``Daemon.annotations()``: connect answers, pongs, results and errors. Keys are 4
        ASCII characters, values bytes; they are merged over what a call put in
        ``current_context().response_annotations``. A hook that raises or returns
        something else is logged and left out of the reply, which still goes."""
        return {}

    def _annotate(self, base: dict[str, bytes]) -> dict[str, bytes]:
        """``base`` with :meth:`annotations` merged over it (``base`` itself if none)."""
        if not self._own_annotations:
            return base
        try:
            extra = self.annotations()
            _check_annotations(extra)
        except Exception:
            log.exception("Daemon.annotations() failed; replying without its annotations")
            return base
        return {**base, **extra}

    def connect_fail(self, seq: int, reason: str) -> bytes:
        """A CONNECTFAIL frame (marshal, as Pyro5 sends before it knows the serializer)."""
        ser = get_serializer(MARSHAL_ID)
        return p.encode(
            p.Message(
                p.MSG_CONNECTFAIL,
                MARSHAL_ID,
                seq,
                ser.dumps(reason),
                annotations=self._annotate({}),
                corr_id=_new_corr_id(),
            )
        )

    def pong(self, msg: p.Message) -> bytes:
        """The answer to a PING: same seq and serializer id, payload ``pong``."""
        return p.encode(
            p.Message(
                p.MSG_PING,
                msg.serializer_id,
                msg.seq,
                b"pong",
                annotations=self._annotate({}),
                corr_id=_new_corr_id(),
            )
        )

    def error_reply(
        self, msg: p.Message, exc: BaseException, ser: Serializer | None = None
    ) -> bytes:
        """A RESULT frame carrying ``exc`` (FLAGS_EXCEPTION), in the request's serializer
        when it is one we speak, else serpent."""
        if ser is None:
            ser = self._serializers.get(msg.serializer_id) or get_serializer("serpent")
        corr = msg.corr_id if msg.flags & p.FLAGS_CORR_ID else _new_corr_id()
        return p.encode(
            p.Message(
                p.MSG_RESULT,
                ser.serializer_id,
                msg.seq,
                self._dump_exception(ser, exc, user_code=False),
                p.FLAGS_EXCEPTION,
                self._annotate({}),
                corr_id=corr,
            ),
            compress=self.config.compression,
        )

    def prepare(self, session: Session, msg: p.Message) -> Call | bytes | None:
        """Decode and access-check an INVOKE.

        Returns the :class:`Call` to run, or the bytes of an error reply, or
        ``None`` when the request was oneway and failed (nothing to send).
        """
        ser = self._serializers.get(msg.serializer_id)
        oneway = bool(msg.flags & p.FLAGS_ONEWAY)
        corr = msg.corr_id if msg.flags & p.FLAGS_CORR_ID else _new_corr_id()
        ctx = CallContext(
            corr_id=corr,
            annotations=msg.annotations,
            client_address=session.address,
            handshake=session.handshake,
            seq=msg.seq,
            flags=msg.flags,
            serializer_id=msg.serializer_id,
            connection=session,
        )
        msg.corr_id = corr
        msg.flags |= p.FLAGS_CORR_ID
        try:
            if ser is None:
                raise SerializeError(f"serializer id {msg.serializer_id} is not accepted")
            if msg.flags & p.FLAGS_KEEPSERIALIZED:
                # A SerializedBlob: target from the BLBI annotation, payload kept as is.
                unpacked: Any = unpack_blob_call(msg, self._limits)
                object_id, method, args, kwargs = unpacked
            else:
                object_id, method, args, kwargs = ser.loads_call(msg.data, self._limits)
            kwargs = kwargs or {}
            if not isinstance(method, str) or not isinstance(object_id, str):
                raise ProtocolError("invalid call: object id and method must be strings")
            reg = self._objects.get(object_id)
            if reg is None:
                raise DaemonError("unknown object")
            target = self._instance(reg, session)
            members = reg.members
            if msg.flags & p.FLAGS_BATCH:
                batch = self._prepare_batch(target, members, args)
                return Call(msg, ser, ctx, _run_batch, (), {}, False, oneway, batch)
            func, args = _resolve(target, members, method, args)
            is_coro = method in members.coroutines
            return Call(msg, ser, ctx, func, args, kwargs, is_coro, oneway)
        except Exception as exc:
            if oneway:
                log.info("oneway call from %s refused: %s", session.address, exc)
                return None
            return self.error_reply(msg, exc, ser)

    def _prepare_batch(
        self, target: Any, members: ExposedMembers, calls: Any
    ) -> list[tuple[Callable[..., Any], Any, dict[str, Any]]]:
        if not isinstance(calls, (list, tuple)):
            raise ProtocolError("invalid batch: expected a list of calls")
        if len(calls) > self.config.max_batch:
            raise ProtocolError(
                f"batch too long: {len(calls)} calls, limit {self.config.max_batch}"
            )
        prepared = []
        for item in calls:
            if not isinstance(item, (list, tuple)) or len(item) != 3:
                raise ProtocolError("invalid batch: each call is (method, args, kwargs)")
            method, args, kwargs = item
            if method in members.coroutines:
                raise SerializeError(f"coroutine method {method!r} cannot be batched")
            func, args = _resolve(target, members, method, args)
            prepared.append((func, args, kwargs or {}))
        return prepared

    def _instance(self, reg: _Registration, session: Session) -> Any:
        if not reg.is_class:
            return reg.target
        cls = reg.target
        mode, creator = instance_mode_of(cls)
        make: Callable[[], Any] = (lambda: _created(cls, creator)) if creator else cls
        if mode == "percall":
            return make()
        if mode == "session":
            inst = session.instances.get(cls)
            if inst is None:
                inst = session.instances[cls] = make()
            return inst
        with reg.lock:
            if reg.single is None:
                reg.single = make()
            return reg.single

    def _enter(self, call: Call) -> tuple[Token[CallContext], Any]:
        """Before a call: its context is current and, while it runs and its result
        is encoded, objects registered here travel as proxies (results, and
        arguments of calls it makes). (A pair of plain calls, not a context
        manager: this is on every call's path and a generator costs ~1 us.)"""
        return set_context(call.ctx), push_autoproxy(self._autoproxy_resolver)

    def _leave(self, call: Call, tokens: tuple[Token[CallContext], Any]) -> None:
        """After a call: reset all of it; a worker must not keep its context or target."""
        reset_autoproxy(tokens[1])
        reset_context(tokens[0])
        _forget_target(call)

    def run_sync(self, call: Call) -> p.Frame | None:
        """Run a synchronous call (in a worker thread); the reply frame (in parts when its
        payload is large: see :func:`remoteobj.protocol.encode_frame`), or ``None`` if oneway."""
        tokens = self._enter(call)
        try:
            result = (
                call.func(*call.args, **call.kwargs) if call.batch is None else _run_batch(call)
            )
        except Exception as exc:
            return self._failed(call, exc)
        else:
            return self._result(call, result)
        finally:
            self._leave(call, tokens)

    async def run_async(self, call: Call) -> p.Frame | None:
        """Run a coroutine method on the event loop; the reply frame (as :meth:`run_sync`),
        or ``None`` if oneway."""
        tokens = self._enter(call)
        try:
            result = await call.func(*call.args, **call.kwargs)
        except Exception as exc:
            return self._failed(call, exc)
        else:
            return self._result(call, result)
        finally:
            self._leave(call, tokens)

    def _failed(self, call: Call, exc: Exception) -> p.Frame | None:
        if getattr(call.func, "_pyroCallback", False):
            log.warning(
                "exception in callback %s", getattr(call.func, "__name__", call.func), exc_info=exc
            )
        if call.oneway:
            log.debug("oneway call failed", exc_info=exc)
            return None
        # The built-in daemon object is ours, not user code: its refusals carry no traceback.
        user_code = not isinstance(getattr(call.func, "__self__", None), DaemonObject)
        data = self._dump_exception(call.serializer, exc, user_code)
        return self._reply(call, data, p.FLAGS_EXCEPTION)

    def _result(self, call: Call, result: Any) -> p.Frame | None:
        if call.oneway:
            return None
        if call.batch is None and is_stream(result):
            return self._stream_reply(call, result)
        try:
            data = call.serializer.dumps(result)
        except Exception as exc:
            log.info("could not serialize the result of %s: %s", call.func, exc)
            err = SerializeError(f"could not serialize the result: {exc}")
            return self._reply(call, self._dump_exception(call.serializer, err), p.FLAGS_EXCEPTION)
        return self._reply(call, data, p.FLAGS_BATCH if call.batch is not None else 0)

    def _stream_reply(self, call: Call, iterator: Any) -> p.Frame:
        """Keep an iterator result as a stream and answer with its id (Pyro5's
        EXCEPTION|ITEMSTREAMRESULT reply with the ``STRM`` annotation)."""
        try:
            stream_id = self._streams.open(iterator, call.ctx.connection)
        except DaemonError as exc:
            return self._reply(call, self._dump_exception(call.serializer, exc), p.FLAGS_EXCEPTION)
        annotations = dict(call.ctx.response_annotations)
        annotations[STREAM_ANNOTATION] = stream_id.encode("ascii")
        call.ctx.response_annotations = annotations
        data = call.serializer.dumps(ProtocolError(STREAM_RESULT_TEXT))
        return self._reply(call, data, p.FLAGS_EXCEPTION | p.FLAGS_ITEMSTREAMRESULT)

    def _reply(self, call: Call, data: bytes, flags: int) -> p.Frame:
        msg = call.msg
        if call.batch is not None:
            flags |= p.FLAGS_BATCH
        annotations = call.ctx.response_annotations
        if self._own_annotations:
            annotations = self._annotate(annotations)
        if annotations:
            try:
                _check_annotations(annotations)
            except (TypeError, ValueError) as exc:
                # Set by the method (current_context().response_annotations): its
                # caller gets this error instead of a reply that cannot be encoded.
                log.warning("unsendable response annotations from %s: %s", call.func, exc)
                error = ProtocolError(f"invalid response annotations: {exc}")
                data = self._dump_exception(call.serializer, error, user_code=False)
                flags = p.FLAGS_EXCEPTION
                annotations = {}
        return p.encode_frame(
            p.Message(
                p.MSG_RESULT, msg.serializer_id, msg.seq, data, flags, annotations, msg.corr_id
            ),
            compress=self.config.compression,
        )

    def _dump_exception(self, ser: Serializer, exc: BaseException, user_code: bool = True) -> bytes:
        # Refusals (bad frames, access checks, decode limits) never carry a traceback:
        # it would show a hostile client our file paths, module and function names.
        if user_code and self.config.send_tracebacks and not hasattr(exc, "_pyroTraceback"):
            with contextlib.suppress(Exception):
                exc._pyroTraceback = traceback.format_exception(exc)  # type: ignore[attr-defined]
        try:
            return ser.dumps(exc)
        except Exception as err:
            return ser.dumps(RemoteObjError(f"Error serializing exception: {err}"))


def _check_annotations(annotations: Any) -> None:
    """Raise unless ``annotations`` can go in a frame: a dict of 4-ASCII-character keys
    and bytes values."""
    if type(annotations) is not dict:
        raise TypeError(f"annotations must be a dict, not {type(annotations).__name__}")
    for key, value in annotations.items():
        if type(key) is not str or len(key) != 4 or not key.isascii():
            raise ValueError(f"annotation key must be 4 ASCII characters, not {key!r:.40}")
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"annotation {key!r} must be bytes, not {type(value).__name__}")


def _new_corr_id() -> bytes:
    # Unique per request: a random per-process prefix and a counter (next() on
    # itertools.count is atomic). Pyro5 makes a uuid4 per request; ids are for
    # tracing, not secrets, and this is several times cheaper on the hot path.
    return _CORR_PREFIX + next(_corr_counter).to_bytes(8, "big")


def _finished(*args: Any, **kwargs: Any) -> None:
    """Stands in for the method of a call that has run."""


def _forget_target(call: Call) -> None:
    """Drop a finished call's references to user objects: whoever keeps the Call a
    while longer (an idle worker's last job) must not keep a session or per-call
    instance alive after its client is gone."""
    call.func = _finished
    call.args = ()
    call.kwargs = {}
    if call.batch is not None:
        call.batch = []


def track_resource(resource: Any) -> None:
    """Close ``resource`` (call its ``close()``) when the connection of the call
    being served closes, as Pyro5's ``current_context.track_resource``. Only a
    weak reference is kept. Call it inside a remote method."""
    session = current_context().connection
    if not isinstance(session, Session):
        raise DaemonError("cannot track a resource outside a remote call")
    session.resources.add(resource)


def untrack_resource(resource: Any) -> None:
    """Stop tracking ``resource`` for the connection of the call being served."""
    session = current_context().connection
    if not isinstance(session, Session):
        raise DaemonError("cannot untrack a resource outside a remote call")
    session.resources.discard(resource)


def _close_resources(resources: list[Any]) -> None:
    for resource in resources:
        try:
            resource.close()
        except Exception:
            log.warning("closing a tracked resource failed", exc_info=True)


def _created(cls: type[Any], creator: Callable[[type[Any]], Any]) -> Any:
    """An instance from a custom instance creator, checked as Pyro5 does."""
    instance = creator(cls)
    if not isinstance(instance, cls):
        raise TypeError("instance creator returned object of different type")
    return instance


def _resolve(target: Any, members: ExposedMembers, method: str, args: Any) -> tuple[Any, Any]:
    """The one access check: map a remote name to something to call, or refuse.

    Error texts name only the requested member, never the class or module.
    """
    if method in ("__getattr__", "__setattr__"):
        if not isinstance(args, (list, tuple)) or not args or not isinstance(args[0], str):
            raise ProtocolError(f"invalid {method} call")
        name = args[0]
        if method == "__getattr__" and len(args) == 1 and name in members.attrs:
            return _getter(target, name), ()
        if method == "__setattr__" and len(args) == 2 and name in members.writable:
            return _setter(target, name, args[1]), ()
        raise AttributeError(f"attempt to access unexposed or unknown remote attribute {name!r}")
    if method not in members.methods:  # private names are never in the set
        if method.startswith("_"):
            raise SecurityError(f"attempt to access private attribute {method!r}")
        raise AttributeError(f"attempt to access unexposed or unknown method {method!r}")
    if not isinstance(args, (list, tuple)):
        raise ProtocolError("invalid call: arguments must be a sequence")
    return getattr(target, method), args


def _getter(target: Any, name: str) -> Callable[[], Any]:
    return lambda: getattr(target, name)


def _setter(target: Any, name: str, value: Any) -> Callable[[], None]:
    return lambda: setattr(target, name, value)


def _run_batch(call: Call) -> list[Any]:
    """Run a batch in order; on the first failure append it (wrapped) and stop, as Pyro5."""
    assert call.batch is not None
    results: list[Any] = []
    for func, args, kwargs in call.batch:
        try:
            results.append(func(*args, **kwargs))
        except Exception as exc:
            results.append(ExceptionWrapper(exc))
            break
    return results
