"""Commands the proxy answers itself or sends to every primary: connection
state (PING, HELLO, AUTH, SELECT, CLIENT ...), MULTI/EXEC and WATCH,
pub/sub, DBSIZE/KEYS/FLUSHALL/SCAN/INFO across the shards, scripts, functions
and ACL users on every primary."""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING

from pynode.commands.transactions import EXECABORT
from pynode.config import VERSION
from pynode.proxy.core import (CROSSSLOT, EXEC, NO_MAP, cmd_bytes, decode, elements, err,
                               parse_redirect, scan_cursor, tx_check)
from pynode.proxy.links import Link
from pynode.resp import Map, Verbatim, encode
from storage.slots import keyslot

if TYPE_CHECKING:  # annotations only: the router imports this module
    from pynode.proxy.router import Client, Proxy

TX_CONTROL = frozenset((b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"))


def _arity(c: Client, argv: list[bytes], ok: bool) -> bool:
    if not ok:
        c.reply(err("ERR wrong number of arguments for '%s' command"
                    % argv[0].decode("latin-1").lower()))
    return ok


def _ping(px: Proxy, c: Client, argv) -> None:
    if _arity(c, argv, len(argv) <= 2):
        c.reply(b"+PONG\r\n" if len(argv) == 1 else encode(argv[1]))


def _echo(px: Proxy, c: Client, argv) -> None:
    if _arity(c, argv, len(argv) == 2):
        c.reply(encode(argv[1]))


def _ok(px: Proxy, c: Client, argv) -> None:
    c.reply(b"+OK\r\n")


def _quit(px: Proxy, c: Client, argv) -> None:
    c.reply(b"+OK\r\n")
    c.close_after_replies()


def _select(px: Proxy, c: Client, argv) -> None:
    if _arity(c, argv, len(argv) == 2):
        c.reply(b"+OK\r\n" if argv[1] == b"0" else
                err("ERR SELECT is not allowed in cluster mode"))


def _auth_then(px: Proxy, c: Client, creds: tuple, then) -> None:
    """Check credentials against a node (on a link opened with them)."""
    def done(frame):
        if type(frame) is str:
            frame = err("ERR proxy: no node reachable to check the credentials")
        elif frame[:1] != b"-":
            c.creds = creds
        then(frame)
    call = px.new_call(c, cmd_bytes([b"AUTH", *creds]), None, True, done)
    call.creds = creds
    px.send(call)


def _auth(px: Proxy, c: Client, argv) -> None:
    if _arity(c, argv, 2 <= len(argv) <= 3):
        _auth_then(px, c, tuple(argv[1:]), c.expect().fill)


def _hello(px: Proxy, c: Client, argv) -> None:
    proto = c.proto
    i = 1
    if len(argv) > 1:
        try:
            proto = int(argv[1])
        except ValueError:
            c.reply(err("ERR Protocol version is not an integer or out of range"))
            return
        if proto not in (2, 3):
            c.reply(err("NOPROTO unsupported protocol version"))
            return
        i = 2
    creds = None
    name = None
    while i < len(argv):
        opt = argv[i].lower()
        if opt == b"auth" and i + 2 < len(argv):
            creds = (argv[i + 1], argv[i + 2])
            i += 3
        elif opt == b"setname" and i + 1 < len(argv):
            name = argv[i + 1]
            i += 2
        else:
            c.reply(err("ERR Syntax error in HELLO option '%s'" % argv[i].decode("latin-1")))
            return
    p = c.expect()

    def finish(frame=None):
        if frame is not None and frame[:1] == b"-":
            p.fill(frame)
            return
        c.proto = proto
        if name is not None:
            c.name = name
        p.fill(encode(Map([("server", "redis"), ("version", VERSION), ("proto", proto),
                           ("id", c.id), ("mode", "standalone"), ("role", "master"),
                           ("modules", [])]), proto))
    if creds is not None:
        _auth_then(px, c, creds, finish)
    else:
        finish()


def _client(px: Proxy, c: Client, argv) -> None:
    sub = argv[1].lower() if len(argv) > 1 else b""
    if sub == b"setname" and len(argv) == 3:
        if any(ch <= 32 or ch > 126 for ch in argv[2]):
            c.reply(err("ERR Client names cannot contain spaces, newlines or special "
                        "characters."))
            return
        c.name = argv[2]
        c.reply(b"+OK\r\n")
    elif sub == b"getname" and len(argv) == 2:
        c.reply(encode(c.name) if c.name else (b"_\r\n" if c.proto == 3 else b"$-1\r\n"))
    elif sub == b"id" and len(argv) == 2:
        c.reply(b":%d\r\n" % c.id)
    elif sub in (b"setinfo",):
        c.reply(b"+OK\r\n")
    elif sub in (b"reply", b"tracking", b"caching", b"pause", b"unpause", b"no-evict",
                 b"kill", b"unblock"):
        c.reply(err("ERR CLIENT %s is not supported through pynode proxy"
                    % sub.decode("latin-1").upper()))
    else:
        _anywhere(px, c, argv)


def _refuse(px: Proxy, c: Client, argv) -> None:
    c.reply(err("ERR %s is not supported through pynode proxy"
                % argv[0].decode("latin-1").upper()))


def _multi(px: Proxy, c: Client, argv) -> None:
    if c.multi is not None:
        c.reply(err("ERR MULTI calls can not be nested"))
        return
    c.multi = []
    c.multi_slot = None
    c.multi_error = False
    c.reply(b"+OK\r\n")


def queue(px: Proxy, c: Client, argv: list[bytes]) -> None:
    """A command inside MULTI: checked now as a node would (unknown command,
    arity, keys of one slot), queued in the proxy, sent at EXEC."""
    e, slot = tx_check(argv)
    if slot is not None:
        if c.multi_slot is None:
            c.multi_slot = slot
        elif slot != c.multi_slot:
            e = CROSSSLOT
    if e is not None:
        c.multi_error = True
        c.reply(err(e))
        return
    c.multi.append(argv)
    c.reply(b"+QUEUED\r\n")


def _discard(px: Proxy, c: Client, argv) -> None:
    if c.multi is None:
        c.reply(err("ERR DISCARD without MULTI"))
        return
    c.multi = None
    c.reply(b"+OK\r\n")


def _exec(px: Proxy, c: Client, argv) -> None:
    if c.multi is None:
        c.reply(err("ERR EXEC without MULTI"))
        return
    cmds, c.multi = c.multi, None
    if c.multi_error:
        c.reply(err(EXECABORT))
        return
    if not cmds:
        c.reply(b"*0\r\n")
        return
    call = px.new_call(c, EXEC, c.multi_slot, False)
    call.tx = [cmd_bytes(a) for a in cmds]
    px.send(call)


def _watch(px: Proxy, c: Client, argv) -> None:
    if c.multi is not None:
        c.reply(err("ERR WATCH inside MULTI is not allowed"))
        return
    if not _arity(c, argv, len(argv) >= 2):
        return
    addr = px.map.primary[keyslot(argv[1])]
    if addr is None:
        c.reply(err(NO_MAP))
        return
    # WATCH holds state on the node's connection: this client gets a link of its own
    c.pinned = Link(px, addr, c.proto, c.creds, False, shared=False)
    px.pinned_cmd(c, b"watch", argv)


def _unwatch(px: Proxy, c: Client, argv) -> None:
    c.reply(b"+OK\r\n")


# the confirmations of SSUBSCRIBE / SUNSUBSCRIBE (the node's own or one it
# sends when a slot leaves it), RESP2 and RESP3: they carry the count of the
# connection's shard channels
_SHARD_REPLIES = tuple(t + b"3\r\n$%d\r\n%s\r\n" % (len(n), n)
                       for t in (b"*", b">") for n in (b"ssubscribe", b"sunsubscribe"))


def _subscribe(px: Proxy, c: Client, argv) -> None:
    if not _arity(c, argv, len(argv) >= 2):
        return
    shard = argv[0].lower() == b"ssubscribe"
    if shard:
        addr = px.map.primary[keyslot(argv[1])]
    else:
        prims = px.map.primaries()
        addr = random.choice(prims) if prims else None
    if addr is None:
        c.reply(err(NO_MAP))
        return
    c.plain_subs = not shard
    c.shard_channels = 0
    data = cmd_bytes(argv)
    c.last_ssubscribe = data if shard else None
    _pubsub_link(px, c, addr).send_raw(data)


def _pubsub_link(px: Proxy, c: Client, addr: tuple) -> Link:
    """The client's own link to a node for pub/sub: every frame the node sends
    on it is the client's, in order."""
    link = c.passthrough = Link(px, addr, c.proto, c.creds, False, shared=False)

    def sink(frame):
        if frame is None:
            if not c.closed:
                c.transport.close()
        elif not c.closed:
            if frame.startswith(_SHARD_REPLIES):
                c.shard_channels = decode(frame)[2]
            elif frame.startswith(b"-MOVED ") and c.last_ssubscribe is not None:
                # the proxy's map was behind: follow the redirection if it can
                moved = parse_redirect(frame)
                if moved is not None:
                    px.map.move(*moved)
                    px.refresh()
                    if shard_resubscribe(px, c, moved[0], c.last_ssubscribe):
                        return
            c.reply(frame)
    link.raw_sink = sink
    return link


def shard_resubscribe(px: Proxy, c: Client, slot: int, data: bytes) -> bool:
    """SSUBSCRIBE (as sent: `data`) on a pub/sub connection whose shard channels
    are all gone (unsubscribed, or dropped by the node when their slot moved
    away) and that has no other subscriptions: if the slot is served by another
    node, the connection's pub/sub link moves there and the command goes
    there. False when it stays on the current link."""
    link = c.passthrough
    addr = px.map.primary[slot]
    if addr is None or addr == link.addr or c.plain_subs or c.shard_channels:
        return False
    link.raw_sink = None
    link.close()
    _pubsub_link(px, c, addr).send_raw(data)
    return True


def _reset(px: Proxy, c: Client, argv) -> None:
    c.multi = None
    c.proto = 2
    c.name = b""
    c.creds = px.creds
    c.reply(b"+RESET\r\n")


def _dbsize(px: Proxy, c: Client, argv) -> None:
    if _arity(c, argv, len(argv) == 1):
        px.fanout(c, argv, lambda fs: b":%d\r\n" % sum(int(f[1:-2]) for f in fs))


def _keys(px: Proxy, c: Client, argv) -> None:
    if _arity(c, argv, len(argv) == 2):
        def combine(fs):
            els = [e for f in fs for e in elements(f)]
            return b"*%d\r\n" % len(els) + b"".join(els)
        px.fanout(c, argv, combine)


def _flush(px: Proxy, c: Client, argv) -> None:
    px.fanout(c, argv, lambda fs: b"+OK\r\n", readonly=False)


def _scan(px: Proxy, c: Client, argv) -> None:
    if not _arity(c, argv, len(argv) >= 2):
        return
    pos = scan_cursor(argv[1])
    if pos is None:
        c.reply(err("ERR invalid cursor"))
        return
    idx, inner = pos
    shards = px.map.shards()
    if not shards:
        c.reply(err(NO_MAP))
        return
    if idx >= len(shards):
        c.reply(b"*2\r\n$1\r\n0\r\n*0\r\n")
        return
    p = c.expect()

    def done(frame):
        if frame[:1] == b"-":
            p.fill(frame)
            return
        els = elements(frame)
        nxt = int(decode(els[0]))
        if nxt:
            cursor = nxt << 10 | idx
        else:
            cursor = idx + 1 if idx + 1 < len(shards) else 0
        cur = b"%d" % cursor
        p.fill(b"*2\r\n$%d\r\n%s\r\n" % (len(cur), cur) + els[1])
    call = px.new_call(c, cmd_bytes([argv[0], b"%d" % inner, *argv[2:]]), shards[idx], True,
                       done)
    call.primary_only = True
    px.send(call)


def _info(px: Proxy, c: Client, argv) -> None:
    sections = {a.lower() for a in argv[1:]} or {b"default"}
    want_ks = bool(sections & {b"keyspace", b"default", b"all", b"everything"})

    def render(keyspace: str) -> bytes:
        text = _info_text(px, sections, keyspace)
        return encode(Verbatim(text.encode()), c.proto)
    if not want_ks:
        c.reply(render(""))
        return

    def combine(fs):
        dbs: dict = {}
        for f in fs:
            text = decode(f)
            text = text.decode() if isinstance(text, bytes) else str(text)
            for line in text.splitlines():
                if line.startswith("db") and ":" in line:
                    db, rest = line.split(":", 1)
                    kv = dict(x.split("=") for x in rest.split(","))
                    d = dbs.setdefault(db, [0, 0, 0])
                    d[0] += int(kv.get("keys", 0))
                    d[1] += int(kv.get("expires", 0))
                    d[2] += int(kv.get("avg_ttl", 0)) * int(kv.get("expires", 0))
        lines = ["%s:keys=%d,expires=%d,avg_ttl=%d" % (db, k, e, t // e if e else 0)
                 for db, (k, e, t) in sorted(dbs.items())]
        return render("".join(line + "\r\n" for line in lines))
    px.fanout(c, [b"INFO", b"keyspace"], combine)


def _info_text(self: Proxy, sections: set, keyspace: str) -> str:
    every = bool(sections & {b"all", b"everything", b"default"})
    parts = []
    if every or b"server" in sections:
        parts.append("# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\n"
                     "pynode_mode:proxy\r\nprocess_id:%d\r\ntcp_port:%d\r\n"
                     "uptime_in_seconds:%d\r\n" % (VERSION, os.getpid(), self.port,
                                                   time.time() - self.started))
    if every or b"clients" in sections:
        parts.append("# Clients\r\nconnected_clients:%d\r\n" % len(self.clients))
    if every or b"stats" in sections:
        s = self.stats
        parts.append("# Stats\r\n" + "".join(
            "%s:%d\r\n" % (k, v) for k, v in
            [("total_connections_received", s["total_connections_received"]),
             ("total_commands_processed", self.ncommands)]))
    if every or b"proxy" in sections:
        s = self.stats
        prims = self.map.primaries()
        parts.append("# Proxy\r\n" + "".join("%s:%d\r\n" % kv for kv in [
            ("proxy_workers", self.workers),
            ("proxy_protocol_errors", s["protocol_errors"]),
            ("proxy_clients_reading_paused", sum(c.read_paused for c in self.clients)),
            ("proxy_backend_links", len(self.links)),
            ("proxy_backend_connections_opened", s["backend_connections"]),
            ("proxy_backend_link_failures", s["link_failures"]),
            ("proxy_retries", s["retries"]),
            ("proxy_moved", s["moved"]),
            ("proxy_ask", s["ask"]),
            ("proxy_tryagain", s["tryagain"]),
            ("proxy_clusterdown", s["clusterdown"]),
            ("proxy_slot_map_refreshes", s["slot_map_refreshes"]),
            ("proxy_split_commands", s["split_commands"]),
            ("proxy_fanout_commands", s["fanout_commands"]),
            ("proxy_primaries", len(prims)),
            ("proxy_replicas", len(set().union(*set(self.map.replicas)))),
            ("proxy_slots_covered", sum(a is not None for a in self.map.primary))]))
    if keyspace or b"keyspace" in sections or every:
        parts.append("# Keyspace\r\n" + keyspace)
    return "\r\n".join(parts)


def _everywhere(px: Proxy, c: Client, argv) -> None:
    """SCRIPT LOAD/FLUSH, FUNCTION LOAD/DELETE/FLUSH/RESTORE, ACL SETUSER/DELUSER:
    on every primary, so EVALSHA, FCALL and AUTH work whichever node serves the
    keys; the first reply is the client's (the same from each node)."""
    sub = argv[1].lower() if len(argv) > 1 else b""
    if sub in (b"load", b"flush", b"delete", b"restore", b"setuser", b"deluser"):
        px.fanout(c, argv, lambda fs: fs[0], readonly=False)
    else:
        _anywhere(px, c, argv)


def _anywhere(px: Proxy, c: Client, argv: list[bytes]) -> None:
    px.send(px.new_call(c, cmd_bytes(argv), None, False))


LOCAL = {
    b"ping": _ping, b"echo": _echo, b"quit": _quit, b"select": _select, b"auth": _auth,
    b"hello": _hello, b"client": _client, b"readonly": _ok, b"readwrite": _ok,
    b"asking": _ok, b"multi": _multi, b"exec": _exec, b"discard": _discard,
    b"watch": _watch, b"unwatch": _unwatch, b"subscribe": _subscribe,
    b"psubscribe": _subscribe, b"ssubscribe": _subscribe, b"reset": _reset,
    b"dbsize": _dbsize, b"keys": _keys, b"flushall": _flush, b"flushdb": _flush,
    b"scan": _scan, b"info": _info, b"monitor": _refuse, b"swapdb": _refuse,
    b"move": _refuse, b"script": _everywhere, b"function": _everywhere,
    b"acl": _everywhere,
}
