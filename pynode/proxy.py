"""`pynode proxy`: a stateless Redis Cluster proxy for plain (non-cluster) clients.

A plain client connects to the proxy as to one redis-server. The proxy learns
the slot map (CLUSTER SLOTS), sends each command to the node that serves the
slot of its first key over a few shared, pipelined links (one per node, client
protocol and credentials), and follows MOVED, ASK (with ASKING), TRYAGAIN,
CLUSTERDOWN and READONLY refusals with bounded retries, refreshing the map.

Replies are forwarded as the node wrote them: the links speak the client's own
protocol (RESP2 or RESP3), so only frame boundaries are found here
(`reply_end`); values are decoded (hiredis) only where the proxy itself must
read them (CLUSTER SLOTS, counts, cursors, INFO keyspace).

Pure parts, unit-tested without sockets: `reply_end`/`elements` (framing),
`SlotMap` (CLUSTER SLOTS -> owner per slot), `split` / `join_*` (multi-key
commands cut per slot and joined in the client's order), `scan_cursor`.
Several proxies may run side by side: none keeps state beyond its map.
"""

from __future__ import annotations

import argparse
import asyncio
from binascii import crc_hqx
import os
import random
import socket
import sys
import time
from collections import deque

import hiredis

from pynode.command_meta import COMMANDS
from pynode.config import VERSION
from pynode.keyspecs import _InvalidSpec, keys_by_specs
from pynode.resp import Map, RequestParser, Verbatim, encode
from storage.slots import keyslot

# ---------------------------------------------------------------- framing

_LINE = frozenset(b"+-:_,#(")
_BLOB = frozenset(b"$!=")
_AGG = frozenset(b"*~>")
_PAIRS = frozenset(b"%|")


class FrameError(Exception):
    """A node sent bytes that are not RESP."""


def reply_end(buf: bytes, pos: int = 0) -> int:
    """Offset just past the complete reply starting at pos, or -1 if incomplete."""
    n = len(buf)
    need = 1
    find = buf.find
    while need:
        if pos >= n:
            return -1
        nl = find(b"\r\n", pos)
        if nl < 0:
            return -1
        t = buf[pos]
        need -= 1
        if t in _LINE:
            pos = nl + 2
            continue
        try:
            count = int(buf[pos + 1:nl])
        except ValueError:
            raise FrameError("bad length line %r" % buf[pos:nl][:40]) from None
        pos = nl + 2
        if t in _BLOB:
            if count >= 0:
                pos += count + 2
                if pos > n:
                    return -1
        elif t in _AGG:
            if count > 0:
                need += count
        elif t in _PAIRS:
            if count > 0:
                need += 2 * count
            if t == 124:        # an attribute precedes the reply it describes
                need += 1
        else:
            raise FrameError("unknown reply type %r" % chr(t))
    return pos


def elements(buf: bytes) -> list[bytes]:
    """The element frames of one aggregate reply (its header skipped)."""
    nl = buf.find(b"\r\n")
    count = int(buf[1:nl])
    if buf[0] in _PAIRS:
        count *= 2
    out = []
    pos = nl + 2
    for _ in range(max(count, 0)):
        end = reply_end(buf, pos)
        out.append(buf[pos:end])
        pos = end
    return out


def decode(frame: bytes):
    r = hiredis.Reader()
    r.feed(frame)
    return r.gets()


def cmd_bytes(argv: list[bytes]) -> bytes:
    n = len(argv)
    if n == 2:
        a, b = argv
        return b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a), a, len(b), b)
    if n == 3:
        a, b, c = argv
        return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(a), a, len(b), b, len(c), c)
    parts = [b"*%d\r\n" % n]
    for a in argv:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def err(text: str) -> bytes:
    return b"-" + text.encode() + b"\r\n"


# ---------------------------------------------------------------- the slot map

class SlotMap:
    """Owner of every slot (address of the primary) and its replicas."""

    def __init__(self) -> None:
        self.primary: list[tuple | None] = [None] * 16384
        self.replicas: list[tuple] = [()] * 16384
        self.epoch = 0          # bumped on every change; lets a split notice

    def load_slots(self, reply, default_host: str) -> None:
        """Replace the map with a decoded CLUSTER SLOTS reply."""
        primary: list[tuple | None] = [None] * 16384
        replicas: list[tuple] = [()] * 16384
        for entry in reply:
            lo, hi = int(entry[0]), int(entry[1])
            addrs = []
            for node in entry[2:]:
                host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
                if not host or host == "?":
                    host = default_host
                addrs.append((host, int(node[1])))
            if not addrs:
                continue
            reps = tuple(addrs[1:])
            for s in range(lo, hi + 1):
                primary[s] = addrs[0]
                replicas[s] = reps
        self.primary = primary
        self.replicas = replicas
        self.epoch += 1

    def move(self, slot: int, addr: tuple) -> None:
        if self.primary[slot] != addr:
            self.primary[slot] = addr
            self.replicas[slot] = ()
            self.epoch += 1

    def primaries(self) -> list[tuple]:
        """Each primary once, ordered by the first slot it serves."""
        seen: dict = {}
        for a in self.primary:
            if a is not None and a not in seen:
                seen[a] = len(seen)
        return list(seen)

    def shards(self) -> list[int]:
        """The first slot of each primary, in slot order: a command routed by it
        reaches that shard's primary, whoever it is after a failover."""
        seen: set = set()
        out = []
        for slot, a in enumerate(self.primary):
            if a is not None and a not in seen:
                seen.add(a)
                out.append(slot)
        return out

    def covered(self) -> bool:
        return None not in self.primary


# ---------------------------------------------------------------- commands

def first_key(name: str, argv: list[bytes]) -> bytes | None:
    """The first key of a command (its routing key), None for keyless commands."""
    meta = COMMANDS.get(name)
    if meta is None:
        return None
    if meta.subcommands and len(argv) > 1:
        sub = COMMANDS.get(name + "|" + argv[1].decode("latin-1").lower())
        if sub is not None:
            meta = sub
    if "movablekeys" in meta.flags:
        try:
            found = keys_by_specs(meta, argv)
        except (_InvalidSpec, IndexError):
            found = []
        if found:
            return argv[found[0][0]]
    fk = meta.first_key
    if 0 < fk < len(argv):
        return argv[fk]
    return None


SPLIT = {b"mget": 1, b"mset": 2, b"del": 1, b"unlink": 1, b"exists": 1, b"touch": 1}


def split(argv: list[bytes], step: int) -> list[tuple[int, list[bytes], list[int]]]:
    """Cut a multi-key command into one command per slot:
    [(slot, sub-argv, positions of its keys in the client's command)]."""
    groups: dict[int, tuple[list[bytes], list[int]]] = {}
    order = []
    for i, idx in enumerate(range(1, len(argv), step)):
        key = argv[idx]
        slot = keyslot(key)
        g = groups.get(slot)
        if g is None:
            g = groups[slot] = ([argv[0]], [])
            order.append(slot)
        g[0].extend(argv[idx:idx + step])
        g[1].append(i)
    return [(s, groups[s][0], groups[s][1]) for s in order]


def join(name: bytes, parts: list[tuple[list[int], bytes]], nkeys: int) -> bytes:
    """The client's reply from the replies of the per-slot commands."""
    for _, r in parts:
        if r[:1] == b"-":
            return r
    if name == b"mget":
        out: list[bytes] = [b""] * nkeys
        for positions, r in parts:
            for p, e in zip(positions, elements(r)):
                out[p] = e
        return b"*%d\r\n" % nkeys + b"".join(out)
    if name == b"mset":
        return b"+OK\r\n"
    return b":%d\r\n" % sum(int(r[1:-2]) for _, r in parts)


def scan_cursor(cursor: bytes) -> tuple[int, int] | None:
    """(shard index, the node's own cursor) from the proxy's cursor."""
    if not cursor.isdigit():
        return None
    c = int(cursor)
    if c >= 1 << 64:
        return None
    return c & 1023, c >> 10


# ---------------------------------------------------------------- backend links

LOST_UNSENT = "unsent"     # the link failed before the command was written
LOST_SENT = "sent"         # the link failed with the command in flight


class Link(asyncio.Protocol):
    """One connection to a node, shared and pipelined by many clients.

    `send(data, cb)` queues a command; cb(frame) runs when its reply arrives,
    cb(LOST_UNSENT / LOST_SENT) if the link fails first. In raw mode (pub/sub
    pass-through) every frame goes to `raw_sink` instead."""

    def __init__(self, proxy: "Proxy", addr: tuple, proto: int, creds: tuple | None,
                 readonly: bool, shared: bool = True) -> None:
        self.proxy = proxy
        self.addr = addr
        self.key = (addr, proto, creds, readonly)
        self.shared = shared
        self.transport = None
        self.pending: deque = deque()
        self.out: list[bytes] = []
        self.sent = False          # anything written yet (else failures are safe to retry)
        self.unsent = 0            # commands at the end of `pending` not written yet
        self.buf = b""
        self.closed = False
        self.raw_sink = None
        hs = []
        if creds:
            hs.append(cmd_bytes([b"AUTH", *creds]))
        if proto == 3:
            hs.append(cmd_bytes([b"HELLO", b"3"]))
        if readonly:
            hs.append(cmd_bytes([b"READONLY"]))
        for data in hs:
            self.send(data, self._handshake_reply)
        proxy.stats["backend_connections"] += 1
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: self, *self.addr),
                                   self.proxy.connect_timeout)
        except (OSError, asyncio.TimeoutError):
            self.fail(LOST_UNSENT)

    def _handshake_reply(self, frame) -> None:
        if isinstance(frame, bytes) and frame[:1] == b"-":
            # wrong credentials and the like: every queued command gets the error
            self.closed = True
            self.proxy.drop_link(self)
            pending, self.pending = self.pending, deque()
            for cb in pending:
                cb(frame)
            if self.transport is not None:
                self.transport.close()

    def connection_made(self, transport) -> None:
        if self.closed:
            transport.close()
            return
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proxy.dirty_links.add(self)
        self.proxy.schedule_flush()

    def send(self, data: bytes, cb) -> None:
        if self.closed:
            cb(LOST_UNSENT)
            return
        self.pending.append(cb)
        self.out.append(data)
        self.unsent += 1
        if self.unsent == 1:
            proxy = self.proxy
            proxy.dirty_links.add(self)
            if not proxy.flush_scheduled:
                proxy.schedule_flush()

    def send_raw(self, data: bytes) -> None:
        """Write without expecting a reply of its own (pub/sub pass-through)."""
        if not self.closed:
            self.out.append(data)
            self.proxy.dirty_links.add(self)
            self.proxy.schedule_flush()

    def flush(self) -> None:
        if self.transport is not None and self.out and not self.closed:
            self.transport.write(b"".join(self.out))
            self.out = []
            self.unsent = 0
            self.sent = True

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = 0
        n = len(buf)
        find = buf.find
        try:
            while pos < n:
                t = buf[pos]
                if t == 43 or t == 58:          # +simple, :integer
                    end = find(b"\r\n", pos)
                    if end < 0:
                        break
                    end += 2
                elif t == 36:                   # $bulk
                    nl = find(b"\r\n", pos)
                    if nl < 0:
                        break
                    ln = int(buf[pos + 1:nl])
                    end = nl + 4 + ln if ln >= 0 else nl + 2
                    if end > n:
                        break
                else:
                    end = reply_end(buf, pos)
                    if end < 0:
                        break
                frame = buf[pos:end]
                pos = end
                if self.pending:
                    self.pending.popleft()(frame)
                elif self.raw_sink is not None:
                    self.raw_sink(frame)
                else:
                    raise FrameError("reply with no command")
        except (FrameError, ValueError) as e:
            self.proxy.log("link %s:%d: %s; closing it" % (self.addr[0], self.addr[1], e))
            self.transport.close()
            return
        self.buf = buf[pos:] if pos < len(buf) else b""

    def connection_lost(self, exc) -> None:
        self.fail(LOST_SENT if self.sent else LOST_UNSENT)

    def fail(self, how: str) -> None:
        if self.closed and not self.pending:
            return
        self.closed = True
        self.proxy.drop_link(self)
        pending, self.pending = self.pending, deque()
        # what was never written can be retried whatever it was
        written = len(pending) - self.unsent
        self.out = []
        self.unsent = 0
        for i, cb in enumerate(pending):
            cb(how if i < written else LOST_UNSENT)
        if self.raw_sink is not None:
            self.raw_sink(None)
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self.closed = True
        self.proxy.drop_link(self)
        if self.transport is not None:
            self.transport.close()


# ---------------------------------------------------------------- clients

class Pending:
    """A client's reply slot: replies leave in the order of the commands."""
    __slots__ = ("client", "frame")

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.frame = None

    def fill(self, frame: bytes) -> None:
        self.frame = frame
        c = self.client
        q = c.queue
        if q and q[0] is self:
            out = c.out
            while q and q[0].frame is not None:
                out.append(q.popleft().frame)
            c.proxy.dirty_clients.add(c)
            c.proxy.schedule_flush()


class Client(asyncio.Protocol):
    """One plain client connection."""

    def __init__(self, proxy: "Proxy") -> None:
        self.proxy = proxy
        self.parser = RequestParser()
        self.queue: deque = deque()
        self.out: list[bytes] = []
        self.transport = None
        self.proto = 2
        self.creds = proxy.creds
        self.name = b""
        self.multi: list | None = None       # commands queued by MULTI (not pinned)
        self.pinned: Link | None = None      # WATCH: a link of its own until EXEC/DISCARD
        self.passthrough: Link | None = None  # pub/sub: a link of its own
        self.blocked: set = set()            # links carrying its blocking commands
        self.closing = False
        self.closed = False
        proxy.next_id += 1
        self.id = proxy.next_id

    def expect(self) -> Pending:
        p = Pending(self)
        self.queue.append(p)
        return p

    def reply(self, frame: bytes) -> None:
        self.expect().fill(frame)

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proxy.clients.add(self)
        self.proxy.stats["total_connections_received"] += 1

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        parser = self.parser
        cmds = parser.feed(data)
        if len(cmds) > 1:
            self.proxy.dispatch_many(self, cmds)
        else:
            for argv in cmds:
                self.proxy.dispatch(self, argv)
        if parser.error is not None and not self.closing:
            # as Redis: the commands before the bad bytes run, then an error, then close
            self.reply(err("ERR " + parser.error))
            self.proxy.stats["protocol_errors"] += 1
            self.close_after_replies()

    def close_after_replies(self) -> None:
        self.closing = True
        self.proxy.dirty_clients.add(self)
        self.proxy.schedule_flush()

    def flush(self) -> None:
        if self.closed:
            return
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out = []
        if self.closing and not self.queue:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.closing = True
        self.proxy.clients.discard(self)
        for link in (self.pinned, self.passthrough, *self.blocked):
            if link is not None:
                link.close()
        self.blocked.clear()


# ---------------------------------------------------------------- the proxy

MULTI = cmd_bytes([b"MULTI"])
EXEC = cmd_bytes([b"EXEC"])
ASKING = cmd_bytes([b"ASKING"])
SLOTS_CMD = cmd_bytes([b"CLUSTER", b"SLOTS"])
NO_MAP = "CLUSTERDOWN The proxy has no slot map of the cluster yet"
_REDIRECTS = (b"-MOVED ", b"-ASK ", b"-TRYAGAIN", b"-CLUSTERDOWN", b"-READONLY",
              b"-MASTERDOWN", b"-LOADING")


def _drop(frame) -> None:
    pass


class Call(Pending):
    """One command on its way to the cluster, retried on redirections. With no
    `done` callback the call is itself the client's reply slot."""
    __slots__ = ("proxy", "data", "slot", "readonly", "done", "deadline", "tries",
                 "ask", "dedicated", "creds", "tx", "tx_err", "link", "primary_only")

    def __init__(self, proxy: "Proxy", client: Client, data: bytes, slot, readonly: bool,
                 done, deadline: float) -> None:
        self.proxy = proxy
        self.client = client
        self.frame = None
        self.link = None
        self.data = data
        self.slot = slot
        self.readonly = readonly
        self.done = done
        self.deadline = deadline
        self.tries = 0
        self.ask = None           # one-shot ASK target
        self.dedicated = False    # blocking command: a link of its own
        self.primary_only = False  # fan-out and SCAN: never a replica
        self.creds = client.creds
        self.tx = None            # MULTI/EXEC: the queued commands' bytes
        self.tx_err = None

    def on_reply(self, frame) -> None:
        if type(frame) is bytes and frame[0] != 45 and self.tx is None \
                and self.link is None:
            # the hot path: a reply that is not an error
            if self.done is None:
                self.fill(frame)
            else:
                self.done(frame)
        else:
            self.proxy.on_reply(self, frame)

    def finish(self, frame: bytes) -> None:
        if self.done is None:
            self.fill(frame)
        else:
            self.done(frame)


class Batch(Pending):
    """The reply slot of a run of commands from one read: filled when every
    command of the run has its reply, in the run's order."""
    __slots__ = ("frames", "left")

    def __init__(self, client: Client, n: int) -> None:
        self.client = client
        self.frame = None
        self.frames: list = [None] * n
        self.left = n

    def part(self, i: int, frame: bytes) -> None:
        self.frames[i] = frame
        self.left -= 1
        if not self.left:
            self.fill(b"".join(self.frames))

    def part_cb(self, i: int):
        return lambda f: self.part(i, f)


class Group:
    """The commands of one Batch that go to one link: one callback for them all."""
    __slots__ = ("proxy", "batch", "pos", "datas", "slots", "ros", "n")

    def __init__(self, proxy: "Proxy", batch: Batch) -> None:
        self.proxy = proxy
        self.batch = batch
        self.pos: list = []
        self.datas: list = []
        self.slots: list = []
        self.ros: list = []
        self.n = 0

    def add(self, i: int, data: bytes, slot: int, readonly: bool) -> None:
        self.pos.append(i)
        self.datas.append(data)
        self.slots.append(slot)
        self.ros.append(readonly)

    def send(self, link: "Link") -> None:
        k = len(self.pos)
        if link.closed:
            for _ in range(k):
                self.on_reply(LOST_UNSENT)
            return
        link.pending.extend([self.on_reply] * k)
        link.out.append(b"".join(self.datas))
        link.unsent += k
        proxy = self.proxy
        proxy.dirty_links.add(link)
        if not proxy.flush_scheduled:
            proxy.schedule_flush()

    def on_reply(self, frame) -> None:
        j = self.n
        self.n = j + 1
        b = self.batch
        if type(frame) is bytes and frame[0] != 45:
            b.frames[self.pos[j]] = frame
            b.left -= 1
            if not b.left:
                b.fill(b"".join(b.frames))
            return
        # an error or a lost link: this command goes on alone, with retries
        px = self.proxy
        call = Call(px, b.client, self.datas[j], self.slots[j], self.ros[j],
                    b.part_cb(self.pos[j]), px.loop.time() + px.retry_timeout)
        px.on_reply(call, frame)


class Proxy:
    def __init__(self, seeds: list[tuple], port: int, bind: str = "127.0.0.1",
                 read_from_replicas: bool = False, creds: tuple | None = None,
                 retry_timeout: float = 10.0, refresh_interval: float = 2.0,
                 connect_timeout: float = 2.0) -> None:
        self.seeds = seeds
        self.port = port
        self.bind = bind
        self.read_from_replicas = read_from_replicas
        self.creds = creds
        self.retry_timeout = retry_timeout
        self.refresh_interval = refresh_interval
        self.connect_timeout = connect_timeout
        self.map = SlotMap()
        self.links: dict = {}
        self.clients: set = set()
        self.dirty_links: set = set()
        self.dirty_clients: set = set()
        self.flush_scheduled = False
        self.waiting: list[Call] = []          # calls waiting for a slot map
        self.refreshing = False
        self.refresh_again = False
        self.last_refresh = 0.0
        self.next_id = 0
        self.started = time.time()
        self.loop = None
        self.stats = dict.fromkeys((
            "total_connections_received", "total_commands_processed", "protocol_errors",
            "backend_connections", "retries", "moved", "ask", "tryagain", "clusterdown",
            "link_failures", "slot_map_refreshes", "split_commands", "fanout_commands"), 0)
        self._cmdinfo: dict = {}
        self._fast: dict = {}       # command name as sent -> (key index, read-only)
        self.ncommands = 0

    # -- output ----------------------------------------------------------------

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """One write per link and per client for everything this loop turn made."""
        self.flush_scheduled = False
        links, self.dirty_links = self.dirty_links, set()
        for link in links:
            link.flush()
        clients, self.dirty_clients = self.dirty_clients, set()
        for c in clients:
            c.flush()

    def log(self, msg: str) -> None:
        sys.stderr.write("%d:P %s * %s\n" % (os.getpid(), time.strftime("%d %b %Y %H:%M:%S"),
                                             msg))
        sys.stderr.flush()

    # -- links -----------------------------------------------------------------

    def link(self, addr: tuple, proto: int, creds, readonly: bool) -> Link:
        key = (addr, proto, creds, readonly)
        link = self.links.get(key)
        if link is None or link.closed:
            link = self.links[key] = Link(self, addr, proto, creds, readonly)
        return link

    def drop_link(self, link: Link) -> None:
        if self.links.get(link.key) is link:
            del self.links[link.key]
            self.stats["link_failures"] += 1

    # -- routing ---------------------------------------------------------------

    def cmdinfo(self, name: bytes):
        info = self._cmdinfo.get(name)
        if info is None:
            sname = name.decode("latin-1")
            meta = COMMANDS.get(sname)
            flags = meta.flags if meta is not None else ()
            fixed = meta is not None and not meta.subcommands and "movablekeys" not in flags
            info = (sname, meta.first_key if fixed else -1, "readonly" in flags,
                    "blocking" in flags)
            if len(self._cmdinfo) < 1000:
                self._cmdinfo[name] = info
        return info

    def send(self, call: Call) -> None:
        if call.ask is not None:
            addr, call.ask = call.ask, None
            asking = True
        else:
            asking = False
            if call.slot is None:
                prims = self.map.primaries()
                addr = random.choice(prims) if prims else None
            else:
                addr = self.map.primary[call.slot]
                if call.readonly and self.read_from_replicas and not call.tries \
                        and not call.primary_only:
                    reps = self.map.replicas[call.slot]
                    if reps:
                        addr = random.choice(reps)
                        link = self.link(addr, call.client.proto, call.creds, True)
                        link.send(call.data, call.on_reply)
                        return
            if addr is None:
                self.waiting.append(call)
                self.refresh()
                return
        if call.dedicated:
            link = call.link = Link(self, addr, call.client.proto, call.creds, False,
                                    shared=False)
            call.client.blocked.add(link)
        else:
            link = self.link(addr, call.client.proto, call.creds, False)
        if asking:
            link.send(ASKING, _drop)
        if call.tx is not None:
            call.tx_err = None
            link.send(MULTI, lambda f, c=call: self.tx_queued(c, f))
            for data in call.tx:
                link.send(data, lambda f, c=call: self.tx_queued(c, f))
        link.send(call.data, call.on_reply)

    def tx_queued(self, call: Call, frame) -> None:
        if call.tx_err is None and (type(frame) is str or frame.startswith(_REDIRECTS)):
            call.tx_err = frame

    def on_reply(self, call: Call, frame) -> None:
        link = call.link
        if link is not None:
            call.link = None
            call.client.blocked.discard(link)
            link.close()
        if call.tx is not None and call.tx_err is not None and (
                type(frame) is str or frame.startswith(b"-EXECABORT")):
            frame = call.tx_err       # nothing ran: retry the whole transaction
        if type(frame) is str:
            self.stats["retries"] += 1
            self.refresh()
            if frame == LOST_UNSENT or call.readonly:
                self.retry(call, 0.05, err(
                    "ERR proxy: no connection to the node serving this command"
                    if frame == LOST_UNSENT else
                    "ERR proxy: the node closed the connection before its reply"))
            else:
                call.finish(err("ERR proxy: lost the connection to the node with the command "
                              "in flight; it may or may not have run"))
            return
        if frame[:1] == b"-" and frame.startswith(_REDIRECTS):
            self.stats["retries"] += 1
            if frame.startswith(b"-MOVED "):
                self.stats["moved"] += 1
                addr = _parse_redirect(frame)
                if addr is not None:
                    self.map.move(addr[0], addr[1])
                self.refresh()
                self.retry(call, 0, frame)
                return
            if frame.startswith(b"-ASK "):
                self.stats["ask"] += 1
                addr = _parse_redirect(frame)
                if addr is not None:
                    call.ask = addr[1]
                self.retry(call, 0, frame)
                return
            if frame.startswith(b"-TRYAGAIN"):
                self.stats["tryagain"] += 1
                self.retry(call, 0.05, frame)
                return
            self.stats["clusterdown"] += 1
            self.refresh()
            self.retry(call, 0.1, frame)
            return
        call.finish(frame)

    def retry(self, call: Call, delay: float, last: bytes) -> None:
        call.tries += 1
        if self.loop.time() + delay > call.deadline or call.client.closed:
            call.finish(last)
            return
        if delay:
            self.loop.call_later(delay, self.send, call)
        else:
            self.send(call)

    def new_call(self, client: Client, data: bytes, slot, readonly: bool,
                 done=None) -> Call:
        """A call; without `done` it takes its place in the client's replies."""
        call = Call(self, client, data, slot, readonly, done,
                    self.loop.time() + self.retry_timeout)
        if done is None:
            client.queue.append(call)
        return call

    # -- the slot map ------------------------------------------------------------

    def refresh(self) -> None:
        if self.refreshing:
            self.refresh_again = True
            return
        self.refreshing = True
        self.loop.create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            while True:
                self.refresh_again = False
                wait = self.last_refresh + 0.05 - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.last_refresh = time.monotonic()
                await self._load_map()
                if not self.refresh_again:
                    break
        finally:
            self.refreshing = False
        waiting, self.waiting = self.waiting, []
        have_any = bool(self.map.primaries())
        for call in waiting:
            if (self.map.primary[call.slot] is not None if call.slot is not None
                    else have_any):
                self.send(call)
            elif self.loop.time() > call.deadline:
                call.finish(err("CLUSTERDOWN Hash slot not served" if have_any else NO_MAP))
            else:
                self.waiting.append(call)

    async def _load_map(self) -> None:
        candidates = self.map.primaries()
        random.shuffle(candidates)
        for s in self.seeds:
            if s not in candidates:
                candidates.append(s)
        for addr in candidates:
            try:
                reply = await asyncio.wait_for(self._ask_slots(addr), self.connect_timeout)
            except (OSError, asyncio.TimeoutError, hiredis.ProtocolError, FrameError):
                continue
            if isinstance(reply, list) and reply:
                self.map.load_slots(reply, addr[0])
                self.stats["slot_map_refreshes"] += 1
                if self.map.covered():
                    return

    async def _ask_slots(self, addr: tuple):
        reader, writer = await asyncio.open_connection(*addr)
        try:
            if self.creds:
                writer.write(cmd_bytes([b"AUTH", *self.creds]))
            writer.write(SLOTS_CMD)
            r = hiredis.Reader()
            replies = []
            while len(replies) < (2 if self.creds else 1):
                data = await reader.read(65536)
                if not data:
                    raise OSError("closed")
                r.feed(data)
                while True:
                    x = r.gets()
                    if x is False:
                        break
                    replies.append(x)
            return replies[-1]
        finally:
            writer.close()

    async def tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            if now - last >= self.refresh_interval or (self.waiting and not self.refreshing):
                last = now
                self.refresh()

    # -- commands ----------------------------------------------------------------

    def dispatch(self, c: Client, argv: list[bytes]) -> None:
        self.ncommands += 1
        fast = self._fast.get(argv[0])
        if fast is not None and c.multi is None and c.pinned is None \
                and c.passthrough is None and fast[0] < len(argv):
            # the hot path: a command with its key at a fixed place
            key = argv[fast[0]]
            call = Call(self, c, cmd_bytes(argv),
                        keyslot(key) if b"{" in key else crc_hqx(key, 0) & 16383,
                        fast[1], None, self.loop.time() + self.retry_timeout)
            c.queue.append(call)
            self.send(call)
            return
        name = argv[0].lower()
        if c.passthrough is not None:
            self.passthrough_cmd(c, name, argv)
            return
        if c.pinned is not None:
            self.pinned_cmd(c, name, argv)
            return
        if c.multi is not None and name not in _TX_CONTROL:
            c.multi.append(argv)
            c.reply(b"+QUEUED\r\n")
            return
        h = LOCAL.get(name)
        if h is not None:
            h(self, c, argv)
            return
        step = SPLIT.get(name)
        if step is not None and len(argv) > step + 1 and (len(argv) - 1) % step == 0:
            groups = split(argv, step)
            if len(groups) > 1:
                self.split_cmd(c, name, argv, groups)
                return
        sname, fk, readonly, blocking = self.cmdinfo(name)
        if fk >= 0:
            key = argv[fk] if 0 < fk < len(argv) else None
            if key is not None and not blocking and step is None and len(self._fast) < 1000:
                self._fast[argv[0]] = (fk, readonly)
        else:
            key = first_key(sname, argv)
        call = self.new_call(c, cmd_bytes(argv), None if key is None else keyslot(key),
                             readonly)
        if blocking and (name not in (b"xread", b"xreadgroup")
                         or any(a.lower() == b"block" for a in argv)):
            call.dedicated = True
        self.send(call)

    def dispatch_many(self, c: Client, cmds: list) -> None:
        """The commands of one read. Runs of plain keyed commands go as batches:
        one reply slot for the run and one group per link, so a pipelining client
        costs a few objects per read rather than per command."""
        fast = self._fast
        run: list = []
        for argv in cmds:
            if c.closing:
                return
            f = fast.get(argv[0])
            if f is not None and f[0] < len(argv) and c.multi is None and c.pinned is None \
                    and c.passthrough is None and not self.read_from_replicas:
                run.append((f, argv))
                continue
            if run:
                self.batch(c, run)
                run = []
            self.dispatch(c, argv)
        if run:
            self.batch(c, run)

    def batch(self, c: Client, run: list) -> None:
        self.ncommands += len(run)
        b = Batch(c, len(run))
        c.queue.append(b)
        groups: dict = {}
        primary = self.map.primary
        for i, ((fk, readonly), argv) in enumerate(run):
            key = argv[fk]
            slot = keyslot(key) if b"{" in key else crc_hqx(key, 0) & 16383
            data = cmd_bytes(argv)
            addr = primary[slot]
            g = groups.get(addr) if addr is not None else None
            if g is None:
                if addr is None:       # no map yet: this one waits on its own
                    call = Call(self, c, data, slot, readonly, b.part_cb(i),
                                self.loop.time() + self.retry_timeout)
                    self.send(call)
                    continue
                g = groups[addr] = Group(self, b)
            g.add(i, data, slot, readonly)
        for addr, g in groups.items():
            link = self.link(addr, c.proto, c.creds, False)
            g.send(link)

    def split_cmd(self, c: Client, name: bytes, argv: list[bytes], groups) -> None:
        self.stats["split_commands"] += 1
        p = c.expect()
        parts: list = [None] * len(groups)
        left = [len(groups)]
        nkeys = (len(argv) - 1) // SPLIT[name]
        readonly = self.cmdinfo(name)[2]

        def part(i, positions, frame):
            parts[i] = (positions, frame)
            left[0] -= 1
            if not left[0]:
                p.fill(join(name, parts, nkeys))
        for i, (slot, sub, positions) in enumerate(groups):
            self.send(self.new_call(c, cmd_bytes(sub), slot, readonly,
                                    lambda f, i=i, ps=positions: part(i, ps, f)))

    def fanout(self, c: Client, argv: list[bytes], combine, readonly: bool = True) -> None:
        """The command on every primary; combine(list of frames) -> the reply."""
        self.stats["fanout_commands"] += 1
        p = c.expect()
        if not self.map.covered():
            self.refresh()
            if not self.map.primaries():
                p.fill(err(NO_MAP))
                return
        shards = self.map.shards()
        frames: list = [None] * len(shards)
        left = [len(shards)]
        data = cmd_bytes(argv)

        def one(i, frame):
            frames[i] = frame
            left[0] -= 1
            if not left[0]:
                for f in frames:
                    if f[:1] == b"-":
                        p.fill(f)
                        return
                p.fill(combine(frames))
        for i, slot in enumerate(shards):
            call = self.new_call(c, data, slot, readonly, lambda f, i=i: one(i, f))
            call.primary_only = True
            self.send(call)

    def passthrough_cmd(self, c: Client, name: bytes, argv: list[bytes]) -> None:
        if name == b"quit":
            c.reply(b"+OK\r\n")
            c.close_after_replies()
            return
        c.passthrough.send_raw(cmd_bytes(argv))

    def pinned_cmd(self, c: Client, name: bytes, argv: list[bytes]) -> None:
        link = c.pinned
        p = c.expect()
        if name in (b"exec", b"discard", b"unwatch", b"reset", b"quit"):
            c.pinned = None

            def done(frame):
                p.fill(frame if type(frame) is bytes else err(
                    "ERR proxy: lost the connection to the node of the watched keys"))
                link.close()
            link.send(cmd_bytes(argv), done)
            if name == b"quit":
                c.close_after_replies()
            return
        link.send(cmd_bytes(argv), lambda f: p.fill(f if type(f) is bytes else err(
            "ERR proxy: lost the connection to the node of the watched keys")))

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        server = await self.loop.create_server(lambda: Client(self), self.bind, self.port,
                                               reuse_address=True, backlog=511)
        self.refresh()
        self.loop.create_task(self.tick())
        self.log("pynode proxy %s listening on %s:%d, cluster %s" % (
            VERSION, self.bind, self.port, " ".join("%s:%d" % a for a in self.seeds)))
        async with server:
            await server.serve_forever()


def _parse_redirect(frame: bytes):
    """-MOVED 3999 127.0.0.1:6381 -> (3999, ("127.0.0.1", 6381))."""
    try:
        _, slot, hostport = frame[1:-2].split(b" ")
        host, port = hostport.rsplit(b":", 1)
        return int(slot), (host.decode(), int(port))
    except ValueError:
        return None


_TX_CONTROL = frozenset((b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"))


# ---------------------------------------------------------------- local commands

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
        px.dispatch_anywhere(c, argv)


def _refuse(px: Proxy, c: Client, argv) -> None:
    c.reply(err("ERR %s is not supported through pynode proxy"
                % argv[0].decode("latin-1").upper()))


def _multi(px: Proxy, c: Client, argv) -> None:
    if c.multi is not None:
        c.reply(err("ERR MULTI calls can not be nested"))
        return
    c.multi = []
    c.reply(b"+OK\r\n")


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
    if not cmds:
        c.reply(b"*0\r\n")
        return
    slot = None
    readonly = True
    for a in cmds:
        sname, fk, ro, _ = px.cmdinfo(a[0].lower())
        readonly = readonly and ro
        key = (a[fk] if 0 < fk < len(a) else None) if fk >= 0 else first_key(sname, a)
        if key is not None and slot is None:
            slot = keyslot(key)
    call = px.new_call(c, EXEC, slot, False)
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


def _subscribe(px: Proxy, c: Client, argv) -> None:
    if not _arity(c, argv, len(argv) >= 2):
        return
    if argv[0].lower() == b"ssubscribe":
        addr = px.map.primary[keyslot(argv[1])]
    else:
        prims = px.map.primaries()
        addr = random.choice(prims) if prims else None
    if addr is None:
        c.reply(err(NO_MAP))
        return
    link = c.passthrough = Link(px, addr, c.proto, c.creds, False, shared=False)

    def sink(frame):
        if frame is None:
            if not c.closed:
                c.transport.close()
        elif not c.closed:
            c.reply(frame)
    link.raw_sink = sink
    link.send_raw(cmd_bytes(argv))


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
        text = px.info_text(sections, keyspace)
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
            ("proxy_protocol_errors", s["protocol_errors"]),
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
        px.dispatch_anywhere(c, argv)


def _dispatch_anywhere(self: Proxy, c: Client, argv: list[bytes]) -> None:
    self.send(self.new_call(c, cmd_bytes(argv), None, False))


Proxy.info_text = _info_text
Proxy.dispatch_anywhere = _dispatch_anywhere

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


# ---------------------------------------------------------------- command line

def _hostport(s: str) -> tuple:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected host:port, got %r" % s)
    return host, int(port)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="pynode proxy",
                                 description="A stateless Redis Cluster proxy for plain "
                                             "clients.")
    ap.add_argument("--port", type=int, default=7777)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--cluster", type=_hostport, action="append", required=True,
                    metavar="HOST:PORT", help="a cluster node (repeat for more seeds)")
    ap.add_argument("--read-from-replicas", action="store_true",
                    help="send read-only commands to replicas of the slot")
    ap.add_argument("--user", help="user for the proxy's own links (AUTH)")
    ap.add_argument("--password", help="password for the proxy's own links (AUTH)")
    ap.add_argument("--retry-timeout", type=float, default=10.0,
                    help="seconds a command is retried through redirections (default 10)")
    ap.add_argument("--refresh-interval", type=float, default=2.0,
                    help="seconds between slot map refreshes (default 2)")
    args = ap.parse_args(argv)
    creds = None
    if args.password is not None:
        creds = ((args.user.encode(),) if args.user else ()) + (args.password.encode(),)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    proxy = Proxy(args.cluster, args.port, args.bind, args.read_from_replicas, creds,
                  args.retry_timeout, args.refresh_interval)
    try:
        asyncio.run(proxy.serve())
    except KeyboardInterrupt:
        pass
    except OSError as e:
        sys.stderr.write("pynode proxy: %s\n" % e)
        return 1
    return 0
