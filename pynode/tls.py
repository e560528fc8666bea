"""TLS: the ssl contexts built from the tls-* directives, as Redis's tls.c.

``contexts(cfg)`` returns a :class:`Contexts` pair: ``server`` for what we
accept (tls-port, the cluster bus with tls-cluster) and ``client`` for what we
connect to (replication with tls-replication, the bus and MIGRATE with
tls-cluster).  Both use tls-cert-file/tls-key-file (the client side
tls-client-cert-file/tls-client-key-file when set) and trust
tls-ca-cert-file/tls-ca-cert-dir.  The server asks for a client certificate
per tls-auth-clients (yes: required, optional: verified when given, no);
the client always verifies the server's certificate against the CA, without a
host name check, as Redis.

A bad setting raises :class:`TLSConfigError` with the text Redis logs; start-up
then stops with "Failed to configure TLS", CONFIG SET refuses the change.  A
CONFIG SET that succeeds builds new contexts; the listeners keep theirs and
hand each handshake over to the new one (:func:`listener_context`).

Not available from Python's ``ssl`` module: tls-ciphersuites (TLS 1.3 suites are
OpenSSL's defaults) and tls-session-cache-size/-timeout (OpenSSL's defaults);
tls-session-caching no turns session tickets off.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

PROTOCOLS = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
ORDER = ["tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"]


class TLSConfigError(Exception):
    pass


@dataclass
class Contexts:
    server: ssl.SSLContext
    client: ssl.SSLContext


def enabled(cfg) -> bool:
    """Whether anything uses TLS (tls-port, tls-replication or tls-cluster)."""
    return bool(cfg.int("tls-port") or cfg.bool("tls-replication") or cfg.bool("tls-cluster"))


def _versions(text: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """tls-protocols: a space separated list; the range from the lowest to the
    highest named (an OpenSSL context allows a range).  Empty: TLSv1.2+."""
    names = text.lower().split()
    if not names:
        return ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    for n in names:
        if n not in PROTOCOLS:
            raise TLSConfigError("Invalid tls-protocols specified. Use a combination of "
                                 "'TLSv1', 'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'.")
    idx = sorted(ORDER.index(n) for n in names)
    return PROTOCOLS[ORDER[idx[0]]], PROTOCOLS[ORDER[idx[-1]]]


def _base(cfg, purpose, ctx: ssl.SSLContext | None = None) -> ssl.SSLContext:
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose == "server"
                             else ssl.PROTOCOL_TLS_CLIENT)
    lo, hi = _versions(cfg.get("tls-protocols"))
    try:
        ctx.minimum_version = lo
        ctx.maximum_version = hi
    except (ValueError, ssl.SSLError) as e:
        raise TLSConfigError("Failed to set the TLS protocol versions: %s" % e)
    ciphers = cfg.get("tls-ciphers")
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as e:
            raise TLSConfigError("Failed to configure ciphers: %s" % e)
    cafile = cfg.get("tls-ca-cert-file") or None
    capath = cfg.get("tls-ca-cert-dir") or None
    if cafile or capath:
        try:
            ctx.load_verify_locations(cafile=cafile, capath=capath)
        except (OSError, ssl.SSLError) as e:
            raise TLSConfigError("Failed to configure CA certificate(s) file/directory: %s"
                                 % _reason(e))
    return ctx


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e)


def _load_cert(ctx: ssl.SSLContext, cert: str, key: str, password: str) -> None:
    try:
        ctx.load_cert_chain(cert, key or None, password=password or None)
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError("Failed to load certificate: %s: %s" % (cert, _reason(e)))


def contexts(cfg) -> Contexts:
    """Build both contexts from the configuration (tlsConfigure)."""
    return _contexts(cfg, None)


def listener_context(initial: ssl.SSLContext, current) -> ssl.SSLContext:
    """The context the listeners are created with: ``initial``, switching each
    handshake to ``current()`` (the contexts CONFIG SET rebuilt) from the
    ClientHello on, so a reload needs no new listener and old trust is gone."""
    def switch(sslobj, server_name, ctx):
        cur = current()
        if cur is not None and sslobj.context is not cur:
            sslobj.context = cur
        return None
    initial.sni_callback = switch
    return initial


def _contexts(cfg, server: ssl.SSLContext | None) -> Contexts:
    cert = cfg.get("tls-cert-file")
    key = cfg.get("tls-key-file")
    if not cert:
        raise TLSConfigError("No tls-cert-file configured!")
    if not key:
        raise TLSConfigError("No tls-key-file configured!")
    has_ca = bool(cfg.get("tls-ca-cert-file") or cfg.get("tls-ca-cert-dir"))
    if not has_ca and (cfg.get("tls-auth-clients") != "no" or cfg.bool("tls-cluster")
                       or cfg.bool("tls-replication")):
        raise TLSConfigError("Either tls-ca-cert-file or tls-ca-cert-dir must be specified "
                             "when tls-cluster, tls-replication or tls-auth-clients are enabled!")
    server = _base(cfg, "server", server)
    _load_cert(server, cert, key, cfg.get("tls-key-file-pass"))
    dh = cfg.get("tls-dh-params-file")
    if dh:
        try:
            server.load_dh_params(dh)
        except (OSError, ssl.SSLError) as e:
            raise TLSConfigError("Failed to load %s: %s" % (dh, _reason(e)))
    auth = cfg.get("tls-auth-clients")
    server.verify_mode = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
                          "no": ssl.CERT_NONE}[auth]
    for flag, on in ((ssl.OP_CIPHER_SERVER_PREFERENCE, cfg.bool("tls-prefer-server-ciphers")),
                     (ssl.OP_NO_TICKET, not cfg.bool("tls-session-caching"))):
        server.options = server.options | flag if on else server.options & ~flag
    client = _base(cfg, "client")
    client.check_hostname = False
    client.verify_mode = ssl.CERT_REQUIRED if has_ca else ssl.CERT_NONE
    ccert = cfg.get("tls-client-cert-file")
    if ccert:
        _load_cert(client, ccert, cfg.get("tls-client-key-file"),
                   cfg.get("tls-client-key-file-pass"))
    else:
        _load_cert(client, cert, key, cfg.get("tls-key-file-pass"))
    return Contexts(server, client)

