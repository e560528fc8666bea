"""Big values freed in pieces (storage/lazyfree.py, pynode/lazyfree.py).

In process: each type is taken apart completely over several steps, a value
still held elsewhere is left whole, a flushed database is freed in pieces and
counted by its keys. Against redis-server 7.0: INFO's lazyfree_pending_objects
and lazyfreed_objects after UNLINK, DEL with lazyfree-lazy-user-del, FLUSHALL /
FLUSHDB ASYNC or with lazyfree-lazy-user-flush, lazyfree-lazy-server-del,
-expire, CONFIG RESETSTAT. On a pynode process: a big list, sorted set, hash and
set unlinked while a client PINGs (the worst answer is printed, not asserted),
the key is gone at once, a new key of the same name is its own, FLUSHALL
ASYNC then writes, used_memory goes down.

PYNODE_LAZYFREE_N sets the size of the big values (default 100000; the
figures in docs/benchmarks.md are from 1000000).
"""

from __future__ import annotations

import os
import time

import pytest
import redis

from storage.hashes import Hash
from storage.keyspace import Keyspace
from storage.lazyfree import LAZYFREE_THRESHOLD, _tear, free_effort
from storage.lists import QuickList
from storage.sets import Set
from storage.streams import Consumer, Group, Stream
from storage.zsets import ZSet
from tests.bench_cluster import Prober
from tests.helpers import Proc, wait_until

N = int(os.environ.get("PYNODE_LAZYFREE_N", "100000"))


def _big_values(n: int) -> dict:
    ql = QuickList()
    for i in range(n):
        ql.push_tail(b"e%d" % i)
    z = ZSet()
    for i in range(n):
        z.insert(b"m%d" % i, i / 7.0)
    h = Hash()
    h.encoding = "hashtable"
    for i in range(n):
        h[b"f%d" % i] = b"v%d" % i
    s = Set()
    for i in range(n):
        s.add(b"m%d" % i)
    x = Stream()
    for i in range(1, n // 10):
        x.add(i << 64, [b"f", b"v%d" % i])
    return {b"l": ql, b"z": z, b"h": h, b"s": s, b"x": x}


def _keyspace():
    """A keyspace whose freer waits for steps (as on the event loop)."""
    ks = Keyspace(16)
    woke = []
    ks.freer.on_work = lambda: woke.append(1)
    return ks, woke


def _steps(freer) -> int:
    n = 0
    while freer.step(time.perf_counter() + 0.0005):
        n += 1
        assert n < 100000
    return n


def test_each_type_taken_apart_over_steps():
    ks, woke = _keyspace()
    db = ks.db(0)
    vals = _big_values(20000)
    # Redis counts a value whose free effort is above 64 (here the sorted
    # set, hash and set; the list's 20 nodes and the stream's 20 are not)
    counted = sum(free_effort(v) > LAZYFREE_THRESHOLD for v in vals.values())
    assert counted == 3
    for k in list(vals):
        db.set(k, vals.pop(k))           # only the keyspace holds them now
    for k in (b"l", b"z", b"h", b"s", b"x"):
        assert db.delete(k, lazy=True)
        assert db.get(k) is None         # gone at once
    assert woke == [1]                   # one wake-up for the queue
    assert len(ks.freer.jobs) == 5       # all five wait for the steps
    assert ks.freer.pending == counted and ks.freer.freed == 0
    db.set(b"l", b"new")                 # a new key of the same name is its own
    assert _steps(ks.freer) > 5          # in pieces, not in one go
    assert ks.freer.pending == 0 and ks.freer.freed == counted
    assert db.get(b"l") == b"new"
    ks.freer.reset_stats()
    assert ks.freer.freed == 0


def test_values_held_elsewhere_left_whole():
    ks, _ = _keyspace()
    db = ks.db(0)
    vals = _big_values(5000)
    for k, v in vals.items():
        db.set(k, v)
    del v
    lens = {k: len(v) for k, v in vals.items()}
    for k in vals:
        db.delete(k, lazy=True)          # `vals` holds them still
    assert not ks.freer.jobs and ks.freer.pending == 0
    assert {k: len(v) for k, v in vals.items()} == lens


def test_values_taken_apart_completely():
    """Each piece of work frees a bounded part; at the end nothing is left."""
    vals = _big_values(5000)
    g = Group(0, 0)
    g.pel[1] = b"nack"
    g.consumers[b"c"] = Consumer(b"c", 0)
    g.consumers[b"c"].pel[1] = b"nack"
    vals[b"x"].groups = {b"g": g}
    for v in vals.values():
        pieces = sum(1 for _ in _tear(v))
        assert pieces >= 3 and len(v) == 0
    assert not vals[b"l"].nodes and not vals[b"l"].sizes
    assert not vals[b"z"].scores and not vals[b"z"].sl._lists and len(vals[b"z"].sl) == 0
    assert not vals[b"s"].arr
    assert not vals[b"x"].nodes and not vals[b"x"].groups and not g.pel and not g.consumers


def test_small_values_freed_at_once_and_effort_as_redis():
    ks, woke = _keyspace()
    db = ks.db(0)
    s = Set()
    for i in range(LAZYFREE_THRESHOLD):
        s.add(b"m%d" % i)
    s.encoding = "hashtable"
    db.set(b"s", s)
    del s
    db.delete(b"s", lazy=True)
    assert not ks.freer.jobs and ks.freer.pending == 0
    db.set(b"t", b"x" * 100000)
    db.delete(b"t", lazy=True)           # a string is one allocation
    assert not ks.freer.jobs and not woke
    h = Hash({b"f%d" % i: b"v" for i in range(100)})
    assert free_effort(h) == 1           # listpack: one allocation
    h.encoding = "hashtable"
    assert free_effort(h) == 100
    ql = QuickList()
    assert free_effort(ql) == 0


def test_flush_in_pieces_counted_by_keys():
    ks, woke = _keyspace()
    for dbid in (0, 3):
        db = ks.db(dbid)
        for i in range(30000):
            db.set(b"k%d" % i, b"v")
        db.set_expire(b"k1", 10 ** 15)
    big = _big_values(3000)
    ks.db(0).set(b"big", big.pop(b"z"))
    big.clear()
    assert ks.flushall(lazy=True) == 60001
    assert ks.freer.pending == 60001 and woke == [1]
    assert ks.db(0).size() == 0 and ks.db(3).size() == 0 and not ks.db(0).expires
    ks.db(0).set(b"k1", b"after")        # writes right after the flush
    assert _steps(ks.freer) > 2
    assert ks.freer.pending == 0 and ks.freer.freed == 60001
    assert ks.db(0).get(b"k1") == b"after" and ks.db(0).get_expire(b"k1") == -1
    ks.check_invariants()


# ------------------------------------------------------------ against redis-server

def _lazy_fields(r) -> tuple:
    wait_until(lambda: r.info("memory")["lazyfree_pending_objects"] == 0, 30,
               "lazyfree_pending_objects to reach 0")
    m = r.info("memory")
    return m["lazyfree_pending_objects"], m["lazyfreed_objects"]


def _script(r) -> list:
    """Steps whose lazyfree counters and replies are compared."""
    out = []

    def fill(key, kind, n):
        if kind == "list":
            for i in range(0, n, 1000):
                r.rpush(key, *[b"element-%08d" % j for j in range(i, min(n, i + 1000))])
        elif kind == "set":
            r.sadd(key, *[b"m%d" % j for j in range(n)])
        elif kind == "zset":
            r.zadd(key, {b"m%d" % j: j for j in range(n)})
        elif kind == "hash":
            r.hset(key, mapping={b"f%d" % j: b"v" for j in range(n)})

    def step(name, *cmd):
        out.append((name, r.execute_command(*cmd), _lazy_fields(r)))

    fill("l", "list", 100000)            # many quicklist nodes: freed lazily
    step("unlink list", "UNLINK", "l")
    fill("l", "list", 100)               # one node: at once
    step("unlink small list", "UNLINK", "l")
    fill("s", "set", 65)
    step("unlink set of 65", "UNLINK", "s")
    fill("s", "set", 64)
    step("unlink set of 64", "UNLINK", "s")
    fill("z", "zset", 200)
    fill("h", "hash", 1000)
    step("del without lazy-user-del", "DEL", "z", "h")
    r.config_set("lazyfree-lazy-user-del", "yes")
    fill("z", "zset", 200)
    fill("h", "hash", 1000)
    step("del with lazy-user-del", "DEL", "z", "h", "nokey")
    r.config_set("lazyfree-lazy-user-del", "no")
    for i in range(50):
        r.set("k%d" % i, i)
    step("flushall async", "FLUSHALL", "ASYNC")
    step("flushall async, empty", "FLUSHALL", "ASYNC")
    for i in range(30):
        r.set("k%d" % i, i)
    step("flushdb sync", "FLUSHDB", "SYNC")
    r.config_set("lazyfree-lazy-user-flush", "yes")
    for i in range(20):
        r.set("k%d" % i, i)
    step("flushdb with lazy-user-flush", "FLUSHDB")
    r.config_set("lazyfree-lazy-user-flush", "no")
    r.config_set("lazyfree-lazy-server-del", "yes")
    fill("a", "hash", 1000)
    r.set("b", "x")
    step("rename over a big hash (server-del)", "RENAME", "b", "a")
    r.delete("a")
    fill("a", "hash", 1000)
    step("rename a big hash away (not freed)", "RENAME", "a", "c")
    fill("d", "set", 1000)
    step("sunionstore over a big set", "SUNIONSTORE", "d", "nokey")
    r.config_set("lazyfree-lazy-server-del", "no")
    r.config_set("lazyfree-lazy-expire", "yes")
    fill("e", "zset", 500)
    r.pexpire("e", 1)
    time.sleep(0.05)
    step("lazy expiry on read", "EXISTS", "e")
    r.config_set("lazyfree-lazy-expire", "no")
    step("resetstat", "CONFIG", "RESETSTAT")
    for bad in (("FLUSHALL", "NOW"), ("FLUSHDB", "ASYNC", "SYNC")):
        try:
            r.execute_command(*bad)
            out.append((bad, "no error"))
        except redis.ResponseError as e:
            out.append((bad, str(e)))
    return out


def test_counters_match_redis():
    with Proc(redis_server=True) as theirs, Proc() as ours:
        want = _script(theirs.client())
        got = _script(ours.client())
        assert got == want


# ------------------------------------------------------------ on a pynode process

def _fill(r, kind: str, key: str, n: int) -> None:
    p = r.pipeline(transaction=False)
    for i in range(0, n, 10000):
        j = range(i, min(n, i + 10000))
        if kind == "list":
            p.rpush(key, *[b"e%d" % k for k in j])
        elif kind == "zset":
            p.zadd(key, {b"m%d" % k: k / 7 for k in j})
        elif kind == "hash":
            p.hset(key, mapping={b"f%d" % k: b"v%d" % k for k in j})
        else:
            p.sadd(key, *[b"m%d" % k for k in j])
    p.execute()


@pytest.mark.parametrize("kind", ["list", "zset", "hash", "set"])
def test_unlink_big_value_keeps_serving(kind):
    with Proc(check_invariants=False) as p:
        r = p.client()
        _fill(r, kind, "big", N)
        _fill(r, "list", "other", 1000)
        used0 = r.info("memory")["used_memory"]
        with Prober(p.port) as probe:
            time.sleep(0.05)
            t0 = time.perf_counter()
            pipe = r.pipeline(transaction=False)
            pipe.unlink("big").exists("big").set("big", "new").get("big")
            pipe.info("memory")
            n, exists, _, new, mem = pipe.execute()
            assert (n, exists, new) == (1, 0, b"new")
            wait_until(lambda: r.info("memory")["lazyfree_pending_objects"] == 0, 60,
                       "the freer to finish")
            took = time.perf_counter() - t0
        m = r.info("memory")
        assert m["lazyfreed_objects"] == 1 and mem["lazyfree_pending_objects"] <= 1
        assert r.get("big") == b"new" and r.llen("other") == 1000
        assert m["used_memory"] < used0 - N * 20, (used0, m["used_memory"])
        print("\nUNLINK of a %d-element %s: freed in %.0f ms, worst PING %.1f ms,"
              " used_memory %.1f -> %.1f MB"
              % (N, kind, took * 1000, probe.worst * 1000, used0 / 1e6,
                 m["used_memory"] / 1e6))


def test_flushall_async_then_writes():
    with Proc(check_invariants=False) as p:
        r = p.client()
        _fill(r, "zset", "z", N)
        pipe = r.pipeline(transaction=False)
        for i in range(20000):
            pipe.set("k%d" % i, i)
        pipe.execute()
        pipe = r.pipeline(transaction=False)
        pipe.flushall(asynchronous=True).dbsize().set("k1", "after").zadd("z", {"a": 1})
        pipe.info("memory")
        _, size, _, added, mem = pipe.execute()
        assert (size, added) == (0, 1)
        assert mem["lazyfree_pending_objects"] in (0, 20001)
        wait_until(lambda: r.info("memory")["lazyfree_pending_objects"] == 0, 60,
                   "the freer to finish")
        assert r.info("memory")["lazyfreed_objects"] == 20001
        assert r.get("k1") == b"after" and r.zrange("z", 0, -1) == [b"a"]
        assert r.dbsize() == 2


def test_huge_string_pages_released_in_pieces():
    ks, woke = _keyspace()
    db = ks.db(0)
    db.set(b"s", bytes(100 << 20))
    assert db.delete(b"s", lazy=True)
    assert woke == [1] and ks.freer.pending == 0     # Redis does not count a string
    assert len(ks.freer.jobs) == 1
    _steps(ks.freer)
    assert not ks.freer.jobs and ks.freer.freed == 0
    v = bytearray(80 << 20)
    v[:5], v[-5:] = b"first", b"last!"
    s = bytes(v)
    del v
    assert sum(1 for _ in _tear(s)) >= 8             # in pieces of 8 MiB
    # the ends of the buffer (beside malloc's bookkeeping) stay as they were
    assert s[:5] == b"first" and s[-5:] == b"last!" and len(s) == 80 << 20


def test_a_failing_piece_does_not_stall_the_queue():
    ks, _ = _keyspace()

    def broken():
        yield
        raise RuntimeError("a shape the pieces do not know")

    ks.freer._queue(broken(), 1)
    db = ks.db(0)
    db.set(b"z", _big_values(2000)[b"z"])
    db.delete(b"z", lazy=True)
    _steps(ks.freer)
    assert ks.freer.errors == 1 and ks.freer.pending == 0 and ks.freer.freed == 2


@pytest.mark.parametrize("redis_server", [False, True], ids=["pynode", "redis"])
def test_replica_lazy_flush_counts_the_old_keys(redis_server):
    """replica-lazy-flush yes: a full sync frees the replica's old data in the
    background, counted by its keys (as redis-server 7.0)."""
    with Proc(redis_server=redis_server) as primary, \
            Proc(["--replica-lazy-flush", "yes"], redis_server=redis_server) as replica:
        p, r = primary.client(), replica.client()
        p.set("from-primary", "1")
        pipe = r.pipeline(transaction=False)
        for i in range(300):
            pipe.set("old%d" % i, i)
        pipe.execute()
        r.replicaof("127.0.0.1", primary.port)
        wait_until(lambda: r.info("replication")["master_link_status"] == "up", 30,
                   "the replica's sync")
        assert _lazy_fields(r) == (0, 300)
        assert r.dbsize() == 1 and r.get("from-primary") == b"1"


def _migrate_counts(redis_server: bool) -> list:
    """MIGRATE deletes what it moved with dbDelete: lazyfree-lazy-server-del
    frees a big value lazily on the source, one key alone or in a batch."""
    with Proc(redis_server=redis_server) as src, Proc(redis_server=redis_server) as dst:
        r = src.client()
        r.config_set("lazyfree-lazy-server-del", "yes")
        out = []
        for keys in (["a"], ["b", "c", "small"]):
            for k in keys:
                _fill(r, "small" if k == "small" else "hash", k, 10 if k == "small" else 1000)
            reply = r.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000,
                                      "KEYS", *keys)
            out.append((keys, reply, _lazy_fields(r), r.exists(*keys),
                        dst.client().exists(*keys)))
        r.config_set("lazyfree-lazy-server-del", "no")
        _fill(r, "hash", "d", 1000)
        r.execute_command("MIGRATE", "127.0.0.1", dst.port, "d", 0, 5000)
        out.append(_lazy_fields(r))
        return out


def test_migrate_frees_lazily_with_server_del():
    want = _migrate_counts(redis_server=True)
    assert want[-1] == (0, 3)       # the last MIGRATE, not lazy, adds nothing
    assert _migrate_counts(redis_server=False) == want
