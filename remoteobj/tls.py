"""TLS contexts built from :class:`~remoteobj.Config` (``ssl`` and the ``ssl_*`` fields).

::

    cfg = Config(ssl=True, ssl_certfile="server.pem", ssl_keyfile="server.key",
                 ssl_cafile="clients-ca.pem", ssl_require_client_cert=True)
    daemon = Daemon("127.0.0.1", 9999, config=cfg)           # TLS only, mutual

    proxy = Proxy(uri, config=Config(ssl=True, ssl_cafile="ca.pem",
                                     ssl_certfile="client.pem"))

Both sides require TLS 1.2 or newer. A daemon's handshakes run on its event
loop without blocking it, each bounded by ``Config.ssl_handshake_timeout``
(a client that connects and says nothing cannot hold up anyone else).
Contexts are cached per set of files and their modification times, so a
proxy per call costs no certificate parsing and a renewed certificate is
picked up by the next connection.
"""

from __future__ import annotations

import functools
import os
import ssl

from .config import Config

__all__ = ["client_context", "server_context"]


def server_context(config: Config) -> ssl.SSLContext:
    """The daemon's TLS context; :class:`ValueError` if ``config`` names no certificate."""
    if config.ssl_certfile is None:
        raise ValueError("Config.ssl on a daemon needs ssl_certfile (and ssl_keyfile)")
    files = (config.ssl_certfile, config.ssl_keyfile, config.ssl_cafile)
    return _server_context(
        config.ssl_certfile,
        config.ssl_keyfile,
        config.ssl_cafile,
        config.ssl_require_client_cert,
        _mtimes(files),
    )


def client_context(config: Config) -> ssl.SSLContext:
    """A proxy's TLS context: verifies the daemon against ``ssl_cafile`` (or the
    system's CAs), presents ``ssl_certfile`` if set (mutual TLS)."""
    files = (config.ssl_cafile, config.ssl_certfile, config.ssl_keyfile)
    return _client_context(
        config.ssl_cafile,
        config.ssl_certfile,
        config.ssl_keyfile,
        config.ssl_check_hostname,
        _mtimes(files),
    )


def _mtimes(files: tuple[str | None, ...]) -> tuple[int, ...]:
    # Part of the cache key: a replaced file means a new context. A missing file
    # gets -1 here and its clear error from OpenSSL when the context is built.
    out = []
    for name in files:
        try:
            out.append(os.stat(name).st_mtime_ns if name is not None else 0)
        except OSError:
            out.append(-1)
    return tuple(out)


@functools.lru_cache(maxsize=32)
def _server_context(
    certfile: str,
    keyfile: str | None,
    cafile: str | None,
    require_client_cert: bool,
    mtimes: tuple[int, ...],
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    if cafile is not None:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    # No TLS 1.3 session tickets: nobody resumes sessions here, and a ticket arriving
    # on an idle client connection would look like data from a dead peer.
    ctx.num_tickets = 0
    return ctx


@functools.lru_cache(maxsize=32)
def _client_context(
    cafile: str | None,
    certfile: str | None,
    keyfile: str | None,
    check_hostname: bool,
    mtimes: tuple[int, ...],
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx
