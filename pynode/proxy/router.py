"""The proxy's event-loop side: client connections, commands on their way to
the nodes (retried on redirections), batches of pipelined commands, fan-out,
and the slot map's refresh."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import sys
import time
from binascii import crc_hqx
from collections import deque

import hiredis

from pynode.command_meta import COMMANDS
from pynode.config import VERSION
from pynode.proxy.commands import LOCAL, TX_CONTROL, queue, shard_resubscribe
from pynode.proxy.core import (ASKING, MULTI, NO_MAP, REDIRECTS, SLOTS_CMD, SPLIT,
                               FrameError, SlotMap, cmd_bytes, err, first_key, join,
                               parse_redirect, replay_safe, split)
from pynode.proxy.links import LOST_UNSENT, Link
from pynode.resp import RequestParser
from storage.slots import keyslot

# a client's commands read and not yet answered (sent on, or waiting for the
# replies before them): past this, its further commands wait unread
MAX_INFLIGHT = 256


class Pending:
    """A client's reply slot: replies leave in the order of the commands."""
    __slots__ = ("client", "frame")
    count = 1                 # the commands it answers

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.frame = None

    def fill(self, frame: bytes) -> None:
        self.frame = frame
        c = self.client
        q = c.queue
        if q and q[0] is self:
            out = c.out
            n = 0
            while q and q[0].frame is not None:
                p = q.popleft()
                out.append(p.frame)
                n += p.count
            c.inflight -= n
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
        self.multi_slot = None               # their keys' slot
        self.multi_error = False             # one was refused: EXEC answers EXECABORT
        self.pinned: Link | None = None      # WATCH: a link of its own until EXEC/DISCARD
        self.passthrough: Link | None = None  # pub/sub: a link of its own
        self.plain_subs = False              # SUBSCRIBE/PSUBSCRIBE sent on it
        self.shard_channels = 0              # its shard channels, as the node last said
        self.last_ssubscribe: bytes | None = None   # resent if it gets MOVED
        self.blocked: set = set()            # links carrying its blocking commands
        self.closing = False
        self.closed = False
        # backpressure: commands read but held back, and why reading stopped
        self.inflight = 0                    # commands dispatched, replies not yet out
        self.held: list | None = None        # commands parsed, not yet dispatched
        self.write_paused = False            # its socket buffer is over the limit
        self.read_paused = False
        proxy.next_id += proxy.workers
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
        transport.set_write_buffer_limits(high=self.proxy.output_limit)
        self.proxy.clients.add(self)
        self.proxy.stats["total_connections_received"] += 1

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        cmds = self.parser.feed(data)
        if self.held is not None:
            self.held.extend(cmds)
        else:
            self.run(cmds)

    def run(self, cmds: list) -> None:
        """Dispatch parsed commands, at most MAX_INFLIGHT unanswered at a time
        and none while the client's output is over the limit: the rest wait, and
        the client's socket is not read, until its replies drain."""
        px = self.proxy
        i, n = 0, len(cmds)
        while i < n:
            if self.closing:
                return
            room = MAX_INFLIGHT - self.inflight
            if room <= 0 or self.write_paused:
                self.held = cmds[i:]
                self.hold()
                return
            j = min(n, i + room)
            self.inflight += j - i
            if j - i > 1:
                px.dispatch_many(self, cmds[i:j] if i or j < n else cmds)
            else:
                px.dispatch(self, cmds[i])
            i = j
        self.held = None
        if self.parser.error is not None and not self.closing:
            # as Redis: the commands before the bad bytes run, then an error, then close
            self.reply(err("ERR " + self.parser.error))
            px.stats["protocol_errors"] += 1
            self.close_after_replies()

    def hold(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def drain(self) -> None:
        """Go on with held commands and reading once the output has room."""
        if self.write_paused or self.closed:
            return
        if self.held is not None:
            if self.inflight > MAX_INFLIGHT // 2:
                return
            held, self.held = self.held, None
            self.run(held)
        if self.read_paused and self.held is None and not self.write_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        # the client reads slower than its replies come: stop reading its
        # commands; a subscriber's messages wait on the node (whose own
        # client-output-buffer-limit pubsub applies)
        self.write_paused = True
        self.hold()
        if self.passthrough is not None and self.passthrough.transport is not None:
            self.passthrough.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.passthrough is not None and self.passthrough.transport is not None:
            self.passthrough.transport.resume_reading()
        self.drain()

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
        elif self.read_paused:
            self.drain()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.closing = True
        self.proxy.clients.discard(self)
        for link in (self.pinned, self.passthrough, *self.blocked):
            if link is not None:
                link.close()
        self.blocked.clear()


# ---------------------------------------------------------------- the proxy

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
    __slots__ = ("frames", "left", "count")

    def __init__(self, client: Client, n: int) -> None:
        self.client = client
        self.frame = None
        self.frames: list = [None] * n
        self.left = n
        self.count = n

    def part(self, i: int, frame: bytes) -> None:
        self.frames[i] = frame
        self.left -= 1
        if not self.left:
            self.fill(b"".join(self.frames))

    def part_cb(self, i: int):
        return lambda f: self.part(i, f)


class Group:
    """The commands of one Batch that go to one link: one callback for them all."""
    __slots__ = ("proxy", "batch", "run", "pos", "datas", "n")

    def __init__(self, proxy: "Proxy", batch: Batch, run: list) -> None:
        self.proxy = proxy
        self.batch = batch
        self.run = run            # the batch's ((key index, read-only), argv)
        self.pos: list = []       # its commands' places in the run
        self.datas: list = []
        self.n = 0

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
        i = self.pos[j]
        (fk, readonly), argv = self.run[i]
        call = Call(px, b.client, self.datas[j], keyslot(argv[fk]), readonly,
                    b.part_cb(i), px.loop.time() + px.retry_timeout)
        px.on_reply(call, frame)


class Proxy:
    def __init__(self, seeds: list[tuple], port: int, bind: str = "127.0.0.1",
                 read_from_replicas: bool = False, creds: tuple | None = None,
                 retry_timeout: float = 10.0, refresh_interval: float = 2.0,
                 connect_timeout: float = 2.0, output_limit: int = 8 << 20,
                 workers: int = 1, worker_index: int = 0, worker_of: int | None = None) -> None:
        self.seeds = seeds
        self.port = port
        self.bind = bind
        self.read_from_replicas = read_from_replicas
        self.creds = creds
        self.retry_timeout = retry_timeout
        self.refresh_interval = refresh_interval
        self.connect_timeout = connect_timeout
        self.output_limit = output_limit     # bytes waiting to be sent to one client
        self.workers = workers               # processes sharing the port (SO_REUSEPORT)
        self.worker_of = worker_of           # the first worker's pid (None: this is it)
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
        self.next_id = worker_index          # client ids: distinct across the workers
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
        if call.tx_err is None and (type(frame) is str or frame.startswith(REDIRECTS)):
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
            if frame == LOST_UNSENT or (call.tx is None and (call.readonly
                                                             or replay_safe(call.data))):
                # not written, or the same effect if it ran twice: again on the
                # slot's owner once the map has it (a failover takes a while)
                self.retry(call, 0.05, err(
                    "ERR proxy: no connection to the node serving this command"
                    if frame == LOST_UNSENT else
                    "ERR proxy: the node closed the connection before its reply"))
            else:
                call.finish(err("ERR proxy: lost the connection to the node with the command "
                              "in flight; it may or may not have run"))
            return
        if frame[:1] == b"-" and frame.startswith(REDIRECTS):
            self.stats["retries"] += 1
            if frame.startswith(b"-MOVED "):
                self.stats["moved"] += 1
                addr = parse_redirect(frame)
                if addr is not None:
                    self.map.move(addr[0], addr[1])
                self.refresh()
                self.retry(call, 0, frame)
                return
            if frame.startswith(b"-ASK "):
                self.stats["ask"] += 1
                addr = parse_redirect(frame)
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
            if self.worker_of is not None and os.getppid() != self.worker_of:
                raise KeyboardInterrupt      # the first worker is gone: so is this one
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
                        keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383,
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
        if c.multi is not None and name not in TX_CONTROL:
            queue(self, c, argv)
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
        # only dispatch() changes these (MULTI, WATCH, SUBSCRIBE, QUIT ...)
        plain = c.multi is None and c.pinned is None and c.passthrough is None \
            and not self.read_from_replicas and not c.closing
        for argv in cmds:
            f = fast.get(argv[0])
            if plain and f is not None and f[0] < len(argv):
                run.append((f, argv))
                continue
            if run:
                self.batch(c, run)
                run = []
            if c.closing:
                return
            self.dispatch(c, argv)
            plain = c.multi is None and c.pinned is None and c.passthrough is None \
                and not self.read_from_replicas and not c.closing
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
            slot = keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383
            data = cmd_bytes(argv)
            addr = primary[slot]
            g = groups.get(addr) if addr is not None else None
            if g is None:
                if addr is None:       # no map yet: this one waits on its own
                    call = Call(self, c, data, slot, readonly, b.part_cb(i),
                                self.loop.time() + self.retry_timeout)
                    self.send(call)
                    continue
                g = groups[addr] = Group(self, b, run)
            g.pos.append(i)
            g.datas.append(data)
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
        data = cmd_bytes(argv)
        if name in (b"subscribe", b"psubscribe"):
            c.plain_subs = True
        elif name == b"ssubscribe" and len(argv) > 1:
            c.last_ssubscribe = data
            if shard_resubscribe(self, c, keyslot(argv[1]), data):
                return
        c.passthrough.send_raw(data)

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
                                               reuse_address=True, backlog=511,
                                               reuse_port=self.workers > 1 or None)
        self.refresh()
        self.loop.create_task(self.tick())
        self.log("pynode proxy %s listening on %s:%d, cluster %s" % (
            VERSION, self.bind, self.port, " ".join("%s:%d" % a for a in self.seeds)))
        async with server:
            await server.serve_forever()
