"""The server: one event loop, the command dispatcher, the cron and start-up."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import signal
import socket
import sys
import time
from collections import deque
from itertools import islice
from operator import attrgetter
from time import perf_counter, perf_counter_ns

from pynode import commands as cmdmod
from pynode import info as infomod
from pynode import evict, notify
from pynode.acl import ALLCHANNELS
from pynode.commands.acl import denied as acl_denied
from pynode.commands.server import _is_local as is_local
from pynode.client import Client
from pynode.commands import CommandError
from pynode.config import NOTIFY_NEW, VERSION, Config
from pynode.log import log
from pynode.redact import redacted
from pynode.pause import ALL, MIGRATION, Pause
from pynode.pubsub import PubSub
from pynode.resp import OK, error, unknown_command, unknown_subcommand
from pynode.latency import NEVER
from pynode.routing import command_key_args, route
from binascii import crc_hqx
from storage.slots import keyslot
from storage.sdsargs import quote
from storage import rdb, values
from storage.keyspace import Keyspace


LOADING_ERR = "LOADING Redis is loading the dataset in memory"

DENIED = (
    b"-DENIED Redis is running in protected mode because protected mode is enabled and no "
    b"password is set for the default user. In this mode connections are only accepted from "
    b"the loopback interface. If you want to connect from external computers to Redis you may "
    b"adopt one of the following solutions: 1) Just disable protected mode sending the "
    b"command 'CONFIG SET protected-mode no' from the loopback interface by connecting to "
    b"Redis from the same host the server is running, however MAKE SURE Redis is not publicly "
    b"accessible from internet if you do so. Use CONFIG REWRITE to make this change "
    b"permanent. 2) Alternatively you can just disable the protected mode by editing the "
    b"Redis configuration file, and setting the protected mode option to 'no', and then "
    b"restarting the server. 3) If you started the server manually just for testing, restart "
    b"it with the '--protected-mode no' option. 4) Setup a an authentication password for "
    b"the default user. NOTE: You only need to do one of the above things in order for the "
    b"server to start accepting connections from the outside.\r\n")


def _loading_guard(c, cmd) -> str | None:
    """Server.execute's check while loading: commands without the loading
    flag are refused (processCommand's is_denyloading_command)."""
    return None if cmd.loading else LOADING_ERR

def _one_slot_of(owner: list, myid: str, keys: list[bytes]) -> bool:
    """Whether the keys of a multi-key command all hash to one slot that
    `owner` (the slot table) gives to myid (or there are none, as
    routing.route serves them): execute_fast's routing check."""
    if not keys:
        return True
    first = keys[0]
    slot = keyslot(first) if 123 in first else crc_hqx(first, 0) & 16383
    if owner[slot] != myid:
        return False
    for key in keys:
        if key is not first and (keyslot(key) if 123 in key
                                 else crc_hqx(key, 0) & 16383) != slot:
            return False
    return True


def _fast_eligible(cmd) -> bool:
    """Whether Server.execute_fast may run the command: a data command (or
    PING/ECHO) that cannot block, close its client, change the client's
    slow-path state (MULTI, AUTH, subscriptions, ASKING...) or take its flags
    from its arguments (scripts)."""
    if cmd.handler is None or cmd.subs is not None or cmd.hidden is not None \
            or cmd.flags_of is not None:
        return False
    if cmd.blocking or cmd.noscript or cmd.admin or cmd.pubsub:
        return False
    return cmd.write or cmd.readonly or cmd.name in ("ping", "echo")


# fds a server keeps besides its clients (CONFIG_MIN_RESERVED_FDS)
RESERVED_FDS = 32
_CALLS = attrgetter("calls")
FOLD_INTERVAL = 0.01     # seconds between two folds of the latency samples (fold_latency)


class DebugSettings:
    """What DEBUG subcommands set (srv.debug)."""

    def __init__(self) -> None:
        self.active_expire = True                 # DEBUG SET-ACTIVE-EXPIRE
        self.pause_cron = False                   # DEBUG PAUSE-CRON
        self.cluster_drop_packet_filter = -1      # DEBUG DROP-CLUSTER-PACKET-FILTER
        self.cluster_close_link_on_packet_drop = False
        self.script_disable_deny_script = False   # DEBUG SET-DISABLE-DENY-SCRIPTS
        self.quicklist_packed_threshold = 1 << 30
        self.aof_flush_sleep = 0                  # DEBUG AOF-FLUSH-SLEEP (us)
        self.reply_buffer_peak_reset_time = 5000  # DEBUG REPLYBUFFER
        self.reply_buffer_resizing_enabled = True
        self.leaks: list[bytes] = []              # DEBUG LEAK


class Server:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.log = log
        self.version = VERSION
        self.run_id = "%040x" % random.getrandbits(160)
        self.start_time = time.time()
        self.ks = Keyspace(cfg.int("databases"))
        self.ks.now_s = time.time()
        self.ks.on_expire = self.on_key_expired
        self.table = cmdmod.build_table()
        self.dispatch: dict = {}       # name (lower/UPPER/Capitalized) -> Command
        self.fast_dispatch: dict = {}  # the same for what execute_fast() runs
        self.fast_look = 0             # min(slowlog, latency monitor thresholds), ns
        self.renames()
        # every command and subcommand (renames only move them): what the
        # latency fold and total_commands_processed walk, many times a second
        self.commands = tuple(cmdmod.all_commands(self.table))
        self.clients: dict[int, Client] = {}
        self.next_client_id = 1
        self.dirty = 0
        self.monitors: list[Client] = []
        self.pubsub = PubSub()       # channels, patterns, shard channels (pynode/pubsub.py)
        self.slowlog: deque = deque()
        self.slowlog_id = 0
        self.pause = Pause()         # client pauses, one per purpose (pynode/pause.py)
        self.debug = DebugSettings()  # what DEBUG sets (pynode/commands/debug.py)
        self.migrate_cache: dict = {}  # MIGRATE's cached connections (commands/dump.py)
        self.stats = infomod.Stats()  # the counters INFO shows, its sampling state
        # INFO executable: the absolute path at start-up, as Redis
        self.executable = os.path.abspath(sys.argv[0] or sys.executable)
        self.aof = None
        self.cluster = None          # pynode.cluster.ClusterNode with cluster-enabled yes
        self.write_queue: list[Client] = []    # clients with replies to write
        self.sleep_pending = False   # a before_sleep() is scheduled
        # PYNODE_CHECK_INVARIANTS=1 (the test suite): the cron checks the
        # invariants of the keyspace, the AOF, replication and the pause
        self.checking = bool(os.environ.get("PYNODE_CHECK_INVARIANTS"))
        # inside EXEC: (dbid, argv) writes held to be wrapped in MULTI/EXEC
        self.also_propagate: list | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servers: list = []
        self.shutting_down = False
        self.shutdown_waiters: list = []  # SHUTDOWN FAILOVER clients waiting for the handover
        self.loading = False
        self.loading_greenlet = None     # the start-up load (serve_while_loading)
        self.stats.errorstats: dict[str, int] = {}
        from pynode.children import Children
        self.children = Children(log)            # every fork: one child at a time
        self.write_guard = None      # READONLY / NOREPLICAS check (pynode/replication.py)
        self.evictor = evict.Evictor(self)   # maxmemory: OOM refusals, eviction
        self.maxmemory = 0           # the evictor's, read by execute()
        # DELs of keys that expired while a command ran: propagated with it
        # (wrapped in MULTI/EXEC when the command propagates too, as Redis 7.0)
        self.expired_pending: list = []
        self.repl_feed = None        # replication stream feed while replicas may attach
        # atomic slot migration (pynode/migration.py): the export jobs' feed of
        # writes to moving slots, the slots whose writes are held for a flip
        self.slot_feed = None
        self.pause_slots: set | None = None
        from pynode.snapshots import Snapshots
        self.snapshots = Snapshots(self)          # RDB: SAVE, BGSAVE, save points
        from pynode.replication import Replication
        self.replication = Replication(self)
        from pynode.blocking import Blocking
        self.blocking = Blocking(self)
        from pynode.scripting.runner import Scripting
        self.scripting = Scripting(self)
        from pynode.latency import Latency
        self.latency = Latency(self)
        from pynode.migration import Migrations
        self.migrations = Migrations(self)       # atomic slot migration jobs
        from pynode.lazyfree import LazyFree
        self.lazyfree = LazyFree(self)           # big values freed in pieces, per loop turn
        self.children.on_latency = self.latency.sample
        from pynode.tracking import Tracking
        self.tracking = Tracking(self)            # client-side caching (CLIENT TRACKING)
        from pynode.acl import Acl
        self.acl = Acl()
        self.applied_requirepass = None
        # no access-clock updates while a child runs (hasActiveChildProcess)
        self.children.on_busy = lambda busy: setattr(self.ks, "frozen", busy)
        self.tls = None              # pynode.tls.Contexts when TLS is configured
        self.tls_listener = None     # the ssl context listeners are made with
        self.listener_ssl: dict = {}  # id(TCP listener) -> its ssl context (None: plain)
        from pynode.slotstats import SlotStats
        self.slot_stats = SlotStats(self)         # CLUSTER SLOT-STATS counters
        from pynode.metrics_http import MetricsEndpoint
        self.metrics = MetricsEndpoint(self)      # metrics-port: Prometheus /metrics
        self.reset_stats()
        self.apply_config()

    # ---------------------------------------------------------------- config
    def apply_config(self) -> None:
        cfg = self.cfg
        self.requirepass = cfg.get("requirepass").encode()
        if self.requirepass != self.applied_requirepass:
            # requirepass is the default user's password (ACLUpdateDefaultUserPassword)
            self.applied_requirepass = self.requirepass
            self.acl.set_default_password(self.requirepass or None)
        self.acl.pubsub_default = (ALLCHANNELS if cfg.get("acl-pubsub-default") == "allchannels"
                                   else 0)
        self.acl.log_max = cfg.int("acllog-max-len")
        self.proto_max_bulk_len = cfg.memory("proto-max-bulk-len")
        self.query_buffer_limit = cfg.memory("client-query-buffer-limit")
        self.maxclients = cfg.int("maxclients")
        self.timeout = cfg.int("timeout")
        self.hz = max(1, min(500, cfg.int("hz")))
        self.slowlog_slower_than = cfg.int("slowlog-log-slower-than")
        self.slowlog_max_len = cfg.int("slowlog-max-len")
        # in ns, as command durations are measured (NEVER: the slowlog is off)
        self.slowlog_threshold = (self.slowlog_slower_than * 1000
                                  if self.slowlog_slower_than >= 0 else NEVER)
        self.debug_enabled = cfg.get("enable-debug-command")
        self.protected_mode = cfg.bool("protected-mode")
        self.cluster_reads_when_down = cfg.bool("cluster-allow-reads-when-down")
        values.LIMITS.load(cfg.int)
        rdb.COMPRESSION = cfg.bool("rdbcompression")
        rdb.CHECKSUM = cfg.bool("rdbchecksum")
        self.notify_flags = notify.parse_flags(cfg.get("notify-keyspace-events"),
                                               cfg.values.get(NOTIFY_NEW) == "yes")
        self.hll_sparse_max_bytes = cfg.memory("hll-sparse-max-bytes")
        if self.tracking is not None:
            self.tracking.max_keys = cfg.int("tracking-table-max-keys")
        self.expired_del = b"UNLINK" if cfg.bool("lazyfree-lazy-expire") else b"DEL"
        self.lazyfree.configure()
        log.configure(cfg.get("loglevel"), cfg.get("logfile"))
        evict.configure(self)        # maxmemory, policy, access clocks, new-key hook
        self.maxmemory = self.evictor.maxmemory
        if self.replication is not None:
            self.replication.configure()
        if self.aof is not None:
            self.aof.configure(fsync=cfg.get("appendfsync"), **self.aof_options())
        if self.cluster is not None:
            self.cluster.configure()
        if self.latency is not None:
            self.latency.configure()
            # the shortest call worth a look by the slowlog or the latency monitor
            self.fast_look = min(self.slowlog_threshold, self.latency.min_ns)
        self.configure_slot_stats()
        for c in self.clients.values():
            c.parser.max_bulk = self.proto_max_bulk_len
            c.parser.max_query = self.query_buffer_limit

    def renames(self) -> None:
        for old, new in self.cfg.renamed.items():
            cmd = self.table.pop(old.encode(), None)
            if cmd is not None and new:
                self.table[new.lower().encode()] = cmd
        self.build_dispatch()

    def build_dispatch(self) -> None:
        """Name -> command in lower, UPPER and Capitalized spelling, so the
        usual spellings are found without lower-casing each request; the
        same for the commands execute_fast() may run."""
        self.dispatch = {}
        for name, cmd in self.table.items():
            for v in (name, name.upper(), name.capitalize()):
                self.dispatch[v] = cmd
        self.fast_dispatch = {v: cmd for v, cmd in self.dispatch.items() if _fast_eligible(cmd)}

    def configure_slot_stats(self) -> None:
        """cluster-slot-stats-enabled: count per slot (pynode/slotstats.py) or not."""
        self.slot_stats.configure(self.cfg.bool("cluster-slot-stats-enabled"))
        if self.scripting.busy is None:
            self.restore_commands()

    def reset_stats(self) -> None:
        self.stats.reset_counters(self.ks.expired_keys)
        self.slot_stats.reset()
        self.evictor.reset_stats()
        self.ks.freer.reset_stats()
        for cmd in cmdmod.all_commands(self.table):
            cmd.calls = 0
            cmd.ns = 0
            cmd.rejected = 0
            cmd.failed = 0
        if self.latency is not None:
            self.latency.reset_histograms()

    @property
    def stat_numcommands(self) -> int:
        """total_commands_processed: the sum of every command's calls."""
        return sum(map(_CALLS, self.commands))

    # ---------------------------------------------------------------- clients
    def on_connect(self, c: Client) -> None:
        if len(self.clients) >= self.maxclients:
            self.stats.rejected_conn += 1
            c.transport.write(b"-ERR max number of clients reached\r\n")
            c.closing = True
            c.transport.close()
            return
        c.id = self.next_client_id
        self.next_client_id += 1
        self.clients[c.id] = c
        self.stats.numconnections += 1
        if self.protected_mode and self.acl.default.nopass and not is_local(c):
            # clientAcceptHandler: no password and a client from outside
            self.stats.rejected_conn += 1
            c.transport.write(DENIED)
            c.closing = True
            c.transport.close()
            return
        sock = c.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def add_client(self, c: Client) -> None:
        """A client made by the server itself (the replica's master link)."""
        c.id = self.next_client_id
        self.next_client_id += 1
        self.clients[c.id] = c

    def on_disconnect(self, c: Client) -> None:
        if self.clients.pop(c.id, None) is None:
            return
        if c.subs or c.psubs or c.ssubs:
            self.pubsub_unsubscribe_all(c)
        if c.watched:
            self.unwatch(c)
        if c.monitor and c in self.monitors:
            self.monitors.remove(c)
        self.pause.discard(c)
        if self.migrations.links:
            self.migrations.on_disconnect(c)
        if c.blocked is not None:
            self.blocking.on_disconnect(c)
        if c.tracking is not None:
            self.tracking.disable(c)

    def unblock_client(self, c: Client, error: bool) -> bool:
        """CLIENT UNBLOCK <id> [TIMEOUT|ERROR]: a client blocked on keys or in
        WAIT gets its timeout reply or the UNBLOCKED error; False if c was
        not blocked."""
        if self.blocking.client_unblock(c, error):
            return True
        return self.replication.unblock_waiter(c, error)

    def discard_transaction(self, c: Client) -> None:
        """discardTransaction(): leave MULTI, forget the queue and every WATCH."""
        c.in_multi = False
        c.queued = []
        c.multi_error = False
        if c.watched or c.watch_touched:
            self.unwatch(c)
        c.update_special()

    def unwatch(self, c: Client) -> None:
        for db, key, wk in c.watched:
            ws = db.watched.get(key)
            if ws is not None:
                ws.discard(wk)
                if not ws:
                    del db.watched[key]
        c.watched = []
        c.watch_touched = False

    def pubsub_unsubscribe_all(self, c: Client) -> None:
        for ch in c.subs:
            s = self.pubsub.channels.get(ch)
            if s is not None:
                s.discard(c)
                if not s:
                    del self.pubsub.channels[ch]
        for p in c.psubs:
            s = self.pubsub.patterns.get(p)
            if s is not None:
                s.discard(c)
                if not s:
                    del self.pubsub.patterns[p]
        c.subs = set()
        c.psubs = set()
        if c.ssubs:
            from pynode.commands.pubsub import shard_unsubscribe_all
            shard_unsubscribe_all(self, c)

    # ---------------------------------------------------------------- writes
    def queue_write(self, c: Client, data: bytes | None) -> None:
        """Hold a reply (None: a close) until every ready connection is read.

        As Redis's beforeSleep: the AOF is written (and with appendfsync
        always fsynced) once for the whole batch, then each client gets one
        write.  Waking a waiting peer costs more than the send itself, so
        writing after the reads, not between them, is what keeps pipelined
        throughput up."""
        if self.loop is None:  # no event loop (in-process use): write now
            if self.aof is not None and self.aof.buf:
                self.aof.flush()
            if data is None:
                c.transport.close()
            else:
                c.transport.write(data)
            return
        wbuf = c.wbuf
        if wbuf is None:
            if not self.sleep_pending:
                self.sleep_pending = True
                self.loop.call_soon(self.before_sleep)
            self.write_queue.append(c)
            c.wbuf = [data]
        else:
            wbuf.append(data)

    def wake(self) -> None:
        """Have before_sleep() run once the loop has handled what is ready."""
        if not self.sleep_pending and self.loop is not None:
            self.sleep_pending = True
            self.loop.call_soon(self.before_sleep)

    def set_slot_feed(self, feed) -> None:
        """An atomic migration's feed of the writes to its moving slots
        (pynode/migration.py), or None."""
        self.slot_feed = feed

    def set_pause_slots(self, slots: set | None) -> None:
        """The slots whose writes an atomic migration's flip holds, or None."""
        self.pause_slots = slots

    def before_sleep_pending(self) -> bool:
        """True while a before_sleep() is due (it writes the bus frames too)."""
        return self.sleep_pending

    def before_sleep(self) -> None:
        """The one flush, in Redis's beforeSleep order: the AOF is written
        (and fsynced with appendfsync always), the replication stream goes to
        the replicas, each client gets one write of its replies, then the bus
        frames the commands caused."""
        self.sleep_pending = False
        aof = self.aof
        if aof is not None and aof.buf:
            aof.flush()  # the AOF first: no reply goes out before its write
        repl = self.replication
        if repl.flushed != repl.offset:
            repl.flush()
        if self.migrations.unflushed:
            self.migrations.flush_pending()   # atomic migration streams, like replicas'
        queue = self.write_queue
        self.write_queue = []
        for c in queue:
            wbuf = c.wbuf
            c.wbuf = None
            t = c.transport
            if t.is_closing():
                continue
            if wbuf[-1] is None:
                data = b"".join([d for d in wbuf if d is not None])
                if data:
                    t.write(data)
                t.close()
            else:
                t.write(b"".join(wbuf) if len(wbuf) > 1 else wbuf[0])
        cl = self.cluster
        if cl is not None and cl.transport is not None:
            cl.transport.flush_frames()   # the bus frames the commands caused

    # ---------------------------------------------------------------- pause
    def must_pause(self, c: Client, argv: list[bytes]) -> bool:
        pause = self.pause
        now = time.monotonic()
        ptype = pause.type
        if now >= pause.end:
            # the pause in force ended (the cron ends it for good): another
            # purpose may still hold a looser one
            ptype = max([t for t, e in pause.purposes.values() if e > now], default=0)
            if not ptype:
                return False
        if ptype == ALL:
            return True
        if self.pause_slots is not None and set(pause.purposes) == {MIGRATION}:
            # only an atomic migration's flip: writes to its slots wait
            return self.migrations.must_pause(c, argv)
        cmd = self.table.get(argv[0].lower())
        if cmd is None:
            return False
        if cmd.flags_of is not None:
            cmd = cmd.flags_of(self, cmd, argv)
        if cmd.name in ("exec",) and c.in_multi:
            return any(q.write or q.may_replicate for q, _ in c.queued)
        return cmd.write or cmd.may_replicate

    def pause_clients(self, purpose: str, end: float, ptype: int) -> None:
        """pauseClients: `purpose` holds clients (WRITE or ALL) until the
        monotonic time `end`."""
        now = time.monotonic()
        self.pause.pause(purpose, end, ptype, now)
        if self.loop is not None and end != float("inf"):
            self.loop.call_later(max(0.0, end - now) + 0.001, self.update_pause)

    def unpause_clients(self, purpose: str) -> None:
        """unpauseClients: end `purpose`'s pause (the others stay)."""
        self.pause.unpause(purpose, time.monotonic())

    def update_pause(self) -> None:
        """Expired pauses end; clients held by them run."""
        if self.pause.purposes:
            self.pause.update(time.monotonic())

    # ---------------------------------------------------------------- execute
    def execute(self, c: Client, argv: list[bytes]):
        """Run one command for a client; returns the encoded reply or None."""
        cmd = self.dispatch.get(argv[0])
        if cmd is None:
            cmd = self.dispatch.get(argv[0].lower())
            if cmd is None:
                return self.reject(c, None, unknown_command(argv))
        if cmd.subs is not None:
            if len(argv) < 2 and cmd.handler is None:
                return self.reject(c, cmd, "ERR wrong number of arguments for '%s' command"
                                   % cmd.name)
            sub = cmd.subs.get(argv[1].lower()) if len(argv) > 1 else None  # bare COMMAND
            if sub is None and cmd.hidden is not None and len(argv) > 1:
                sub = cmd.hidden.get(argv[1].lower())   # not listed by COMMAND
            if sub is None:
                if cmd.handler is None:
                    return self.reject(c, cmd, unknown_subcommand([cmd.name.encode(),
                                                                   argv[1]]))
            else:
                cmd = sub
        arity = cmd.arity
        if arity != len(argv) and (arity > 0 or len(argv) < -arity):
            return self.reject(c, cmd, "ERR wrong number of arguments for '%s' command"
                               % cmd.name)
        if c.special:
            if not c.authed and not cmd.noauth and self.acl.auth_required():
                return self.reject(c, cmd, "NOAUTH Authentication required.")
            if not c.user.unrestricted:
                err = acl_denied(self, c, cmd, argv)
                if err is not None:
                    return self.reject(c, cmd, err)
        # refusals before queuing: cluster redirection, then READONLY/NOREPLICAS
        if self.cluster is not None or self.write_guard is not None:
            fcmd = cmd if cmd.flags_of is None else cmd.flags_of(self, cmd, argv)
            err = route(self, c, fcmd, argv) if self.cluster is not None else None
            if err is None and self.write_guard is not None:
                err = self.write_guard(c, fcmd)
            if err is not None:
                if cmd.name == "exec" and c.in_multi:
                    self.discard_transaction(c)
                return self.reject(c, cmd, err)
        if self.maxmemory:
            err = self.evictor.check(
                c, cmd if cmd.flags_of is None else cmd.flags_of(self, cmd, argv), argv)
            if err is not None:
                if cmd.name == "exec" and c.in_multi:
                    self.discard_transaction(c)
                    err = "EXECABORT Transaction discarded because of: " + err
                return self.reject(c, cmd, err)
        if c.special:
            r = self.special_checks(c, cmd, argv)
            if r is not None:
                return r
        dirty = self.dirty
        t0 = perf_counter_ns()
        try:
            r = cmd.handler(c, argv)
        except CommandError as e:
            r = self.command_failed(c, cmd, e.msg)
        dt = perf_counter_ns() - t0
        c.last_cmd = cmd.name
        if self.monitors and not cmd.skip_monitor and not cmd.admin:
            self.feed_monitors(c, argv)  # after the call, as Redis: EXEC follows its commands
        if self.dirty != dirty and (self.aof is not None or self.repl_feed is not None
                                    or c.rewrite is not None or self.slot_feed is not None):
            self.propagate_command(c, cmd, argv, self.dirty - dirty)
        self.command_done(c, cmd, argv, dt)
        if self.blocking.ready:
            # after the command is propagated: a served BLPOP's LPOP follows
            # the push that woke it (handleClientsBlockedOnKeys after call())
            self.blocking.handle_ready()
        if c.tracking is not None:
            # keys read, CLIENT CACHING's one command, invalidations after the reply
            r = self.tracking.after_command(c, cmd, argv, r)
        return r

    def execute_fast(self, c: Client, cmds: list, i: int, out: list) -> int:
        """Run cmds[i:] while they need none of execute()'s slow paths;
        replies go to `out`.  Returns the index of the first command not run
        (len(cmds) when all ran), which Client.run gives to execute().

        The batch's conditions are checked once: a client with no slow-path
        state, no pause, no READONLY/NOREPLICAS guard, no maxmemory, no
        MONITOR, no tracking, and `execute` not replaced (divert_commands: a
        busy script's -BUSY; any per-command wrapper installed the same way
        sees every command, the fast path stepping aside while it is on).  Then per command: the dispatch dict of the
        eligible commands (_fast_eligible), arity, and in cluster mode a
        one-key command whose slot is ours and stable, or an ASKING-flagged
        one (RESTORE-ASKING) into a slot being imported, as routing.route
        lets it (anything else goes to routing.route through execute()); a
        routed command with a batch handler (Command.batch: RESTORE-ASKING)
        may run the run of commands that follows it in one call, booked by
        batch_done.  Each command costs one clock
        read: its duration runs from the previous command's end to its own
        (so the loop's few hundred ns between two handlers count in the next
        one).  Durations feed the latency histogram one by one, commandstats
        once per run of the same command, and the slowlog and the latency
        monitor exactly as execute() does: they are looked at only when a
        duration passes the lower of their two thresholds."""
        if c.special or self.write_guard is not None or self.maxmemory or self.monitors \
                or c.tracking is not None or self.pause.end or "execute" in self.__dict__:
            return i            # (execute replaced: a busy script, or a counting wrapper)
        fast = self.fast_dispatch
        cl = self.cluster
        if cl is not None:
            state = cl.state
            me = state.myself
            if state.state != "ok" or me.migrating or c.asking:
                return i
            owner = state.slot_owner
            myid = me.id
            importing = me.importing
            multikey = not importing        # else routing.route decides (TRYAGAIN...)
        n = len(cmds)
        look = self.fast_look
        blocking = self.blocking
        append = out.append
        propagating = (self.aof is not None or self.repl_feed is not None
                       or self.slot_feed is not None)
        lat_add = None if self.latency.tracking else False
        # the current run of one command: its first index and the clock at
        # its start less the time spent outside the handlers (propagation,
        # slowlog, serving unblocked clients), booked when the run ends
        run = None
        run_i = start = i
        t = base = perf_counter_ns()
        indexes = iter(range(start, n))
        for i in indexes:
            argv = cmds[i]
            cmd = fast.get(argv[0])
            if cmd is None:
                break
            arity = cmd.arity
            if arity != len(argv) and (arity > 0 or len(argv) < -arity):
                break
            if cl is not None:
                pos = cmd.key_pos
                if pos:
                    key = argv[pos]
                    slot = keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383
                    if owner[slot] != myid and not (cmd.asking and slot in importing):
                        break               # (RESTORE-ASKING into a slot being imported: ours)
                elif cmd.first_key > 0:
                    # several keys (MSET...): all in one slot of ours
                    if cmd.movablekeys or not multikey or not _one_slot_of(
                            owner, myid, command_key_args(cmd, argv)):
                        break
                if cmd.batch is not None:
                    # a run of RESTORE-ASKING (a MIGRATE's batch) in one call
                    j = cmd.batch(c, cmds, i, slot)
                    if j > i:
                        t1 = perf_counter_ns()
                        if run is not None:
                            run.calls += i - run_i
                            run.ns += t - base
                            run = None
                        cmd.calls += j - i
                        cmd.ns += t1 - t
                        c.last_cmd = cmd.name
                        self.batch_done(c, cmd, cmds[i:j], (t1 - t) // (j - i), propagating)
                        append(OK * (j - i))
                        if j - i > 1:
                            next(islice(indexes, j - i - 2, None), None)   # on at cmds[j]
                        run_i = j
                        base = t = perf_counter_ns()
                        continue
            if cmd is not run:
                if run is not None:
                    run.calls += i - run_i
                    run.ns += t - base
                    run_i = i
                    base = t
                run = cmd
                if lat_add is not False:
                    lat_add = cmd.lat.append
            dirty = self.dirty
            try:
                r = cmd.handler(c, argv)
            except CommandError as e:
                r = self.command_failed(c, cmd, e.msg)
            t1 = perf_counter_ns()
            dt = t1 - t
            t = t1
            if lat_add:
                lat_add(dt)
            if self.dirty != dirty and (propagating or c.rewrite is not None):
                self.propagate_command(c, cmd, argv, self.dirty - dirty)
                t = perf_counter_ns()
                base += t - t1
            if dt >= look:
                if dt > self.slowlog_threshold and not cmd.skip_slowlog:
                    self.slowlog_add(c, argv, dt)
                if dt >= self.latency.min_ns:
                    self.latency.command(cmd, dt / 1e9)
                t1 = t
                t = perf_counter_ns()
                base += t - t1
            if blocking.ready:
                blocking.handle_ready()
                t1 = t
                t = perf_counter_ns()
                base += t - t1
            if r is not None:
                append(r)
        else:
            i = n
        if run is not None:
            run.calls += i - run_i
            run.ns += t - base
            c.last_cmd = run.name
        return i

    def batch_done(self, c: Client, cmd, argvs: list, dt: int, propagating: bool) -> None:
        """What execute_fast does after each command, for a run a batch
        handler ran in one call (Command.batch), each taken to have lasted
        the run's mean duration `dt` (ns): the latency histogram, the
        propagation of each (the handler changed one key a command), the
        slowlog and the latency monitor."""
        if self.latency.tracking:
            cmd.lat.extend([dt] * len(argvs))
        if propagating or c.rewrite is not None:
            for argv in argvs:
                self.propagate_command(c, cmd, argv)
        if dt >= self.fast_look:
            for argv in argvs:
                if dt > self.slowlog_threshold and not cmd.skip_slowlog:
                    self.slowlog_add(c, argv, dt)
                if dt >= self.latency.min_ns:
                    self.latency.command(cmd, dt / 1e9)

    def command_failed(self, c: Client, cmd, msg: str) -> bytes:
        """The error reply of a handler's CommandError, counted as failed."""
        cmd.failed += 1
        if self.migrations.links:
            self.migrations.link_error(c, msg)    # an import link's write refused
        return self.error_reply(msg)

    def special_checks(self, c: Client, cmd, argv):
        """MULTI queuing and the RESP2 subscribe context (slow path)."""
        if c.in_multi and cmd.name not in ("exec", "discard", "multi", "watch", "quit",
                                           "reset"):
            if cmd.nomulti:
                c.multi_error = True
                return self.reject(c, cmd, "ERR Command not allowed inside a transaction")
            c.queued.append((cmd, argv))
            return b"+QUEUED\r\n"
        if (c.subs or c.psubs or c.ssubs) and c.resp == 2 and cmd.name not in (
                "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ping", "quit",
                "reset", "ssubscribe", "sunsubscribe"):
            return self.reject(c, cmd, "ERR Can't execute '%s': only (P|S)SUBSCRIBE / "
                                       "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in "
                                       "this context" % cmd.name)
        return None

    def reject(self, c: Client, cmd, msg: str) -> bytes:
        if self.migrations.links:
            self.migrations.link_error(c, msg)   # an import link's write refused
        if cmd is not None:
            cmd.rejected += 1
        if c.in_multi:
            c.multi_error = True
        elif c.tracking is not None and (cmd is None or not cmd.name.startswith("client|")):
            c.tracking.caching = False       # CLIENT CACHING covers the next command only
        return self.error_reply(msg)

    def error_reply(self, msg: str) -> bytes:
        code = msg.split(" ", 1)[0]
        self.stats.errorstats[code] = self.stats.errorstats.get(code, 0) + 1
        self.stats.total_error_replies += 1
        return error(msg)

    def run_queued(self, c: Client, cmd, argv):
        """Execute a command queued by MULTI (no queuing checks)."""
        dirty = self.dirty
        t0 = perf_counter_ns()
        try:
            r = cmd.handler(c, argv)
        except CommandError as e:
            r = self.error_reply(e.msg)
            cmd.failed += 1
        dt = perf_counter_ns() - t0
        if self.monitors and not cmd.skip_monitor and not cmd.admin:
            self.feed_monitors(c, argv)
        if cmd.readonly and (c.tracking is not None or c.script):
            self.tracking.remember_queued(c, cmd, argv)
        if self.dirty != dirty:
            self.propagate_command(c, cmd, argv, self.dirty - dirty)
        self.command_done(c, cmd, argv, dt)
        return r

    def command_done(self, c: Client, cmd, argv, dt: int) -> None:
        """A call's duration (ns) into its command's stats, the latency
        histogram and monitor, and the slowlog (execute_fast has its own
        copy of these lines, for runs of commands)."""
        cmd.calls += 1
        cmd.ns += dt
        lat = self.latency
        if lat.tracking:
            cmd.lat.append(dt)
        if dt > self.slowlog_threshold and not cmd.skip_slowlog:
            self.slowlog_add(c, argv, dt)
        if dt >= lat.min_ns:
            lat.command(cmd, dt / 1e9)

    # ---------------------------------------------------------------- propagation
    def propagate_command(self, c: Client, cmd, argv, changes: int = 1) -> None:
        """Propagate what a command did (`changes`: its dirty increment)."""
        pending = self.expired_pending
        if pending:
            # keys the command found expired: their DELs first, and the
            # whole in MULTI/EXEC if the command itself propagates
            self.expired_pending = []
            if changes > len(pending) or c.rewrite is not None:
                self.also_propagate = ops = list(pending)
                try:
                    self.propagate_command(c, cmd, argv)
                finally:
                    self.also_propagate = None
                if len(ops) > len(pending):
                    self.propagate(ops[0][0], [b"MULTI"])
                    for dbid, a in ops:
                        self.propagate(dbid, a)
                    self.propagate(ops[-1][0], [b"EXEC"])
                    return
            for dbid, a in pending:
                self.propagate(dbid, a)
            return
        rewrite = c.rewrite
        if rewrite is not None:
            c.rewrite = None
            for a in rewrite:
                self.propagate(c.db.id, a)
        elif cmd.write or cmd.may_replicate:
            self.propagate(c.db.id, argv)

    def collect_propagation(self, ops: list | None) -> list | None:
        """Send what commands propagate into `ops` (EXEC, a script) instead of
        the AOF and replicas; None sends it out again. Returns the previous
        collector, for the caller to put back."""
        prev = self.also_propagate
        self.also_propagate = ops
        return prev

    def divert_commands(self, execute) -> None:
        """Run every client command through `execute` (a busy script answers
        -BUSY) until restore_commands()."""
        self.execute = execute

    def restore_commands(self) -> None:
        """Run client commands through Server.execute again, or, with
        cluster-slot-stats-enabled, through the dispatcher that counts them per
        slot around it (no cost at all while counting is off)."""
        if self.slot_stats.counting:
            self.execute = self.slot_stats.execute
        else:
            self.__dict__.pop("execute", None)    # the class's Server.execute again

    def set_repl_feed(self, feed) -> None:
        """feed(dbid, argv): the replication stream, or None (no backlog, or a replica)."""
        self.repl_feed = feed

    def set_write_guard(self, guard) -> None:
        """guard(c, cmd) -> error or None, checked before every command; None: no check."""
        self.write_guard = guard

    def set_loading_flag(self, on: bool) -> None:
        """Only the LOADING flag (a replica applying its full sync's RDB)."""
        self.loading = on

    def set_loading(self, on: bool, dirty: int = 0) -> None:
        """LOADING: a snapshot or AOF is being applied (no events, no expiry);
        commands without the loading flag get -LOADING meanwhile; when it
        ends the loaded data counts as saved (dirty 0), as in Redis."""
        self.loading = on
        if on:
            self.write_guard = _loading_guard
        else:
            self.dirty = dirty
            self.write_guard = None
            self.replication.configure()          # its guard, if any, again

    def loading_events(self) -> None:
        """processEventsWhileBlocked: called by a loader every
        loading-process-events-interval-bytes; serves clients (with
        -LOADING) when the load runs under serve_while_loading()."""
        g = self.loading_greenlet
        if g is not None and g.parent is not None:
            g.parent.switch()

    async def serve_while_loading(self, fn) -> None:
        """Run fn() (the start-up load) in a greenlet that gives the loop a
        turn at each loading_events(), so clients get -LOADING during a long
        load, as Redis (its listener is bound before loading)."""
        from greenlet import greenlet
        g = greenlet(fn)
        self.loading_greenlet = g
        try:
            g.switch()
            while not g.dead and not self.shutting_down:
                await asyncio.sleep(0)
                g.switch()
        finally:
            self.loading_greenlet = None

    def propagate(self, dbid: int, argv: list[bytes], targets: int = 3) -> None:
        """Send a write to the AOF (targets & 1) and the replicas (targets & 2)."""
        if self.also_propagate is not None:
            self.also_propagate.append((dbid, argv) if targets == 3 else (dbid, argv, targets))
            return
        if self.expired_pending:
            self.flush_expired()
        if self.aof is not None and targets & 1:
            self.aof.feed(dbid, argv)
        if self.repl_feed is not None and targets & 2:
            self.repl_feed(dbid, argv)
        if self.slot_feed is not None and targets & 2:
            self.slot_feed(dbid, argv)

    def propagate_ops(self, ops: list) -> None:
        """The writes of one EXEC or script (Redis 7.0's
        propagatePendingCommands): one is sent as it is, several are wrapped
        in MULTI ... EXEC for each target they go to (redis.set_repl may
        send some to the AOF or the replicas only)."""
        if len(ops) == 1:
            self.propagate(*ops[0])
            return
        for target in (1, 2):
            mine = [op for op in ops if (op[2] if len(op) > 2 else 3) & target]
            if not mine:
                continue
            if len(mine) == 1:
                self.propagate(mine[0][0], mine[0][1], target)
                continue
            self.propagate(mine[0][0], [b"MULTI"], target)
            for op in mine:
                self.propagate(op[0], op[1], target)
            self.propagate(mine[-1][0], [b"EXEC"], target)

    def flush_expired(self) -> None:
        """Propagate the DELs of expired keys not tied to a command."""
        pending = self.expired_pending
        self.expired_pending = []
        for dbid, a in pending:
            self.propagate(dbid, a)

    def on_key_expired(self, db, key: bytes) -> None:
        """A key was found expired (on access or by the active cycle)."""
        self.dirty += 1
        if self.loading:
            return                               # the loaded AOF keeps its TTL
        if self.notify_flags:
            notify.notify(self, notify.EXPIRED, b"expired", key, db.id)
        if self.aof is None and self.repl_feed is None and self.slot_feed is None:
            return
        if self.also_propagate is not None:      # inside EXEC: in order
            self.also_propagate.append((db.id, [self.expired_del, key]))
        else:
            self.expired_pending.append((db.id, [self.expired_del, key]))

    def on_key_new(self, db, key: bytes) -> None:
        """dbAdd: a key was created (keyspace event "new")."""
        if not self.loading:
            notify.notify(self, notify.NEW, b"new", key, db.id)

    # ---------------------------------------------------------------- monitor/slowlog
    def feed_monitors(self, c: Client, argv: list[bytes]) -> None:
        now = time.time()
        parts = []
        for a in redacted(argv):
            parts.append(quote(a))
        line = "+%.6f [%d %s] %s\r\n" % (now, c.db.id, "lua" if c.script else c.addr,
                                          " ".join(parts))
        data = line.encode()
        for m in list(self.monitors):
            m.write(data)

    def slowlog_add(self, c: Client, argv: list[bytes], dt: int) -> None:
        """A slowlog entry for a call that took dt ns."""
        args = []
        argv = redacted(argv)
        for i, a in enumerate(argv):
            if i == 31 and len(argv) > 32:
                args.append(b"... (%d more arguments)" % (len(argv) - 31))
                break
            if len(a) > 128:
                a = a[:128] + b"... (%d more bytes)" % (len(a) - 128)
            args.append(a)
        self.slowlog.appendleft((self.slowlog_id, int(time.time()), dt // 1000, args,
                                 c.addr.encode(), c.name))
        self.slowlog_id += 1
        while len(self.slowlog) > self.slowlog_max_len:
            self.slowlog.pop()

    # ---------------------------------------------------------------- cron
    def cron(self) -> None:
        if self.debug.pause_cron:      # DEBUG PAUSE-CRON 1
            self.loop.call_later(1.0 / self.hz, self.cron)
            return
        ks = self.ks
        ks.tick()
        # active expiry: at most 25% of the cycle, as Redis's slow cycle
        if self.debug.active_expire and self.scripting.busy is None:
            t0 = perf_counter()
            ks.active_expire(0.25 / self.hz)
            self.latency.sample("expire-cycle", perf_counter() - t0)
        if self.expired_pending:
            self.flush_expired()
        infomod.cron_sample(self)  # INFO's instantaneous metrics and memory peak
        if self.cluster is not None:  # replication offset and link age for gossip
            self.cluster.cron()
            if self.blocking.clients:
                self.blocking.check_cluster()
        if self.blocking.clients:
            self.blocking.check_timeouts()
        if self.blocking.ready:     # keys readied outside a command (active expiry)
            self.blocking.handle_ready()
        now = time.time()
        if self.timeout:
            for c in list(self.clients.values()):
                if (now - c.last_io > self.timeout and not c.subs and not c.psubs
                        and not c.ssubs and not c.monitor and not c.paused):
                    log.verbose("Closing idle client")
                    c.closing = True
                    c.transport.close()
        if self.pause.end and time.monotonic() >= self.pause.end:
            self.update_pause()
        if self.aof is not None:
            self.aof.cron()
        self.snapshots.cron()
        if self.checking:
            self.check_invariants_or_die()
        self.loop.call_later(1.0 / self.hz, self.cron)

    def fold_latency(self) -> None:
        """The call durations commands appended, into their latency
        histograms, every FOLD_INTERVAL: folded by the cron (every 100 ms)
        they were ~10,000 at 100k commands a second, ~0.5 ms of counting
        during which every client waited.  A fold that found nothing waits
        a cron period for the next, so an idle node wakes at hz as Redis's."""
        busy = self.latency.fold()
        self.loop.call_later(FOLD_INTERVAL if busy else 1.0 / self.hz, self.fold_latency)

    def check_invariants(self) -> None:
        """AssertionError if the state is not one the code can be in between
        two events: the keyspace (up to 20000 keys), the AOF, replication, the
        client pause."""
        if sum(db.size() for db in self.ks.dbs if db is not None) <= 20000:
            self.ks.check_invariants()
        if self.aof is not None:
            self.aof.check_invariants()
        self.replication.check_invariants()
        pause = self.pause
        assert pause.type == max([t for t, _ in pause.purposes.values()], default=0) \
            or time.monotonic() >= pause.end, "pause type"
        assert (pause.end == 0.0) == (pause.type == 0)

    def check_invariants_or_die(self) -> None:
        """As Redis's serverAssert: a broken invariant is logged and ends the process."""
        try:
            self.check_invariants()
        except AssertionError as e:
            import traceback
            log.warning("=== ASSERTION FAILED === %s" % (e,))
            for line in traceback.format_exc().splitlines():
                log.warning(line)
            os._exit(1)

    # ---------------------------------------------------------------- loading
    def load_data(self) -> None:
        """Before the loop starts: the cluster's nodes.conf (the dataset is
        loaded by start(), once the listener is bound)."""
        if self.cfg.bool("cluster-enabled") and self.cluster is None:
            from pynode.cluster import ClusterNode
            self.cluster = ClusterNode(self)  # exits (1) on a locked or corrupt nodes.conf
            self.configure_slot_stats()

    def load_dataset(self) -> None:
        """dump.rdb (appendonly no) or the AOF; a damaged file exits (1)."""
        from storage.aof import AOFError
        try:
            self._load_dataset()
        except AOFError as e:
            self.set_loading(False)
            log.warning(str(e))
            raise SystemExit(1)

    def _load_dataset(self) -> None:
        if not self.cfg.bool("appendonly"):
            self.snapshots.load()         # dump.rdb, when there is one
            return
        cfg = self.cfg
        self.make_aof()
        self.set_loading(True)
        apply = self.command_applier(self.ks, events=True)
        t0 = time.time()
        n = self.aof.load(apply, truncated_ok=cfg.bool("aof-load-truncated"))
        self.set_loading(False)
        log.notice("DB loaded from append only file: %.3f seconds (%d commands)"
                   % (time.time() - t0, n))
        self.aof.open(self.ks)

    def make_aof(self):
        """srv.aof from the config, unless there is one (it starts unopened)."""
        if self.aof is None:
            from storage.aof import AOF
            cfg = self.cfg
            self.aof = AOF(cfg.get("dir"), cfg.get("appendfilename"), cfg.get("appenddirname"),
                           cfg.get("appendfsync"), log=log, **self.aof_options())
        return self.aof

    def command_applier(self, ks, events: bool = False):
        """apply(argv): run one command read from a file (the AOF at start-up,
        DEBUG LOADAOF) as the loading client, into `ks`; its error replies
        are discarded, as Redis's; an unknown command raises ValueError.
        `events`: serve clients (with -LOADING) every 1024 commands."""
        loader = Client(self)
        loader.authed = True
        loader.db = ks.db(0)
        table = self.table
        every = [0]

        def apply(argv: list[bytes]) -> None:
            if events:
                every[0] += 1
                if not every[0] & 1023:
                    self.loading_events()
            cmd = table.get(argv[0].lower())
            if cmd is None:
                raise ValueError("unknown command '%s'" % argv[0].decode("utf-8", "replace"))
            if cmd.subs is not None and len(argv) > 1:
                cmd = cmd.subs.get(argv[1].lower(), cmd)
            try:
                cmd.handler(loader, argv)
            except CommandError:
                pass  # like Redis: the loading client's error replies are discarded
        return apply

    def reload_aof(self) -> None:
        """DEBUG LOADAOF: flush the AOF buffer and replay the AOF files into a
        fresh keyspace, which replaces the live one's contents only when the
        whole AOF loaded (an error leaves the dataset as it was)."""
        aof = self.aof
        aof.flush()
        old = self.ks
        fresh = Keyspace(len(old.dbs))
        fresh.now = old.now
        fresh.configure_hooks(old.tracking, old.lfu, None)     # replayed keys get clocks
        apply = self.command_applier(fresh)
        self.aof = None                   # nothing replayed is written back
        self.ks = fresh
        notify_flags = self.notify_flags
        self.notify_flags = 0
        self.set_loading(True)
        try:
            aof.load(apply, truncated_ok=self.cfg.bool("aof-load-truncated"))
        finally:
            self.ks = old
            self.aof = aof
            self.notify_flags = notify_flags
            self.set_loading(False)        # dirty 0: nothing to propagate
        old.take_contents(fresh)

    def aof_options(self) -> dict:
        """AOF settings from the config (for AOF() and AOF.configure())."""
        cfg = self.cfg
        return dict(timestamps=cfg.bool("aof-timestamp-enabled"),
                    use_rdb_preamble=cfg.bool("aof-use-rdb-preamble"),
                    auto_rewrite_perc=cfg.int("auto-aof-rewrite-percentage"),
                    auto_rewrite_min_size=cfg.memory("auto-aof-rewrite-min-size"),
                    disable_auto_gc=cfg.bool("aof-disable-auto-gc"),
                    preamble=self.scripting.functions.rewrite_commands,
                    children=self.children, on_latency=self.latency.sample)

    def adjust_open_files_limit(self) -> int:
        """adjustOpenFilesLimit: raise RLIMIT_NOFILE to maxclients + 32 (the
        fds kept for persistence, listeners and logs), stepping down by 16
        while the OS refuses; when even that is short, maxclients becomes what
        fits (logged as Redis).  The maxclients that fits; 0: not even one."""
        maxclients = self.cfg.int("maxclients")
        maxfiles = maxclients + RESERVED_FDS
        try:
            old = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (OSError, ValueError) as e:
            log.warning("Unable to obtain the current NOFILE limit (%s), assuming 1024 and "
                        "setting the max clients configuration accordingly."
                        % (e.strerror or e))
            return 1024 - RESERVED_FDS
        if old == resource.RLIM_INFINITY or old >= maxfiles:
            return maxclients
        best = maxfiles
        error = ""
        while best > old:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (best, best))
                break
            except (OSError, ValueError) as e:
                error = getattr(e, "strerror", None) or "Operation not permitted"
            if best < 16:
                best = old
                break
            best -= 16
        best = max(best, old)
        if best >= maxfiles:
            log.notice("Increased maximum number of open files to %d (it was originally "
                       "set to %d)." % (maxfiles, old))
            return maxclients
        fits = best - RESERVED_FDS
        if fits < 1:
            log.warning("Your current 'ulimit -n' of %d is not enough for the server to "
                        "start. Please increase your open file limit to at least %d. "
                        "Exiting." % (old, maxfiles))
            return 0
        log.warning("You requested maxclients of %d requiring at least %d max file "
                    "descriptors." % (maxclients, maxfiles))
        log.warning("Server can't set maximum open files to %d because of OS error: %s."
                    % (maxfiles, error))
        log.warning("Current maximum open files is %d. maxclients has been reduced to %d "
                    "to compensate for low ulimit. If you need higher maxclients increase "
                    "'ulimit -n'." % (best, fits))
        return fits

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        fits = self.adjust_open_files_limit()
        if fits < 1:
            raise SystemExit(1)
        if fits != self.maxclients:
            self.cfg.values["maxclients"] = str(fits)
            self.maxclients = fits
        self.stopped = self.loop.create_future()
        port = self.cfg.int("port")
        tls_port = self.cfg.int("tls-port")
        self.configure_tls()
        if port:
            await self.listen(port, None)
        if tls_port:
            await self.listen(tls_port, self.tls_listener)
        if port or tls_port:
            mode = "cluster" if self.cluster is not None else "standalone"
            if self.cfg.bool("always-show-logo"):
                self.show_logo(mode, port or tls_port)
            else:
                log.notice("Running mode=%s, port=%d." % (mode, port or tls_port))
        elif not self.cfg.get("unixsocket"):
            log.warning("Configured to not listen anywhere, exiting.")
            raise SystemExit(1)
        try:
            self.metrics.listen()             # metrics-port (pynode/metrics_http.py)
        except OSError as e:
            log.warning("Could not create the metrics listening socket on port %d: %s"
                        % (self.cfg.int("metrics-port"), e.strerror))
            raise SystemExit(1)
        us = self.cfg.get("unixsocket")
        if us:
            try:
                os.unlink(us)
            except FileNotFoundError:
                pass
            srv = await self.loop.create_unix_server(lambda: Client(self), us,
                                                     backlog=self.cfg.int("tcp-backlog"))
            os.chmod(us, int(self.cfg.get("unixsocketperm") or "0", 8) or 0o700)
            self.servers.append(srv)
            log.notice("The server is now ready to accept connections at %s" % us)
        await self.serve_while_loading(self.load_dataset)
        if self.shutting_down:                   # SHUTDOWN while loading
            return
        if self.cluster is not None:
            await self.cluster.start()
            # keys a failed atomic import left in the AOF: gone once the
            # cluster has told us who owns their slots (only slots loaded
            # now: keys that arrive later, by MIGRATE, stay as in Redis)
            self.loop.call_later(2 * self.cluster.node_timeout / 1000.0 + 1.0,
                                 self.migrations.sweep_orphans,
                                 self.migrations.slots_with_keys())
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.on_signal, sig)
        self.loop.call_later(1.0 / self.hz, self.cron)
        self.loop.call_later(FOLD_INTERVAL, self.fold_latency)
        self.replication.start()
        if port:
            log.notice("Ready to accept connections tcp")
        if tls_port:
            log.notice("Ready to accept connections tls")
        await self.stopped

    def configure_tls(self) -> None:
        """The ssl contexts (pynode/tls.py) when anything uses TLS; a bad
        setting stops start-up, as Redis."""
        from pynode import tls
        self.tls = None
        if not tls.enabled(self.cfg):
            return
        try:
            self.tls = tls.contexts(self.cfg)
        except tls.TLSConfigError as e:
            log.warning(str(e))
            log.warning("Failed to configure TLS. Check logs for more info.")
            raise SystemExit(1)
        self.tls_listener = tls.listener_context(self.tls.server, self.tls_server)

    def reload_tls(self) -> None:
        """CONFIG SET tls-*: rebuild the contexts when TLS is in use (or is
        being turned on); tls.TLSConfigError leaves the old ones in force."""
        from pynode import tls
        if not tls.enabled(self.cfg):
            return
        self.tls = tls.contexts(self.cfg)
        if self.tls_listener is None:                   # TLS turned on now
            self.tls_listener = tls.listener_context(self.tls.server, self.tls_server)
        # a handshake takes its verify mode from the listener's context (SSL_new)
        self.tls_listener.verify_mode = self.tls.server.verify_mode
        cl = self.cluster
        if cl is not None and cl.transport is not None and cl.tls:
            cl.transport.ssl_client = self.tls.client   # new links; the listener keeps its own

    def tls_server(self):
        """The server side ssl context now in force (CONFIG SET may rebuild it)."""
        return self.tls.server if self.tls is not None else None

    async def listen(self, port: int, ssl_ctx) -> None:
        """A listener on every `bind` address (a "-" prefix: optional)."""
        backlog = self.cfg.int("tcp-backlog")
        for host, optional in self.cfg.bind_hosts():
            try:
                srv = await self.loop.create_server(lambda: Client(self), host, port,
                                                    backlog=backlog, reuse_address=True,
                                                    ssl=ssl_ctx)
                self.servers.append(srv)
                self.listener_ssl[id(srv)] = ssl_ctx
            except OSError as e:
                if optional:
                    continue
                # (listenToPort says TCP for the TLS port too)
                log.warning("Warning: Could not create server TCP listening socket %s:%d: %s"
                            % (host, port, e.strerror))
                raise SystemExit(1)

    def listen_sockets(self, port: int) -> list:
        """Bound, listening sockets on every `bind` address for `port` (a
        "-" prefix: optional); OSError closes them all."""
        if not port:
            return []
        backlog = self.cfg.int("tcp-backlog")
        socks = []
        try:
            for host, optional in self.cfg.bind_hosts():
                fam = socket.AF_INET6 if ":" in host else socket.AF_INET
                s = socket.socket(fam, socket.SOCK_STREAM)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if fam == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind((host, port))
                    s.listen(backlog)
                    s.setblocking(False)
                except OSError:
                    s.close()
                    if optional:
                        continue
                    raise
                socks.append(s)
        except OSError:
            for s in socks:
                s.close()
            raise
        return socks

    def rebind(self, plain: bool = True, tls: bool = True) -> None:
        """CONFIG SET port/tls-port/bind: listen on the configured port (plain)
        and/or tls-port (tls), then close the old listeners of that kind."""
        if self.loop is None:
            return
        kinds = []
        try:
            if plain:
                kinds.append((None, self.listen_sockets(self.cfg.int("port"))))
            if tls and self.tls is not None:
                kinds.append((self.tls_listener, self.listen_sockets(self.cfg.int("tls-port"))))
        except OSError:
            for _, socks in kinds:
                for s in socks:
                    s.close()
            raise
        for ssl_ctx, _ in kinds:
            for s in [s for s in self.servers if self.listener_ssl.get(id(s), "unix") is ssl_ctx]:
                s.close()
                self.servers.remove(s)
                self.listener_ssl.pop(id(s), None)

        async def serve(sock, ssl_ctx):
            server = await self.loop.create_server(lambda: Client(self), sock=sock,
                                                   ssl=ssl_ctx,
                                                   backlog=self.cfg.int("tcp-backlog"))
            self.servers.append(server)
            self.listener_ssl[id(server)] = ssl_ctx

        for ssl_ctx, socks in kinds:
            for s in socks:
                self.loop.create_task(serve(s, ssl_ctx))

    def show_logo(self, mode: str, port: int) -> None:
        """always-show-logo yes: a start-up banner with Redis's fields
        (version, mode, port, PID): supervisors and Redis's test harness
        read the "PID: <pid>" line."""
        from pynode.log import NOTICE
        from pynode.main import _pkg_version
        lines = ["",
                 "      pynode %s (Redis %s compatible) 64 bit" % (_pkg_version(), VERSION),
                 "      Running in %s mode" % mode,
                 "      Port: %d" % port,
                 "      PID: %d" % os.getpid(),
                 "", ""]
        log.raw(NOTICE, "\n".join(lines))

    def on_signal(self, sig) -> None:
        name = "SIGTERM" if sig == signal.SIGTERM else "SIGINT"
        log.warning("Received %s scheduling shutdown..." % name)
        flags = self.cfg.get("shutdown-on-sigterm" if sig == signal.SIGTERM
                             else "shutdown-on-sigint").split()
        self.loop.call_soon(lambda: self.shutdown(False, failover="failover" in flags))

    def shutdown(self, force: bool = False, save: bool = False, nosave: bool = False,
                 failover: bool = False, on_error=None) -> bool | None:
        """Flush what must be flushed and stop the loop. False if it cannot.
        The RDB is saved when save points are set or `save`, unless `nosave`.
        ``failover`` (SHUTDOWN FAILOVER, as Valkey 9): a cluster primary first
        hands its slots to its best replica (pynode/cluster.py); the shutdown
        then runs later and this returns None. ``on_error()`` is called if that
        later shutdown fails."""
        if failover and self.cluster is not None:
            def then():
                if not self.shutdown(force, save, nosave) and on_error is not None:
                    on_error()
            if self.cluster.start_handover(then, self.cfg.int("shutdown-timeout")):
                return None
        log.warning("User requested shutdown...")
        if self.loading:                         # never save a partial dataset
            save, nosave = False, True
        if not self.snapshots.on_shutdown(save, nosave) and not force:
            log.warning("Error trying to save the DB, can't exit.")
            return False
        if self.aof is not None:
            log.notice("Calling fsync() on the AOF file.")
            try:
                self.aof.shutdown()
            except OSError as e:
                log.warning("Error flushing the AOF on shutdown: %s" % e)
                if not force:
                    return False
        if self.cluster is not None:
            self.cluster.shutdown()  # nodes.conf saved with fsync, bus closed
        pidfile = self.cfg.get("pidfile")
        if pidfile:
            log.notice("Removing the pid file.")
            try:
                os.unlink(pidfile)
            except OSError:
                pass
        us = self.cfg.get("unixsocket")
        if us:
            try:
                os.unlink(us)
            except OSError:
                pass
        for s in self.servers:
            s.close()
        for c in list(self.clients.values()):
            c.transport.abort()
        log.warning("%s is now ready to exit, bye bye..." % "Redis")
        self.shutting_down = True
        if not self.stopped.done():
            self.stopped.set_result(0)
        return True
