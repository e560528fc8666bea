"""storage.keyspace.Clocks: access clocks kept as creation runs plus entries
for accessed keys give every key the clock a per-key dict would."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from storage import keyspace
from storage.keyspace import Keyspace
from storage.slots import keyslot


def _keyspace() -> Keyspace:
    ks = Keyspace(databases=2)
    ks.now = 1_000_000
    ks.update_clock()
    ks.configure_hooks(True, False, None)
    return ks


# keys of one slot (hash tag) and of two others, so that runs meet the limit
KEYS = [b"{t}%d" % i for i in range(6)] + [b"a", b"b", b"c"]
SLOTS_USED = {keyslot(k) for k in KEYS}


class ClocksMachine(RuleBasedStateMachine):
    """Creations, overwrites, lookups, deletions, expiry, RENAME-like puts,
    SWAPDB and flushes over seconds: db.clock.get(key) is always the clock
    of the key's creation or last access, as a plain dict would hold it."""

    def __init__(self) -> None:
        super().__init__()
        self.ks = _keyspace()
        self.model: list[dict[bytes, int]] = [{}, {}]     # key -> expected clock

    def db(self, i: int):
        return self.ks.db(i)

    @rule(i=st.integers(0, 1), k=st.sampled_from(KEYS), v=st.binary(max_size=3))
    def set(self, i, k, v):
        self.db(i).set(k, v)
        self.model[i][k] = self.ks.lru_clock

    @rule(i=st.integers(0, 1),
          pairs=st.lists(st.tuples(st.sampled_from(KEYS), st.binary(max_size=3)),
                         min_size=1, max_size=4))
    def mset(self, i, pairs):
        self.db(i).set_pairs([b"MSET"] + [x for kv in pairs for x in kv])
        for k, _ in pairs:
            self.model[i][k] = self.ks.lru_clock

    @rule(i=st.integers(0, 1), k=st.sampled_from(KEYS))
    def get(self, i, k):
        v = self.db(i).get(k)
        assert (v is not None) == (k in self.model[i])
        if v is not None:
            self.model[i][k] = self.ks.lru_clock

    @rule(i=st.integers(0, 1), k=st.sampled_from(KEYS))
    def delete(self, i, k):
        assert self.db(i).delete(k) == (self.model[i].pop(k, None) is not None)

    @rule(i=st.integers(0, 1), k=st.sampled_from(KEYS))
    def expire_now(self, i, k):
        db = self.db(i)
        if k in self.model[i]:
            db.set_expire(k, self.ks.now)
            assert db.active_expire(time.perf_counter() + 60) == 1
            del self.model[i][k]
            assert db.peek(k) is None

    @rule(i=st.integers(0, 1), a=st.sampled_from(KEYS), b=st.sampled_from(KEYS))
    def rename(self, i, a, b):
        db = self.db(i)
        if a not in self.model[i] or a == b:
            return
        clock = db.get_clock(a)
        v = db.peek(a)
        db.delete(a)
        db.delete(b)
        db.put(b, v, clock=clock)
        self.model[i][b] = self.model[i].pop(a)

    @rule()
    def swapdb(self):
        self.db(0).swap(self.db(1))
        self.model.reverse()

    @rule(i=st.integers(0, 1))
    def flush(self, i):
        self.db(i).flush()
        self.model[i].clear()

    @rule(s=st.integers(1, 3))
    def time_passes(self, s):
        self.ks.now += s * 1000
        self.ks.update_clock()

    @invariant()
    def clocks_match(self):
        for i in (0, 1):
            db = self.db(i)
            db.clock.check_invariants()
            live = {k for s in SLOTS_USED for k in db.slots[s]}
            assert live == set(self.model[i])
            for k, want in self.model[i].items():
                assert db.clock.get(k, -1) == want, (k, db.clock.get(k, -1), want)


@pytest.fixture
def small_runs(monkeypatch):
    """A run limit of 3 keys a slot, so the machine crosses it."""
    monkeypatch.setattr(keyspace, "RUN_LIMIT", 3)


def test_clocks_machine(small_runs):
    ClocksMachine.TestCase.settings = settings(
        max_examples=60, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
    ClocksMachine.TestCase().runTest()


def test_created_keys_take_no_entries():
    """Keys created and never looked up cost no per-key clock entry when
    their slot gets more than one a second: one run mark per slot and
    creation second, whatever the number of keys."""
    ks = _keyspace()
    db = ks.db(0)
    keys = [b"{%d}key:%d" % (i % 50, i) for i in range(5000)]
    for k in keys[:2500]:
        db.set(k, b"xxx")
    ks.now += 2000
    ks.update_clock()
    for k in keys[2500:]:
        db.set(k, b"xxx")
    assert len(db.clock) == 0
    slots = {keyslot(k) for k in keys}
    assert len(db.clock.bounds) == 2 * len(slots)
    assert ks.idle_ms(db.clock.get(keys[0])) == 2000
    assert ks.idle_ms(db.clock.get(keys[-1])) == 0
    db.get(keys[0])                                  # an access takes an entry
    assert len(db.clock) == 1 and ks.idle_ms(db.clock.get(keys[0])) == 0
    db.check_invariants()


def test_one_key_a_tick_takes_entries_not_runs():
    """A slot that gets one key per second: each key has an entry (as a
    dict of clocks would), no run is started."""
    ks = _keyspace()
    db = ks.db(0)
    keys = [b"{s}%d" % i for i in range(5)]
    for k in keys:
        db.set(k, b"v")
        ks.now += 1000
        ks.update_clock()
    assert len(db.clock) == 5 and not db.clock.bounds and not db.clock.runs
    assert [ks.idle_ms(db.clock.get(k)) // 1000 for k in keys] == [5, 4, 3, 2, 1]
    db.check_invariants()


def test_deleting_a_run_start_moves_the_run():
    ks = _keyspace()
    db = ks.db(0)
    a, a2, b, c = b"{s}a", b"{s}a2", b"{s}b", b"{s}c"
    db.set(a, b"1")
    db.set(a2, b"1")
    ks.now += 5000
    ks.update_clock()
    db.set(b, b"2")
    db.set(c, b"3")
    assert len(db.clock) == 0
    db.delete(b)                                     # the first key of the second run
    assert db.clock.bounds == {a: ks.lru_clock - 5, c: ks.lru_clock}
    assert ks.idle_ms(db.clock.get(c)) == 0
    assert ks.idle_ms(db.clock.get(a)) == 5000
    db.delete(c)
    assert db.clock.runs == {keyslot(a): [a]}
    db.check_invariants()


def _slot_of_four_seconds():
    """6000 keys of one slot created over four seconds."""
    ks = _keyspace()
    db = ks.db(0)
    keys = [b"{m}%d" % i for i in range(6000)]
    for i, k in enumerate(keys):
        db.set(k, b"x")
        if i % 1500 == 1499:
            ks.now += 1000
            ks.update_clock()
    return ks, db, keys, keyslot(keys[0])


def test_deleting_a_slot_in_creation_order_rebuilds_its_dict():
    """A slot's keys deleted oldest first (a slot's move, FIFO expiry) move a
    run mark every time; the slot dict is rebuilt in place now and then so
    that finding the next key does not walk every hole left before it, and
    the keys left keep their clocks."""
    ks, db, keys, slot = _slot_of_four_seconds()
    d = db.slots[slot]
    seen = set()
    for k in keys[:5900]:
        db.delete(k)
        seen.add(db.clock.moved.get(slot, 0))       # marks moved since a rebuild
    assert 0 in seen                                 # rebuilt at least once
    assert max(seen) < 1000                          # and before holes piled up
    assert list(d) == keys[5900:] and d is db.slots[slot]
    assert {ks.idle_ms(db.clock.get(k)) for k in keys[5900:]} == {1000}
    db.check_invariants()


def test_deleting_a_slot_in_getkeysinslot_order_moves_few_marks():
    """CLUSTER GETKEYSINSLOT gives the newest keys first (as Redis 7.0), so a
    slot moved batch by batch is deleted from the end of its dict: a run
    mark would move only when its run's last key goes (not once per key),
    and the keys left keep their clocks."""
    ks, db, keys, slot = _slot_of_four_seconds()
    assert db.keys_in_slot(slot, 3) == keys[:-4:-1]
    moves = 0
    batch = 0
    while db.count_in_slot(slot) > 100:
        batch += 1
        if batch % 2:
            db.delete_keys(db.keys_in_slot(slot, 100))  # MIGRATE's (drops the holes at the end)
        for k in db.keys_in_slot(slot, 0 if batch % 2 else 100):
            db.delete(k)
        moves = max(moves, db.clock.moved.get(slot, 0))
    assert moves == 0                                # the run marks are in the 100 left
    assert list(db.slots[slot]) == keys[:100]
    assert {ks.idle_ms(db.clock.get(k)) for k in keys[:100]} == {4000}
    db.check_invariants()


def test_delete_keys_drops_keys_ttls_and_clocks():
    """A MIGRATE's batch delete: the keys, their TTLs and their clocks go,
    missing keys are skipped, the keys left keep their clocks."""
    ks, db, keys, slot = _slot_of_four_seconds()
    db.set_expire(keys[-1], ks.now + 60000)
    db.get(keys[-2])                                 # an accessed key: its own entry
    gone = keys[:-4:-1] + keys[:2] + [b"{m}missing", b"other"]
    db.delete_keys(gone)
    assert db.count_in_slot(slot) == 5995 and not any(db.peek(k) for k in gone)
    assert keys[-1] not in db.expires and keys[-2] not in dict.keys(db.clock)
    assert {ks.idle_ms(db.clock.get(k)) for k in keys[2:1500]} == {4000}
    db.check_invariants()


def test_keys_from_before_the_clocks_read_as_the_default():
    ks = Keyspace()
    db = ks.db(0)
    db.set(b"old", b"v")                             # no clocks yet
    ks.now += 7000
    ks.update_clock()
    ks.configure_hooks(True, False, None)
    db.set(b"new", b"v")
    assert db.clock.get(b"old", ks.default_clock()) == ks.default_clock()
    assert db.clock.get(b"new") == ks.lru_clock
    assert db.clock.get(b"missing", -1) == -1


def test_small_values_are_shared():
    ks = _keyspace()
    db = ks.db(0)
    v1 = bytes(bytearray(b"xxx"))
    v2 = bytes(bytearray(b"xxx"))
    assert v1 is not v2
    db.set(b"k1", v1)
    db.set(b"k2", v2)
    assert db.get(b"k1") is db.get(b"k2") == b"xxx"
    big = b"y" * (keyspace.SHARE_MAX_LEN + 1)
    db.set(b"k3", bytes(bytearray(big)))
    db.set(b"k4", bytes(bytearray(big)))
    assert db.get(b"k3") is not db.get(b"k4")


def test_lfu_runs_hold_the_creation_minute():
    """Under LFU a run's clock is (minutes << 8) | LFU_INIT_VAL: a key never
    looked up decays from its creation minute, as its own entry would."""
    ks = _keyspace()
    ks.configure_hooks(True, True, None)
    ks.lfu_decay_time = 1
    db = ks.db(0)
    db.set(b"{s}old", b"v")
    db.set(b"{s}old2", b"v")
    ks.now += 3 * 60_000
    ks.update_clock()
    db.set(b"{s}new", b"v")
    db.set(b"{s}new2", b"v")
    assert len(db.clock) == 0 and len(db.clock.bounds) == 2
    assert ks.lfu_decr(db.clock.get(b"{s}old")) == keyspace.LFU_INIT_VAL - 3
    assert ks.lfu_decr(db.clock.get(b"{s}new")) == keyspace.LFU_INIT_VAL
    db.get(b"{s}old")                    # the access decays, then may count
    assert ks.lfu_decr(db.clock[b"{s}old"]) in (keyspace.LFU_INIT_VAL - 3,
                                                keyspace.LFU_INIT_VAL - 2)
    db.check_invariants()


def test_keys_past_the_run_limit_share_the_last_run():
    """A slot fuller than RUN_LIMIT: a key created with the clock of the
    slot's last run takes no entry and reads that run's clock, wherever it
    is; a key created a tick later takes an entry; deleting the run's keys
    from either end (a slot's move, FIFO expiry) keeps every clock right.
    Keys arrive as RESTOREs of a slot's move (Database.add_keys) and as SETs."""
    ks = _keyspace()
    db = ks.db(0)
    n = keyspace.RUN_LIMIT * 3
    keys = [b"{big}%d" % i for i in range(n)]
    slot = keyslot(keys[0])
    db.add_keys(slot, keys[:n // 2], [b"v"] * (n // 2))
    for k in keys[n // 2:n - 10]:
        db.set(k, b"v")
    assert len(db.clock) == 0 and len(db.clock.bounds) == 1      # one run, no entry
    ks.now += 3000
    ks.update_clock()
    db.add_keys(slot, keys[n - 10:], [b"v"] * 10)
    assert len(db.clock) == 10
    want = {k: 3000 for k in keys[:n - 10]} | {k: 0 for k in keys[n - 10:]}
    assert {k: ks.idle_ms(db.clock.get(k)) for k in keys} == want
    for k in keys[:keyspace.RUN_LIMIT + 5]:          # the oldest first: the mark moves on
        db.delete(k)
        del want[k]
    db.delete_keys(list(reversed(keys))[:20])        # the newest first
    for k in list(reversed(keys))[:20]:
        del want[k]
    assert {k: ks.idle_ms(db.clock.get(k)) for k in want} == want
    db.check_invariants()
