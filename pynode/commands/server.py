"""Server commands: CLIENT, INFO, CONFIG, COMMAND, SLOWLOG, MONITOR, MEMORY,
TIME, LASTSAVE, BGREWRITEAOF, SAVE, BGSAVE, SHUTDOWN.

Reply shapes and error texts follow Redis 7.0.15 (checked side by side with a
real redis-server).
"""

from __future__ import annotations

import os
import sys
import time

from pynode import info as infomod
from pynode.client import REPLY_OFF, REPLY_ON, REPLY_SKIP_NEXT
from pynode.command_meta import COMMANDS as META
from pynode.commands import SYNTAX, CommandError, command, parse_int
from pynode.keyspecs import command_keys, has_keys
from pynode.pause import ALL, CLIENT_COMMAND, WRITE
from pynode.config_table import (ALIASES, DIRECTIVES, FILE_ONLY, HIDDEN, PROTECTED,
                                 DENY_LOADING, merge_client_output_buffer_limit, normalize)
from pynode.resp import (OK, Double, Map, SetReply, Status, Verbatim, bulk, encode,
                         integer)
from storage.durable import atomic_write
from storage.glob import match as glob_match
from storage import values as valuemod
from storage.sdsargs import quote
from storage.slots import keyslot


def _help(name: str, lines: list[str]) -> bytes:
    out = ["%s <subcommand> [<arg> [value] [opt] ...]. Subcommands are:" % name]
    out.extend(lines)
    out.extend(["HELP", "    Prints this help."])
    return b"*%d\r\n" % len(out) + b"".join(b"+" + s.encode() + b"\r\n" for s in out)


def _s(b: bytes) -> str:
    return b.decode("utf-8", "replace")


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


def _verbatim(c, text: str) -> bytes:
    return encode(Verbatim(text.encode("utf-8", "replace")), c.resp)


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


# ====================================================================== INFO
@command("info")
def info_cmd(c, argv):
    text = infomod.build(c.srv, [_s(a) for a in argv[1:]])
    return _verbatim(c, text)


# ====================================================================== CONFIG
CONFIG_HELP = [
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
]


def _config_names():
    names = [n for n in DIRECTIVES if n not in FILE_ONLY]
    names.extend(a for a, n in ALIASES.items() if n not in FILE_ONLY)
    return names


_CONFIG_NAMES = _config_names()


def _canonical(name: str):
    n = name.lower()
    if n in FILE_ONLY:
        return None
    if n in DIRECTIVES:
        return n
    return ALIASES.get(n)


@command("config|help")
def config_help(c, argv):
    return _help("CONFIG", CONFIG_HELP)


@command("config|get")
def config_get(c, argv):
    values = c.srv.cfg.values
    out: dict[bytes, bytes] = {}
    seen: set[str] = set()
    for pat in argv[2:]:
        p = _s(pat)
        if not any(ch in p for ch in "[*?"):
            cname = _canonical(p)
            if cname is not None and p.lower() not in seen:
                seen.add(p.lower())
                out[pat] = values.get(cname, "").encode("utf-8", "surrogateescape")
            continue
        for name in _CONFIG_NAMES:
            cname = DIRECTIVES[name].name if name in DIRECTIVES else ALIASES[name]
            if cname in HIDDEN or name in seen:
                continue
            if glob_match(pat, name.encode(), nocase=True):
                seen.add(name)
                out[name.encode()] = values.get(cname, "").encode("utf-8", "surrogateescape")
    return encode(Map(out), c.resp)


def _allow_protected(c) -> bool:
    v = c.srv.cfg.get("enable-protected-configs")
    return v == "yes" or (v == "local" and _is_local(c))


def _is_local(c) -> bool:
    a = c.addr
    return (a.startswith("127.") or a.startswith("::1") or a.startswith("[::1]")
            or a.startswith("/") or a.startswith("?"))


@command("config|set")
def config_set(c, argv):
    if (len(argv) - 2) % 2:
        raise CommandError(SYNTAX)
    srv = c.srv
    cfg = srv.cfg
    pairs = []
    unknown = None
    err = None
    for i in range(2, len(argv), 2):
        name = _s(argv[i])
        cname = _canonical(name)
        if cname is None:
            if unknown is None and err is None:
                unknown = name
            continue
        if unknown is not None or err is not None:
            continue
        d = DIRECTIVES[cname]
        if d.immutable:
            err = (name, "can't set immutable config")
            continue
        if cname in PROTECTED and not _allow_protected(c):
            err = (name, "can't set protected config")
            continue
        if srv.loading and cname in DENY_LOADING:
            raise CommandError("LOADING Redis is loading the dataset in memory")
        if any(p[0] == cname for p in pairs):
            err = (name, "duplicate parameter")
            continue
        pairs.append((cname, name, _s(argv[i + 1])))
    if unknown is not None:
        raise CommandError("ERR Unknown option or number of arguments for CONFIG SET - '%s'"
                           % unknown)
    if err is not None:
        raise CommandError("ERR CONFIG SET failed (possibly related to argument '%s') - %s"
                           % err)
    # validate everything first, then apply (all or nothing, as Redis)
    new = {}
    for cname, name, value in pairs:
        d = DIRECTIVES[cname]
        try:
            if cname == "client-output-buffer-limit":
                v = merge_client_output_buffer_limit(cfg.values[cname], [value])
            elif cname == "dir":
                v = normalize(d, [value])
                if not os.path.isdir(v):
                    raise ValueError("No such file or directory")
                v = os.path.abspath(v)
            else:
                v = normalize(d, [value])
        except ValueError as e:
            raise CommandError("ERR CONFIG SET failed (possibly related to argument '%s') - %s"
                               % (name, e)) from None
        new[cname] = (name, v)
    old = {cname: cfg.values[cname] for cname in new}
    if "notify-keyspace-events" in new:
        from pynode.config import NOTIFY_NEW, keyspace_new
        old[NOTIFY_NEW] = cfg.values.get(NOTIFY_NEW, "")
        new[NOTIFY_NEW] = (NOTIFY_NEW, keyspace_new(
            [v for c2, _, v in pairs if c2 == "notify-keyspace-events"]))
    for cname, (name, v) in new.items():
        cfg.values[cname] = v
    try:
        _apply_live(c, old, new)
    except _ApplyError as e:
        srv.log.warning("Failed applying new configuration. Possibly related to new %s "
                        "setting. Restoring previous settings." % e.name)
        for cname, v in old.items():
            cfg.values[cname] = v
        try:
            srv.apply_config()
        except Exception:  # noqa: BLE001 - restoring the previous values
            pass
        raise CommandError("ERR CONFIG SET failed (possibly related to argument '%s') - %s"
                           % (e.name, e.msg)) from None
    return OK


class _ApplyError(Exception):
    def __init__(self, name: str, msg: str) -> None:
        super().__init__(msg)
        self.name = name
        self.msg = msg


def _apply_live(c, old: dict, new: dict) -> None:
    """Make changed values take effect (raises _ApplyError to roll back)."""
    srv = c.srv
    cfg = srv.cfg
    changed = {k for k in new if old[k] != cfg.values[k]}
    if "dir" in changed:
        try:
            os.chdir(cfg.values["dir"])
        except OSError as e:
            raise _ApplyError(new["dir"][0], e.strerror or str(e))
    if "maxclients" in changed:
        fits = srv.adjust_open_files_limit()
        if fits != cfg.int("maxclients"):
            if "dir" in changed:
                os.chdir(old["dir"])
            raise _ApplyError(new["maxclients"][0], "The operating system is not able to "
                              "handle the specified number of clients, try with %d" % fits)
    if any(k.startswith("tls-") for k in changed):
        _reconfigure_tls(srv, new, changed)
    if changed & {"port", "bind", "tls-port"}:
        key = next(k for k in ("port", "tls-port", "bind") if k in changed)
        name = new[key][0]
        msg = ("Failed to bind to specified addresses." if key == "bind"
               else "Unable to listen on this port")
        try:
            srv.rebind(plain=bool(changed & {"port", "bind"}),
                    tls=bool(changed & {"tls-port", "bind"}))
        except OSError:
            if "dir" in changed:
                os.chdir(old["dir"])
            raise _ApplyError(name, msg)
    srv.apply_config()
    if "appendonly" in changed:
        _set_appendonly(srv, cfg.bool("appendonly"))


def _reconfigure_tls(srv, new: dict, changed: set) -> None:
    """applyTlsCfg / applyTLSPort: a tls-* change rebuilds the contexts when
    TLS is in use (or is being turned on); a failure refuses the change."""
    from pynode import tls
    try:
        srv.reload_tls()
    except tls.TLSConfigError as e:
        srv.log.warning(str(e))
        name = new[sorted(k for k in changed if k.startswith("tls-"))[0]][0]
        raise _ApplyError(name, "Unable to update TLS configuration. Check server logs.")


def _set_appendonly(srv, on: bool) -> None:
    if on:
        srv.make_aof()
        if not srv.aof.enabled:
            try:
                srv.aof.start(srv.ks)
            except OSError as e:
                srv.cfg.values["appendonly"] = "no"
                raise _ApplyError("appendonly", "Unable to turn on AOF. Check server logs.") \
                    from e
    elif srv.aof is not None and srv.aof.enabled:
        srv.aof.stop()


@command("config|resetstat")
def config_resetstat(c, argv):
    srv = c.srv
    srv.reset_stats()
    infomod.reset_stats(srv)
    return OK


SIGNATURE = "# Generated by CONFIG REWRITE"


def _repr(s: str) -> str:
    return quote(s.encode("utf-8", "surrogateescape"))


def _fmt_memory(n: int) -> str:
    gb, mb, kb = 1024 ** 3, 1024 ** 2, 1024
    if n and n % gb == 0:
        return "%dgb" % (n // gb)
    if n and n % mb == 0:
        return "%dmb" % (n // mb)
    if n and n % kb == 0:
        return "%dkb" % (n // kb)
    return "%d" % n


def _rewrite_lines(srv, name: str) -> tuple[list[str], bool]:
    """(lines for this directive, force) as rewriteConfig* would produce them."""
    cfg = srv.cfg
    d = DIRECTIVES[name]
    v = cfg.values.get(name, d.default)
    force = v != d.default
    kind = d.kind
    if name == "save":
        if not v:
            return ['save ""'], True
        p = v.split()
        return ["save %s %s" % (p[i], p[i + 1]) for i in range(0, len(p), 2)], True
    if name == "dir":
        return ["dir %s" % _repr(os.getcwd())], True
    if name == "requirepass":
        return (["requirepass %s" % _repr(v)] if v else []), bool(v)
    if name == "replicaof":
        return (["replicaof %s" % v] if v else []), bool(v)
    if name == "client-output-buffer-limit":
        p = v.split()
        dp = d.default.split()
        lines = []
        f = False
        for i in range(0, len(p), 4):
            cls = p[i]
            vals = [int(x) for x in p[i + 1:i + 4]]
            j = dp.index(cls) if cls in dp else -1
            cf = j < 0 or dp[j + 1:j + 4] != p[i + 1:i + 4]
            f = f or cf
            if cf:
                lines.append("client-output-buffer-limit %s %s %s %d"
                             % (cls, _fmt_memory(vals[0]), _fmt_memory(vals[1]), vals[2]))
        return lines, f
    if name == "latency-tracking-info-percentiles":
        return ["%s %s" % (name, v)], True  # Redis always writes it
    if name == "notify-keyspace-events":
        return ["%s %s" % (name, _repr(v))], force
    if kind in ("string", "sds"):
        return (["%s %s" % (name, _repr(v))] if (v or force) else []), force
    if kind == "memory":
        return ["%s %s" % (name, _fmt_memory(int(v)))], force
    if kind == "special" and name == "bind":
        return ["bind %s" % v], force
    return ["%s %s" % (name, v)], force


def _directive_of_line(line: str):
    from pynode.resp import split_args
    parts = split_args(line.encode("utf-8", "surrogateescape"))
    if not parts:
        return None
    n = parts[0].decode("utf-8", "surrogateescape").lower()
    if n in ALIASES:
        n = ALIASES[n]
    return n


def rewrite_config(srv, path: str, force_all: bool = False) -> None:
    """CONFIG REWRITE; force_all (DEBUG CONFIG-REWRITE-FORCE-ALL) writes every
    directive, defaults included."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            old = fh.read().split("\n")
    except FileNotFoundError:
        old = []
    if old and old[-1] == "":
        old.pop()
    lines: list[str] = []
    where: dict[str, list[int]] = {}
    has_tail = False
    for raw in old:
        line = raw.strip()
        if not line or line.startswith("#"):
            if line == SIGNATURE:
                has_tail = True
            lines.append(line)
            continue
        name = _directive_of_line(line)
        if name is None:
            lines.append(line)
            continue
        where.setdefault(name, []).append(len(lines))
        lines.append(line)
    processed = set()
    appended: list[str] = []

    def put(name: str, newlines: list[str], force: bool) -> None:
        processed.add(name)
        slots = where.get(name, [])
        for nl in newlines:
            if slots:
                lines[slots.pop(0)] = nl
            elif force:
                appended.append(nl)

    for name, d in DIRECTIVES.items():
        if name in FILE_ONLY:
            continue
        nl, force = _rewrite_lines(srv, name)
        put(name, nl, force or force_all)
    # the ACL users, as Redis writes them (none with an aclfile: it holds them)
    if srv.cfg.get("aclfile"):
        put("user", [], False)
    else:
        put("user", ["user %s %s" % (u.name.decode("utf-8", "surrogateescape"), u.describe())
                     for u in srv.acl.sorted_users()], True)
    # lines of processed directives not reused become empty
    for name in processed:
        for i in where.get(name, []):
            lines[i] = ""
    if appended:
        if not has_tail:
            lines.append(SIGNATURE)
        lines.extend(appended)
    out = []
    was_empty = False
    for ln in lines:
        if not ln:
            if was_empty:
                continue
            was_empty = True
        else:
            was_empty = False
        out.append(ln + "\n")
    data = "".join(out).encode("utf-8", "surrogateescape")
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o644
    atomic_write(path, data, mode, tmp_name="%s.tmp-%d" % (os.path.basename(path), os.getpid()))


@command("config|rewrite")
def config_rewrite(c, argv):
    srv = c.srv
    path = srv.cfg.config_file
    if not path:
        raise CommandError("ERR The server is running without a config file")
    try:
        rewrite_config(srv, path)
    except OSError as e:
        srv.log.warning("CONFIG REWRITE failed: %s" % (e.strerror or e))
        raise CommandError("ERR Rewriting config file: %s" % (e.strerror or e)) from None
    srv.log.notice("CONFIG REWRITE executed with success.")
    return OK


# ====================================================================== COMMAND
COMMAND_HELP = [
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
]


def _spec_map(spec) -> Map:
    bs = spec.begin_search
    if bs[0] == "index":
        b = Map({b"type": b"index", b"spec": Map({b"index": bs[1]})})
    elif bs[0] == "keyword":
        b = Map({b"type": b"keyword",
                 b"spec": Map({b"keyword": bs[1].encode(), b"startfrom": bs[2]})})
    else:
        b = Map({b"type": b"unknown", b"spec": Map()})
    fk = spec.find_keys
    if fk[0] == "range":
        f = Map({b"type": b"range",
                 b"spec": Map({b"lastkey": fk[1], b"keystep": fk[2], b"limit": fk[3]})})
    elif fk[0] == "keynum":
        f = Map({b"type": b"keynum",
                 b"spec": Map({b"keynumidx": fk[1], b"firstkey": fk[2], b"keystep": fk[3]})})
    else:
        f = Map({b"type": b"unknown", b"spec": Map()})
    m = Map()
    if spec.notes:
        m[b"notes"] = spec.notes.encode()
    m[b"flags"] = SetReply([Status(x) for x in spec.flags])
    m[b"begin_search"] = b
    m[b"find_keys"] = f
    return m


def command_info_reply(meta, subs=None) -> list:
    """COMMAND INFO's 10-element array for one command (a Python value for encode)."""
    if subs:
        sub = [command_info_reply(META[s]) for s in subs]
    else:
        sub = SetReply()
    return [meta.name.encode(), meta.arity, SetReply([Status(f) for f in meta.flags]),
            meta.first_key, meta.last_key, meta.step,
            SetReply([Status(a) for a in meta.acl_categories]),
            SetReply([t.encode() for t in meta.tips]),
            SetReply([_spec_map(s) for s in meta.key_specs]), sub]


def _arg_map(a: dict) -> Map:
    m = Map()
    m[b"name"] = a["name"].encode()
    m[b"type"] = a["type"].encode()
    if "key_spec_index" in a:
        m[b"key_spec_index"] = a["key_spec_index"]
    if "token" in a:
        m[b"token"] = a["token"].encode()
    if "summary" in a:
        m[b"summary"] = a["summary"].encode()
    if "since" in a:
        m[b"since"] = a["since"].encode()
    if "deprecated_since" in a:
        m[b"deprecated_since"] = a["deprecated_since"].encode()
    if a.get("flags"):
        m[b"flags"] = SetReply([Status(f) for f in a["flags"]])
    if "arguments" in a:
        m[b"arguments"] = [_arg_map(x) for x in a["arguments"]]
    return m


def command_docs_reply(meta, subs=None) -> Map:
    m = Map()
    if meta.summary:
        m[b"summary"] = meta.summary.encode()
    if meta.since:
        m[b"since"] = meta.since.encode()
    m[b"group"] = meta.group.encode()
    if meta.complexity:
        m[b"complexity"] = meta.complexity.encode()
    if meta.doc_flags:
        m[b"doc_flags"] = SetReply([Status(f) for f in meta.doc_flags])
    if meta.deprecated_since:
        m[b"deprecated_since"] = meta.deprecated_since.encode()
    if meta.replaced_by:
        m[b"replaced_by"] = meta.replaced_by.encode()
    if meta.history:
        m[b"history"] = SetReply([[v.encode(), t.encode()] for v, t in meta.history])
    if meta.arguments:
        m[b"arguments"] = [_arg_map(a) for a in meta.arguments]
    if subs is not None:
        m[b"subcommands"] = Map((s.encode(), command_docs_reply(META[s])) for s in subs)
    return m


def _subs_of(cmd) -> list[str] | None:
    """Implemented subcommands of a container, in Redis's metadata order."""
    if not cmd.subs:
        return None
    have = {s.name for s in cmd.subs.values()}
    order = [s for s in cmd.meta.subcommands if s in have]
    order.extend(sorted(have - set(order)))
    return order


def _lookup(srv, name: bytes):
    cmd = srv.table.get(name.lower())
    if cmd is not None:
        return cmd
    if b"|" in name:
        parent, sub = name.lower().split(b"|", 1)
        p = srv.table.get(parent)
        if p is not None and p.subs:
            return p.subs.get(sub)
    return None


@command("command")
def command_cmd(c, argv):
    if len(argv) > 1:
        raise CommandError("ERR unknown subcommand '%s'. Try COMMAND HELP."
                           % _s(argv[1])[:128])
    srv = c.srv
    return encode([command_info_reply(cmd.meta, _subs_of(cmd)) for cmd in srv.table.values()],
                  c.resp)


@command("command|help")
def command_help(c, argv):
    return _help("COMMAND", COMMAND_HELP)


@command("command|count")
def command_count(c, argv):
    return integer(len(c.srv.table))


@command("command|info")
def command_info(c, argv):
    srv = c.srv
    if len(argv) == 2:
        return command_cmd(c, argv[:1])
    out = []
    for name in argv[2:]:
        cmd = _lookup(srv, name)
        out.append(None if cmd is None else command_info_reply(cmd.meta, _subs_of(cmd)))
    return encode(out, c.resp)


@command("command|docs")
def command_docs(c, argv):
    srv = c.srv
    out = Map()
    if len(argv) == 2:
        for cmd in srv.table.values():
            out[cmd.name.encode()] = command_docs_reply(cmd.meta, _subs_of(cmd))
    else:
        for name in argv[2:]:
            cmd = _lookup(srv, name)
            if cmd is not None:
                out[cmd.name.encode()] = command_docs_reply(cmd.meta, _subs_of(cmd))
    return encode(out, c.resp)


@command("command|list")
def command_list(c, argv):
    srv = c.srv
    names = []
    for cmd in srv.table.values():
        names.append(cmd.name)
        if cmd.subs:
            names.extend(_subs_of(cmd))
    if len(argv) == 2:
        pass
    elif len(argv) == 5 and argv[2].lower() == b"filterby":
        kind = argv[3].lower()
        val = argv[4]
        if kind == b"module":
            names = []
        elif kind == b"aclcat":
            cat = "@" + _s(val).lower()
            names = [n for n in names if cat in META[n].acl_categories]
        elif kind == b"pattern":
            names = [n for n in names if glob_match(val, n.encode(), nocase=True)]
        else:
            raise CommandError(SYNTAX)
    else:
        raise CommandError(SYNTAX)
    return encode([n.encode() for n in names], c.resp)


def _getkeys(c, argv, with_flags: bool):
    srv = c.srv
    args = argv[2:]
    cmd = srv.table.get(args[0].lower())
    if cmd is not None and cmd.subs is not None and len(args) > 1:
        cmd = cmd.subs.get(args[1].lower())
    if cmd is None or cmd.handler is None:
        raise CommandError("ERR Invalid command specified")
    if not has_keys(cmd):
        raise CommandError("ERR The command has no key arguments")
    arity = cmd.arity
    if (arity > 0 and arity != len(args)) or len(args) < -arity:
        raise CommandError("ERR Invalid number of arguments specified for command")
    keys = command_keys(cmd, args)
    if not keys:
        if "no_mandatory_keys" in cmd.flags:
            return encode([], c.resp)
        raise CommandError("ERR Invalid arguments specified for command")
    if with_flags:
        return encode([[args[i], SetReply([Status(f) for f in fl])] for i, fl in keys],
                      c.resp)
    return encode([args[i] for i, _ in keys], c.resp)


@command("command|getkeys")
def command_getkeys(c, argv):
    return _getkeys(c, argv, False)


@command("command|getkeysandflags")
def command_getkeysandflags(c, argv):
    return _getkeys(c, argv, True)


# ====================================================================== misc
@command("time")
def time_cmd(c, argv):
    t = time.time()
    s = int(t)
    return b"*2\r\n" + bulk(b"%d" % s) + bulk(b"%d" % int((t - s) * 1e6))


@command("lastsave")
def lastsave(c, argv):
    return integer(c.srv.snapshots.lastsave)


@command("save")
def save(c, argv):
    snap = c.srv.snapshots
    if c.srv.children.kind_is_rdb():
        raise CommandError("ERR Background save already in progress")
    if not snap.save():
        raise CommandError("ERR")
    return OK


@command("bgsave")
def bgsave(c, argv):
    schedule = False
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() != b"schedule"):
        raise CommandError(SYNTAX)
    if len(argv) == 2:
        schedule = True
    srv = c.srv
    snap = srv.snapshots
    if srv.children.kind_is_rdb():          # a BGSAVE or a full sync's child
        raise CommandError("ERR Background save already in progress")
    if srv.children.busy() or c.in_multi:
        if schedule or c.in_multi:
            snap.scheduled = True
            return b"+Background saving scheduled\r\n"
        raise CommandError("ERR Another child process is active (AOF?): can't BGSAVE right "
                           "now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever "
                           "possible.")
    if not snap.bgsave():
        raise CommandError("ERR")
    return b"+Background saving started\r\n"


@command("bgrewriteaof")
def bgrewriteaof(c, argv):
    srv = c.srv
    if srv.aof is None:
        srv.make_aof()                # AOF off: the rewrite still writes a base file
    aof = srv.aof
    if aof.rewrite_in_progress:
        raise CommandError("ERR Background append only file rewriting already in progress")
    if srv.children.busy() or c.in_multi:   # runs from the cron when the child is done
        aof.keyspace = srv.ks
        aof.rewrite_scheduled = True
        aof.consecutive_failures = 0
        return b"+Background append only file rewriting scheduled\r\n"
    try:
        started = aof.rewrite(srv.ks)
    except (OSError, ValueError) as e:
        srv.log.warning("Can't rewrite append only file in background: %s" % e)
        raise CommandError("ERR Can't execute an AOF background rewriting. Please check the "
                           "server logs for more information.") from None
    if not started:
        raise CommandError("ERR Background append only file rewriting already in progress")
    return b"+Background append only file rewriting started\r\n"


@command("shutdown")
def shutdown(c, argv):
    nosave = save_ = now = force = abort = failover = False
    for a in argv[1:]:
        a = a.lower()
        if a == b"failover":             # Valkey 9: hand the slots over first
            failover = True
        elif a == b"nosave":
            nosave = True
        elif a == b"save":
            save_ = True
        elif a == b"now":
            now = True
        elif a == b"force":
            force = True
        elif a == b"abort":
            abort = True
        else:
            raise CommandError(SYNTAX)
    if (abort and (nosave or save_ or now or force or failover)) or (nosave and save_):
        raise CommandError(SYNTAX)
    srv = c.srv
    if abort:
        if srv.cluster is not None and srv.cluster.abort_handover():
            for w in srv.shutdown_waiters:
                w.write(b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n")
                w.resume()
            srv.shutdown_waiters.clear()
            return b"+OK\r\n"
        raise CommandError("ERR No shutdown in progress.")

    def failed():
        for w in srv.shutdown_waiters:
            w.write(b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n")
            w.resume()
        srv.shutdown_waiters.clear()
    done = srv.shutdown(force, save=save_, nosave=nosave, failover=failover, on_error=failed)
    if done is None:                     # handing over first: the client waits
        srv.shutdown_waiters.append(c)
        c.paused = True
        return None
    if not done:
        raise CommandError("ERR Errors trying to SHUTDOWN. Check logs.")
    return None


# ====================================================================== SLOWLOG
SLOWLOG_HELP = [
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
]


@command("slowlog|help")
def slowlog_help(c, argv):
    return _help("SLOWLOG", SLOWLOG_HELP)


@command("slowlog|get")
def slowlog_get(c, argv):
    srv = c.srv
    count = 10
    if len(argv) == 3:
        try:
            count = parse_int(argv[2])
        except CommandError:
            count = -2
        if count < -1:
            raise CommandError("ERR count should be greater than or equal to -1")
        if count == -1:
            count = len(srv.slowlog)
    elif len(argv) > 3:
        raise CommandError(SYNTAX)
    out = []
    for i, e in enumerate(srv.slowlog):
        if i >= count:
            break
        out.append([e[0], e[1], e[2], list(e[3]), e[4], e[5]])
    return encode(out, c.resp)


@command("slowlog|len")
def slowlog_len(c, argv):
    return integer(len(c.srv.slowlog))


@command("slowlog|reset")
def slowlog_reset(c, argv):
    c.srv.slowlog.clear()
    return OK


# ====================================================================== MONITOR
@command("monitor")
def monitor(c, argv):
    if c.monitor:
        return None
    srv = c.srv
    c.monitor = True
    srv.monitors.append(c)
    c.update_special()
    return OK


# ====================================================================== MEMORY
MEMORY_HELP = [
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
]

@command("memory|help")
def memory_help(c, argv):
    return _help("MEMORY", MEMORY_HELP)


@command("memory|usage")
def memory_usage(c, argv):
    samples = 5
    i = 3
    while i < len(argv):
        if argv[i].lower() == b"samples" and i + 1 < len(argv):
            samples = parse_int(argv[i + 1])
            if samples < 0:
                raise CommandError(SYNTAX)
            i += 2
        else:
            raise CommandError(SYNTAX)
    key = argv[2]
    db = c.db
    v = db.slots[keyslot(key)].get(key)   # dictFind: no expiry check, no access
    if v is None:
        return c.nil
    size = valuemod.memory_usage(key, v, samples)
    if key in db.expires:
        size += valuemod.EXPIRE_ENTRY
    return integer(size)


def _memory_overview(srv) -> dict:
    m = infomod._memory(srv)
    return m


@command("memory|stats")
def memory_stats(c, argv):
    srv = c.srv
    m = _memory_overview(srv)
    used = m["used_memory"]
    startup = m["used_memory_startup"]
    out = Map()
    out[b"peak.allocated"] = m["used_memory_peak"]
    out[b"total.allocated"] = used
    out[b"startup.allocated"] = startup
    out[b"replication.backlog"] = 0
    out[b"clients.slaves"] = 0
    out[b"clients.normal"] = m["mem_clients_normal"]
    out[b"cluster.links"] = 0
    out[b"aof.buffer"] = m["mem_aof_buffer"]
    out[b"lua.caches"] = 0
    out[b"functions.caches"] = 0
    keys = 0
    for db in srv.ks.dbs:
        if db is None:
            continue
        size = db.size()
        if not size:
            continue
        keys += size
        main = sum(sys.getsizeof(d) for d in db.slots if d)
        out[b"db.%d" % db.id] = Map({b"overhead.hashtable.main": main,
                                     b"overhead.hashtable.expires":
                                         sys.getsizeof(db.expires) if db.expires else 0,
                                     b"overhead.hashtable.slot-to-keys": 0})
    overhead = m["used_memory_overhead"]
    dataset = m["used_memory_dataset"]
    net = used - startup
    out[b"overhead.total"] = overhead
    out[b"keys.count"] = keys
    out[b"keys.bytes-per-key"] = net // keys if keys else 0
    out[b"dataset.bytes"] = dataset
    out[b"dataset.percentage"] = Double(dataset * 100.0 / net if net > 0 else 0.0)
    peak = m["used_memory_peak"]
    out[b"peak.percentage"] = Double(used * 100.0 / peak if peak else 100.0)
    out[b"allocator.allocated"] = m["allocator_allocated"]
    out[b"allocator.active"] = m["allocator_active"]
    out[b"allocator.resident"] = m["allocator_resident"]
    out[b"allocator-fragmentation.ratio"] = Double(float(m["allocator_frag_ratio"]))
    out[b"allocator-fragmentation.bytes"] = m["allocator_frag_bytes"]
    out[b"allocator-rss.ratio"] = Double(float(m["allocator_rss_ratio"]))
    out[b"allocator-rss.bytes"] = m["allocator_rss_bytes"]
    out[b"rss-overhead.ratio"] = Double(1.0)
    out[b"rss-overhead.bytes"] = 0
    out[b"fragmentation"] = Double(float(m["mem_fragmentation_ratio"]))
    out[b"fragmentation.bytes"] = m["mem_fragmentation_bytes"]
    return encode(out, c.resp)


@command("memory|doctor")
def memory_doctor(c, argv):
    srv = c.srv
    m = _memory_overview(srv)
    used = m["used_memory"]
    if used < 5 * 1024 * 1024:
        text = ("Hi Sam, this instance is empty or is using very little memory, my issues "
                "detector can't be used in these conditions. Please, leave for your mission "
                "on Earth and fill it with some data. The new Sam and I will be back to our "
                "programming as soon as I finished rebooting.\n")
        return _verbatim(c, text)
    issues = []
    if m["used_memory_peak"] / used > 1.5:
        issues.append(
            " * Peak memory: In the past this instance used more than 150% the memory that "
            "is currently using. The allocator is normally not able to release memory after "
            "a peak, so you can expect to see a big fragmentation ratio, however this is "
            "actually harmless and is only due to the memory peak, and if the Redis instance "
            "Resident Set Size (RSS) is currently bigger than expected, the memory will be "
            "used as soon as you fill the Redis instance with more data. If the memory peak "
            "was only occasional and you want to try to reclaim memory, please try the MEMORY "
            "PURGE command, otherwise the only other option is to shutdown and restart the "
            "instance.\n\n")
    if float(m["mem_fragmentation_ratio"]) > 1.4 and m["mem_fragmentation_bytes"] > 10 << 20:
        issues.append(
            " * High total RSS: This instance has a memory fragmentation and RSS overhead "
            "greater than 1.4 (this means that the Resident Set Size of the Redis process is "
            "much larger than the sum of the logical allocations Redis performed). This "
            "problem is usually due either to a large peak memory (check if there is a peak "
            "memory entry above in the report) or may result from a workload that causes the "
            "allocator to fragment memory a lot. If the problem is a large peak memory, then "
            "there is no issue. Otherwise, make sure you are using the Jemalloc allocator and "
            "not the default libc malloc. Note: The currently used allocator is \"libc\".\n\n")
    if not issues:
        text = ("Hi Sam, I can't find any memory issue in your instance. I can only account "
                "for what occurs on this base.\n")
    else:
        text = ("Sam, I detected a few issues in this Redis instance memory implants:\n\n"
                + "".join(issues)
                + "I'm here to keep you safe, Sam. I want to help you.\n")
    return _verbatim(c, text)


@command("memory|malloc-stats")
def memory_malloc_stats(c, argv):
    return _verbatim(c, "Stats not supported for the current allocator")


@command("memory|purge")
def memory_purge(c, argv):
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return OK
