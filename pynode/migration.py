"""Atomic slot migration: Valkey 9.0's CLUSTER MIGRATESLOTS / GETSLOTMIGRATIONS /
CANCELSLOTMIGRATIONS and Redis 8.4's CLUSTER MIGRATION IMPORT|STATUS|CANCEL,
one machinery behind both (srv.migrations).

Theory of operation (an export job on the source, an import job on the target):

1. The source connects to the target's client port, logs in as replication
   does (masteruser/masterauth, TLS with tls-replication) and says
   ``CLUSTER SYNCSLOTS START <name> <source-id> <ranges>``; the target binds that
   connection to an import job. Commands on it skip cluster routing, so they
   write into slots the target does not own yet, which clients still cannot
   reach there (they get MOVED to the source, never ASK or TRYAGAIN).
2. Snapshot: the source walks the slots one at a time and sends each key as
   ``RESTORE key <abs-ms> <DUMP payload> REPLACE ABSTTL`` (a collection of
   more than 1024 elements as HSET/SADD/RPUSH/ZADD/XADD pieces of 512, a big
   string as APPENDs), yielding to the event loop between batches, so the
   source keeps serving every key of the moving slots meanwhile.
3. The live stream: ``Server.propagate`` hands every write to ``slot_feed``.
   A write to a slot already sent is forwarded as it was propagated; to the
   slot being sent, too if all its keys are on the target already, otherwise
   its keys still to send stay on the to-do list and the sent ones' new
   state goes instead (RESTORE, or DEL when gone); to a slot not sent yet,
   nothing (the snapshot will carry it). The target applies everything as its
   own writes, so its AOF and its replicas get the keys too.
4. The flip: the source holds writes to the moving slots only (clients
   parked as by CLIENT PAUSE WRITE, for those slots), sends
   ``CLUSTER SYNCSLOTS FINISH``; the target, having applied every byte before
   it on the same connection, waits until its replicas have them too (or
   fails back after node-timeout), claims the slots with one configEpoch bump
   (ClusterState.claim_migrated_slots) and answers; the source hands the slots
   over in its own view (give_migrated_slots), releases the held clients (they
   get MOVED) and deletes the slots' keys in the background (its replicas get
   the DELs through its stream). The hold is measured (pause_ms).
5. Failure: a cancel, a lost connection or a dead peer before FINISH
   leaves the slots with the source; the target deletes what it imported
   (in the background, propagated). If FINISH was sent and no answer came,
   the source keeps the writes held until gossip says who owns the slots (or
   2 x node-timeout passes), so a write is never accepted by both sides.
"""

from __future__ import annotations

import asyncio
import os
import time
from itertools import islice

from gossip.node import FAIL
from pynode.pause import MIGRATION, WRITE
from pynode.replication import peer_auth, peer_ssl
from pynode.resp import OK
from pynode.routing import command_key_args
from storage.dump import dumps
from storage.hashes import Hash
from storage.lists import QuickList
from storage.sets import Set
from storage.streams import MAX_ID, Stream, fmt_id, stream_meta_commands
from storage.zsets import ZSet
from storage.slots import keyslot, slot_ranges

CHUNK_BYTES = 1 << 16          # flush the link every 64 KiB
BATCH_KEYS = 256               # keys sent per event-loop turn during the snapshot
BIG_ITEMS = 1024               # collections with more elements travel in pieces
PIECE_ITEMS = 512              # elements (stream entries, commands) per piece
BIG_STRING = 1 << 20           # strings longer than this travel in pieces of 1 MiB...
STRING_PIECES = 32             # ...or of 1/32 of the string when that is more,
MAX_STRING_PIECE = 16 << 20    # up to 16 MiB (an APPEND copies the whole string)
IN_FLIGHT = 1 << 20            # bytes sent ahead of the target's last ACK
DELETE_BATCH = 1000            # keys deleted per loop turn by the background cleaner
LOG_MAX = 20                   # finished jobs kept for GETSLOTMIGRATIONS

ACTIVE = ("connecting", "snapshotting", "streaming", "failing-over", "waiting-for-gossip",
          "waiting-for-replicas")


class MigrationError(Exception):
    pass


def _cmd(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if type(a) is not bytes:
            a = str(a).encode()
        out.append(b"$%d\r\n" % len(a))
        out.append(a)
        out.append(b"\r\n")
    return b"".join(out)


ranges_of = slot_ranges


def ranges_text(slots) -> str:
    return " ".join("%d-%d" % r for r in ranges_of(slots))


def parse_ranges_text(text: str) -> list[int]:
    slots: list[int] = []
    for part in text.split():
        a, _, b = part.partition("-")
        slots.extend(range(int(a), int(b or a) + 1))
    return slots


async def connect_peer(srv, ip: str, port: int, timeout: float):
    """A connection to a peer's client port for a migration link, logged in
    as replication is (AUTH [masteruser] masterauth, TLS with
    tls-replication): a target with requirepass or ACL users accepts it."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ip, port, ssl=peer_ssl(srv)), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        raise MigrationError("Failed to connect to %s:%d: %s" % (ip, port, e or "timeout"))
    auth = peer_auth(srv.cfg)
    if auth is None:
        return reader, writer
    try:
        writer.write(_cmd(*auth))
        line = await asyncio.wait_for(reader.readline(), timeout)
    except BaseException:
        writer.close()
        raise
    if not line.startswith(b"+"):
        writer.close()
        raise MigrationError("Unable to AUTH to %s:%d: %s"
                             % (ip, port, line.decode("utf-8", "replace").strip()
                                or "connection closed"))
    return reader, writer


class Job:
    """One migration as this node sees it (EXPORT on the source, IMPORT on
    the target)."""

    def __init__(self, name: str, operation: str, slots, source: str, target: str) -> None:
        self.name = name
        self.operation = operation
        self.slots = sorted(set(slots))
        self.slot_set = set(self.slots)
        self.source = source
        self.target = target
        now = time.time()
        self.create_time = now
        self.start_time = now
        self.end_time = 0.0
        self.last_update_time = now
        self.last_ack_time = now
        self.state = "connecting"
        self.message = ""
        self.pause_ms = 0.0
        self.keys_sent = 0
        self.bytes_sent = 0
        self.acked_bytes = 0
        # export side
        self.writer = None
        self.reader = None
        self.task = None
        self.out = bytearray()
        self.sent: set[int] = set()        # slots whose snapshot is complete
        self.cur_slot = -1                 # the slot being sent
        self.pending: set | None = None    # its keys not sent yet
        self.big_key: bytes | None = None  # a key being sent in pieces
        self.big_abort = False
        self.restarted: set = set()        # big keys whose pieces started again
        self.big_copy = False              # big_key's pieces come from a copy
        self.held: bytearray | None = None  # stream bytes waiting for big_key's pieces
        self.step_t0 = 0.0                 # when the snapshot last got the loop back
        self.worst_step = 0.0              # its longest run without yielding (CPU s)
        self.txn: list | None = None       # forwarded writes of one MULTI ... EXEC
        self.feeding = False
        self.finish_sent = False
        self.paused = False
        self.flush_scheduled = False
        # import side
        self.link = None
        self.replicas_told = False         # REPLICA-IMPORT went to the replicas

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def touch(self, state: str | None = None, message: str | None = None) -> None:
        if state is not None:
            self.state = state
            if state not in ACTIVE and not self.end_time:
                self.end_time = time.time()
        if message is not None:
            self.message = message
        self.last_update_time = time.time()


class Migrations:
    def __init__(self, srv) -> None:
        self.srv = srv
        self.jobs: list[Job] = []              # newest last
        self.links: dict = {}                  # import link client -> Job
        self.exporting: list[Job] = []         # jobs whose writes are fed
        self.cleaning: dict[int, str] = {}     # slot -> why its keys are being deleted
        self.cleaner = None
        self.unflushed: list[Job] = []         # jobs with stream bytes for before_sleep
        # replica side: the atomic imports my primary has under way (name ->
        # slots), as its replication stream told (SYNCSLOTS REPLICA-IMPORT /
        # REPLICA-DONE): what a promotion drops if the import never finished
        self.primary_imports: dict[str, list[int]] = {}

    # ------------------------------------------------------------ registry
    def find(self, name: str) -> Job | None:
        for j in self.jobs:
            if j.name == name:
                return j
        return None

    def add(self, job: Job) -> None:
        self.jobs.append(job)
        done = [j for j in self.jobs if not j.active]
        while len(done) > LOG_MAX:
            self.jobs.remove(done.pop(0))

    def busy_slots(self) -> set[int]:
        out: set[int] = set()
        for j in self.jobs:
            if j.active:
                out |= j.slot_set
        return out

    def _log(self, level: str, text: str) -> None:
        getattr(self.srv.log, level)(text)

    # ------------------------------------------------------------ export
    def start_export(self, slots, target_id: str, name: str | None = None) -> Job:
        """CLUSTER MIGRATESLOTS (checked by the caller): start one export job."""
        cl = self.srv.cluster
        job = Job(name or os.urandom(20).hex(), "EXPORT", slots, cl.state.myself_id,
                  target_id)
        self.add(job)
        job.task = asyncio.ensure_future(self._export(job))
        self._log("notice", "Slot migration %s: exporting %s to %s"
                  % (job.name, ranges_text(job.slots), target_id))
        return job

    async def _export(self, job: Job) -> None:
        srv = self.srv
        cl = srv.cluster
        timeout = max(1.0, cl.node_timeout / 1000.0)
        try:
            node = cl.state.nodes.get(job.target)
            if node is None:
                raise MigrationError("Unknown target node %s" % job.target)
            job.reader, job.writer = await connect_peer(srv, node.ip, node.port, timeout)
            job.writer.write(_cmd(b"CLUSTER", b"SYNCSLOTS", b"START", job.name, job.source,
                                  ranges_text(job.slots)))
            line = await asyncio.wait_for(job.reader.readline(), timeout)
            if not line.startswith(b"+"):
                raise MigrationError("Received error during handshake to target: %s"
                                     % line.decode("utf-8", "replace").strip())
            job.last_ack_time = time.time()
            if not job.active:
                raise MigrationError(job.message)
            job.writer.write(_cmd(b"CLIENT", b"REPLY", b"OFF"))
            job.touch("snapshotting")
            job.step_t0 = time.thread_time()
            self._feed_on(job)
            # a dead target shows at the next drain or ACK (every IN_FLIGHT bytes)
            await self._snapshot(job)
            job.touch("streaming")
            self._flush(job)
            await self._drain(job)
            await self._flip(job, timeout)
        except (MigrationError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                ConnectionError) as e:
            if job.active:
                msg = str(e) or type(e).__name__
                await self._export_failed(job, msg)
        except asyncio.CancelledError:
            pass
        finally:
            self._feed_off(job)
            if job.writer is not None:
                job.writer.close()

    async def _snapshot(self, job: Job) -> None:
        """Slot after slot; plain strings without a TTL go many to one MSET
        (the target runs one command instead of hundreds), the rest as
        RESTORE. Everything is in job.out before each await: the feed runs
        only then, so what it sends always follows the snapshot's bytes."""
        db = self.srv.ks.db(0)
        mset: list = [b"MSET"]
        n = 0
        for s in job.slots:
            if not job.active:
                raise MigrationError(job.message or "cancelled")
            d = db.slots[s]
            if d:
                job.cur_slot = s
                pending = job.pending = set(d)
                while pending:
                    key = pending.pop()
                    v = d.get(key)
                    if v is None:
                        continue
                    n += 1
                    # db.expires, not a name for it taken before an await:
                    # FLUSHALL ASYNC gives the database a new expiry dict
                    # (a FLUSHALL clears `pending`, see _feed_job)
                    if type(v) is bytes and len(v) <= BIG_STRING and key not in db.expires:
                        mset.append(key)
                        mset.append(v)
                        job.keys_sent += 1
                        if len(mset) > 2 * BATCH_KEYS:
                            job.out += _cmd(*mset)
                            del mset[1:]
                    else:
                        if len(mset) > 1:
                            job.out += _cmd(*mset)
                            del mset[1:]
                        await self._send_key(job, db, key)
                    if n >= BATCH_KEYS or len(job.out) >= CHUNK_BYTES:
                        n = 0
                        if len(mset) > 1:
                            job.out += _cmd(*mset)
                            del mset[1:]
                        await self._pace(job)
                job.pending = None
            job.cur_slot = -1
            job.sent.add(s)
        if len(mset) > 1:
            job.out += _cmd(*mset)
        self._flush(job)

    async def _pace(self, job: Job) -> None:
        """Between two batches: out to the link, at most IN_FLIGHT bytes
        ahead of the target (so its loop stays free too), and a turn of
        the loop for the clients. Measures the longest run without one
        (job.worst_step: the most CPU time the snapshot took from the loop
        at once; thread time, so a busy machine does not inflate it)."""
        t = time.thread_time()
        if job.step_t0 and t - job.step_t0 > job.worst_step:
            job.worst_step = t - job.step_t0
        self._flush(job)
        await self._drain(job)
        if job.bytes_sent - job.acked_bytes > IN_FLIGHT:
            await self._ack(job)
        await asyncio.sleep(0)
        job.step_t0 = time.thread_time()
        if not job.active:
            raise MigrationError(job.message or "cancelled")

    async def _send_key(self, job: Job, db, key: bytes) -> None:
        value = db.slots[keyslot(key)].get(key)
        if value is None:
            return
        # a write to the key while its pieces are on the way (the feed runs
        # only while this awaits) stops them before the iterator takes
        # another step, and the key goes back to the slot's to-do set; the
        # second time its pieces come from a copy taken now, and the
        # stream's later bytes wait until they are out (job.held)
        copy = key in job.restarted
        big = self._pieces(key, value, copy)
        if big is None:
            self._send_state(job, db, key)
            return
        expire = db.expires.get(key, -1)
        job.big_key = key
        job.big_copy = copy
        job.big_abort = False
        try:
            job.out += _cmd(b"DEL", key)
            for cmd in big:
                job.out += cmd
                if len(job.out) >= CHUNK_BYTES:
                    await self._pace(job)
                    if job.big_abort:
                        return
            if expire != -1:
                job.out += _cmd(b"PEXPIREAT", key, expire)
            job.keys_sent += 1
        finally:
            job.big_key = None
            job.big_copy = False
            if job.held is not None:
                job.out += job.held
                job.held = None

    def _pieces(self, key: bytes, value, copy: bool = False):
        """Commands rebuilding a big value piece by piece (None: one RESTORE),
        produced lazily: each piece is built when the previous one is out;
        from a copy of the elements taken now if `copy`."""
        t = type(value)
        if t is bytes:
            if len(value) <= BIG_STRING:
                return None
            # (bytes never change: a write makes a new value). The target's
            # APPEND copies what it has so far: 1 MiB pieces of 500 MB took
            # 477 APPENDs of up to 0.6 s each there; 32 pieces cost 1/15 of that
            step = min(MAX_STRING_PIECE, max(BIG_STRING, len(value) // STRING_PIECES))
            return (_cmd(b"APPEND", key, value[i:i + step])
                    for i in range(0, len(value), step))
        if isinstance(value, Hash):
            verb, width = b"HSET", 2
            it = value.items()
        elif isinstance(value, Set):
            verb, width = b"SADD", 1
            it = value
        elif isinstance(value, QuickList):
            verb, width = b"RPUSH", 1
            it = value
        elif isinstance(value, ZSet):
            # %.17g: the score's exact double, as the AOF rewrite writes it
            verb, width = b"ZADD", 2
            it = value.sl
        elif isinstance(value, Stream):
            if len(value) <= BIG_ITEMS:
                return None
            return self._stream_pieces(key, value, copy)
        else:
            return None
        if len(value) <= BIG_ITEMS:
            return None
        it = list(it) if copy else iter(it)
        if verb == b"ZADD":
            it = ((b"%.17g" % sc, m) for sc, m in it)
        return self._chunked(verb, key, iter(it), width)

    @staticmethod
    def _chunked(verb: bytes, key: bytes, it, width: int):
        while True:
            args = [verb, key]
            n = 0
            for item in it:
                if width == 2:
                    args.append(item[0])
                    args.append(item[1])
                else:
                    args.append(item)
                n += 1
                if n >= PIECE_ITEMS:
                    break
            if n == 0:
                return
            yield _cmd(*args)
            if n < PIECE_ITEMS:
                return

    @staticmethod
    def _stream_pieces(key: bytes, value, copy: bool):
        """A stream as the AOF rewrite rebuilds it: its entries by XADD, a
        page at a time, then XSETID and its groups (stream_meta_commands)."""
        if copy:
            entries = value.range(0, MAX_ID)
            meta = list(stream_meta_commands(key, value))
            pages = (entries[i:i + PIECE_ITEMS] for i in range(0, len(entries), PIECE_ITEMS))
        else:
            meta = None
            pages = Migrations._stream_pages(value)
        for page in pages:
            yield b"".join(_cmd(b"XADD", key, fmt_id(i), *fv) for i, fv in page)
        out = []
        for argv in meta if meta is not None else stream_meta_commands(key, value):
            out.append(_cmd(*argv))
            if len(out) >= PIECE_ITEMS:
                yield b"".join(out)
                out = []
        if out:
            yield b"".join(out)

    @staticmethod
    def _stream_pages(value):
        start = 0
        while True:
            page = value.range(start, MAX_ID, PIECE_ITEMS)
            if not page:
                return
            yield page
            start = page[-1][0] + 1

    def _send_state(self, job: Job, db, key: bytes) -> None:
        """The key as it is now: RESTORE ... REPLACE ABSTTL, or DEL if gone."""
        value = db.slots[keyslot(key)].get(key)
        if value is None:
            job.out += _cmd(b"DEL", key)
            return
        expire = db.expires.get(key, -1)
        payload = dumps(value)
        job.out += _cmd(b"RESTORE", key, 0 if expire == -1 else expire, payload,
                        b"REPLACE", b"ABSTTL")
        job.keys_sent += 1

    async def _drain(self, job: Job) -> None:
        """Wait for the link to take our bytes; a target that takes none for
        2 x node-timeout (a partition, a frozen process) fails the job."""
        try:
            await asyncio.wait_for(job.writer.drain(), self.link_timeout())
        except asyncio.TimeoutError:
            raise MigrationError("Target stopped reading for %.0f s" % self.link_timeout())

    def link_timeout(self) -> float:
        """2 x node-timeout, at least 10 s: a loaded target may lag seconds
        behind a fast source and still be making progress."""
        return max(10.0, 2 * self.srv.cluster.node_timeout / 1000.0)

    def flush_pending(self) -> None:
        """Server.before_sleep: the streams of the jobs fed since the last
        flush go out (after the AOF and the replication stream)."""
        jobs = self.unflushed
        self.unflushed = []
        for job in jobs:
            self._flush(job)

    def _flush(self, job: Job) -> None:
        job.flush_scheduled = False
        if job.out and job.writer is not None and not job.writer.is_closing():
            job.bytes_sent += len(job.out)
            job.writer.write(bytes(job.out))
        job.out.clear()

    async def _ack(self, job: Job) -> float:
        """One round trip: the target has applied everything sent before it.
        Returns its duration."""
        t1 = time.perf_counter()
        self._flush(job)
        sent = job.bytes_sent
        job.writer.write(_cmd(b"CLIENT", b"REPLY", b"ON")
                         + _cmd(b"CLUSTER", b"SYNCSLOTS", b"ACK")
                         + _cmd(b"CLIENT", b"REPLY", b"OFF"))
        await self._drain(job)
        for _ in range(2):
            try:
                line = await asyncio.wait_for(job.reader.readline(), self.link_timeout())
            except asyncio.TimeoutError:
                raise MigrationError("Target stopped reading for %.0f s"
                                     % self.link_timeout()) from None
            if not line:
                raise MigrationError("Connection to target lost")
            if line != b"+OK\r\n":
                raise MigrationError("Target answered: %s"
                                     % line.decode("utf-8", "replace").strip())
        job.acked_bytes = sent
        job.last_ack_time = time.time()
        return time.perf_counter() - t1

    # ------------------------------------------------------------ the live stream
    def _feed_on(self, job: Job) -> None:
        job.feeding = True
        self.exporting.append(job)
        self.srv.set_slot_feed(self.feed)

    def _feed_off(self, job: Job) -> None:
        job.feeding = False
        if job in self.exporting:
            self.exporting.remove(job)
        if not self.exporting:
            self.srv.set_slot_feed(None)

    def feed(self, dbid: int, argv: list) -> None:
        """Every write the server propagates (Server.propagate)."""
        if dbid != 0:
            return
        for job in self.exporting:
            self._feed_job(job, argv)

    def _feed_job(self, job: Job, argv: list) -> None:
        name = argv[0].lower()
        if name == b"multi":
            job.txn = []
            return
        if name == b"exec":
            txn, job.txn = job.txn, None
            if txn:
                self._emit(job, _cmd(b"MULTI") + b"".join(txn) + _cmd(b"EXEC"))
            return
        if name in (b"flushall", b"flushdb"):
            self._emit(job, _cmd(b"CLUSTER", b"SYNCSLOTS", b"FLUSH"))
            if job.pending is not None:
                job.pending.clear()
            return
        srv = self.srv
        cmd = srv.table.get(name)
        if cmd is None:
            return
        if cmd.subs is not None and len(argv) > 1:
            cmd = cmd.subs.get(argv[1].lower(), cmd)
        keys = command_key_args(cmd, argv)
        if not keys:
            return
        slot = keyslot(keys[0])
        if slot not in job.slot_set:
            return
        if slot in job.sent:
            self._emit(job, _cmd(*argv))
        elif slot == job.cur_slot:
            pending = job.pending
            keys = list(dict.fromkeys(keys))
            big = job.big_key
            if job.big_copy and big in keys and job.held is None:
                # its pieces show the key before this write: what follows
                # waits until they are out
                job.held = bytearray()
            live_big = big if not job.big_copy else None
            if not any(k in pending or k == live_big for k in keys):
                # every key it touches is on the target already (or new)
                self._emit(job, _cmd(*argv))
                return
            # keys not sent yet stay for the snapshot, which will carry this
            # write; a big key being sent from the live value starts again;
            # keys already sent get their new state
            db = srv.ks.db(0)
            data = bytearray()
            saved = job.out
            job.out = data
            try:
                for k in keys:
                    if k == live_big:
                        job.big_abort = True
                        job.restarted.add(k)
                        pending.add(k)
                        continue
                    if k in pending:
                        continue
                    self._send_state(job, db, k)
            finally:
                job.out = saved
            if data:
                self._emit(job, bytes(data))
        # a slot not sent yet: the snapshot will carry the change

    def _emit(self, job: Job, data: bytes) -> None:
        if job.txn is not None:
            job.txn.append(data)
            return
        if job.held is not None:
            job.held += data
            return
        job.out += data
        if len(job.out) >= CHUNK_BYTES:
            self._flush(job)
        elif not job.flush_scheduled:
            job.flush_scheduled = True
            self.unflushed.append(job)
            self.srv.wake()

    # ------------------------------------------------------------ the flip
    def pause(self, job: Job) -> None:
        """Hold writes to the job's slots (the server's pause for the
        migration purpose, with a bound the cron enforces if this code never
        comes back)."""
        srv = self.srv
        job.paused = True
        srv.set_pause_slots((srv.pause_slots or set()) | job.slot_set)
        srv.pause_clients(MIGRATION, time.monotonic() + 60.0, WRITE)

    def unpause(self, job: Job) -> None:
        srv = self.srv
        if not job.paused:
            return
        job.paused = False
        keep: set[int] = set()
        for j in self.jobs:
            if j.paused:
                keep |= j.slot_set
        if keep:
            srv.set_pause_slots(keep)
            srv.pause.resume_all()       # held clients are checked again
        else:
            srv.set_pause_slots(None)
            srv.unpause_clients(MIGRATION)

    def must_pause(self, c, argv: list) -> bool:
        """While a flip holds writes: only writes to the held slots wait."""
        srv = self.srv
        cmd = srv.table.get(argv[0].lower())
        if cmd is None:
            return False
        if cmd.subs is not None and len(argv) > 1:
            cmd = cmd.subs.get(argv[1].lower(), cmd)
        if cmd.flags_of is not None:
            cmd = cmd.flags_of(srv, cmd, argv)
        if cmd.name == "exec" and c.in_multi:
            batch = [(q, a) for q, a in c.queued if q.write or q.may_replicate]
        elif cmd.write or cmd.may_replicate:
            batch = [(cmd, argv)]
        else:
            return False
        held = srv.pause_slots
        for q, a in batch:
            for k in command_key_args(q, a):
                if keyslot(k) in held:
                    return True
        return False

    async def _flip(self, job: Job, timeout: float) -> None:
        srv = self.srv
        cl = srv.cluster
        # catch up first: an ACK round trip tells that the target has applied
        # everything sent before it; the hold then covers only the last tail
        for _ in range(5):
            if await self._ack(job) < 0.005:
                break
        job.touch("failing-over")
        t0 = time.perf_counter()
        self.pause(job)
        try:
            self._flush(job)
            job.finish_sent = True
            job.writer.write(_cmd(b"CLIENT", b"REPLY", b"ON")
                             + _cmd(b"CLUSTER", b"SYNCSLOTS", b"FINISH", job.name))
            await self._drain(job)
            self._feed_off(job)
            line = await asyncio.wait_for(job.reader.readline(), self.link_timeout())
            if line == b"+OK\r\n":
                line = await asyncio.wait_for(job.reader.readline(), self.link_timeout())
            if line.startswith(b"-"):
                # refused: the target did not take the slots
                job.pause_ms = (time.perf_counter() - t0) * 1000.0
                self.unpause(job)
                job.touch("failed", "Target refused the slots: %s"
                          % line[1:].decode("utf-8", "replace").strip())
                return
            if line != b"+OK\r\n":
                raise MigrationError("Target answered: %s"
                                     % line.decode("utf-8", "replace").strip())
        except (OSError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                MigrationError) as e:
            # the target may or may not have taken the slots: writes stay
            # held until the cluster says who owns them
            await self._settle(job, str(e) or type(e).__name__)
            return
        job.last_ack_time = time.time()
        cl.call("give_migrated_slots", job.slots, job.target)
        job.pause_ms = (time.perf_counter() - t0) * 1000.0
        self.unpause(job)
        job.touch("success")
        self._log("notice", "Slot migration %s: %d slots now served by %s (writes held "
                  "%.1f ms; longest snapshot step %.1f ms)"
                  % (job.name, len(job.slots), job.target, job.pause_ms,
                     job.worst_step * 1000.0))

    async def _settle(self, job: Job, why: str) -> None:
        srv = self.srv
        cl = srv.cluster
        job.touch("waiting-for-gossip", why)
        t0 = time.perf_counter()
        deadline = time.monotonic() + 2 * cl.node_timeout / 1000.0 + 1.0
        owner = cl.state.slot_owner
        me = cl.state.myself_id
        while time.monotonic() < deadline:
            if all(owner[s] == job.target for s in job.slots):
                break
            if any(owner[s] not in (me, job.target) for s in job.slots):
                break
            await asyncio.sleep(0.05)
        moved = [s for s in job.slots if owner[s] == job.target]
        if moved:
            cl.call("give_migrated_slots", moved, job.target)
        job.pause_ms += (time.perf_counter() - t0) * 1000.0
        self.unpause(job)
        if len(moved) == len(job.slots):
            job.touch("success", "")
        else:
            job.touch("failed", "%s; the slots stay here" % why)

    async def _export_failed(self, job: Job, msg: str) -> None:
        if job.finish_sent and job.state == "failing-over":
            return            # _flip settles it
        self._feed_off(job)
        self.unpause(job)
        if job.active:
            job.touch("failed", msg)
        self._log("warning", "Slot migration %s failed: %s" % (job.name, msg))

    def cancel(self, job: Job) -> bool:
        """Cancel one active job. An export past FINISH cannot be taken back."""
        if not job.active:
            return False
        if job.operation == "EXPORT":
            if job.finish_sent:
                return False
            self._feed_off(job)
            self.unpause(job)
            job.touch("cancelled", "Cancelled by user")
            if job.writer is not None:
                try:
                    job.writer.write(_cmd(b"CLUSTER", b"SYNCSLOTS", b"ABORT", job.name))
                except Exception:
                    pass
                job.writer.close()
            if job.task is not None:
                job.task.cancel()
        else:
            job.touch("cancelled", "Cancelled by user")
            link = job.link
            if link is not None:
                self.links.pop(link, None)
                link.transport.close()
            self.clean_unowned(job.slots, "cancelled import")
            self._tell_replicas(job, False)
        self._log("notice", "Slot migration %s cancelled" % job.name)
        return True

    def abort_all(self, why: str) -> None:
        """This node stopped being a primary: its exports stop before FINISH
        (the new primary may hold writes they never carried), its imports
        close (the new primary of this shard drops what they brought)."""
        for job in list(self.jobs):
            # (the end of an import does not go down a stream that is no
            # longer this node's to write)
            job.replicas_told = False
            if job.active and not job.finish_sent and self.cancel(job):
                job.touch("failed", why)

    # ------------------------------------------------------------ import side
    def sync_start(self, c, name: str, source_id: str, slots: list[int]) -> None:
        st = self.srv.cluster.state
        me = st.myself
        if me.is_replica:
            raise MigrationError("ERR Slots can only be imported by a primary")
        if source_id not in st.nodes:
            raise MigrationError("ERR Unknown source node %s" % source_id)
        for s in slots:
            if st.slot_owner[s] == me.id:
                raise MigrationError("ERR I'm already the owner of hash slot %d" % s)
            if s in me.importing:
                raise MigrationError("ERR Slots are being manually imported")
        job = self.find(name)
        if job is not None and (job.operation != "IMPORT" or job.link is not None
                                or not job.active):
            raise MigrationError("ERR Slot migration %s already exists" % name)
        busy = self.busy_slots() - (job.slot_set if job is not None else set())
        if busy & set(slots):
            raise MigrationError("ERR Slot %d is already being migrated"
                                 % min(busy & set(slots)))
        if job is None:
            job = Job(name, "IMPORT", slots, source_id, me.id)
            self.add(job)
        job.slots = sorted(set(slots))
        job.slot_set = set(job.slots)
        job.link = c
        self.links[c] = job
        for s in job.slots:
            self.cleaning.pop(s, None)
        job.touch("snapshotting")
        self._tell_replicas(job, True)
        self._log("notice", "Slot migration %s: importing %s from %s"
                  % (name, ranges_text(job.slots), source_id))

    def _tell_replicas(self, job: Job, started: bool) -> None:
        """The import's start and end go down the replication stream (not to
        the AOF), so a replica promoted in between knows which slots hold
        keys of an unfinished import (and only those: keys a legacy MIGRATE
        brought into a slot being imported stay, as in Redis)."""
        srv = self.srv
        if started:
            if srv.replication.masterhost is not None:
                return
            job.replicas_told = True
            argv = [b"CLUSTER", b"SYNCSLOTS", b"REPLICA-IMPORT", job.name.encode(),
                    ranges_text(job.slots).encode()]
        else:
            if not job.replicas_told or srv.replication.masterhost is not None:
                return
            job.replicas_told = False
            argv = [b"CLUSTER", b"SYNCSLOTS", b"REPLICA-DONE", job.name.encode()]
        srv.propagate(0, argv, targets=2)

    def replicas_resynced(self) -> None:
        """A replica starts a full sync: the imports under way go down the
        stream again (after its snapshot), as the earlier markers are not in it."""
        for job in self.jobs:
            if job.replicas_told and job.active:
                self._tell_replicas(job, True)

    def replica_import(self, name: str, slots: list[int] | None) -> None:
        """On a replica: my primary started (slots) or ended (None) an import."""
        if slots is None:
            self.primary_imports.pop(name, None)
        else:
            self.primary_imports[name] = slots
            self._log("notice", "Slot migration %s: my primary imports %s"
                      % (name, ranges_text(slots)))

    def sync_ack(self, c):
        """SYNCSLOTS ACK: every byte of the link before it is applied here;
        the answer also waits (at most half the node-timeout) until this node's
        replicas have it, so the source's catch-up before its flip covers
        them too and the FINISH wait is short. Returns the reply, or None
        while waiting."""
        job = self.links.get(c)
        off = self.srv.replication.offset
        waiting = self._replicas_to_wait(off, strict=False)
        if job is None or not waiting:
            return OK
        return self._answer_when_replicated(c, job, off, waiting, lambda reached: OK,
                                            self.srv.cluster.node_timeout / 2000.0)

    def sync_finish(self, c, name: str):
        """SYNCSLOTS FINISH: every byte of the link is applied here. The slots
        are claimed once this node's replicas hold that data too (so a kill
        -9 right after the flip loses nothing its replica would not have);
        until then the link waits for its answer; past node-timeout the
        import fails back. Returns the reply, or None while waiting."""
        job = self.links.get(c)
        if job is None or job.name != name:
            raise MigrationError("ERR No slot import %s on this connection" % name)
        off = self.srv.replication.offset
        waiting = self._replicas_to_wait(off, strict=True)
        if not waiting:
            self._claim(c, job)
            return OK
        job.touch("waiting-for-replicas")

        def then(reached):
            if reached is not True:
                msg = ("Replica %s did not acknowledge the imported data within %.1f s"
                       % reached)
                self._import_failed(c, job, msg)
                return self.srv.error_reply("ERR %s" % msg)
            try:
                self._claim(c, job)
            except MigrationError as e:
                return self.srv.error_reply(str(e))
            return OK

        return self._answer_when_replicated(c, job, off, waiting, then,
                                            max(1.0, self.srv.cluster.node_timeout / 1000.0))

    def _replicas_to_wait(self, off: int, strict: bool) -> list:
        """Online replicas not yet at `off`. strict (the flip): all but those
        the cluster has marked FAIL; otherwise (pacing) only those that
        acknowledged within half the node-timeout (they send REPLCONF ACK
        every second), so a stuck replica neither slows every step nor
        delays the flip until the cluster marks it FAIL."""
        from pynode.replication import ONLINE
        repl = self.srv.replication
        if repl.backlog is None or repl.masterhost is not None:
            return []
        behind = [r for r in repl.live_replicas() if r.state == ONLINE and r.ack_off < off]
        if not behind:
            return behind
        if strict:
            failed = {(n.ip, n.port) for n in self.srv.cluster.state.nodes.values()
                      if FAIL in n.flags}
            return [r for r in behind if (r.ip, r.port) not in failed]
        recent = time.time() - self.srv.cluster.node_timeout / 2000.0
        return [r for r in behind if r.ack_time > recent]

    def _answer_when_replicated(self, c, job: Job, off: int, waiting: list, then,
                                limit: float):
        """Park the link until every replica of `waiting` has acknowledged
        `off` or `limit` seconds passed; then its answer is then(True) or
        then((replica name, seconds waited))."""
        c.paused = True                  # the link's next commands wait
        job.task = asyncio.ensure_future(self._await_replicas(c, job, off, waiting, then,
                                                              limit))
        return None

    async def _await_replicas(self, c, job: Job, off: int, waiting: list, then,
                              limit: float) -> None:
        repl = self.srv.replication
        deadline = time.monotonic() + limit
        last_getack = 0.0
        reply = None
        try:
            while reply is None:
                if job.link is not c or not job.active:
                    return               # the link closed or the job was cancelled
                waiting = [r for r in waiting if r.ack_off < off and r.c.transport is not None
                           and not r.c.closing]
                now = time.monotonic()
                if not waiting:
                    reply = then(True)
                elif now > deadline:
                    reply = then((waiting[0].name(), limit))
                else:
                    if now - last_getack >= 0.1:
                        last_getack = now
                        repl.send_getack()
                    await asyncio.sleep(0.002)
        finally:
            if reply is not None and not c.closing:
                c.write(reply)
                c.resume()

    def _claim(self, c, job: Job) -> None:
        t0 = time.perf_counter()
        try:
            self.srv.cluster.call("claim_migrated_slots", job.slots)
        except Exception as e:           # ClusterError: e.g. no longer a primary
            msg = "Could not take the slots: %s" % e
            self._import_failed(c, job, msg)
            raise MigrationError("ERR %s" % msg) from None
        del self.links[c]
        job.link = None
        job.pause_ms = (time.perf_counter() - t0) * 1000.0
        job.last_ack_time = time.time()
        job.touch("success")
        self._tell_replicas(job, False)
        self._log("notice", "Slot migration %s: took %d slots from %s"
                  % (job.name, len(job.slots), job.source))

    def _import_failed(self, c, job: Job, msg: str) -> None:
        self.links.pop(c, None)
        job.link = None
        job.touch("failed", msg)
        self._log("warning", "Slot migration %s failed: %s" % (job.name, msg))
        self.clean_unowned(job.slots, "failed import")
        self._tell_replicas(job, False)

    def sync_flush(self, c) -> None:
        """FLUSHALL/FLUSHDB on the source: the imported keys go too."""
        job = self.links.get(c)
        if job is None:
            raise MigrationError("ERR No slot import on this connection")
        db = self.srv.ks.db(0)
        for s in job.slots:
            for key in list(db.slots[s]):
                if db.delete(key, True):
                    self.srv.dirty += 1
                    self.srv.propagate(0, [b"DEL", key])

    def link_error(self, c, msg: str) -> None:
        """A write of an import link failed here (OOM, ...): the imported
        data is not the source's any more, so the job fails at once."""
        job = self.links.get(c)
        if job is None or not job.active:
            return
        job.touch(message="A write from the source failed on the target: %s" % msg)
        c.transport.close()
        self.on_disconnect(c)

    def on_disconnect(self, c) -> None:
        job = self.links.pop(c, None)
        if job is None:
            return
        job.link = None
        if job.active:
            job.touch("failed", job.message or "Connection to source lost")
            self._log("warning", "Slot migration %s failed: connection to source lost"
                      % job.name)
            self.clean_unowned(job.slots, "failed import")
            self._tell_replicas(job, False)

    def cron(self) -> None:
        """An import link silent for 2 x node-timeout has lost its source (a
        partition leaves no FIN): close it, which drops the imported keys."""
        if not self.links:
            return
        now = time.time()
        limit = self.link_timeout()
        for c, job in list(self.links.items()):
            if now - c.last_io > limit:
                job.touch(message="No data from the source for %.0f s" % limit)
                c.transport.close()
                self.on_disconnect(c)

    # ------------------------------------------------------------ cleaning up
    def clean_unowned(self, slots, why: str) -> None:
        """Delete, in the background and propagated, the keys of `slots` this
        node's shard does not own (a failed import, slots handed over)."""
        for s in slots:
            self.cleaning[s] = why
        if self.cleaner is None or self.cleaner.done():
            self.cleaner = asyncio.ensure_future(self._clean())

    def _keep(self, slot: int) -> bool:
        """Keys of `slot` stay: my shard owns it, nobody does (Redis keeps
        those), or it is being imported (here, or by SETSLOT IMPORTING)."""
        st = self.srv.cluster.state
        owner = st.slot_owner[slot]
        me = st.myself
        if owner is None or owner == me.id or owner == me.primary_id or me.is_replica:
            return True
        if slot in me.importing:
            return True
        return any(j.active and slot in j.slot_set for j in self.links.values())

    def promoted(self) -> int:
        """This replica became a primary: the keys of its old primary's
        unfinished atomic imports go (their source still has them). Other
        keys in slots it does not own stay, as Redis keeps them: a legacy
        MIGRATE into a slot its old primary was importing left the only
        copy here, for `redis-cli --cluster fix` to move back."""
        slots = sorted({s for v in self.primary_imports.values() for s in v})
        self.primary_imports.clear()
        return self.sweep_orphans(slots)

    def slots_with_keys(self) -> list[int]:
        slots = self.srv.ks.db(0).slots
        return [s for s in range(len(slots)) if slots[s]]

    def sweep_orphans(self, among=None) -> int:
        """Keys in slots another node owns, not being imported (of `among`
        if given): what a failed import left behind on a node that was its
        target's replica (promoted since) or that restarted from its AOF.
        Deleted in the background."""
        db = self.srv.ks.db(0)
        slots = [s for s in (range(len(db.slots)) if among is None else among)
                 if db.slots[s] and not self._keep(s)]
        if slots:
            self._log("notice", "Deleting the keys of %d slots owned by other nodes"
                      % len(slots))
            self.clean_unowned(slots, "orphan keys")
        return len(slots)

    async def _clean(self) -> None:
        srv = self.srv
        db = srv.ks.db(0)
        total = 0
        pace = True
        while self.cleaning:
            slot = next(iter(self.cleaning))
            if self._keep(slot):
                self.cleaning.pop(slot, None)   # the slot is (again) ours: keep it
                continue
            d = db.slots[slot]
            gone = [b"DEL"]
            for key in list(islice(d, DELETE_BATCH)):
                if db.delete(key, True):      # big values freed in pieces
                    gone.append(key)
            n = len(gone) - 1
            if n:
                # one DEL per batch (one slot's keys): a replica applies it
                # at a fraction of the cost of a DEL per key
                srv.propagate(0, gone)
            srv.dirty += n
            total += n
            if not db.slots[slot]:
                self.cleaning.pop(slot, None)
            if n:
                await asyncio.sleep(0)
                if pace:
                    pace = await self._pace_replicas()
        if total:
            srv.log.notice("Deleted %d keys from slots this node does not own" % total)

    async def _pace_replicas(self) -> bool:
        """The cleaner stays at most IN_FLIGHT bytes ahead of the replicas
        (online, not marked FAIL): a replica applies the deletes slower than
        they are made, and one left a million DELs behind answered the bus
        late enough to be marked FAIL and held WAIT for seconds. (Only those
        that acknowledged lately would not do: a loaded replica acknowledges
        late, is not waited for, falls further behind.) False when a replica
        did not catch up within the link timeout: no more waiting then."""
        repl = self.srv.replication
        deadline = time.monotonic() + self.link_timeout()
        last_getack = 0.0
        while self._replicas_to_wait(repl.offset - IN_FLIGHT, strict=True):
            now = time.monotonic()
            if now > deadline:
                return False
            if now - last_getack >= 0.1:
                last_getack = now
                repl.send_getack()
            await asyncio.sleep(0.005)
        return True

    def drop_slots(self, slots) -> None:
        """DropSlotKeys from the state machine: a few keys at once (as
        Redis's delKeysInSlot), many in the background."""
        db = self.srv.ks.db(0)
        if sum(len(db.slots[s]) for s in slots) <= DELETE_BATCH:
            self.srv.cluster.delete_slot_keys(slots, True)
        else:
            self.clean_unowned(slots, "slots given to another node")

    # ------------------------------------------------------------ views
    def valkey_entry(self, job: Job) -> dict:
        return {
            b"name": job.name.encode(),
            b"operation": job.operation.encode(),
            b"slot_ranges": ranges_text(job.slots).encode(),
            b"target_node": job.target.encode(),
            b"source_node": job.source.encode(),
            b"create_time": int(job.create_time),
            b"last_update_time": int(job.last_update_time),
            b"last_ack_time": int(job.last_ack_time),
            b"state": job.state.encode(),
            b"message": job.message.encode(),
            b"cow_size": 0,
            b"remaining_repl_size": len(job.out),
        }

    def redis_entry(self, job: Job) -> dict:
        return {
            b"id": job.name.encode(),
            b"slots": ranges_text(job.slots).encode(),
            b"source": job.source.encode(),
            b"dest": job.target.encode(),
            b"operation": b"import" if job.operation == "IMPORT" else b"migrate",
            b"state": job.state.encode(),
            b"last_error": job.message.encode(),
            b"retries": 0,
            b"create_time": int(job.create_time * 1000),
            b"start_time": int(job.start_time * 1000),
            b"end_time": int(job.end_time * 1000),
            b"write_pause_ms": int(job.pause_ms),
        }
