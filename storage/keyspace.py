"""The keyspace: numbered databases, each one dict per hash slot plus expiry.

Values are stored as-is: a string is a `bytes`; other types are Python objects
registered in TYPE_NAMES.  Expiry is lazy (a read of an expired key deletes it)
plus an active cycle driven by a min-heap of deadlines, so each cycle touches
only keys that really expired and stops when its time slice is spent.

Per-key access clocks (OBJECT IDLETIME/FREQ, LRU/LFU eviction) and the
"new key" hook live in `HookedDatabase` (same slots as a plain `Database`,
overriding get/set/delete), which `Keyspace.configure_hooks` switches on:
it keeps `db.clock` (Clocks: key -> 24-bit clock as Redis's robj->lru, LRU:
seconds; LFU: minutes << 8 | logarithmic counter; a key never looked up
shares the clock of its creation run instead of having an entry), and
reports new keys to `ks.on_new`.  The server keeps clocks always (OBJECT
IDLETIME is right from the start, as in Redis); a bare Keyspace (tools,
tests) has none.  HookedDatabase.set also shares equal small string values
between keys (a direct-mapped table), as Redis shares small integers.
"""

from __future__ import annotations

import heapq
import random
import time
from bisect import bisect_right
from itertools import islice
from operator import indexOf
from typing import Callable


from binascii import crc_hqx

from storage.glob import matcher
from storage.slots import SLOTS, keyslot

TYPE_NAMES: dict[type, str] = {bytes: "string"}


def type_name(value) -> str:
    return TYPE_NAMES.get(type(value), "none")


def now_ms() -> int:
    return int(time.time() * 1000)


LRU_CLOCK_MAX = (1 << 24) - 1
LFU_INIT_VAL = 5

# Creation runs start within the first RUN_LIMIT keys of a slot (see Clocks):
# a key created in a slot that already holds more gets its own entry, unless
# its clock is the slot's last run's (a key past the limit without an entry
# reads as the last run), so finding a run never scans more than this many keys.
RUN_LIMIT = 512

# Small string values are shared through a direct-mapped table (HookedDatabase.set):
# equal values of different keys become one object, as Redis shares small
# integers; a value is looked up by its hash, so the table costs one probe.
SHARE_MAX_LEN = 44
SHARE_SLOTS = 4096


class Clocks(dict):
    """A database's access clocks (Redis's robj->lru): key -> 24-bit clock.

    The dict itself holds the keys whose clock was set by an access or given
    explicitly (RESTORE IDLETIME, RENAME), or created alone (see created).
    A key created with others of its slot at the same clock and never looked
    up has no entry: its clock is its creation clock, kept once per run of
    keys created with the same clock.  A slot dict keeps its keys in
    creation order (an overwrite keeps the key's place, a deletion removes
    it), so the keys of a slot created at clock c1, then c2, ... form
    consecutive runs; a run is remembered by its first key (`bounds`: key ->
    clock, `runs`: slot -> the first keys in order), and a key's run is the
    last first-key at or before its place.  Keys before a slot's first run
    (there before the clocks were kept) read as the keyspace default.

    The cost: a creation compares its clock with the slot's last run; a
    deletion of a run's first key moves the mark to the next key (a scan of
    at most RUN_LIMIT keys); finding a run (OBJECT IDLETIME, the first LFU
    access of a key, eviction sampling, RDB save) scans to the key's place,
    with the runs' places cached for the last slot asked."""

    __slots__ = ("db", "bounds", "runs", "last", "cache_slot", "cache", "moved")

    def __init__(self, db: "Database") -> None:
        super().__init__()
        self.db = db
        self.bounds: dict[bytes, int] = {}
        self.runs: dict[int, list[bytes]] = {}
        # slot -> the clock of its last run (None: no run), so that a
        # creation with that clock (the common case) is one comparison
        self.last: list[int | None] = [None] * SLOTS
        self.cache_slot = -1
        self.cache: list[int] = []
        # slot -> run marks moved since its dict was last rebuilt (forget)
        self.moved: dict[int, int] = {}

    def created(self, key: bytes, slot: int, d: dict, clock: int) -> None:
        """key was just added at the end of slot's dict d with this clock
        (HookedDatabase.set skips the call when the slot's last run has the
        clock: the key is in that run, past RUN_LIMIT too).

        A run starts only when a second key follows with the same clock:
        the key before this one, if it has an entry with this clock, becomes
        the run's first key and gives up its entry; otherwise this key takes
        an entry.  So a slot that gets one key per clock tick (a trickle of
        writes over many slots) costs an entry per key, as a plain dict of
        clocks would, never an entry plus a run."""
        if len(d) > RUN_LIMIT:
            self[key] = clock
            return
        if self.last[slot] == clock:
            return
        it = reversed(d)
        next(it)
        prev = next(it, None)
        if prev is None or dict.get(self, prev) != clock or prev in self.bounds:
            self[key] = clock
            return
        dict.__delitem__(self, prev)
        firsts = self.runs.get(slot)
        if firsts is None:
            self.runs[slot] = [prev]
        else:
            firsts.append(prev)
        self.bounds[prev] = clock
        self.last[slot] = clock
        if slot == self.cache_slot:
            self.cache_slot = -1

    def forget(self, key: bytes, slot: int, d: dict) -> None:
        """key is about to be deleted from slot's dict d (where it still is)."""
        dict.pop(self, key, None)
        clock = self.bounds.pop(key, None)
        if slot == self.cache_slot:
            self.cache_slot = -1
        if clock is None:
            return
        # Finding the next key walks d from its start, dead entries included
        # (a dict keeps the holes its deletions leave until it grows again):
        # deleting a slot's keys in creation order (a slot's move, FIFO
        # expiry) would cost the number of keys deleted before, each time.
        # So after about sqrt(40 x len(d)) such moves d is rebuilt in place
        # (same object and order, no holes), which balances the walks over
        # holes against the rebuilds: O(sqrt(n)) a deletion, not O(n).
        moved = self.moved.get(slot, 0) + 1
        if moved > 64 and moved * moved > 40 * len(d):
            items = list(d.items())
            d.clear()
            d.update(items)
            moved = 0
        self.moved[slot] = moved
        firsts = self.runs[slot]
        i = firsts.index(key)
        it = iter(d)
        if next(it) is key:                    # the oldest key (FIFO expiry)
            succ = next(it, None)
        else:
            succ = next(islice(d, indexOf(d, key) + 1, None), None)
        if succ is None or (i + 1 < len(firsts) and firsts[i + 1] is succ):
            del firsts[i]                      # the run had no other key
            if not firsts:
                del self.runs[slot]
                self.last[slot] = None
            elif i == len(firsts):
                self.last[slot] = self.bounds[firsts[-1]]
        else:
            firsts[i] = succ
            self.bounds[succ] = clock

    def run_clock(self, key: bytes, slot: int, d: dict) -> int | None:
        """The creation clock of a key of d without an entry (None: before
        the first run)."""
        firsts = self.runs.get(slot)
        if not firsts:
            return None
        if slot != self.cache_slot:
            self.cache = [indexOf(d, k) for k in firsts]
            self.cache_slot = slot
        try:
            place = indexOf(islice(d, RUN_LIMIT), key)
        except ValueError:
            place = RUN_LIMIT                  # past the runs' places: the last run
        i = bisect_right(self.cache, place) - 1
        return None if i < 0 else self.bounds[firsts[i]]

    def get(self, key: bytes, default=None):
        v = dict.get(self, key)
        if v is not None:
            return v
        slot = keyslot(key)
        d = self.db.slots[slot]
        if key not in d:
            return default
        v = self.run_clock(key, slot, d)
        return default if v is None else v

    def __contains__(self, key) -> bool:
        """Every key of the database has a clock (an entry, a run's or the
        default)."""
        return dict.__contains__(self, key) or key in self.db.slots[keyslot(key)]

    def pop(self, key, default=None):
        return dict.pop(self, key, default)

    def clear(self) -> None:
        dict.clear(self)
        self.bounds.clear()
        self.runs.clear()
        self.moved.clear()
        self.last = [None] * SLOTS
        self.cache_slot = -1

    def check_invariants(self) -> None:
        """Entries and run marks belong to live keys, each run mark in its
        slot, marks in creation order within the first RUN_LIMIT places."""
        slots = self.db.slots
        for key in self:
            assert key in slots[keyslot(key)], "clock of a missing key %r" % key
        n = 0
        for slot, firsts in self.runs.items():
            assert firsts, "empty run list of slot %d" % slot
            places = [indexOf(slots[slot], k) for k in firsts]
            assert places == sorted(places) and places[-1] < RUN_LIMIT, \
                "runs of slot %d out of order: %r" % (slot, places)
            n += len(firsts)
            assert self.last[slot] == self.bounds[firsts[-1]], "last run of slot %d" % slot
        assert n == len(self.bounds), "run marks and their clocks disagree"
        assert sum(c is not None for c in self.last) == len(self.runs), "last runs"


# the direct-mapped table of shared small strings (HookedDatabase.set)
_shared: list = [None] * SHARE_SLOTS


def _share(values: list) -> list:
    """values, each small string replaced by an equal one of the table when
    it holds one (else taking its slot), as HookedDatabase.set does."""
    out = []
    append = out.append
    for value in values:
        if type(value) is bytes and len(value) <= SHARE_MAX_LEN:
            j = hash(value) & (SHARE_SLOTS - 1)
            if _shared[j] == value:
                value = _shared[j]
            else:
                _shared[j] = value
        append(value)
    return out


class Database:
    __slots__ = ("id", "ks", "slots", "expires", "heap", "watched", "avg_ttl", "raw",
                 "blocking_keys", "clock", "tracked")

    def __init__(self, ks: "Keyspace", id: int) -> None:
        self.id = id
        self.ks = ks
        self.slots: list[dict] = [{} for _ in range(SLOTS)]
        self.expires: dict[bytes, int] = {}
        self.heap: list[tuple[int, bytes]] = []
        # key -> set of watchers: objects with a `watch_touched` attribute (set
        # to True when the key changes) and an `expired` flag (see touch_all)
        self.watched: dict[bytes, set] = {}
        self.avg_ttl = 0
        # strings changed in place (APPEND, SETRANGE, SETBIT...): Redis reports
        # them as "raw" whatever their length; a new value clears the mark
        self.raw: set[bytes] = set()
        # key -> {client: None} in the order they blocked (pynode/blocking.py);
        # a key listed here that is created, replaced or deleted is signalled
        # through ks.on_key_ready
        self.blocking_keys: dict[bytes, dict] = {}
        # the access clocks (Clocks), kept only by a HookedDatabase with tracking on
        self.clock: Clocks | None = None
        # client-side caching (pynode/tracking.py): fn(key, by_command) told
        # of every modified key while any key or client is tracked, else None
        self.tracked: Callable[[bytes, bool], None] | None = ks.on_modified

    def check_invariants(self) -> None:
        """Each key sits in its slot's dict; every expiry belongs to a key
        and has its entry in the expiry heap (which may hold stale ones)."""
        for slot, d in enumerate(self.slots):
            for key in d:
                assert keyslot(key) == slot, "key %r in slot %d" % (key, slot)
        heap = set(self.heap)
        for key, when in self.expires.items():
            assert key in self.slots[keyslot(key)], "expiry of a missing key %r" % key
            assert (when, key) in heap, "expiry of %r not in the heap" % key
        if self.clock is not None:
            self.clock.check_invariants()

    # ---------------------------------------------------------- reads
    def get(self, key: bytes):
        """The value at key, or None; deletes the key if it has expired."""
        v = self.slots[keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383].get(key)
        if v is not None and self.expires and key in self.expires:
            if self.expires[key] <= self.ks.now:
                if self.ks.expire_on_read:
                    v = None            # the keyspace's is the only hold (lazyfree)
                    self._expire(key)
                return None
        return v

    # A lookup that does not count as an access (Redis's LOOKUP_NOTOUCH:
    # TYPE, EXISTS, TTL, OBJECT ...); the same as get() unless clocks are kept.
    peek = get

    def peek_keys(self, keys: list) -> list:
        """peek() of each key (MIGRATE's batch): the keys are looked up in
        the first key's slot dict at once, the others (a miss there, a TTL
        to check) one by one."""
        if not keys:
            return []
        first = keys[0]
        d = self.slots[keyslot(first) if 123 in first else crc_hqx(first, 0) & 16383]
        values = list(map(d.get, keys))
        expires = self.expires
        if None in values or expires:
            peek = self.peek
            for i, key in enumerate(keys):
                if values[i] is None or (expires and key in expires):
                    values[i] = peek(key)
        return values

    def slot_dict(self, key: bytes) -> dict:
        """The dict of key's slot, for read-modify-write fast paths (the
        caller handles expiry and WATCH, see INCR)."""
        return self.slots[keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383]

    def exists(self, key: bytes) -> bool:
        return self.get(key) is not None

    def get_expire(self, key: bytes) -> int:
        """Absolute expiry in ms, or -1 if the key has none."""
        return self.expires.get(key, -1)

    def size(self) -> int:
        return sum(map(len, self.slots))

    def count_in_slot(self, slot: int) -> int:
        return len(self.slots[slot])

    def keys_in_slot(self, slot: int, count: int) -> list[bytes]:
        """Up to count keys of a slot, the newest first (CLUSTER GETKEYSINSLOT:
        Redis 7.0 adds a key at the head of its slot's list).  A move deletes
        them in that order, from the end of the slot's dict, so the access
        clocks' run marks near its start stay put (see Clocks.forget)."""
        return list(islice(reversed(self.slots[slot]), count))

    def delete_keys(self, keys: list) -> None:
        """delete() each key (a MIGRATE's batch, dbDelete in Redis, so
        lazyfree-lazy-server-del applies): without watchers, tracking, raw
        values, blocked clients or lazy server deletes, one loop that only
        unlinks the keys, their TTLs and their clocks."""
        if not keys:
            return
        slots = self.slots
        if (self.watched or self.tracked is not None or self.raw or self.blocking_keys
                or self.ks.lazy_server_del):
            for key in keys:
                self.delete(key)
        else:
            # (a batch's keys are mostly of one slot: the first key's)
            expires = self.expires
            clock = self.clock
            bounds = clock.bounds if clock is not None else None
            drop = dict.pop
            first = keys[0]
            slot0 = keyslot(first) if 123 in first else crc_hqx(first, 0) & 16383
            d0 = slots[slot0]
            for key in keys:
                if key in d0:
                    slot = slot0
                    d = d0
                else:
                    slot = keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383
                    d = slots[slot]
                    if key not in d:
                        continue
                if expires:
                    expires.pop(key, None)
                if clock is not None:
                    if key in bounds:
                        clock.forget(key, slot, d)
                    else:
                        drop(clock, key, None)      # what forget() does then
                del d[key]
            if clock is not None:
                clock.cache_slot = -1
        # A slot moved batch by batch loses its newest keys first
        # (GETKEYSINSLOT's order): the holes they leave at the end of its
        # dict would be walked by every later listing from the end.  Taking
        # the last key out and back in (it stays last) drops them.
        d = slots[keyslot(keys[-1])]
        if d:
            key, value = d.popitem()
            d[key] = value

    def is_expired(self, key: bytes) -> bool:
        when = self.expires.get(key)
        return when is not None and when <= self.ks.now

    def iter_keys(self, pattern: bytes = b"*"):
        """All live keys matching a glob pattern (expired ones are skipped)."""
        ok = matcher(pattern)
        expires = self.expires
        now = self.ks.now
        for d in self.slots:
            if d:
                for k in list(d):
                    if ok(k) and not (k in expires and expires[k] <= now):
                        yield k

    def items(self):
        """(key, value, expire-or--1) for every key, expired or not."""
        expires = self.expires
        for d in self.slots:
            if d:
                for k, v in d.items():
                    yield k, v, expires.get(k, -1)

    def random_key(self) -> bytes | None:
        nonempty = [d for d in self.slots if d]
        tries = 0
        while nonempty and tries < 100:
            d = random.choice(nonempty)
            # pick an index without building a list for big slots
            idx = random.randrange(len(d))
            for i, k in enumerate(d):
                if i == idx:
                    break
            if not self.is_expired(k):
                return k
            tries += 1
            if tries == 100:
                return k  # like Redis: give up avoiding expired keys
        return None

    def scan(self, cursor: int, count: int, pattern: bytes | None,
             typ: str | None) -> tuple[int, list[bytes]]:
        """Cursor is the next slot to visit; a whole slot is returned at once,
        so a key present for the whole scan is returned at least once.  COUNT
        bounds the keys looked at (Redis's count*10 iterations), not the
        slots: empty slots are skipped, and a cursor past the last non-empty
        slot is 0, so a small keyspace is scanned in one call, as Redis's
        small hash table is."""
        ok = matcher(pattern) if pattern else None
        out: list[bytes] = []
        slots = self.slots
        slot = cursor
        examined = 0
        budget = count * 10
        expires = self.expires
        now = self.ks.now
        while slot < SLOTS:
            d = slots[slot]
            slot += 1
            if not d:
                continue
            examined += len(d)
            for k, v in list(d.items()):
                if k in expires and expires[k] <= now:
                    if self.ks.expire_on_read:
                        self._expire(k)     # as Redis's SCAN: deleted, "expired" event
                    continue
                if ok is not None and not ok(k):
                    continue
                if typ is not None and type_name(v) != typ:
                    continue
                out.append(k)
            if len(out) >= count or examined >= budget:
                break
        while slot < SLOTS and not slots[slot]:
            slot += 1
        return (0 if slot >= SLOTS else slot), out

    # ---------------------------------------------------------- writes
    def set(self, key: bytes, value, keepttl: bool = False) -> None:
        """Store value at key; the key's TTL is cleared unless keepttl.
        A key that had expired is expired first (event, stat, DEL), as the
        lookup Redis does before writing."""
        d = self.slots[keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383]
        if self.expires:
            when = self.expires.get(key)
            if when is not None:
                if when <= self.ks.now and self.ks.expire_on_read:
                    self._expire(key)
                elif not keepttl:
                    del self.expires[key]
        d[key] = value
        if self.watched or self.tracked is not None:
            self.touch(key)
        if self.raw:
            self.raw.discard(key)
        if self.blocking_keys and key in self.blocking_keys:
            self.ks.on_key_ready(self, key)

    def add_keys(self, slot: int, keys: list, values: list) -> int:
        """set() of each key, value pair in order while the key is not in
        `slot`'s dict (a run of RESTOREs of new keys of that slot): how many
        were stored (the key that stopped them exists, or came twice).  The
        check and the store are one dict operation (setdefault)."""
        d = self.slots[slot]
        if self.watched or self.tracked is not None or self.blocking_keys:
            return self._add_each(d, keys, values)
        size = start = len(d)
        setdefault = d.setdefault
        for key, value in zip(keys, values):
            setdefault(key, value)
            if len(d) == size:
                break
            size += 1
        if self.raw:
            self.raw.difference_update(keys[:size - start])
        return size - start

    def _add_each(self, d: dict, keys: list, values: list) -> int:
        """add_keys() through set(), for its hooks (WATCH, tracking...)."""
        n = 0
        for key, value in zip(keys, values):
            if key in d:
                break
            self.set(key, value)
            n += 1
        return n

    def put(self, key: bytes, value, expire: int = -1, raw: bool = False,
            clock: int | None = None) -> None:
        """Store a whole key record (value, absolute expiry or -1, raw mark,
        access clock from get_clock or None for a new object), as RENAME,
        MOVE and COPY carry it from another key."""
        self.set(key, value)
        if expire != -1:
            self.set_expire(key, expire)
        if raw:
            self.raw.add(key)
        if clock is not None and self.clock is not None:
            self.clock[key] = clock

    def get_clock(self, key: bytes) -> int | None:
        """The key's access clock when clocks are kept (RENAME/MOVE carry it)."""
        if self.clock is None:
            return None
        return self.clock.get(key, self.ks.default_clock())

    def mark_raw(self, key: bytes) -> None:
        """The string at key was modified in place (OBJECT ENCODING says raw)."""
        self.raw.add(key)

    def set_pairs(self, argv: list, start: int = 1) -> None:
        """set() for each key, value pair of argv[start:] (MSET), TTLs cleared."""
        slots = self.slots
        expires = self.expires
        for i in range(start, len(argv), 2):
            key = argv[i]
            if expires:
                when = expires.get(key)
                if when is not None:
                    if when <= self.ks.now and self.ks.expire_on_read:
                        self._expire(key)
                    else:
                        del expires[key]
            slots[keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383][key] = argv[i + 1]
            if self.watched or self.tracked is not None:
                self.touch(key)
            if self.raw:
                self.raw.discard(key)

    def delete(self, key: bytes, lazy: bool | None = None) -> bool:
        """Remove key; True if it existed and was not expired. lazy: a big
        value goes to the freer (UNLINK); None: as lazyfree-lazy-server-del."""
        slot = keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383
        d = self.slots[slot]
        if key not in d:
            return False
        live = True
        if self.expires:
            when = self.expires.pop(key, None)
            if when is not None and when <= self.ks.now:
                live = False
        if self.clock is not None:
            self.clock.forget(key, slot, d)
        if lazy or (lazy is None and self.ks.lazy_server_del):
            v = d.pop(key)
            self.ks.freer.free(v)
            del v
        else:
            del d[key]
        if self.watched or self.tracked is not None:
            self.touch(key)
        if self.raw:
            self.raw.discard(key)
        if self.blocking_keys and key in self.blocking_keys:
            self.ks.on_key_ready(self, key)
        return live

    def modified(self, key: bytes) -> None:
        """signalModifiedKey: a value was changed in place (HSET on an
        existing hash, LPUSH on an existing list...): WATCH sees it."""
        if self.watched or self.tracked is not None:
            self.touch(key)

    def signal_ready(self, key: bytes) -> None:
        """signalKeyAsReady: key may now serve clients blocked on it (XADD
        to an existing stream, for instance). Creating, replacing or
        deleting a key signals by itself."""
        if self.blocking_keys and key in self.blocking_keys:
            self.ks.on_key_ready(self, key)

    def set_expire(self, key: bytes, when_ms: int) -> None:
        self.expires[key] = when_ms
        heapq.heappush(self.heap, (when_ms, key))
        if len(self.heap) > 2 * len(self.expires) + 1024:
            self.heap = [(w, k) for k, w in self.expires.items()]
            heapq.heapify(self.heap)
        if self.watched or self.tracked is not None:
            self.touch(key)

    def persist(self, key: bytes) -> bool:
        if self.expires.pop(key, None) is None:
            return False
        if self.watched or self.tracked is not None:
            self.touch(key)
        return True

    def touch(self, key: bytes, by_command: bool = True) -> None:
        """signalModifiedKey: WATCH and client-side caching see the change
        (by_command False: the key expired)."""
        ws = self.watched.get(key)
        if ws:
            for w in ws:
                w.watch_touched = True
        if self.tracked is not None:
            self.tracked(key, by_command)

    def touch_all(self, replaced_with: "Database | None" = None) -> None:
        """Before FLUSHDB/FLUSHALL (replaced_with None) or SWAPDB empties this
        database: touch the watched keys that exist here or in replaced_with,
        as Redis's touchAllWatchedKeysInDb (watchers have an `expired` flag:
        the key was already expired when WATCHed)."""
        for key, ws in self.watched.items():
            slot = keyslot(key)
            here = key in self.slots[slot]
            there = replaced_with is not None and key in replaced_with.slots[slot]
            if not (here or there):
                continue
            for w in ws:
                if w.expired:
                    if not there:
                        w.expired = False     # stale key deleted: no logical change
                        continue
                    if replaced_with.is_expired(key):
                        continue              # stale key replaced by a stale key
                    w.expired = False
                elif not here and replaced_with.is_expired(key):
                    w.expired = True          # missing key replaced by a stale key
                    continue
                w.watch_touched = True

    def flush(self, lazy: bool = False) -> int:
        """FLUSHDB: every key goes (WATCH and tracking are told); lazy
        (ASYNC): the old data is freed in pieces by the freer."""
        n = self.clear(lazy)
        if self.ks.on_flush is not None:
            self.ks.on_flush()
        return n

    def clear(self, lazy: bool = False) -> int:
        n = self.size()
        if self.watched:
            self.touch_all()
        if lazy and n:
            # emptyDbAsync: fresh containers here, the old ones to the freer
            old = self.slots, self.expires, self.heap
            self.slots = [{} for _ in range(SLOTS)]
            self.expires = {}
            self.heap = []
            self.ks.freer.free_all(*old, n)
            del old
        else:
            for d in self.slots:
                if d:
                    d.clear()
            self.expires.clear()
            self.heap.clear()
        self.raw.clear()
        if self.clock is not None:
            self.clock.clear()
        self.signal_all()
        return n

    def swap_clocks(self, other: "Database") -> None:
        """The clocks go with the slots they describe (after the slots were
        swapped with other's)."""
        if self.clock is not None and other.clock is not None:
            self.clock, other.clock = other.clock, self.clock
            self.clock.db = self
            other.clock.db = other
        elif self.clock is not None:
            self.clock.clear()         # the keys here have no runs: default clock

    def signal_all(self) -> None:
        """Every key with waiters may have changed (FLUSHDB, SWAPDB)."""
        for key in list(self.blocking_keys):
            self.ks.on_key_ready(self, key)

    def flush_slot(self, slot: int) -> int:
        d = self.slots[slot]
        n = len(d)
        for k in list(d):
            self.delete(k)
        return n

    def _expire(self, key: bytes) -> None:
        slot = keyslot(key)
        d = self.slots[slot]
        if key in d:
            if self.clock is not None:
                self.clock.forget(key, slot, d)
            if self.ks.lazy_expire:        # lazyfree-lazy-expire
                v = d.pop(key)
                self.ks.freer.free(v)
                del v
            else:
                del d[key]
        self.expires.pop(key, None)
        self.raw.discard(key)
        self.ks.expired_keys += 1
        if self.watched or self.tracked is not None:
            self.touch(key, False)
        if self.blocking_keys and key in self.blocking_keys:
            self.ks.on_key_ready(self, key)
        cb = self.ks.on_expire
        if cb is not None:
            cb(self, key)

    def active_expire(self, deadline: float) -> int:
        """Delete expired keys until none is due or perf_counter() passes deadline."""
        heap = self.heap
        expires = self.expires
        now = self.ks.now
        n = 0
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if expires.get(key) == when:
                self._expire(key)
                n += 1
                if not n & 15 and time.perf_counter() > deadline:
                    break
        return n

    def swap(self, other: "Database") -> None:
        if self.watched:
            self.touch_all(other)
        if other.watched:
            other.touch_all(self)
        self.slots, other.slots = other.slots, self.slots
        self.expires, other.expires = other.expires, self.expires
        self.heap, other.heap = other.heap, self.heap
        self.raw, other.raw = other.raw, self.raw
        self.swap_clocks(other)
        # waiters stay with their database number: offer them the new data
        self.signal_all()
        other.signal_all()


class HookedDatabase(Database):
    """A Database that keeps access clocks and reports new keys.

    Same layout as Database (a live database switches class in place); only
    the methods that see accesses and key creation are overridden, so a
    plain Database pays nothing for these features."""

    __slots__ = ()

    def get(self, key: bytes):
        # Database.get inlined (this is every read's path), then the access
        v = self.slots[keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383].get(key)
        if v is None:
            return None
        ks = self.ks
        if self.expires and key in self.expires and self.expires[key] <= ks.now:
            if ks.expire_on_read:
                v = None
                self._expire(key)
            return None
        clock = self.clock
        if clock is not None and not ks.frozen:
            ks.last_lookup = key
            if ks.lfu:
                ks.access(clock, key)
            else:
                clock[key] = ks.lru_clock
        return v

    def slot_dict(self, key: bytes) -> dict:
        # Database.slot_dict and, for LRU, the access written out (INCR's path)
        d = self.slots[keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383]
        clock = self.clock
        if clock is not None and key in d:
            ks = self.ks
            if not ks.frozen:
                ks.last_lookup = key
                if ks.lfu:
                    ks.access(clock, key)
                else:
                    clock[key] = ks.lru_clock
        return d

    def set(self, key: bytes, value, keepttl: bool = False) -> None:
        # Database.set inlined, knowing whether the key is new
        ks = self.ks
        slot = keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383
        d = self.slots[slot]
        if type(value) is bytes and len(value) <= SHARE_MAX_LEN:
            # an equal small string already stored is used instead (one
            # probe of the direct-mapped table; a miss takes the slot)
            i = hash(value) & (SHARE_SLOTS - 1)
            old = _shared[i]
            if old == value:
                value = old
            else:
                _shared[i] = value
        if self.expires:
            when = self.expires.get(key)
            if when is not None:
                if when <= ks.now and ks.expire_on_read:
                    self._expire(key)
                elif not keepttl:
                    del self.expires[key]
        new = key not in d
        d[key] = value
        if self.watched or self.tracked is not None:
            self.touch(key)
        if self.raw:
            self.raw.discard(key)
        if self.blocking_keys and key in self.blocking_keys:
            ks.on_key_ready(self, key)
        clock = self.clock
        if clock is not None:
            if new:
                c = ks.new_clock() if ks.lfu else ks.lru_clock
                if clock.last[slot] != c:
                    clock.created(key, slot, d, c)
            elif ks.lfu:
                # dbOverwrite keeps the counter; a write without a lookup
                # before it (plain SET, MSET) counts as the access
                if ks.last_lookup is not key and not ks.frozen:
                    ks.access(clock, key)
            else:
                clock[key] = ks.lru_clock
        ks.last_lookup = None
        if new and ks.on_new is not None:
            ks.on_new(self, key)

    def add_keys(self, slot: int, keys: list, values: list) -> int:
        ks = self.ks
        clock = self.clock
        d = self.slots[slot]
        if (self.watched or self.tracked is not None or self.blocking_keys
                or clock is None or ks.lfu or ks.on_new is not None):
            return self._add_each(d, keys, values)
        # what set() does for a new key then, without a call per key (no
        # TTL can be there: a key's TTL goes with it)
        lru = ks.lru_clock
        last = clock.last
        size = start = len(d)
        setdefault = d.setdefault
        for key, value in zip(keys, _share(values)):
            setdefault(key, value)
            if len(d) == size:
                break
            size += 1
            if last[slot] != lru:
                clock.created(key, slot, d, lru)
        if self.raw:
            self.raw.difference_update(keys[:size - start])
        ks.last_lookup = None
        return size - start

    def set_pairs(self, argv: list, start: int = 1) -> None:
        ks = self.ks
        clock = self.clock
        if (self.expires or self.watched or self.tracked is not None or self.raw
                or self.blocking_keys or clock is None or ks.lfu or ks.on_new is not None):
            for i in range(start, len(argv), 2):
                self.set(argv[i], argv[i + 1])
            return
        # the common case (MSET: no TTLs, watchers, waiters or new-key
        # hook, LRU clocks) without a call per pair: what set() does then
        slots = self.slots
        lru = ks.lru_clock
        last = clock.last
        for key, value in zip(argv[start::2], _share(argv[start + 1::2])):
            slot = keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383
            d = slots[slot]
            if key in d:
                d[key] = value
                clock[key] = lru
            else:
                d[key] = value
                if last[slot] != lru:
                    clock.created(key, slot, d, lru)
        ks.last_lookup = None


class Keyspace:
    """All databases, the cached clock and keyspace-wide counters."""

    def __init__(self, databases: int = 16) -> None:
        self.now = now_ms()
        self.expire_on_read = True     # replicas wait for the primary's DEL
        self.on_expire: Callable[[Database, bytes], None] | None = None
        # (db, key) -> None: a key clients are blocked on changed (pynode/blocking.py)
        self.on_key_ready: Callable[[Database, bytes], None] = lambda db, key: None
        self.expired_keys = 0
        # big deleted values freed in pieces (storage/lazyfree.py), and when
        from storage.lazyfree import Freer
        self.freer = Freer()
        self.lazy_server_del = False   # lazyfree-lazy-server-del
        self.lazy_expire = False       # lazyfree-lazy-expire
        self.on_modified: Callable[[bytes, bool], None] | None = None   # set_tracking
        self.on_flush: Callable[[], None] | None = None
        # access clocks and new-key hook (configure_hooks)
        self.db_class = Database
        self.on_new: Callable[[Database, bytes], None] | None = None
        self.tracking = False
        self.lfu = False
        self.lfu_log_factor = 10
        self.lfu_decay_time = 1
        self.last_lookup = None
        # lookups leave the clocks alone while a child writes a snapshot
        # (Redis: no copy-on-write of every read object)
        self.frozen = False
        self.lru_clock = 0             # LRU clock: seconds & LRU_CLOCK_MAX
        self.lfu_minutes = 0           # LFU clock: minutes & 65535
        self.base_lru = 0              # the clock of keys that have no entry
        self.base_minutes = 0
        self._lfu_ints: dict = {}
        self.update_clock()
        self.dbs: list[Database | None] = [None] * databases

    def db(self, i: int) -> Database:
        d = self.dbs[i]
        if d is None:
            d = self.dbs[i] = self.db_class(self, i)
            if self.tracking:
                d.clock = Clocks(d)
        return d

    def tick(self) -> int:
        self.now = now_ms()
        self.update_clock()
        return self.now

    # ------------------------------------------------------------ access clocks
    def update_clock(self) -> None:
        """Refresh the cached LRU/LFU clocks from self.now (cron, tests)."""
        sec = self.now // 1000
        lru = sec & LRU_CLOCK_MAX
        if lru != self.lru_clock:
            self.lru_clock = lru
        minutes = (sec // 60) & 65535
        if minutes != self.lfu_minutes:
            self.lfu_minutes = minutes
            self._lfu_ints = {}

    def configure_hooks(self, tracking: bool, lfu: bool,
                        on_new: "Callable[[Database, bytes], None] | None") -> None:
        """Keep access clocks (tracking; interpreted as LFU when lfu) and/or
        report new keys (on_new); databases switch class accordingly."""
        self.lfu = lfu
        self.on_new = on_new
        if tracking and not self.tracking:
            self.update_clock()
            self.base_lru = self.lru_clock
            self.base_minutes = self.lfu_minutes
        self.tracking = tracking
        self.db_class = HookedDatabase if (tracking or on_new is not None) else Database
        for d in self.dbs:
            if d is None:
                continue
            d.__class__ = self.db_class
            if not tracking:
                d.clock = None
            elif d.clock is None:
                d.clock = Clocks(d)

    def default_clock(self) -> int:
        """The clock of a key with no entry (it existed before tracking began)."""
        if self.lfu:
            return (self.base_minutes << 8) | LFU_INIT_VAL
        return self.base_lru

    def new_clock(self) -> int:
        """createObject(): LRU now, or LFU (now, LFU_INIT_VAL)."""
        if self.lfu:
            v = (self.lfu_minutes << 8) | LFU_INIT_VAL
            return self._lfu_ints.setdefault(v, v)
        return self.lru_clock

    def lfu_decr(self, v: int) -> int:
        """LFUDecrAndReturn: the counter after the decay since its last access."""
        ldt = v >> 8
        counter = v & 255
        if self.lfu_decay_time:
            now = self.lfu_minutes
            elapsed = now - ldt if now >= ldt else 65535 - ldt + now
            periods = elapsed // self.lfu_decay_time
            if periods:
                counter = 0 if periods > counter else counter - periods
        return counter

    def access(self, clock: dict, key: bytes) -> None:
        """A lookup touched key (updateLFU, or the LRU clock)."""
        if self.lfu:
            v = clock.get(key)
            counter = self.lfu_decr(self.default_clock() if v is None else v)
            if counter < 255:
                base = counter - LFU_INIT_VAL
                if base < 0:
                    base = 0
                if random.random() < 1.0 / (base * self.lfu_log_factor + 1):
                    counter += 1
            v = (self.lfu_minutes << 8) | counter
            clock[key] = self._lfu_ints.setdefault(v, v)
        else:
            clock[key] = self.lru_clock

    def idle_ms(self, v: int) -> int:
        """estimateObjectIdleTime for a stored LRU clock."""
        now = self.lru_clock
        if now >= v:
            return (now - v) * 1000
        return (now + (LRU_CLOCK_MAX - v)) * 1000

    def active_expire(self, budget_s: float) -> int:
        self.tick()
        if not self.expire_on_read:
            return 0                   # a replica waits for the primary's DEL
        deadline = time.perf_counter() + budget_s
        n = 0
        for d in self.dbs:
            if d is not None and d.heap:
                n += d.active_expire(deadline)
        return n

    def check_invariants(self) -> None:
        for db in self.dbs:
            if db is not None:
                db.check_invariants()

    def take_contents(self, fresh: "Keyspace") -> None:
        """Move the databases of `fresh` into this keyspace (the one the
        server, clients and hooks hold): DEBUG LOADAOF's replayed dataset."""
        for i in range(len(self.dbs)):
            if self.dbs[i] is None and fresh.dbs[i] is None:
                continue
            da = self.db(i)
            db = fresh.db(i)
            da.flush()
            da.slots, db.slots = db.slots, da.slots
            da.expires, db.expires = db.expires, da.expires
            da.heap, db.heap = db.heap, da.heap
            da.swap_clocks(db)

    def flushall(self, lazy: bool = False) -> int:
        """Every database emptied; lazy (ASYNC): freed in pieces."""
        n = sum(d.clear(lazy) for d in self.dbs if d is not None)
        if self.on_flush is not None:
            self.on_flush()
        return n

    def set_tracking(self, on_modified: "Callable[[bytes, bool], None] | None",
                     on_flush: "Callable[[], None] | None") -> None:
        """Client-side caching hooks: every modified key (db.tracked) and
        every flush; None turns them off."""
        self.on_modified = on_modified
        self.on_flush = on_flush
        for d in self.dbs:
            if d is not None:
                d.tracked = on_modified
