"""CLIENT and its subcommands (networking.c's clientCommand).

Reply shapes and error texts follow Redis 7.0.15 (checked side by side with a
real redis-server).
"""

from __future__ import annotations

import time

from pynode import info as infomod
from pynode.client import REPLY_OFF, REPLY_ON, REPLY_SKIP_NEXT
from pynode.commands import SYNTAX, CommandError, command, parse_int
from pynode.commands.server import _help, _s, _verbatim
from pynode.pause import ALL, CLIENT_COMMAND, WRITE
from pynode.resp import OK, bulk, integer


# ====================================================================== CLIENT
CLIENT_HELP = [
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
]

CLIENT_TYPES = {"normal": "normal", "slave": "slave", "replica": "slave",
                "pubsub": "pubsub", "master": "master"}


def client_type(c) -> str:
    extra = c.flags_extra
    if "M" in extra:
        return "master"
    if "S" in extra and not c.monitor:
        return "slave"
    if c.subs or c.psubs or c.ssubs:
        return "pubsub"
    return "normal"


def client_flags(c) -> str:
    """The flags= field in Redis's order."""
    extra = c.flags_extra
    f = ""
    if c.monitor:
        f += "O"
    elif "S" in extra:
        f += "S"
    if "M" in extra:
        f += "M"
    if c.subs or c.psubs or c.ssubs:
        f += "P"
    if c.in_multi:
        f += "x"
    if c.blocked is not None or (c.paused and c.srv.replication.waiting(c)):
        f += "b"
    if c.tracking is not None:
        f += c.srv.tracking.info_flags(c)
    if c.in_multi and c.watch_touched:
        f += "d"
    if c.closing:
        f += "c"
    if c.addr.startswith("/"):
        f += "U"
    if c.readonly:
        f += "r"
    if "e" in extra:
        f += "e"
    return f or "N"


def client_line(c, current=None, cmdname: str | None = None, argv=None) -> str:
    now = time.time()
    try:
        qbuf = c.parser.pending()
    except Exception:  # noqa: BLE001
        qbuf = 0
    obuf = infomod._obuf(c)
    argv_mem = sum(len(a) for a in argv) if (c is current and argv) else 0
    multi_mem = sum(sum(len(a) for a in q[1]) for q in c.queued) if c.in_multi else 0
    tot = infomod.client_memory(c) + argv_mem
    name = c.name.decode("utf-8", "replace") if isinstance(c.name, bytes) else str(c.name)
    cmd = cmdname if (c is current and cmdname) else c.last_cmd
    return ("id=%d addr=%s laddr=%s fd=%d name=%s age=%d idle=%d flags=%s db=%d sub=%d "
            "psub=%d ssub=%d multi=%d qbuf=%d qbuf-free=%d argv-mem=%d multi-mem=%d "
            "rbs=%d rbp=%d obl=%d oll=%d omem=%d tot-mem=%d events=%s cmd=%s user=%s "
            "redir=%d resp=%d"
            % (c.id, c.addr, c.laddr, c.fd, name, int(now - c.created),
               int(now - c.last_io), client_flags(c), c.db.id, len(c.subs), len(c.psubs),
               len(c.ssubs), len(c.queued) if c.in_multi else -1,
               qbuf, 0, argv_mem, multi_mem, 0, 0, 0, 1 if obuf else 0, obuf, tot,
               "rw" if obuf else "r", cmd,
               c.user.name.decode("utf-8", "replace"),
               c.tracking.redirect if c.tracking is not None and c.tracking.on else -1, c.resp))


@command("client|help")
def client_help(c, argv):
    return _help("CLIENT", CLIENT_HELP)


@command("client|id")
def client_id(c, argv):
    return integer(c.id)


@command("client|info")
def client_info(c, argv):
    return _verbatim(c, client_line(c, c, "client|info", argv) + "\n")


@command("client|list")
def client_list(c, argv):
    srv = c.srv
    clients = list(srv.clients.values())
    if len(argv) == 4 and argv[2].lower() == b"type":
        t = CLIENT_TYPES.get(_s(argv[3]).lower())
        if t is None:
            raise CommandError("ERR Unknown client type '%s'" % _s(argv[3]))
        clients = [x for x in clients if client_type(x) == t]
    elif len(argv) >= 4 and argv[2].lower() == b"id":
        ids = []
        for a in argv[3:]:
            try:
                v = parse_int(a)
            except CommandError:
                v = 0
            if v < 1:
                raise CommandError("ERR Invalid client ID")
            ids.append(v)
        clients = [srv.clients[i] for i in dict.fromkeys(ids) if i in srv.clients]
    elif len(argv) != 2:
        raise CommandError(SYNTAX)
    text = "".join(client_line(x, c, "client|list", argv) + "\n" for x in clients)
    return _verbatim(c, text)


@command("client|setname")
def client_setname(c, argv):
    name = argv[2]
    for ch in name:
        if ch < 33 or ch > 126:
            raise CommandError("ERR Client names cannot contain spaces, newlines or special "
                               "characters.")
    c.name = name
    return OK


@command("client|getname")
def client_getname(c, argv):
    return bulk(c.name) if c.name else c.nil


def _kill(c, target) -> None:
    if target is c:
        c.close_after_reply()  # the caller still gets its reply, as in Redis
        return
    target.closing = True
    if target.transport is not None:
        target.transport.close()


@command("client|kill")
def client_kill(c, argv):
    srv = c.srv
    if len(argv) == 3:
        addr = _s(argv[2])
        for x in list(srv.clients.values()):
            if x.addr == addr:
                if x is c:
                    c.write(OK)
                    c.close_after_reply()
                    return None
                _kill(c, x)
                return OK
        raise CommandError("ERR No such client")
    cid = None
    ctype = None
    addr = laddr = user = None
    skipme = True
    i = 2
    n = len(argv)
    while i < n:
        opt = argv[i].lower()
        if i + 1 >= n:
            raise CommandError(SYNTAX)
        val = argv[i + 1]
        if opt == b"id":
            try:
                cid = parse_int(val)
            except CommandError:
                cid = 0
            if cid <= 0:
                raise CommandError("ERR client-id should be greater than 0")
        elif opt == b"type":
            ctype = CLIENT_TYPES.get(_s(val).lower())
            if ctype is None:
                raise CommandError("ERR Unknown client type '%s'" % _s(val))
        elif opt == b"addr":
            addr = _s(val)
        elif opt == b"laddr":
            laddr = _s(val)
        elif opt == b"user":
            user = srv.acl.get(val)
            if user is None:
                raise CommandError("ERR No such user '%s'" % _s(val))
        elif opt == b"skipme":
            v = val.lower()
            if v == b"yes":
                skipme = True
            elif v == b"no":
                skipme = False
            else:
                raise CommandError(SYNTAX)
        else:
            raise CommandError(SYNTAX)
        i += 2
    killed = 0
    self_killed = False
    for x in list(srv.clients.values()):
        if cid is not None and x.id != cid:
            continue
        if ctype is not None and client_type(x) != ctype:
            continue
        if addr is not None and x.addr != addr:
            continue
        if laddr is not None and x.laddr != laddr:
            continue
        if user is not None and x.user is not user:
            continue
        if x is c and skipme:
            continue
        killed += 1
        if x is c:
            self_killed = True
        else:
            _kill(c, x)
    if self_killed:
        c.write(integer(killed))
        c.close_after_reply()
        return None
    return integer(killed)


@command("client|pause")
def client_pause(c, argv):
    srv = c.srv
    try:
        ms = parse_int(argv[2])
    except CommandError:
        raise CommandError("ERR timeout is not an integer or out of range") from None
    if ms < 0:
        raise CommandError("ERR timeout is negative")
    pause_all = True
    if len(argv) == 4:
        mode = argv[3].lower()
        if mode == b"write":
            pause_all = False
        elif mode != b"all":
            raise CommandError("ERR CLIENT PAUSE mode must be WRITE or ALL")
    elif len(argv) > 4:
        raise CommandError(SYNTAX)
    srv.pause_clients(CLIENT_COMMAND, time.monotonic() + ms / 1000.0,
                      ALL if pause_all else WRITE)
    return OK


@command("client|unpause")
def client_unpause(c, argv):
    c.srv.unpause_clients(CLIENT_COMMAND)
    return OK


@command("client|reply")
def client_reply(c, argv):
    mode = argv[2].lower()
    if mode == b"on":
        c.reply_mode = REPLY_ON
    elif mode == b"off":
        c.reply_mode = REPLY_OFF
    elif mode == b"skip":
        if c.reply_mode == REPLY_ON:
            c.reply_mode = REPLY_SKIP_NEXT
    else:
        raise CommandError(SYNTAX)
    c.update_special()
    return OK


@command("client|no-evict")
def client_no_evict(c, argv):
    v = argv[2].lower()
    if v == b"on":
        if "e" not in c.flags_extra:
            c.flags_extra += "e"
    elif v == b"off":
        c.flags_extra = c.flags_extra.replace("e", "")
    else:
        raise CommandError(SYNTAX)
    return OK


@command("client|unblock")
def client_unblock(c, argv):
    if len(argv) > 4:
        raise CommandError("ERR unknown subcommand or wrong number of arguments for '%s'. "
                           "Try CLIENT HELP." % _s(argv[1]))
    error = False
    if len(argv) == 4:          # the reason is checked before the id, as in Redis
        r = argv[3].lower()
        if r == b"error":
            error = True
        elif r != b"timeout":
            raise CommandError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    cid = parse_int(argv[2])
    srv = c.srv
    target = srv.clients.get(cid)
    if target is not None and srv.unblock_client(target, error):
        return integer(1)
    return integer(0)
