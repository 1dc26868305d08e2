"""Shared-secret authentication, carried in Pyro5's CONNECT handshake.

Both sides know a secret (``Config.auth_secret``); neither ever sends it. The
exchange rides on protocol 502's own handshake, on one connection::

    client                                        daemon
    CONNECT {handshake, object,
             auth: {scheme}}             ──►
                                         ◄──      CONNECTFAIL "remoteobj-auth-challenge
                                                  <scheme> <server nonce>"  (stays open)
    CONNECT {handshake, object,
             auth: {scheme, cnonce, mac}} ──►     mac = HMAC(secret, "client" | snonce |
                                                               cnonce | object id)
                                         ◄──      CONNECTOK {handshake, meta,
                                                  auth: HMAC(secret, "server" | snonce | cnonce)}

- The server nonce is fresh per connection, so a recorded answer is useless on
  another connection (no replay); the client nonce makes the daemon's proof
  fresh too, so a client also knows the daemon holds the secret (mutual).
  Each MAC is over a distinct label, so one side's answer never serves as the
  other's.
- A Pyro5 client (or a remoteobj proxy without a secret) sends no ``auth``
  entry. A daemon with a secret refuses it with CONNECTFAIL
  ``authentication required`` -- or, when the daemon admits anonymous
  clients (the name server: lookups stay open), lets it in unauthenticated;
  :func:`require_authenticated` then guards single methods.
- A daemon without a secret ignores the extra ``auth`` entry (Pyro5 daemons
  too), and a proxy with a secret then refuses the daemon, which could not
  prove it knows the secret.

The whole exchange must finish within ``Config.first_frame_timeout`` (it is
the connection's first frame as far as the deadlines go), and a connection
gets one challenge.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .context import current_context
from .errors import SecurityError

__all__ = [
    "AUTH_KEY",
    "CHALLENGE_PREFIX",
    "SCHEME",
    "ClientAuth",
    "ServerAuth",
    "ServerStep",
    "is_authenticated",
    "require_authenticated",
]

#: The entry of the CONNECT and CONNECTOK payload dicts that carries the exchange.
AUTH_KEY = "auth"
SCHEME = "hmac-sha256-v1"
#: CONNECTFAIL text that carries a challenge (the connection stays open for the answer).
CHALLENGE_PREFIX = "remoteobj-auth-challenge"
NONCE_BYTES = 32
_LABEL = b"remoteobj-auth-v1\x00"


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _mac(secret: str | bytes, role: bytes, *parts: bytes) -> str:
    mac = hmac.new(_key(secret), _LABEL + role + b"\x00", hashlib.sha256)
    for part in parts:
        # Length-prefixed, so no two different part lists hash the same bytes.
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    return mac.hexdigest()


def _hex_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * NONCE_BYTES:
        raise SecurityError(f"authentication failed: invalid {what}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise SecurityError(f"authentication failed: invalid {what}") from None


# --- client side -----------------------------------------------------------------------


class ClientAuth:
    """A proxy's side of the exchange, for one connection attempt (no I/O)."""

    __slots__ = ("_client_nonce", "_object_id", "_secret", "_server_nonce")

    def __init__(self, secret: str | bytes, object_id: str) -> None:
        self._secret = secret
        self._object_id = object_id
        self._client_nonce = secrets.token_bytes(NONCE_BYTES)
        self._server_nonce: bytes | None = None

    def hello(self) -> dict[str, str]:
        """The ``auth`` entry of the first CONNECT: asks for a challenge."""
        return {"scheme": SCHEME}

    def answer(self, reason: Any) -> dict[str, str] | None:
        """The ``auth`` entry answering a CONNECTFAIL ``reason`` if it is a challenge
        (``None`` if it is a plain refusal). A second challenge is refused."""
        if not isinstance(reason, str) or not reason.startswith(CHALLENGE_PREFIX + " "):
            return None
        if self._server_nonce is not None:
            raise SecurityError("authentication failed: challenged twice")
        parts = reason.split(" ")
        if len(parts) != 3 or parts[1] != SCHEME:
            raise SecurityError(f"authentication failed: unsupported challenge {reason[:80]!r}")
        self._server_nonce = _hex_bytes(parts[2], "challenge")
        mac = _mac(
            self._secret,
            b"client",
            self._server_nonce,
            self._client_nonce,
            self._object_id.encode("utf-8"),
        )
        return {"scheme": SCHEME, "cnonce": self._client_nonce.hex(), "mac": mac}

    def verify_server(self, proof: Any) -> None:
        """Check the daemon's proof from CONNECTOK; :class:`SecurityError` if it fails."""
        if self._server_nonce is None or not isinstance(proof, str):
            raise SecurityError(
                "authentication failed: the daemon did not prove it knows the secret"
            )
        expected = _mac(self._secret, b"server", self._server_nonce, self._client_nonce)
        if not hmac.compare_digest(expected, proof):
            raise SecurityError("authentication failed: the daemon's proof is wrong")


# --- daemon side -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerStep:
    """What the daemon does with a CONNECT: send a challenge (``challenge`` is the
    CONNECTFAIL text), or accept (``proof`` for the CONNECTOK, ``None`` when the
    client was admitted without authenticating)."""

    challenge: str | None = None
    proof: str | None = None
    authenticated: bool = False


class ServerAuth:
    """A daemon's side of the exchange; keeps no state of its own (it is in the session).

    ``required``: refuse clients that do not authenticate (else admit them
    unauthenticated, and let methods decide with :func:`require_authenticated`).
    """

    __slots__ = ("_secret", "required")

    def __init__(self, secret: str | bytes, *, required: bool = True) -> None:
        if not secret:
            raise ValueError("an empty authentication secret protects nothing")
        self._secret = secret
        self.required = required

    def step(
        self, offered: Any, pending_nonce: bytes | None, object_id: str
    ) -> tuple[ServerStep, bytes | None]:
        """Judge the ``auth`` entry of a CONNECT; ``(step, nonce to keep for the answer)``.

        ``pending_nonce`` is the challenge this connection got (``None`` if none).
        Raises :class:`SecurityError` to refuse.
        """
        if offered is None:
            if pending_nonce is not None:
                raise SecurityError("authentication failed: challenge not answered")
            if self.required:
                raise SecurityError("authentication required")
            return ServerStep(), None
        if not isinstance(offered, Mapping) or offered.get("scheme") != SCHEME:
            raise SecurityError("authentication failed: unsupported scheme")
        if "mac" not in offered:
            if pending_nonce is not None:
                raise SecurityError("authentication failed: one challenge per connection")
            nonce = secrets.token_bytes(NONCE_BYTES)
            return ServerStep(challenge=f"{CHALLENGE_PREFIX} {SCHEME} {nonce.hex()}"), nonce
        if pending_nonce is None:
            raise SecurityError("authentication failed: no challenge was issued")
        client_nonce = _hex_bytes(offered.get("cnonce"), "client nonce")
        mac = offered.get("mac")
        expected = _mac(
            self._secret, b"client", pending_nonce, client_nonce, object_id.encode("utf-8")
        )
        if not isinstance(mac, str) or not hmac.compare_digest(expected, mac):
            raise SecurityError("authentication failed")
        proof = _mac(self._secret, b"server", pending_nonce, client_nonce)
        return ServerStep(proof=proof, authenticated=True), None


def is_authenticated() -> bool:
    """Whether the connection of the call being served authenticated (server side)."""
    session = current_context().connection
    return bool(getattr(session, "authenticated", False))


def require_authenticated(operation: str) -> None:
    """Raise :class:`SecurityError` unless the current call's connection authenticated.

    Made to be the name server's ``authorize`` hook: mutations call it,
    lookups do not.
    """
    if not is_authenticated():
        raise SecurityError(f"{operation} requires authentication")
