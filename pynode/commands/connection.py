"""Connection commands: PING ECHO QUIT RESET AUTH HELLO SELECT."""

from __future__ import annotations

from pynode.commands import CommandError, command
from pynode.commands.acl import auth_failed, authenticate
from pynode.resp import OK, PONG, bulk, encode


@command("ping")
def ping(c, argv):
    if len(argv) > 2:
        raise CommandError("ERR wrong number of arguments for 'ping' command")
    if (c.subs or c.psubs or c.ssubs) and c.resp == 2:
        return encode([b"pong", argv[1] if len(argv) == 2 else b""])
    if len(argv) == 2:
        return bulk(argv[1])
    return PONG


@command("echo")
def echo(c, argv):
    return bulk(argv[1])


@command("quit")
def quit_(c, argv):
    c.close_after_reply()
    return OK


WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


def _authenticate(c, argv0: bytes, user: bytes, password: bytes) -> None:
    """ACLAuthenticateUser; a failure is logged (ACL LOG) and refused."""
    if not authenticate(c, user, password):
        auth_failed(c, argv0, user)
        raise CommandError(WRONGPASS)


@command("auth")
def auth(c, argv):
    if len(argv) > 3:
        raise CommandError("ERR syntax error")
    srv = c.srv
    if len(argv) == 2 and srv.acl.default.nopass:
        raise CommandError("ERR AUTH <password> called without any password configured "
                           "for the default user. Are you sure your configuration is correct?")
    user = argv[1] if len(argv) == 3 else b"default"
    _authenticate(c, argv[0], user, argv[-1])
    return OK


@command("hello")
def hello(c, argv):
    ver = None
    i = 1
    if len(argv) >= 2:
        try:
            ver = int(argv[1])
        except ValueError:
            raise CommandError("ERR Protocol version is not an integer or out of range")
        i = 2
        if ver < 2 or ver > 3:
            raise CommandError("NOPROTO unsupported protocol version")
    name = None
    while i < len(argv):
        opt = argv[i].lower()
        more = len(argv) - i - 1
        if opt == b"auth" and more >= 2:
            _authenticate(c, argv[0], argv[i + 1], argv[i + 2])
            i += 3
        elif opt == b"setname" and more >= 1:
            name = argv[i + 1]
            _check_name(name)
            i += 2
        else:
            raise CommandError("ERR Syntax error in HELLO option '%s'"
                               % argv[i].decode("utf-8", "replace"))
    if not c.authed and srv_auth_required(c):
        raise CommandError("NOAUTH HELLO must be called with the client already "
                           "authenticated, otherwise the HELLO AUTH <user> <pass> "
                           "option can be used to authenticate the client and select the "
                           "RESP protocol version at the same time")
    if name is not None:
        c.name = name
    if ver is not None:
        c.set_resp(ver)
    srv = c.srv
    info = {
        b"server": b"redis",
        b"version": srv.version.encode(),
        b"proto": c.resp,
        b"id": c.id,
        b"mode": b"cluster" if srv.cfg.bool("cluster-enabled") else b"standalone",
        b"role": b"replica" if srv.replication.masterhost is not None else b"master",
        b"modules": [],
    }
    return encode(info, c.resp)


def srv_auth_required(c) -> bool:
    return c.srv.acl.auth_required()


def _check_name(name: bytes) -> None:
    for ch in name:
        if ch < 33 or ch > 126:
            raise CommandError("ERR Client names cannot contain spaces, newlines or special "
                               "characters.")


@command("select")
def select(c, argv):
    try:
        idx = int(argv[1])
    except ValueError:
        raise CommandError("ERR value is not an integer or out of range")
    srv = c.srv
    if srv.cfg.bool("cluster-enabled") and idx != 0:
        raise CommandError("ERR SELECT is not allowed in cluster mode")
    if idx < 0 or idx >= len(srv.ks.dbs):
        raise CommandError("ERR DB index is out of range")
    c.db = srv.ks.db(idx)
    return OK


@command("reset")
def reset(c, argv):
    srv = c.srv
    srv.discard_transaction(c)
    if c.subs or c.psubs or c.ssubs:
        srv.pubsub_unsubscribe_all(c)
    if c.monitor:
        c.monitor = False
        if c in srv.monitors:
            srv.monitors.remove(c)
    if c.tracking is not None:
        srv.tracking.disable(c)
    c.db = srv.ks.db(0)
    c.name = b""
    c.reply_mode = 0
    c.readonly = False
    c.asking = False
    c.set_resp(2)
    c.user = srv.acl.default
    c.authed = c.user.nopass and c.user.enabled
    c.update_special()
    return b"+RESET\r\n"



def _cluster_only(c) -> None:
    if c.srv.cluster is None:
        raise CommandError("ERR This instance has cluster support disabled")


@command("readonly")
def readonly(c, argv):
    """Reads of slots served by this replica's primary are answered here."""
    _cluster_only(c)
    c.readonly = True
    return OK


@command("readwrite")
def readwrite(c, argv):
    _cluster_only(c)
    c.readonly = False
    return OK


@command("asking")
def asking(c, argv):
    """The next command may use a slot this node is importing."""
    _cluster_only(c)
    c.asking = True
    return OK
