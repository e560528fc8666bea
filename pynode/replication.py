"""Replication, Redis 7.0's protocol over the client port (replication.c).

One `Replication` object per server (`srv.replication`) plays both roles:

Primary side
  - a replication id (40 hex, `replid`), `replid2` / `second_repl_offset`
    (the previous id, kept on promotion so the old primary's replicas can
    continue partially), and `offset` (master_repl_offset: bytes of stream
    produced so far);
  - the backlog: the last `repl-backlog-size` bytes of the stream, created
    when the first replica connects (until then writes do not advance the
    offset, as in Redis).  It is a bytearray trimmed lazily at twice its size,
    so appending stays amortized O(1);
  - `feed(dbid, argv)`: Server.propagate's single exit point for writes; a
    command is encoded once (SELECT added when the stream's db changes) and
    appended to the backlog; `flush()` (once per loop iteration) sends the new
    bytes to every online replica and buffers them for replicas still waiting
    for their snapshot;
  - PSYNC: +CONTINUE from the backlog when the id and offset allow it, else
    +FULLRESYNC: a forked child writes an RDB (storage/rdb.py) into a pipe, the
    parent relays it as "$EOF:<mark>\\r\\n...<mark>" (replicas with capa eof) or
    "$<len>\\r\\n..." and keeps serving; the replica's stream is buffered from
    the snapshot's offset and sent after the snapshot (after the replica's
    first ACK for the EOF form, as Redis 7.0);
  - REPLCONF ACK bookkeeping, WAIT (the client is parked, REPLCONF GETACK is
    sent), min-replicas-to-write.

Replica side (an asyncio task on the server's loop, never blocking commands)
  - connect, PING, AUTH, REPLCONF listening-port / capa, PSYNC with the cached
    id and offset (or ? -1); receive and load the RDB; then apply the stream
    through the master client (flag M: no READONLY, no redirection, keys never
    seen as expired, as Redis's master client), appending the same bytes to
    its own backlog so sub-replicas and a later promotion work;
  - REPLCONF ACK every second; reconnect with PSYNC after a link loss;
  - does not expire keys: reads see expired keys as missing
    (Keyspace.expire_on_read = False), the primary's DEL removes them.

`become_replica(host, port)` / `become_primary()` are the API that REPLICAOF
uses and that cluster failover will use.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref

from gossip.outgoing import connect_async
from pynode.children import REPL_SYNC
from pynode.pause import FAILOVER, WRITE
from pynode.client import Client
from pynode.log import log
from storage import rdb
from storage.rewrite import encode_command

BACKLOG_MIN = 16 * 1024          # CONFIG_REPL_BACKLOG_MIN_SIZE
NULL_ID = "0" * 40

# primary-side states of a replica (INFO slaveN:state=)
WAIT_BGSAVE, SEND_BULK, ONLINE = "wait_bgsave", "send_bulk", "online"
# the replica's link to its primary (Redis's repl_state; ROLE shows it):
# each state and the states it moves on to.  Besides these, any state may
# go to "connect" (REPLICAOF host port, or the link dropped: retry) and any
# but "none" to "none" (REPLICAOF NO ONE).
LINK_NONE, LINK_CONNECT, LINK_CONNECTING, LINK_HANDSHAKE, LINK_SYNC, LINK_CONNECTED = (
    "none", "connect", "connecting", "handshake", "sync", "connected")
LINK_STEPS = {
    LINK_NONE: frozenset(),
    LINK_CONNECT: frozenset({LINK_CONNECTING}),
    LINK_CONNECTING: frozenset({LINK_HANDSHAKE}),
    LINK_HANDSHAKE: frozenset({LINK_SYNC, LINK_CONNECTED}),   # +FULLRESYNC / +CONTINUE
    LINK_SYNC: frozenset({LINK_CONNECTED}),                   # the RDB is loaded
    LINK_CONNECTED: frozenset(),
}

# FAILOVER (the primary's side, Redis's failover_state; INFO master_failover_state)
NO_FAILOVER, FAILOVER_WAIT, FAILOVER_IN_PROGRESS = (
    "no-failover", "waiting-for-sync", "failover-in-progress")
FAILOVER_STEPS = {
    NO_FAILOVER: frozenset({FAILOVER_WAIT}),                        # FAILOVER
    FAILOVER_WAIT: frozenset({FAILOVER_IN_PROGRESS, NO_FAILOVER}),  # caught up / abort
    FAILOVER_IN_PROGRESS: frozenset({NO_FAILOVER}),                 # PSYNC done / abort
}


def link_step_allowed(old: str, new: str) -> bool:
    return new in LINK_STEPS[old] or new == LINK_CONNECT or (new == LINK_NONE != old)

READONLY_ERR = "READONLY You can't write against a read only replica."
MISCONF_ERR = ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
               "persist to disk. Commands that may modify the data set are disabled, because "
               "this instance is configured to report errors during writes if RDB snapshotting "
               "fails (stop-writes-on-bgsave-error option). Please check the Redis logs for "
               "details about the RDB error.")
NOREPLICAS_ERR = "NOREPLICAS Not enough good replicas to write."
MASTERDOWN_ERR = ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set "
                  "to 'no'.")


def new_id() -> str:
    return os.urandom(20).hex()


def peer_auth(cfg) -> list[bytes] | None:
    """AUTH [masteruser] masterauth, or None: how this node logs in to a peer's
    client port (replication, the shutdown handover, the slot-migration link,
    as Valkey's slot migration uses the replication credentials)."""
    auth = cfg.get("masterauth")
    if not auth:
        return None
    user = cfg.get("masteruser")
    return [b"AUTH"] + ([user.encode()] if user else []) + [auth.encode()]


def peer_ssl(srv):
    """The TLS client context for a link to a peer's client port
    (tls-replication), or None for plain TCP."""
    return srv.tls.client if srv.tls is not None and srv.cfg.bool("tls-replication") else None


class ReplError(Exception):
    pass


class ReplicaInfo:
    """What the primary knows about one replica connection."""

    __slots__ = ("c", "state", "port", "ip", "capa_eof", "capa_psync2", "ack_off",
                 "ack_time", "pending", "wait_ack", "pre_psync", "job", "exclude_data",
                 "exclude_functions")

    def __init__(self, c: Client) -> None:
        self.c = c
        self.state = WAIT_BGSAVE
        self.port = 0
        self.ip = c.addr.rsplit(":", 1)[0]
        self.capa_eof = False
        self.capa_psync2 = False
        self.ack_off = 0
        self.ack_time = time.time()
        self.pending: bytearray | None = None   # stream held until the snapshot is in
        self.wait_ack = False
        self.pre_psync = False
        self.job = None
        # REPLCONF rdb-filter-only (redis-cli --functions-rdb): what the RDB leaves out
        self.exclude_data = False
        self.exclude_functions = False

    def name(self) -> str:
        return "%s:%s" % (self.ip, self.port if self.port else "<unknown-replica-port>")


class SnapshotJob:
    """A forked child writing an RDB into a pipe, relayed to one replica."""

    __slots__ = ("pid", "rfd", "link", "mark", "data", "sent", "t0")

    def __init__(self, pid: int, rfd: int, link: ReplicaInfo, mark: bytes | None) -> None:
        self.pid = pid
        self.rfd = rfd
        self.link = link
        self.mark = mark
        self.data = bytearray() if mark is None else None
        self.sent = 0
        self.t0 = time.time()


class Replication:
    def __init__(self, srv) -> None:
        self.srv = srv
        # ids and offsets (replid is the current id: DEBUG change-repl-id sets it)
        self.replid = new_id()
        self.replid2 = NULL_ID
        self.offset = 0
        self.second_offset = -1
        # backlog: buf[i] is the stream byte at offset start + 1 + i
        self.backlog: bytearray | None = None
        self.bl_start = 0
        self.flushed = 0                 # offset up to which flush() dispatched
        self.seldb = -1
        self.replicas: dict[Client, ReplicaInfo] = {}
        # REPLCONF before PSYNC (weak: a client may leave without PSYNC)
        self.handshake: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.waiters: list = []          # WAIT: [client, target offset, numreplicas, handle]
        self.getack_scheduled = False
        self.stat_sync_full = 0
        self.stat_sync_partial_ok = 0
        self.stat_sync_partial_err = 0
        self.repl_out_bytes = 0
        self.repl_in_bytes = 0
        self.last_ping = time.monotonic()
        # replica side
        self.masterhost: str | None = None
        self.masterport = 0
        self.state = LINK_NONE           # the link to our primary (LINK_STEPS)
        self.master_client: Client | None = None
        self.task: asyncio.Task | None = None
        self.writer = None
        self.master_last_io = 0.0
        self.down_since = 0.0
        self.read_off = -1               # slave_read_repl_offset
        self.sync_total = self.sync_read = 0
        self.cached = False              # replid/offset usable for PSYNC
        self.stream_db = 0               # the master client's db at (re)connection
        self.timer = None
        # FAILOVER (standalone coordinated failover): no-failover,
        # waiting-for-sync or failover-in-progress
        self.failover_state = NO_FAILOVER
        self.failover_host: str | None = None
        self.failover_port = 0
        self.failover_end = 0.0          # monotonic deadline (0: no TIMEOUT)
        self.failover_force = False
        self.failover_timer = None
        self.configure()

    # ------------------------------------------------------------ config
    def configure(self) -> None:
        """Read the replication directives; install or remove the write guard."""
        cfg = self.srv.cfg
        size = cfg.memory("repl-backlog-size")
        self.backlog_size = max(size, BACKLOG_MIN)
        self.read_only = cfg.bool("replica-read-only")
        self.serve_stale = cfg.bool("replica-serve-stale-data")
        self.min_to_write = cfg.int("min-replicas-to-write")
        self.max_lag = cfg.int("min-replicas-max-lag")
        self.timeout = cfg.int("repl-timeout")
        self.ping_period = cfg.int("repl-ping-replica-period")
        srv = self.srv
        if self.masterhost is not None:
            on = self.read_only or not self.serve_stale
        else:
            on = bool(self.min_to_write and self.max_lag) or srv.snapshots.write_error()
        srv.set_write_guard(self.guard if on else None)

    def set_link_state(self, new: str) -> None:
        """The replica link moves on (LINK_STEPS)."""
        assert link_step_allowed(self.state, new), "replica link %s -> %s" % (self.state, new)
        self.state = new

    def set_failover_state(self, new: str) -> None:
        """FAILOVER moves on (FAILOVER_STEPS)."""
        assert new in FAILOVER_STEPS[self.failover_state], \
            "failover %s -> %s" % (self.failover_state, new)
        self.failover_state = new

    def check_invariants(self) -> None:
        """What holds between calls (tests check it after each step)."""
        srv = self.srv
        assert self.state in LINK_STEPS and self.failover_state in FAILOVER_STEPS
        # a replica iff it has a primary; connected iff its master client exists
        assert (self.masterhost is None) == (self.state == LINK_NONE), self.state
        assert (self.state == LINK_CONNECTED) == (self.master_client is not None)
        # a primary feeds its backlog with every write; a replica only from its link
        assert srv.repl_feed == (self.feed if self.masterhost is None
                                 and self.backlog is not None else None)
        if self.backlog is not None:
            # backlog[i] is stream byte bl_start + 1 + i; flushed lies within
            assert len(self.backlog) == self.offset - self.bl_start
            assert self.bl_start <= self.flushed <= self.offset
        else:
            assert not self.replicas
        if self.failover_state != NO_FAILOVER:
            assert self.failover_state == FAILOVER_IN_PROGRESS or self.masterhost is None
        if self.failover_state == FAILOVER_WAIT:
            assert srv.pause.active(FAILOVER, time.monotonic()), "FAILOVER holds writes"

    def guard(self, c: Client, cmd) -> str | None:
        """Server.execute's check before running a command (only installed when
        one of the features is on): READONLY, NOREPLICAS, MASTERDOWN."""
        is_write = cmd.write or (cmd.name == "exec" and c.in_multi
                                 and any(q.write for q, _ in c.queued))
        if self.masterhost is not None:
            if "M" in c.flags_extra:
                return None
            if is_write and self.read_only:      # processCommand checks this first
                return READONLY_ERR
            if (not self.serve_stale and self.state != LINK_CONNECTED and not cmd.stale):
                return MASTERDOWN_ERR
            return None
        if (is_write or cmd.name == "ping") and self.srv.snapshots.write_error():
            return MISCONF_ERR
        if is_write and self.good_replicas() < self.min_to_write:
            return NOREPLICAS_ERR
        return None

    def good_replicas(self) -> int:
        now = time.time()
        lag = self.max_lag
        return sum(1 for r in self.live_replicas()
                   if r.state == ONLINE and now - r.ack_time <= lag)

    # ------------------------------------------------------------ backlog & feed
    def create_backlog(self) -> None:
        self.backlog = bytearray()
        self.bl_start = self.offset
        self.flushed = self.offset
        if self.masterhost is None:
            self.srv.set_repl_feed(self.feed)

    def first_byte(self) -> int:
        if self.backlog is None:
            return 0
        return self.offset - min(len(self.backlog), self.backlog_size) + 1

    def histlen(self) -> int:
        return min(len(self.backlog), self.backlog_size) if self.backlog is not None else 0

    def feed(self, dbid: int, argv) -> None:
        """A write leaving the primary (Server.propagate): encode once, append."""
        if dbid != self.seldb and dbid >= 0:
            s = b"%d" % dbid
            self.append(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%s\r\n" % (len(s), s))
            self.seldb = dbid
        if len(argv) == 3 and type(argv[1]) is bytes and type(argv[2]) is bytes:
            a, b, c = argv
            self.append(b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                        % (len(a), a, len(b), b, len(c), c))
        else:
            self.append(encode_command(argv))

    def append(self, data) -> None:
        buf = self.backlog
        buf += data
        self.offset += len(data)
        self.srv.wake()                  # before_sleep() sends it to the replicas
        if len(buf) > 2 * self.backlog_size:
            self.flush()
            excess = len(buf) - self.backlog_size
            del buf[:excess]
            self.bl_start += excess

    def flush(self) -> None:
        """Send the stream produced since the last flush to the replicas."""
        if self.backlog is None or self.flushed == self.offset:
            return
        data = bytes(self.backlog[self.flushed - self.bl_start:])
        self.flushed = self.offset
        for r in self.live_replicas():
            if r.pending is not None:
                r.pending += data
            elif r.state == ONLINE:
                self.send(r.c, data)

    def send(self, c: Client, data: bytes) -> None:
        self.repl_out_bytes += len(data)
        if c.out is not None:
            c.out.append(data)
        elif not c.closing:
            self.srv.queue_write(c, data)

    def live_replicas(self) -> list[ReplicaInfo]:
        dead = [c for c in self.replicas if c.closing or c.transport is None
                or c.transport.is_closing()]
        for c in dead:
            r = self.replicas.pop(c)
            log.notice("Connection with replica %s lost." % r.name())
            if r.job is not None:
                self.abort_job(r.job)
        return list(self.replicas.values())

    def disconnect_replicas(self) -> None:
        for c in list(self.replicas):
            c.closing = True
            if c.transport is not None:
                c.transport.close()
        self.live_replicas()

    # ------------------------------------------------------------ primary: commands
    def replconf(self, c: Client, argv: list[bytes]):
        """REPLCONF <option> <value> ...; returns OK, None (no reply) or raises."""
        from pynode.commands import CommandError, SYNTAX, parse_int
        if len(argv) % 2 == 0:
            raise CommandError(SYNTAX)
        info = self.replicas.get(c) or self.handshake.get(c)
        for i in range(1, len(argv), 2):
            opt = argv[i].lower()
            val = argv[i + 1]
            if opt == b"listening-port":
                port = parse_int(val)
                if info is None:
                    info = self.handshake[c] = ReplicaInfo(c)
                info.port = port
            elif opt == b"ip-address":
                if info is None:
                    info = self.handshake[c] = ReplicaInfo(c)
                info.ip = val.decode("utf-8", "replace")
            elif opt == b"capa":
                if info is None:
                    info = self.handshake[c] = ReplicaInfo(c)
                if val.lower() == b"eof":
                    info.capa_eof = True
                elif val.lower() == b"psync2":
                    info.capa_psync2 = True
            elif opt == b"ack":
                r = self.replicas.get(c)
                if r is None:
                    return None
                try:
                    off = parse_int(val)
                except CommandError:
                    return None
                if off > r.ack_off:
                    r.ack_off = off
                r.ack_time = time.time()
                if r.wait_ack:          # first ACK after an EOF-marked snapshot
                    r.wait_ack = False
                    self.start_streaming(r)
                if self.waiters:
                    self.check_waiters()
                return None
            elif opt == b"getack":
                if self.master_client is c:
                    self.send_ack()
                return None
            elif opt == b"rdb-filter-only":
                # include filters for the snapshot: "functions", or none at all
                from storage.sdsargs import split_args
                filters = split_args(val)
                if filters is None:
                    raise CommandError("ERR Missing rdb-filter-only values")
                if info is None:
                    info = self.handshake[c] = ReplicaInfo(c)
                info.exclude_data = info.exclude_functions = True
                for f in filters:
                    if f.lower() == b"functions":
                        info.exclude_functions = False
                    else:
                        raise CommandError("ERR Unsupported rdb-filter-only option: %s"
                                           % f.decode("utf-8", "replace"))
            elif opt == b"rdb-only":
                pass                     # the replica closes the link after the RDB
            else:
                raise CommandError("ERR Unrecognized REPLCONF option: %s"
                                   % argv[i].decode("utf-8", "replace"))
        from pynode.resp import OK
        return OK

    def psync(self, c: Client, replid: bytes | None, offset: bytes | None,
              failover: bool = False):
        """PSYNC (replid, offset given) or SYNC (both None). `failover`: PSYNC
        <replid> <offset> FAILOVER from a primary handing its role to us."""
        from pynode.commands import CommandError
        if "S" in c.flags_extra:
            return None                  # already a replica: ignored, as Redis
        if failover:
            if replid.decode("utf-8", "replace") != self.replid:
                raise CommandError("ERR PSYNC FAILOVER replid must match my replid.")
            from pynode.commands.client import client_line
            self.become_primary()
            log.notice("MASTER MODE enabled (failover request from '%s')"
                       % client_line(c, c))
        if self.failover_state != NO_FAILOVER:
            raise CommandError("NOMASTERLINK Can't SYNC while failing over")
        if self.masterhost is not None and self.state != LINK_CONNECTED:
            raise CommandError("NOMASTERLINK Can't SYNC while not connected with my master")
        info = self.handshake.pop(c, None) or ReplicaInfo(c)
        log.notice("Replica %s asks for synchronization" % info.name())
        if replid is not None:
            if self.try_partial(c, info, replid.decode("utf-8", "replace"), offset):
                return None
        else:
            info.pre_psync = True
        self.stat_sync_full += 1
        self.full_sync(c, info)
        return None

    def try_partial(self, c: Client, info: ReplicaInfo, replid: str, offset: bytes) -> bool:
        try:
            off = int(offset)
        except ValueError:
            off = None
        if off is None:
            pass
        elif replid != self.replid and (replid != self.replid2 or off > self.second_offset):
            if replid != "?":
                if replid != self.replid and replid != self.replid2:
                    log.notice("Partial resynchronization not accepted: Replication ID "
                               "mismatch (Replica asked for '%s', my replication IDs are "
                               "'%s' and '%s')" % (replid, self.replid, self.replid2))
                else:
                    log.notice("Partial resynchronization not accepted: Requested offset "
                               "for second ID was %d, but I can reply up to %d"
                               % (off, self.second_offset))
            else:
                log.notice("Full resync requested by replica %s" % info.name())
        elif (self.backlog is None or off < self.first_byte() or off > self.offset + 1):
            log.notice("Unable to partial resync with replica %s for lack of backlog "
                       "(Replica request was: %d)." % (info.name(), off))
            if off > self.offset + 1:
                log.warning("Warning: replica %s tried to PSYNC with an offset that is "
                            "greater than the master replication offset." % info.name())
        else:
            # +CONTINUE: the stream from off, then live
            self.flush()
            c.flags_extra += "S"
            info.state = ONLINE
            info.ack_time = time.time()
            self.replicas[c] = info
            if info.capa_psync2:
                self.send(c, b"+CONTINUE %s\r\n" % self.replid.encode())
            else:
                self.send(c, b"+CONTINUE\r\n")
            data = bytes(self.backlog[off - 1 - self.bl_start:]) if off <= self.offset else b""
            if data:
                self.send(c, data)
            self.stat_sync_partial_ok += 1
            log.notice("Partial resynchronization request from %s accepted. Sending %d bytes "
                       "of backlog starting from offset %d." % (info.name(), len(data), off))
            return True
        if replid != "?":
            self.stat_sync_partial_err += 1
        return False

    def full_sync(self, c: Client, info: ReplicaInfo) -> None:
        srv = self.srv
        c.flags_extra += "S"
        self.replicas[c] = info
        if self.backlog is None:
            if len(self.replicas) == 1 and self.masterhost is None:
                self.replid = new_id()    # changeReplicationId + clearReplicationId2
                self.replid2 = NULL_ID
                self.second_offset = -1
            self.create_backlog()
            log.notice("Replication backlog created, my new replication IDs are '%s' and "
                       "'%s'" % (self.replid, self.replid2))
        self.flush()
        if self.masterhost is None:
            self.seldb = -1              # the stream after the snapshot starts with SELECT
        info.pending = bytearray()
        info.state = WAIT_BGSAVE
        if not info.pre_psync:
            log.notice("Full resync requested by replica %s" % info.name())
            self.send(c, b"+FULLRESYNC %s %d\r\n" % (self.replid.encode(), self.offset))
        # atomic imports under way: their markers are not in the snapshot
        srv.migrations.replicas_resynced()
        busy = srv.children.busy()
        if busy is not None:               # one child at a time: the cron starts it
            if busy == "aof":
                log.notice("No BGSAVE in progress, but another BG operation is active. "
                           "BGSAVE for replication delayed")
            else:
                log.notice("Can't attach the replica to the current BGSAVE. Waiting for "
                           "next BGSAVE for SYNC")
            return
        self.try_snapshot(info)

    def try_snapshot(self, info: ReplicaInfo) -> None:
        try:
            self.start_snapshot(info)
        except OSError as e:
            log.warning("Can't BGSAVE for replication: %s" % e)
            info.c.closing = True
            info.c.transport.close()

    def start_pending_syncs(self) -> None:
        """replicationStartPendingFork: a replica waiting for its full sync
        gets one when no other child runs."""
        for r in list(self.replicas.values()):
            if self.srv.children.busy() is not None:
                return
            if r.state == WAIT_BGSAVE and r.job is None and not r.c.closing:
                self.try_snapshot(r)

    # ------------------------------------------------------------ primary: snapshot
    def start_snapshot(self, info: ReplicaInfo) -> None:
        srv = self.srv
        aux = {"redis-ver": srv.version, "redis-bits": 64, "ctime": int(time.time()),
               "used-mem": 0, "repl-stream-db": (self.master_client.db.id
                                                 if self.master_client is not None else 0),
               "repl-id": self.replid,
               "repl-offset": self.offset, "aof-base": 0}
        functions = [] if info.exclude_functions else srv.scripting.functions.codes()
        dbs = [] if info.exclude_data else srv.ks.dbs
        rfd, wfd = os.pipe()

        def body() -> None:              # in the child: the RDB into the pipe
            os.close(rfd)
            with open(wfd, "wb", buffering=1 << 20, closefd=True) as fh:
                n = rdb.dump(dbs, fh.write, aux, functions, srv.snapshots.key_delay(),
                             srv.snapshots.key_clock())
            log.notice("DB saved on disk (%d keys)" % n)
        try:
            pid = srv.children.fork(REPL_SYNC, body, "writing the RDB for replication")
        except OSError:
            os.close(rfd)
            os.close(wfd)
            raise
        os.close(wfd)
        os.set_blocking(rfd, False)
        mark = os.urandom(20).hex().encode() if (info.capa_eof and not info.pre_psync) else None
        job = SnapshotJob(pid, rfd, info, mark)
        info.job = job
        if mark is not None:
            log.notice("Starting BGSAVE for SYNC with target: replicas sockets")
            info.state = WAIT_BGSAVE
            self.send(info.c, b"$EOF:" + mark + b"\r\n")
        else:
            log.notice("Starting BGSAVE for SYNC with target: disk")
        log.notice("Background RDB transfer started by pid %d" % pid)
        srv.loop.add_reader(rfd, self.on_snapshot_data, job)

    def on_snapshot_data(self, job: SnapshotJob) -> None:
        try:
            data = os.read(job.rfd, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        r = job.link
        if data:
            if job.mark is not None:
                if not r.c.closing:
                    self.send(r.c, data)
            else:
                job.data += data
            job.sent += len(data)
            return
        # end of the pipe: the child is done
        self.srv.loop.remove_reader(job.rfd)
        os.close(job.rfd)
        children = self.srv.children
        ok = children.ok(children.reap(job.pid, block=True))
        r.job = None
        self.srv.loop.call_soon(self.start_pending_syncs)
        if not ok:
            log.warning("Background transfer error")
            r.c.closing = True
            if r.c.transport is not None:
                r.c.transport.close()
            return
        log.notice("Background RDB transfer terminated with success")
        if r.c.closing:
            return
        if job.mark is not None:
            self.send(r.c, job.mark)
            log.notice("Streamed RDB transfer with replica %s succeeded (socket). Waiting for "
                       "REPLCONF ACK from replica to enable streaming" % r.name())
            r.state = ONLINE
            r.wait_ack = True            # Redis 7.0: stream after the first ACK
            r.ack_time = time.time()
        else:
            payload = bytes(job.data)
            self.send(r.c, b"$%d\r\n" % len(payload) + payload)
            r.state = ONLINE
            r.ack_time = time.time()
            self.start_streaming(r)

    def start_streaming(self, r: ReplicaInfo) -> None:
        self.flush()
        pending = r.pending
        r.pending = None
        r.state = ONLINE
        if pending:
            self.send(r.c, bytes(pending))
        log.notice("Synchronization with replica %s succeeded" % r.name())

    def abort_job(self, job: SnapshotJob) -> None:
        try:
            self.srv.loop.remove_reader(job.rfd)
            os.close(job.rfd)
        except (OSError, ValueError):
            pass
        self.srv.children.kill(job.pid)

    # ------------------------------------------------------------ WAIT
    def acked(self, off: int) -> int:
        return sum(1 for r in self.live_replicas() if r.state == ONLINE and r.ack_off >= off)

    def wait(self, c: Client, numreplicas: int, timeout_ms: int):
        from pynode.resp import integer
        off = self.offset
        n = self.acked(off)
        if n >= numreplicas or c.in_multi:
            return integer(n)
        w = [c, off, numreplicas, None]
        if timeout_ms > 0:
            w[3] = self.srv.loop.call_later(timeout_ms / 1000.0, self.wait_done, w)
        self.waiters.append(w)
        c.paused = True                  # park: later commands of this client wait
        if not self.getack_scheduled:
            self.getack_scheduled = True
            self.srv.loop.call_soon(self.send_getack)
        return None

    def failover_pause(self) -> bool:
        """Writes are paused for a manual failover of one of our replicas: then
        nothing may be added to the stream (a PING or a GETACK would move our
        offset past the one the replica must reach exactly), as Redis."""
        srv = self.srv
        if self.failover_state == FAILOVER_WAIT:
            return True
        return (srv.cluster is not None and srv.cluster.state.mf_end != 0
                and srv.cluster.state.myself.is_primary
                and srv.pause.active(FAILOVER, time.monotonic()))

    def send_getack(self) -> None:
        self.getack_scheduled = False
        if self.backlog is None or not self.replicas or self.masterhost is not None:
            return
        if self.failover_pause():
            return
        self.feed(-1, [b"REPLCONF", b"GETACK", b"*"])
        self.flush()

    def check_waiters(self) -> None:
        for w in list(self.waiters):
            if self.acked(w[1]) >= w[2]:
                self.wait_done(w)

    def wait_done(self, w) -> None:
        from pynode.resp import integer
        if w not in self.waiters:
            return
        self.waiters.remove(w)
        c = w[0]
        if w[3] is not None:
            w[3].cancel()
        if c.closing:
            return
        c.write(integer(self.acked(w[1])))
        c.resume()

    def waiting(self, c: Client) -> bool:
        """c is blocked in WAIT."""
        return any(w[0] is c for w in self.waiters)

    def unblock_waiter(self, c: Client, error: bool) -> bool:
        """CLIENT UNBLOCK of a client in WAIT: the acks so far (TIMEOUT) or
        the UNBLOCKED error; False if c is not waiting."""
        for w in self.waiters:
            if w[0] is c:
                break
        else:
            return False
        if not error:
            self.wait_done(w)
            return True
        self.waiters.remove(w)
        if w[3] is not None:
            w[3].cancel()
        c.write(self.srv.error_reply("UNBLOCKED client unblocked via CLIENT UNBLOCK"))
        c.resume()
        return True

    # ------------------------------------------------------------ cron (1 s)
    def start(self) -> None:
        """At server start: schedule the cron; connect if replicaof is configured."""
        self.timer = self.srv.loop.call_later(1.0, self.cron)
        v = self.srv.cfg.get("replicaof")
        if v:
            host, port = v.split()
            self.become_replica(host, int(port))

    def cron(self) -> None:
        self.timer = self.srv.loop.call_later(1.0, self.cron)
        now = time.time()
        if self.replicas:
            self.start_pending_syncs()
        if self.masterhost is not None:
            if self.state == LINK_CONNECTED:
                if now - self.master_last_io > self.timeout:
                    log.warning("MASTER timeout: no data nor PING received...")
                    self.drop_master_link()
                else:
                    self.send_ack()
        if self.waiters:                 # WAITing clients that went away
            for w in [w for w in self.waiters if w[0].closing]:
                self.waiters.remove(w)
                if w[3] is not None:
                    w[3].cancel()
        replicas = self.live_replicas()
        if replicas and self.masterhost is None:
            mono = time.monotonic()
            if mono - self.last_ping >= self.ping_period and not self.failover_pause():
                self.last_ping = mono
                self.feed(self.seldb if self.seldb >= 0 else -1, [b"PING"])
        for r in replicas:
            if r.state == ONLINE and not r.wait_ack and now - r.ack_time > self.timeout:
                log.warning("Disconnecting timedout replica (streaming sync): %s" % r.name())
                r.c.closing = True
                r.c.transport.close()

    # ------------------------------------------------------------ roles
    def become_replica(self, host: str, port: int) -> bool:
        """Replicate host:port (REPLICAOF host port / cluster Replicate). False if
        already replicating that primary."""
        if self.masterhost == host and self.masterport == port:
            return False
        srv = self.srv
        was_primary = self.masterhost is None
        self.cancel_link()
        self.masterhost = host
        self.masterport = port
        srv.ks.expire_on_read = False
        srv.set_repl_feed(None)
        log.role = "S"
        srv.cfg.values["replicaof"] = "%s %d" % (host, port)
        for w in list(self.waiters):     # disconnectAllBlockedClients: reply, then close
            self.waiters.remove(w)
            if w[3] is not None:
                w[3].cancel()
            c = w[0]
            if not c.closing:
                c.write(b"-UNBLOCKED force unblock from blocking operation, instance state "
                        b"changed (master -> replica?)\r\n")
                c.close_after_reply()
        srv.blocking.unblock_all()
        self.disconnect_replicas()
        if was_primary:
            self.cached = True           # PSYNC with our own id/offset (cache myself)
            log.notice("Before turning into a replica, using my own master parameters to "
                       "synthesize a cached master: I may be able to synchronize with the "
                       "new master with just a partial transfer.")
        self.set_link_state(LINK_CONNECT)
        self.down_since = 0.0
        self.configure()
        self.task = srv.loop.create_task(self.link_loop())
        return True

    def become_primary(self) -> bool:
        """REPLICAOF NO ONE / promotion: keep the data, shift the ids."""
        if self.masterhost is None:
            return False
        srv = self.srv
        self.cancel_link()
        self.masterhost = None
        self.masterport = 0
        srv.ks.expire_on_read = True
        srv.cfg.values["replicaof"] = ""
        log.role = "M"
        # shiftReplicationId
        self.replid2 = self.replid
        self.second_offset = self.offset + 1
        self.replid = new_id()
        log.notice("Setting secondary replication ID to %s, valid up to offset: %d. New "
                   "replication ID is %s" % (self.replid2, self.second_offset, self.replid))
        self.disconnect_replicas()       # they reconnect and learn the new id (+CONTINUE)
        self.set_link_state(LINK_NONE)
        self.cached = False
        self.seldb = -1
        if self.backlog is None:
            self.create_backlog()
        srv.set_repl_feed(self.feed)
        self.configure()
        return True

    def cancel_link(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.drop_master_link()

    def drop_master_link(self) -> None:
        w = self.writer
        self.writer = None
        if w is not None:
            w.transport.abort()
        mc = self.master_client
        if mc is not None:
            self.master_client = None
            self.stream_db = mc.db.id
            mc.closing = True
            self.srv.on_disconnect(mc)

    # ------------------------------------------------------------ replica: link
    async def link_loop(self) -> None:
        me = asyncio.current_task()
        while self.masterhost is not None and self.task is me:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                if self.task is me:
                    self.drop_master_link()
                raise
            except (OSError, EOFError, ReplError, asyncio.IncompleteReadError,
                    asyncio.TimeoutError, rdb.RDBError) as e:
                if self.state == LINK_CONNECTED:
                    log.notice("Connection with master lost.")
                    log.notice("Caching the disconnected master state.")
                elif str(e):
                    log.warning(str(e))
            except Exception as e:  # noqa: BLE001 - the link must keep retrying
                log.warning("Replication link error: %r" % (e,))
            if self.task is not me:
                return
            if self.failover_state == FAILOVER_IN_PROGRESS:
                self.abort_failover("Failover target is unreachable")
                return
            if self.state == LINK_CONNECTED:
                self.cached = True       # PSYNC with our id/offset next time
            self.drop_master_link()
            self.set_link_state(LINK_CONNECT)
            if not self.down_since:
                self.down_since = time.time()
            await asyncio.sleep(1.0)

    async def sync_once(self) -> None:
        srv = self.srv
        host, port = self.masterhost, self.masterport
        tmo = self.timeout
        self.set_link_state(LINK_CONNECTING)
        log.notice("Connecting to MASTER %s:%d" % (host, port))
        src = srv.cfg.source_addr()
        # tls-replication: the link to the primary is TLS (pynode/tls.py)
        ssl_ctx = peer_ssl(srv)

        async def connect():
            sock = await connect_async(host, port, src)
            return await asyncio.open_connection(
                sock=sock, ssl=ssl_ctx, server_hostname=host if ssl_ctx is not None else None)
        reader, writer = await asyncio.wait_for(connect(), tmo)
        self.writer = writer
        log.notice("MASTER <-> REPLICA sync started")
        self.set_link_state(LINK_HANDSHAKE)
        log.notice("Non blocking connect for SYNC fired the event.")

        async def reply() -> bytes:
            line = await asyncio.wait_for(reader.readline(), tmo)
            if not line:
                raise ReplError("Master closed the connection during the handshake")
            return line.rstrip(b"\r\n")

        writer.write(encode_command([b"PING"]))
        r = await reply()
        if r.startswith(b"-") and not (r.startswith(b"-NOAUTH") or r.startswith(b"-NOPERM")
                                       or r.startswith(b"-ERR operation not permitted")):
            raise ReplError("Error reply to PING from master: '%s'" % r.decode("utf-8", "replace"))
        log.notice("Master replied to PING, replication can continue...")
        cfg = srv.cfg
        argv = peer_auth(cfg)
        if argv is not None:
            writer.write(encode_command(argv))
            r = await reply()
            if r.startswith(b"-"):
                raise ReplError("Unable to AUTH to MASTER: %s" % r.decode("utf-8", "replace"))
        lport = cfg.int("replica-announce-port") or cfg.int("port")
        writer.write(encode_command([b"REPLCONF", b"listening-port", b"%d" % lport]))
        announce_ip = cfg.get("replica-announce-ip")
        if announce_ip:
            writer.write(encode_command([b"REPLCONF", b"ip-address", announce_ip.encode()]))
        writer.write(encode_command([b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"]))
        r = await reply()
        if r.startswith(b"-"):
            log.notice("(Non critical) Master does not understand REPLCONF listening-port: %s"
                       % r.decode("utf-8", "replace"))
        if announce_ip:
            await reply()
        r = await reply()
        if r.startswith(b"-"):
            log.notice("(Non critical) Master does not understand REPLCONF capa: %s"
                       % r.decode("utf-8", "replace"))
        # PSYNC
        if self.cached:
            psync = [b"PSYNC", self.replid.encode(), b"%d" % (self.offset + 1)]
            log.notice("Trying a partial resynchronization (request %s:%d)."
                       % (self.replid, self.offset + 1))
        else:
            psync = [b"PSYNC", b"?", b"-1"]
            log.notice("Partial resynchronization not possible (no cached master)")
        if self.failover_state == FAILOVER_IN_PROGRESS:
            psync.append(b"FAILOVER")    # the target becomes the primary
        writer.write(encode_command(psync))
        while True:
            r = await reply()
            if r:                        # empty lines are keepalives
                break
        if self.failover_state == FAILOVER_IN_PROGRESS:
            if r.startswith(b"+FULLRESYNC") or r.startswith(b"+CONTINUE"):
                self.clear_failover()
            else:
                log.warning("Unexpected reply to PSYNC from master: %s"
                            % r.decode("utf-8", "replace"))
                self.abort_failover("Failover target rejected psync request")
                return
        if r.startswith(b"+FULLRESYNC"):
            parts = r.split()
            if len(parts) != 3:
                raise ReplError("Master sent an invalid FULLRESYNC reply")
            replid, off = parts[1].decode(), int(parts[2])
            log.notice("Full resync from master: %s:%d" % (replid, off))
            leftover = await self.receive_rdb(reader, replid, off)
        elif r.startswith(b"+CONTINUE"):
            parts = r.split()
            log.notice("Successful partial resynchronization with master.")
            if len(parts) > 1:
                newid = parts[1].decode()
                if newid != self.replid:
                    self.replid2 = self.replid
                    self.second_offset = self.offset + 1
                    self.replid = newid
                    log.notice("Master replication ID changed to %s" % newid)
                    self.disconnect_replicas()
            log.notice("MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.")
            if self.backlog is None:
                self.create_backlog()
            leftover = b""
        elif r.startswith(b"-NOMASTERLINK") or r.startswith(b"-LOADING"):
            raise ReplError("Master is currently unable to PSYNC but should be in the future: "
                            "%s" % r.decode("utf-8", "replace"))
        else:
            raise ReplError("Unexpected reply to PSYNC from master: %s"
                            % r.decode("utf-8", "replace"))
        await self.stream(reader, writer, leftover)

    async def receive_rdb(self, reader, replid: str, off: int) -> bytes:
        srv = self.srv
        tmo = self.timeout
        self.set_link_state(LINK_SYNC)
        self.cached = False              # the old dataset is going away
        self.sync_read = 0
        self.sync_total = -1
        while True:
            line = await asyncio.wait_for(reader.readline(), tmo)
            if not line:
                raise ReplError("Master closed the connection during the transfer")
            self.master_last_io = time.time()
            if line.strip():
                break
        if line[:1] == b"-":
            raise ReplError("MASTER aborted replication with an error: %s"
                            % line.strip().decode("utf-8", "replace"))
        if line[:1] != b"$":
            raise ReplError("Bad protocol from MASTER, the first byte is not '$' (we received "
                            "'%s'), are you sure the host and port are right?"
                            % line.strip().decode("utf-8", "replace"))
        leftover = b""
        if line.startswith(b"$EOF:"):
            mark = line[5:].rstrip(b"\r\n")
            if len(mark) != 40:
                raise ReplError("Bad EOF mark from MASTER")
            log.notice("MASTER <-> REPLICA sync: receiving streamed RDB from master with EOF "
                       "to disk")
            buf = bytearray()
            while True:
                chunk = await asyncio.wait_for(reader.read(1 << 20), tmo)
                if not chunk:
                    raise ReplError("I/O error trying to sync with MASTER: connection lost")
                self.master_last_io = time.time()
                scan = max(0, len(buf) - 40)
                buf += chunk
                self.sync_read = len(buf)
                i = buf.find(mark, scan)
                if i >= 0:
                    leftover = bytes(buf[i + 40:])
                    del buf[i:]
                    break
            payload = bytes(buf)
        else:
            n = int(line[1:])
            self.sync_total = n
            log.notice("MASTER <-> REPLICA sync: receiving %d bytes from master to disk" % n)
            payload = await asyncio.wait_for(reader.readexactly(n), max(tmo, 1 + n / 1e6))
            self.sync_read = n
        self.master_last_io = time.time()
        srv.snapshots.store_sync_payload(payload)   # dump.rdb, as Redis (disk load)
        log.notice("MASTER <-> REPLICA sync: Flushing old data")
        ks = srv.ks
        ks.flushall(srv.lazyfree.replica_flush)      # replica-lazy-flush
        log.notice("MASTER <-> REPLICA sync: Loading DB in memory")
        stream_db = [0]

        def on_aux(k: bytes, v: bytes) -> None:
            if k == b"repl-stream-db":
                stream_db[0] = int(v)

        def on_key(dbid: int, key: bytes, value, expire: int) -> None:
            db = ks.db(dbid)
            db.set(key, value)
            if expire != -1:
                db.set_expire(key, expire)

        functions: list[bytes] = []
        srv.set_loading_flag(True)
        ks.tick()                         # keys are created (accessed) now
        try:
            nkeys = rdb.load(payload, on_key, on_aux, name="MASTER <-> REPLICA sync",
                             on_function=functions.append,
                             on_clock=srv.snapshots.take_clock)
            srv.scripting.load_functions(functions)
        except rdb.RDBError:
            ks.flushall()
            log.warning("Failed trying to load the MASTER synchronization DB from socket")
            raise
        finally:
            srv.set_loading_flag(False)
        log.notice("Done loading RDB, keys loaded: %d, keys expired: 0." % nkeys)
        srv.snapshots.after_sync_load()        # rdb-del-sync-files
        # the new history: master's id and offset, no secondary id
        self.replid = replid
        self.replid2 = NULL_ID
        self.second_offset = -1
        self.offset = off
        self.create_backlog()
        self.disconnect_replicas()       # our sub-replicas must resync with the new history
        self.stream_db = stream_db[0]
        if srv.aof is not None and srv.aof.enabled:
            try:
                srv.aof.rewrite(ks)
            except OSError as e:
                log.warning("Failed restarting the AOF after the sync: %s" % e)
        log.notice("MASTER <-> REPLICA sync: Finished with success")
        return leftover

    async def stream(self, reader, writer, leftover: bytes) -> None:
        """Connected: apply the master's stream until the link drops."""
        srv = self.srv
        mc = Client(srv)
        mc.transport = writer.transport
        mc.authed = True
        mc.flags_extra = "M"
        mc.out = []                      # replies to the master are discarded
        mc.parser.max_bulk = 1 << 62     # no proto-max-bulk-len for the master
        mc.db = srv.ks.db(self.stream_db)   # the cached master's db (or the RDB's)
        peer = writer.transport.get_extra_info("peername")
        sock = writer.transport.get_extra_info("sockname")
        if peer:
            mc.addr = "%s:%d" % (peer[0], peer[1])
        if sock:
            mc.laddr = "%s:%d" % (sock[0], sock[1])
        s = writer.transport.get_extra_info("socket")
        if s is not None:
            mc.fd = s.fileno()
        srv.add_client(mc)
        self.master_client = mc
        self.set_link_state(LINK_CONNECTED)
        self.down_since = 0.0
        self.cached = False
        self.read_off = self.offset
        self.master_last_io = time.time()
        self.send_ack()                  # puts us online on the primary
        mc.parser.max_query = 1 << 62    # nor client-query-buffer-limit
        rbuf = bytearray()               # the bytes of the command being read
        uncommitted = bytearray()        # applied, inside MULTI: not in our backlog yet
        scripting = srv.scripting
        data = leftover
        while True:
            while scripting.busy is not None:    # a busy script holds the stream
                await asyncio.sleep(0.005)
            if data:
                self.apply_stream(mc, data, rbuf, uncommitted)
            if mc.closing:
                raise ReplError("")
            data = await reader.read(1 << 16)
            if not data:
                raise EOFError("Connection with master lost.")
            self.master_last_io = mc.last_io = time.time()
            self.read_off += len(data)
            self.repl_in_bytes += len(data)

    def apply_stream(self, mc: Client, data: bytes, rbuf: bytearray,
                     uncommitted: bytearray) -> None:
        """Apply the master's commands in `data`, read by the master client's
        own RequestParser (as Redis's master client); each applied command's
        bytes go to our backlog (a transaction's once EXEC is read).  A
        protocol error drops the link after the commands before it."""
        srv = self.srv
        ks = srv.ks
        table = srv.table
        rbuf += data
        parser = mc.parser
        units = parser.feed_units(data)
        pos = 0
        saved_now = ks.now
        ks.now = 0                       # the master client never sees keys as expired
        try:
            for argv, n in units:
                uncommitted += rbuf[pos:pos + n]
                pos += n
                if argv:
                    self.apply(mc, table, argv)
                if not mc.in_multi:
                    self.append(uncommitted)
                    uncommitted.clear()
        finally:
            ks.now = saved_now
            del rbuf[:pos]
        if parser.error is not None:
            raise ReplError("%s from master" % parser.error)

    def apply(self, mc: Client, table, argv: list[bytes]) -> None:
        srv = self.srv
        cmd = table.get(argv[0].lower())
        if cmd is None:
            log.warning("Unknown command '%s' from the master stream ignored"
                        % argv[0].decode("utf-8", "replace"))
            return
        if cmd.subs is not None and len(argv) > 1:
            sub = cmd.subs.get(argv[1].lower())
            if sub is None and cmd.hidden is not None:
                sub = cmd.hidden.get(argv[1].lower())   # CLUSTER SYNCSLOTS REPLICA-*
            cmd = sub or cmd
        if cmd.handler is None:
            return
        if mc.in_multi and cmd.name not in ("exec", "discard", "multi"):
            mc.queued.append((cmd, argv))
            return
        srv.run_queued(mc, cmd, argv)
        mc.last_cmd = cmd.name
        mc.out.clear()
        if srv.blocking.ready and not mc.in_multi:
            srv.blocking.handle_ready()      # XREAD BLOCK readers of this replica

    def send_ack(self) -> None:
        w = self.writer
        if w is not None and self.state == LINK_CONNECTED:
            w.write(encode_command([b"REPLCONF", b"ACK", b"%d" % self.offset]))

    # ------------------------------------------------------------ INFO / ROLE
    def info(self) -> dict:
        srv = self.srv
        d: dict = {}
        now = time.time()
        if self.masterhost is None:
            d["role"] = "master"
        else:
            d["role"] = "slave"
            connected = self.state == LINK_CONNECTED
            d["master_host"] = self.masterhost
            d["master_port"] = self.masterport
            d["master_link_status"] = "up" if connected else "down"
            d["master_last_io_seconds_ago"] = (int(now - self.master_last_io)
                                               if self.master_client is not None else -1)
            d["master_sync_in_progress"] = 1 if self.state == LINK_SYNC else 0
            d["slave_read_repl_offset"] = self.read_off if connected else self.offset
            d["slave_repl_offset"] = self.offset
            if self.state == LINK_SYNC:
                d["master_sync_total_bytes"] = self.sync_total
                d["master_sync_read_bytes"] = self.sync_read
                d["master_sync_left_bytes"] = (self.sync_total - self.sync_read
                                               if self.sync_total >= 0 else -1)
                d["master_sync_perc"] = ("%.2f" % (self.sync_read * 100.0 / self.sync_total)
                                         if self.sync_total > 0 else "0.00")
                d["master_sync_last_io_seconds_ago"] = int(now - self.master_last_io)
            if not connected:
                d["master_link_down_since_seconds"] = (int(now - self.down_since)
                                                       if self.down_since else -1)
            cfg = srv.cfg
            d["slave_priority"] = cfg.int("replica-priority")
            d["slave_read_only"] = 1 if self.read_only else 0
            d["replica_announced"] = 1 if cfg.bool("replica-announced") else 0
        replicas = self.live_replicas()
        d["connected_slaves"] = len(replicas)
        if self.min_to_write and self.max_lag:
            d["min_slaves_good_slaves"] = self.good_replicas()
        for i, r in enumerate(replicas):
            d["slave%d" % i] = "ip=%s,port=%d,state=%s,offset=%d,lag=%d" % (
                r.ip, r.port, r.state, r.ack_off, int(now - r.ack_time))
        d["master_failover_state"] = self.failover_state
        d["master_replid"] = self.replid
        d["master_replid2"] = self.replid2
        d["master_repl_offset"] = self.offset
        d["second_repl_offset"] = self.second_offset
        d["repl_backlog_active"] = 1 if self.backlog is not None else 0
        d["repl_backlog_size"] = self.backlog_size
        d["repl_backlog_first_byte_offset"] = self.first_byte()
        d["repl_backlog_histlen"] = self.histlen()
        return d

    # ------------------------------------------------------------ FAILOVER
    # A coordinated failover of a standalone primary (Redis 6.2+): writes are
    # paused, the target (given, or the first replica whose ACK reaches our
    # offset) is waited for, then we become its replica and our PSYNC carries
    # FAILOVER, which turns it into the primary; +CONTINUE ends the failover.

    def find_replica(self, host: str, port: int) -> ReplicaInfo | None:
        for r in self.live_replicas():
            if r.ip.lower() == host.lower() and r.port == port:
                return r
        return None

    def start_failover(self, host: str | None, port: int, timeout_ms: int,
                       force: bool) -> None:
        """FAILOVER's checks are done (pynode/commands/replication.py)."""
        srv = self.srv
        if host is not None:
            self.failover_host, self.failover_port = host, port
            log.notice("FAILOVER requested to %s:%d." % (host, port))
        else:
            log.notice("FAILOVER requested to any replica.")
        self.failover_end = time.monotonic() + timeout_ms / 1000.0 if timeout_ms else 0.0
        self.failover_force = force
        self.set_failover_state(FAILOVER_WAIT)
        srv.pause_clients(FAILOVER, float("inf"), WRITE)   # writes wait, reads go on
        self.failover_tick()

    def failover_tick(self) -> None:
        """updateFailoverStatus (Redis runs it before every sleep; here every
        100 ms while waiting for the replica)."""
        self.failover_timer = None
        if self.failover_state != FAILOVER_WAIT:
            return
        if self.failover_end and time.monotonic() >= self.failover_end:
            if self.failover_force:
                log.notice("FAILOVER to %s:%d time out exceeded, failing over."
                           % (self.failover_host, self.failover_port))
                self.set_failover_state(FAILOVER_IN_PROGRESS)
                self.become_replica(self.failover_host, self.failover_port)
            else:
                self.abort_failover("Replica never caught up before timeout")
            return
        target = None
        if self.failover_host is not None:
            target = self.find_replica(self.failover_host, self.failover_port)
        else:
            for r in self.live_replicas():
                if r.ack_off == self.offset:
                    target = r
                    self.failover_host, self.failover_port = r.ip, r.port
                    break
        if target is not None and target.ack_off == self.offset:
            self.set_failover_state(FAILOVER_IN_PROGRESS)
            log.notice("Failover target %s:%d is synced, failing over."
                       % (self.failover_host, self.failover_port))
            self.become_replica(self.failover_host, self.failover_port)
            return
        self.failover_timer = self.srv.loop.call_later(0.1, self.failover_tick)

    def abort_failover(self, reason: str) -> None:
        if self.failover_state == NO_FAILOVER:
            return
        if self.failover_host is not None:
            log.notice("FAILOVER to %s:%d aborted: %s"
                       % (self.failover_host, self.failover_port, reason))
        else:
            log.notice("FAILOVER to any replica aborted: %s" % reason)
        if self.failover_state == FAILOVER_IN_PROGRESS:
            self.become_primary()
        self.clear_failover()

    def clear_failover(self) -> None:
        """clearFailoverState: writes resume (on a replica they get READONLY)."""
        if self.failover_timer is not None:
            self.failover_timer.cancel()
            self.failover_timer = None
        self.set_failover_state(NO_FAILOVER)
        self.failover_host = None
        self.failover_port = 0
        self.failover_end = 0.0
        self.failover_force = False
        self.srv.unpause_clients(FAILOVER)

    def role(self) -> list:
        if self.masterhost is None:
            return [b"master", self.offset,
                    [[r.ip.encode(), b"%d" % r.port, b"%d" % r.ack_off]
                     for r in self.live_replicas() if r.state == ONLINE]]
        state = self.state
        return [b"slave", self.masterhost.encode(), self.masterport, state.encode(),
                self.offset if self.master_client is not None else -1]


