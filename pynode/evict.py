"""maxmemory and eviction, as Redis 7.0's evict.c.

Before a command that may grow memory (the denyoom ones, anything queued
inside MULTI, an EXEC holding a denyoom command) `Evictor.check` decides
whether the server is over `maxmemory`; if so it evicts keys by the
configured `maxmemory-policy`, or refuses the command with
"-OOM command not allowed when used memory > 'maxmemory'." when nothing can
be evicted (noeviction, or no candidate keys left).

Measuring memory. Redis reads a counter; pynode's used_memory is measured
(glibc's mallinfo2 plus what CPython's small-object allocator holds, see
pynode/info.py), which costs a few hundred microseconds. So the measurement
is not repeated before every write: the sizes of the arguments of the
commands checked since the last measurement are added up, and memory is
measured again when that sum passes `slack` (1/256 of maxmemory, between
16 KiB and 1 MiB), so used memory overshoots maxmemory by at most about that
much. While over the limit (noeviction) the verdict is reused until a write
changed the dataset or 100 ms passed, so a client hammering a full server
does not make it measure for every refused command.

Eviction. As performEvictions: the memory to free is used - maxmemory (minus
what Redis does not count: the AOF buffer, the replication buffer beyond the
backlog); keys are picked one at a time and deleted until the estimate of
what was freed (storage.values.memory_usage of each evicted key) covers it.
LRU, LFU and volatile-ttl keep a pool of the 16 best candidates, refilled
by sampling maxmemory-samples keys of each database (allkeys-*: any key;
volatile-*: keys with a TTL) and ranked by idle time, 255 - LFU counter, or
the nearest expiry; the random policies take a random key, visiting the
databases in turn. Each evicted key is propagated as DEL (UNLINK with
lazyfree-lazy-eviction) to the AOF and replicas, counted in INFO
evicted_keys and announced with the "evicted" keyspace event. When the
time limit (from maxmemory-eviction-tenacity) is reached first, the command
runs and eviction continues from the event loop until under the limit.

Access clocks (OBJECT IDLETIME/FREQ, LRU/LFU ranking) live in the keyspace
(storage/keyspace.py) and are always kept, as Redis keeps robj->lru: OBJECT
IDLETIME answers the time since the last access under any policy; `configure`
says whether they count LRU seconds or LFU counters.
"""

from __future__ import annotations

import time
from itertools import islice
from random import random as _random

from pynode import info as infomod
from pynode import notify
from storage import values
from storage.keyspace import LRU_CLOCK_MAX
from storage.slots import keyslot

OOM = "OOM command not allowed when used memory > 'maxmemory'."

# policy flags (server.h MAXMEMORY_FLAG_*)
F_LRU, F_LFU, F_ALLKEYS = 1, 2, 4
POLICIES = {
    "volatile-lru": F_LRU, "volatile-lfu": F_LFU, "volatile-random": 0,
    "volatile-ttl": 0, "allkeys-lru": F_LRU | F_ALLKEYS, "allkeys-lfu": F_LFU | F_ALLKEYS,
    "allkeys-random": F_ALLKEYS, "noeviction": 0,
}
EVPOOL_SIZE = 16
ULLONG_MAX = (1 << 64) - 1
OK, RUNNING, FAIL = 0, 1, 2
_NO_CHECK_IN_MULTI = ("exec", "discard", "quit", "reset")


def configure(srv) -> None:
    """Apply the memory directives (Server.apply_config)."""
    cfg = srv.cfg
    ev = srv.evictor
    ev.configure()
    ks = srv.ks
    ks.lfu_log_factor = cfg.int("lfu-log-factor")
    ks.lfu_decay_time = cfg.int("lfu-decay-time")
    flags = POLICIES.get(ev.policy, 0)
    on_new = srv.on_key_new if srv.notify_flags & notify.NEW else None
    ks.configure_hooks(True, bool(flags & F_LFU), on_new)


def set_lru_or_lfu(srv, db, key: bytes, freq: int, idle: int) -> None:
    """objectSetLRUOrLFU for RESTORE ... FREQ f / IDLETIME seconds: FREQ
    counts under an LFU policy, IDLETIME under any other."""
    ks = srv.ks
    if POLICIES.get(srv.evictor.policy, 0) & F_LFU:
        if freq >= 0 and db.clock is not None:
            db.clock[key] = (ks.lfu_minutes << 8) | freq
    elif idle >= 0:
        when = ks.lru_clock - idle
        if when < 0:
            when = (ks.lru_clock + LRU_CLOCK_MAX // 2) % LRU_CLOCK_MAX
        db.clock[key] = when


class Evictor:
    def __init__(self, srv) -> None:
        self.srv = srv
        self.maxmemory = 0
        self.policy = "noeviction"
        self.flags = 0
        self.samples = 5
        self.time_limit = 0.01
        self.lazy = False
        self.pool: list = []          # [idle, key, dbid], ascending idle
        self.next_db = 0
        self.pending = 0              # argument bytes checked since the last measurement
        self.slack = 1 << 16
        self.over = False             # the last measurement was over maxmemory
        self.measured_at = 0.0
        self.measured_dirty = -1
        self.evicted_keys = 0
        self.exceeded_since = 0.0     # monotonic start of the current over-limit spell
        self.exceeded_total = 0.0
        self.nonempty: dict = {}      # dbid -> (time, slot numbers with keys)
        self.timer = None

    def configure(self) -> None:
        cfg = self.srv.cfg
        old_limit = self.maxmemory
        self.maxmemory = cfg.memory("maxmemory")
        policy = cfg.get("maxmemory-policy")
        if policy != self.policy:
            self.pool = []
        self.policy = policy
        self.flags = POLICIES.get(policy, 0)
        self.samples = max(1, cfg.int("maxmemory-samples"))
        tenacity = cfg.int("maxmemory-eviction-tenacity")
        # evictionTimeLimitUs, times 20 for Python's slower deletes
        if tenacity <= 10:
            limit_us = 50 * tenacity
        elif tenacity < 100:
            limit_us = int(500 * 1.15 ** (tenacity - 10))
        else:
            limit_us = None
        self.time_limit = None if limit_us is None else max(limit_us, 50) * 20 / 1e6
        self.lazy = cfg.bool("lazyfree-lazy-eviction")
        self.slack = min(1 << 20, max(1 << 14, self.maxmemory >> 8))
        self.over = False
        self.pending = self.slack       # measure at the next check
        if self.maxmemory and self.maxmemory != old_limit and self.srv.loop is not None:
            # updateMaxmemory: warn, and start evicting now rather than at the
            # next write
            used = self.measure()
            if used > self.maxmemory:
                self.srv.log.warning(
                    "WARNING: the new maxmemory value set via CONFIG SET (%d) is smaller "
                    "than the current memory usage (%d). This will result in key eviction "
                    "and/or the inability to accept new write commands depending on the "
                    "maxmemory-policy." % (self.maxmemory, used))
                if self.policy != "noeviction":
                    self.schedule()
            self.pending = self.slack   # the next check measures again

    def reset_stats(self) -> None:
        self.evicted_keys = 0
        self.exceeded_total = 0.0
        if self.exceeded_since:
            self.exceeded_since = time.monotonic()

    # ------------------------------------------------------------ the check
    def check(self, c, cmd, argv) -> str | None:
        """The OOM error for this command, or None (evicting first if needed)."""
        if not cmd.denyoom:
            if not c.in_multi:
                return None
            name = cmd.name
            if name in _NO_CHECK_IN_MULTI:
                if name != "exec" or not any(q.denyoom for q, _ in c.queued):
                    return None
        srv = self.srv
        if srv.loading or "M" in c.flags_extra or self._ignored():
            return None
        self.pending += sum(map(len, argv)) + 64
        if self.over:
            if srv.dirty == self.measured_dirty and \
                    time.monotonic() - self.measured_at < 0.1:
                return OOM
        elif self.pending < self.slack:
            return None
        if self.perform() == FAIL:
            return OOM
        return None

    def _ignored(self) -> bool:
        """A replica with replica-ignore-maxmemory yes never evicts."""
        return self.srv.replication.masterhost is not None and \
            self.srv.cfg.bool("replica-ignore-maxmemory")

    def measure(self) -> int:
        """Used memory as eviction counts it (getMaxmemoryState)."""
        srv = self.srv
        used = infomod.used_memory()
        self.pending = 0
        self.measured_at = time.monotonic()
        self.measured_dirty = srv.dirty
        return max(0, used - not_counted(srv))

    def _exceeded(self, over: bool) -> None:
        now = time.monotonic()
        if over and not self.exceeded_since:
            self.exceeded_since = now
        elif not over and self.exceeded_since:
            self.exceeded_total += now - self.exceeded_since
            self.exceeded_since = 0.0

    # ------------------------------------------------------------ eviction
    def perform(self) -> int:
        """One eviction cycle, timed for the latency monitor (eviction-cycle)."""
        start = time.perf_counter()
        before = self.evicted_keys
        r = self._perform()
        if self.evicted_keys != before:
            self.srv.latency.sample("eviction-cycle", time.perf_counter() - start)
        return r

    def _perform(self) -> int:
        """performEvictions: OK, RUNNING (time limit hit, continuing in the
        event loop) or FAIL (over the limit and nothing left to evict).

        Evicts until the estimated freed bytes cover the excess, then
        measures again (a dict keeps the slots of deleted entries until it
        resizes, so the real drop can be smaller than the estimate) and
        goes on, a few rounds at most."""
        limit = self.maxmemory
        start = time.perf_counter()
        n = 0
        for _ in range(4):
            used = self.measure()
            if used <= limit:
                self.over = False
                self._exceeded(False)
                return OK
            self._exceeded(True)
            if self.policy == "noeviction":
                self.over = True
                return FAIL
            tofree = used - limit
            freed = 0
            while freed < tofree:
                pick = self.pick()
                if pick is None:
                    # out of candidates: maybe enough was freed anyway
                    if self.measure() <= limit:
                        self.over = False
                        self._exceeded(False)
                        return OK
                    self.over = True
                    return FAIL
                freed += self.evict(*pick)
                n += 1
                if not n & 15 and self.time_limit is not None and \
                        time.perf_counter() - start > self.time_limit and \
                        self.schedule():
                    self.over = False
                    self.pending = self.slack >> 1
                    return RUNNING
        self.over = False
        self.pending = self.slack >> 1      # not sure it is under: look again soon
        return OK

    def schedule(self) -> bool:
        """startEvictionTimeProc: keep evicting from the event loop (False
        without a loop: the caller goes on now)."""
        loop = self.srv.loop
        if loop is None:
            return False
        if self.timer is None:
            self.timer = loop.call_soon(self._continue)
        return True

    def _continue(self) -> None:
        self.timer = None
        if not self.maxmemory or self.policy == "noeviction":
            return
        self.perform()

    def pick(self):
        """The next (db, key) to evict, or None."""
        flags = self.flags
        if flags & (F_LRU | F_LFU) or self.policy == "volatile-ttl":
            return self._pick_pool()
        ks = self.srv.ks
        ndb = len(ks.dbs)
        for refresh in (False, True):
            for _ in range(ndb):
                self.next_db = (self.next_db + 1) % ndb
                db = ks.dbs[self.next_db]
                if db is None:
                    continue
                keys = self.sample(db, 1, refresh)
                if keys:
                    return db, keys[0]
        return None

    def _pick_pool(self):
        ks = self.srv.ks
        pool = self.pool
        allkeys = self.flags & F_ALLKEYS
        while True:
            found = False
            for refresh in (False, True):
                for db in ks.dbs:
                    if db is None:
                        continue
                    keys = self.sample(db, self.samples, refresh)
                    if keys:
                        found = True
                        self._populate(db, keys)
                if found:
                    break
            if not found:
                return None
            while pool:
                idle, key, dbid = pool.pop()
                db = ks.dbs[dbid]
                if db is None:
                    continue
                if allkeys:
                    if key in db.slots[keyslot(key)]:
                        return db, key
                elif key in db.expires:
                    return db, key
                # a ghost: deleted since it was sampled

    def _populate(self, db, keys) -> None:
        """evictionPoolPopulate."""
        ks = db.ks
        pool = self.pool
        flags = self.flags
        clock = db.clock
        expires = db.expires
        default = ks.default_clock()
        for key in keys:
            if flags & F_LRU:
                idle = ks.idle_ms(clock.get(key, default) if clock is not None else default)
            elif flags & F_LFU:
                idle = 255 - ks.lfu_decr(clock.get(key, default) if clock is not None
                                         else default)
            else:
                when = expires.get(key)
                if when is None:
                    continue
                idle = ULLONG_MAX - when
            k = 0
            n = len(pool)
            while k < n and pool[k][0] < idle:
                k += 1
            if k == 0 and n == EVPOOL_SIZE:
                continue              # worse than everything in a full pool
            if n < EVPOOL_SIZE:
                pool.insert(k, [idle, key, db.id])
            else:
                del pool[0]           # drop the worst, insert at k - 1
                pool.insert(k - 1, [idle, key, db.id])

    def sample(self, db, count: int, refresh: bool = False) -> list:
        """Up to count keys of db for the policy (dictGetSomeKeys): any key
        for allkeys-*, keys with a TTL for volatile-*. The list of slots
        with keys is at most a second old; refresh lists them again (when
        nothing was found anywhere)."""
        if not self.flags & F_ALLKEYS:
            heap = db.heap
            expires = db.expires
            if not expires:
                return []
            out = []
            for _ in range(count * 3):
                if not heap:
                    break
                when, key = heap[int(_random() * len(heap))]
                if expires.get(key) == when:
                    out.append(key)
                    if len(out) >= count:
                        break
            if not out:                     # unlucky with stale heap entries
                for key in expires:
                    out.append(key)
                    if len(out) >= count:
                        break
            return out
        # as dictGetSomeKeys: from a random place, consecutive (non-empty)
        # slots until count keys are found
        slots = self._slots_with_keys(db, refresh)
        n = len(slots)
        out = []
        if n:
            dslots = db.slots
            i = int(_random() * n)
            misses = steps = 0
            while len(out) < count and steps < n and steps < count * 10:
                d = dslots[slots[i]]
                if d:
                    need = count - len(out)
                    if len(d) <= need:
                        out.extend(d)
                    else:
                        off = int(_random() * (len(d) - need + 1))
                        out.extend(islice(d, off, off + need))
                else:
                    misses += 1
                i += 1
                if i == n:
                    i = 0
                steps += 1
            if misses * 2 > steps:
                self.nonempty[db.id] = (0.0, slots)     # list again next time
        if not out and n and not refresh:   # the list was stale: look at every slot
            for i in self._slots_with_keys(db, refresh=True):
                for k in db.slots[i]:
                    out.append(k)
                    if len(out) >= count:
                        return out
        return out

    def _slots_with_keys(self, db, refresh: bool = False) -> list:
        """The slots of db that had keys when last listed (listed again each
        second, or when they have all emptied)."""
        info = self.nonempty.get(db.id)
        now = time.monotonic()
        if refresh or info is None or now - info[0] > (1.0 if info[0] else 0.05):
            info = self.nonempty[db.id] = (now, [i for i, d in enumerate(db.slots) if d])
        return info[1]

    def evict(self, db, key: bytes) -> int:
        """Delete an evicted key; the bytes it is estimated to have held."""
        srv = self.srv
        v = db.slots[keyslot(key)].get(key)
        if v is None:
            return 0
        freed = values.memory_usage(key, v, 5)
        if key in db.expires:
            freed += values.EXPIRE_ENTRY
        v = None                 # only the keyspace holds it: lazyfree may take it apart
        t0 = time.perf_counter()
        db.delete(key, self.lazy)
        self.srv.latency.sample("eviction-del", time.perf_counter() - t0)
        self.evicted_keys += 1
        if srv.notify_flags:
            notify.notify(srv, notify.EVICTED, b"evicted", key, db.id)
        srv.propagate(db.id, [b"UNLINK" if self.lazy else b"DEL", key])
        return freed


def not_counted(srv) -> int:
    """freeMemoryGetNotCountedMemory: the AOF buffer and the replication
    buffer beyond the backlog size."""
    n = 0
    aof = srv.aof
    if aof is not None:
        n += len(getattr(aof, "buf", b"") or b"")
    repl = srv.replication
    backlog = getattr(repl, "backlog", None)
    if backlog is not None:
        n += max(0, len(backlog) - repl.backlog_size)
    return n
