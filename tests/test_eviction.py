"""maxmemory, eviction policies, access clocks (OBJECT IDLETIME/FREQ) and
MEMORY USAGE.

Process tests fill a real pynode past maxmemory under each policy and check
which keys go (hot keys survive LRU/LFU, keys without a TTL survive the
volatile policies, the nearest expiry goes first with volatile-ttl), that
used_memory stays near the limit, and that evictions are counted (INFO),
announced (the "evicted" event) and propagated as DEL/UNLINK to the AOF and
to a replica. The OOM refusals (texts, MULTI/EXEC) and the OBJECT FREQ /
IDLETIME answers are compared with a real redis-server. A hypothesis state
machine checks that the access-clock bookkeeping (a Database switching to
HookedDatabase and back) never loses or leaks keys.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time

import hiredis
import pytest
import redis
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pynode import evict, info as infomod
from storage import values
from storage.keyspace import Database, HookedDatabase
from tests.helpers import Proc
from tests.inproc import InProc, ReplyError

VALUE = b"v" * 300
OOM = "OOM command not allowed when used memory > 'maxmemory'."


def used(c) -> int:
    return int(c.info("memory")["used_memory"])


def fill(c, keys, value=VALUE, ttl=None) -> int:
    """SET every key (pipelined); the number of OOM refusals."""
    errs = 0
    pipe = c.pipeline(transaction=False)
    for i, k in enumerate(keys):
        if ttl is None:
            pipe.set(k, value)
        else:
            pipe.set(k, value, ex=ttl(i))
        if i % 200 == 199:
            errs += sum(isinstance(r, Exception) for r in pipe.execute(raise_on_error=False))
    errs += sum(isinstance(r, Exception) for r in pipe.execute(raise_on_error=False))
    return errs


def oom_refusal(c, prefix: bytes) -> str:
    """SET new keys one by one until one is refused; the refusal's text.  Once a
    pipeline is answered its buffers are freed, which can take used_memory back
    under the limit by a few hundred KB: the keys written here cross it again
    (2000 keys of 300 bytes are far more than that)."""
    for i in range(2000):
        try:
            c.set(prefix + b"%d" % i, VALUE)
        except redis.exceptions.OutOfMemoryError as e:
            return "OOM " + str(e)
    raise AssertionError("2000 more keys were all accepted over maxmemory")


def existing(c, keys) -> set:
    pipe = c.pipeline(transaction=False)
    for k in keys:
        pipe.exists(k)
    return {k for k, n in zip(keys, pipe.execute()) if n}


@pytest.fixture(scope="module")
def shared_node():
    p = Proc(["--enable-debug-command", "yes"]).start()
    yield p
    p.cleanup()


@pytest.fixture
def node(shared_node):
    """The module's pynode, emptied and back to the default memory settings."""
    c = shared_node.client()
    c.config_set("maxmemory", 0)
    c.config_set("maxmemory-policy", "noeviction")
    c.config_set("lazyfree-lazy-eviction", "no")
    c.flushall()
    c.config_resetstat()
    c.close()
    yield shared_node


def limit_to(c, policy: str, extra: int) -> int:
    """maxmemory = used now + extra; returns the limit."""
    limit = used(c) + extra
    c.config_set("maxmemory-policy", policy)
    c.config_set("maxmemory", limit)
    return limit


# ------------------------------------------------------------------ policies

def _assert_near_limit(c, limit):
    u = used(c)
    assert u <= limit * 1.03 + 64 * 1024, (u, limit)


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu"])
def test_allkeys_lru_lfu_keep_hot_keys(node, policy):
    """Fill, then set maxmemory just above: hot keys (recently or often
    read) survive while new writes evict the cold ones."""
    c = node.client()
    c.config_set("maxmemory-policy", policy)
    keys = [b"k:%d" % i for i in range(10000)]
    hot = keys[::5]
    cold = [k for k in keys if k not in set(hot)]
    assert fill(c, keys) == 0
    limit = used(c) + (256 << 10)
    c.config_set("maxmemory", limit)
    time.sleep(2.2)                              # the LRU clock counts seconds
    for _ in range(5 if policy.endswith("lfu") else 1):
        pipe = c.pipeline(transaction=False)
        for k in hot:
            pipe.get(k)
        pipe.execute()
    new = [b"new:%d" % i for i in range(4000)]
    assert fill(c, new) == 0                     # evicts, never refuses
    _assert_near_limit(c, limit)
    st = c.info("stats")
    assert st["evicted_keys"] > 2000
    hot_left = len(existing(c, hot)) / len(hot)
    cold_left = len(existing(c, cold)) / len(cold)
    assert hot_left > 0.9, (hot_left, cold_left)
    assert cold_left < 0.8, (hot_left, cold_left)
    # every key is either there or counted as evicted; the reads above may
    # evict more (eviction runs before any command over the limit, as in
    # Redis), so both figures are read in one transaction
    pipe = c.pipeline(transaction=True)
    pipe.dbsize()
    pipe.info("stats")
    size, after = pipe.execute()
    assert size + after["evicted_keys"] == len(keys + new)


def test_allkeys_random(node):
    c = node.client()
    limit = limit_to(c, "allkeys-random", 4 << 20)
    first = [b"a:%d" % i for i in range(5000)]
    second = [b"b:%d" % i for i in range(10000)]
    assert fill(c, first + second) == 0
    _assert_near_limit(c, limit)
    left_first = len(existing(c, first))
    left_second = len(existing(c, second))
    assert 0 < left_first < len(first) and 0 < left_second < len(second)


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random"])
def test_volatile_policies_only_evict_keys_with_ttl(node, policy):
    c = node.client()
    limit_to(c, policy, 4 << 20)
    persistent = [b"p:%d" % i for i in range(3000)]
    volatile = [b"v:%d" % i for i in range(12000)]
    assert fill(c, persistent) == 0
    assert fill(c, volatile, ttl=lambda i: 10000) == 0
    assert existing(c, persistent) == set(persistent)
    assert len(existing(c, volatile)) < len(volatile)
    assert c.info("stats")["evicted_keys"] > 0
    # once only keys without a TTL are left, writes are refused
    more = [b"q:%d" % i for i in range(20000)]
    errs = fill(c, more)
    assert errs > 0
    assert oom_refusal(c, b"last:") == OOM
    assert existing(c, persistent) == set(persistent)


def test_volatile_ttl_evicts_nearest_expiry_first(node):
    c = node.client()
    c.config_set("maxmemory-policy", "volatile-ttl")
    keys = [b"t:%d" % i for i in range(10000)]
    assert fill(c, keys, ttl=lambda i: 100000 - i) == 0     # later keys expire sooner
    c.config_set("maxmemory", used(c) - (1 << 20))
    c.set("trigger", "x")
    left = existing(c, keys)
    idx_gone = [i for i, k in enumerate(keys) if k not in left]
    assert len(idx_gone) > 1000
    # the evicted ones are mostly among the latest written (nearest expiry)
    assert sum(1 for i in idx_gone if i >= 6000) / len(idx_gone) > 0.8


def test_lowering_maxmemory_evicts_at_once(node):
    c = node.client()
    c.config_set("maxmemory-policy", "allkeys-random")
    keys = [b"k:%d" % i for i in range(8000)]
    assert fill(c, keys) == 0
    warning = "is smaller than the current memory usage"
    warned = node.log().count(warning)
    limit = used(c) - (1 << 20)
    c.config_set("maxmemory", limit)             # no write follows
    deadline = time.monotonic() + 10
    while c.info("stats")["evicted_keys"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert c.dbsize() < len(keys)
    assert node.log().count(warning) == warned + 1


def test_noeviction_refuses_denyoom_only(node):
    c = node.client()
    c.set("before", "1")
    limit_to(c, "noeviction", 3 << 20)
    errs = fill(c, [b"k:%d" % i for i in range(30000)])
    assert errs > 0
    assert oom_refusal(c, b"x:") == OOM
    assert c.get("before") == b"1"               # reads are served
    assert c.delete("before") == 1               # DEL is not denyoom
    assert c.info("stats")["evicted_keys"] == 0
    st = c.info("stats")
    assert st["total_eviction_exceeded_time"] >= st["current_eviction_exceeded_time"] >= 0
    c.flushall()                                 # memory back: writes again
    deadline = time.monotonic() + 5
    while True:
        try:
            c.set("after", "1")
            break
        except redis.ResponseError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert c.get("after") == b"1"


def test_eviction_events_info_and_aof_propagation():
    d = tempfile.mkdtemp(prefix="evict-aof-")
    p = Proc(["--appendonly", "yes", "--appendfsync", "always",
              "--notify-keyspace-events", "Ee"], workdir=d).start()
    try:
        c = p.client()
        sub = p.client().pubsub()
        sub.subscribe("__keyevent@0__:evicted")
        assert sub.get_message(timeout=5)["type"] == "subscribe"
        limit_to(c, "allkeys-random", 3 << 20)
        keys = [b"k:%d" % i for i in range(10000)]
        assert fill(c, keys) == 0
        evicted = []
        while True:             # until quiet (eviction may go on in the background)
            m = sub.get_message(timeout=0.5)
            if m is None:
                break
            if m["type"] == "message":
                evicted.append(m["data"])
        n = c.info("stats")["evicted_keys"]
        assert n > 0
        assert len(evicted) == n
        assert not existing(c, evicted)
        assert c.info("memory")["mem_not_counted_for_evict"] >= 0
        data = b"".join(open(f, "rb").read()
                        for f in glob.glob(os.path.join(d, "appendonlydir", "*.incr.aof")))
        r = hiredis.Reader()
        r.feed(data)
        dels = []
        while True:
            cmd = r.gets()
            if cmd is False:
                break
            if cmd[0] in (b"DEL", b"UNLINK"):
                assert cmd[0] == b"DEL" and len(cmd) == 2
                dels.append(cmd[1])
        assert dels == evicted
        c.config_set("lazyfree-lazy-eviction", "yes")
        fill(c, [b"more:%d" % i for i in range(3000)])
        before = -1
        while c.info("stats")["evicted_keys"] != before:   # background eviction done
            before = c.info("stats")["evicted_keys"]
            time.sleep(0.3)
        data = b"".join(open(f, "rb").read()
                        for f in glob.glob(os.path.join(d, "appendonlydir", "*.incr.aof")))
        assert data.count(b"$6\r\nUNLINK\r\n") == before - n
        c.config_resetstat()
        assert c.info("stats")["evicted_keys"] == 0
        sub.close()
    finally:
        p.cleanup()
        shutil.rmtree(d, ignore_errors=True)


def test_evictions_reach_a_replica():
    prim = Proc().start()
    rep = Proc().start()
    try:
        pc, rc = prim.client(), rep.client()
        rc.replicaof("127.0.0.1", prim.port)
        deadline = time.monotonic() + 20
        while rc.info("replication")["master_link_status"] != "up":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        limit_to(pc, "allkeys-lru", 3 << 20)
        keys = [b"r:%d" % i for i in range(10000)]
        assert fill(pc, keys) == 0
        assert pc.info("stats")["evicted_keys"] > 0
        deadline = time.monotonic() + 20
        while rc.dbsize() != pc.dbsize():
            assert time.monotonic() < deadline, (rc.dbsize(), pc.dbsize())
            time.sleep(0.1)
        assert existing(rc, keys) == existing(pc, keys)
        assert rc.info("stats")["evicted_keys"] == 0   # the replica only follows
    finally:
        prim.cleanup()
        rep.cleanup()


# ------------------------------------------------------------------ against redis-server

def _raw(port: int, cmds) -> list:
    import socket
    from tests.helpers import enc
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        r = hiredis.Reader()
        for cmd in cmds:
            if cmd[0] == "SLEEP":
                time.sleep(cmd[1])
                continue
            s.sendall(enc(*cmd))
            while True:
                v = r.gets()
                if v is not False:
                    break
                r.feed(s.recv(65536))
            out.append(("error", str(v)) if isinstance(v, Exception) else v)
    return out


@pytest.fixture(scope="module")
def pair():
    args = ["--enable-debug-command", "yes"]
    p = Proc(args).start()
    r = Proc(args, redis_server=True).start()
    yield p, r
    p.cleanup()
    r.cleanup()


def _same(pair, cmds):
    """The replies of pynode, equal to redis-server's; OBJECT IDLETIME may
    differ by one second (each server's LRU clock ticks with its own cron)."""
    a = _raw(pair[0].port, cmds)
    b = _raw(pair[1].port, cmds)
    real_cmds = [cmd for cmd in cmds if cmd[0] != "SLEEP"]
    assert len(a) == len(b) == len(real_cmds)
    for cmd, x, y in zip(real_cmds, a, b):
        if cmd[:2] == ("OBJECT", "IDLETIME") and isinstance(x, int):
            assert isinstance(y, int) and abs(x - y) <= 1, (cmd, x, y)
        else:
            assert x == y, (cmd, x, y)
    return a


def test_oom_replies_match_redis(pair):
    cmds = [("FLUSHALL",), ("SET", "a", "1"), ("CONFIG", "SET", "maxmemory-policy", "noeviction"),
            ("CONFIG", "SET", "maxmemory", "1"),
            ("SET", "b", "2"), ("GET", "a"), ("INCR", "a"), ("APPEND", "a", "x"),
            ("PFADD", "h", "x"), ("EXPIRE", "a", "100"), ("PERSIST", "a"), ("TTL", "a"),
            ("MULTI",), ("GET", "a"), ("EXEC",),
            ("MULTI",), ("PING",), ("DISCARD",),
            ("DEL", "a"), ("EXISTS", "a"),
            ("CONFIG", "SET", "maxmemory", "0"),
            ("MULTI",), ("SET", "c", "3"), ("CONFIG", "SET", "maxmemory", "1"),
            ("EXEC",), ("GET", "c"),
            ("CONFIG", "SET", "maxmemory", "0")]
    out = _same(pair, cmds)
    assert ("error", OOM) in out


def test_exec_aborted_by_oom_matches_redis(pair):
    for port in (pair[0].port, pair[1].port):
        import socket
        from tests.helpers import enc
        a = socket.create_connection(("127.0.0.1", port), timeout=10)
        ra = hiredis.Reader()

        def call(sock, reader, *cmd):
            sock.sendall(enc(*cmd))
            while True:
                v = reader.gets()
                if v is not False:
                    return v
                reader.feed(sock.recv(65536))
        assert call(a, ra, "MULTI") == b"OK"
        assert call(a, ra, "SET", "k", "v") == b"QUEUED"
        other = redis.Redis(port=port)
        other.config_set("maxmemory", 1)
        try:
            r = call(a, ra, "EXEC")
            assert str(r) == "EXECABORT Transaction discarded because of: " + OOM
            assert call(a, ra, "GET", "k") is None
        finally:
            other.config_set("maxmemory", 0)
            other.close()
            a.close()


def test_object_freq_and_idletime_match_redis(pair):
    cmds = [
        ("FLUSHALL",),
        ("CONFIG", "SET", "maxmemory", "1000000000"),
        ("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"),
        # log factor 0: every access increments, so the counters show exactly
        # which commands count as an access (and only once)
        ("CONFIG", "SET", "lfu-log-factor", "0"),
        ("SET", "foo", "bar"), ("OBJECT", "FREQ", "foo"),
        ("GET", "foo"), ("OBJECT", "FREQ", "foo"),
        ("SET", "n", "5"), ("INCR", "n"), ("OBJECT", "FREQ", "n"),
        ("SET", "x", "1", "NX"), ("OBJECT", "FREQ", "x"),
        ("SET", "x", "2", "XX"), ("OBJECT", "FREQ", "x"),
        ("MSET", "m", "1"), ("MSET", "m", "2"), ("OBJECT", "FREQ", "m"),
        ("APPEND", "ap", "1"), ("APPEND", "ap", "2"), ("OBJECT", "FREQ", "ap"),
        ("EXISTS", "m"), ("TYPE", "m"), ("TTL", "m"), ("OBJECT", "FREQ", "m"),
        ("GETSET", "m", "3"), ("OBJECT", "FREQ", "m"),
        ("SET", "m", "4", "GET"), ("OBJECT", "FREQ", "m"),
        ("SET", "m", "5", "NX", "GET"), ("OBJECT", "FREQ", "m"),
        ("SETBIT", "bits", "1", "1"), ("SETBIT", "bits", "2", "1"), ("OBJECT", "FREQ", "bits"),
        ("INCRBYFLOAT", "fl", "1"), ("INCRBYFLOAT", "fl", "1"), ("OBJECT", "FREQ", "fl"),
        ("SETEX", "se", "100", "v"), ("SETEX", "se", "100", "w"), ("OBJECT", "FREQ", "se"),
        ("PFADD", "hl", "a"), ("PFADD", "hl", "b"), ("PFCOUNT", "hl"), ("OBJECT", "FREQ", "hl"),
        ("BITOP", "OR", "bits2", "bits", "bits"), ("BITOP", "OR", "bits2", "bits"),
        ("OBJECT", "FREQ", "bits2"), ("OBJECT", "FREQ", "bits"),
        ("EXPIRE", "bits", "100"), ("PERSIST", "bits"), ("OBJECT", "FREQ", "bits"),
        ("DEBUG", "OBJECT", "nokey"),
        ("RENAME", "foo", "foo2"), ("OBJECT", "FREQ", "foo2"),
        ("COPY", "foo2", "foo3"), ("OBJECT", "FREQ", "foo3"),
        ("OBJECT", "FREQ", "nokey"),
        ("OBJECT", "IDLETIME", "foo2"),
        ("OBJECT", "REFCOUNT", "n"),
        ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
        ("OBJECT", "FREQ", "foo2"),
        ("SET", "i", "1"), ("SET", "j", "1"),
        ("SLEEP", 2.3),
        ("OBJECT", "IDLETIME", "i"),
        ("GET", "j"), ("TYPE", "i"), ("EXISTS", "i"), ("TTL", "i"),
        ("OBJECT", "IDLETIME", "i"), ("OBJECT", "IDLETIME", "j"),
        ("TOUCH", "i"), ("OBJECT", "IDLETIME", "i"),
        ("CONFIG", "SET", "lfu-log-factor", "10"),
        ("CONFIG", "SET", "maxmemory", "0"),
        ("CONFIG", "SET", "maxmemory-policy", "noeviction"),
    ]
    out = _same(pair, cmds)
    real_cmds = [cmd for cmd in cmds if cmd[0] != "SLEEP"]
    idle = [x for cmd, x in zip(real_cmds, out)
            if cmd[:2] == ("OBJECT", "IDLETIME") and isinstance(x, int)]
    assert idle[0] >= 2 and idle[1] >= 2 and idle[2] <= 1 and idle[3] <= 1, idle


def test_restore_idletime_and_freq_match_redis(pair):
    payload = _raw(pair[1].port, [("SET", "src", "value"), ("DUMP", "src")])[1]
    cmds = [("FLUSHALL",),
            ("CONFIG", "SET", "maxmemory", "1000000000"),
            ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
            ("RESTORE", "a", "0", payload, "IDLETIME", "1000"),
            ("OBJECT", "IDLETIME", "a"),
            ("RESTORE", "b", "0", payload, "FREQ", "100"),   # ignored under LRU
            ("OBJECT", "IDLETIME", "b"),
            ("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"),
            ("RESTORE", "c", "0", payload, "FREQ", "100"),
            ("OBJECT", "FREQ", "c"),
            ("RESTORE", "d", "0", payload, "IDLETIME", "50"),   # ignored under LFU
            ("OBJECT", "FREQ", "d"),
            ("DUMP", "c"),
            ("CONFIG", "SET", "maxmemory", "0"),
            ("CONFIG", "SET", "maxmemory-policy", "noeviction")]
    out = _same(pair, cmds)
    assert out[4] in (1000, 1001) and out[9] == 100 and out[11] == 5


def test_memory_usage_errors_match_redis(pair):
    cmds = [("FLUSHALL",), ("SET", "k", "v"),
            ("MEMORY", "USAGE", "nokey"), ("MEMORY", "USAGE", "k", "SAMPLES", "-1"),
            ("MEMORY", "USAGE", "k", "SAMPLES", "x"), ("MEMORY", "USAGE", "k", "FOO"),
            ("MEMORY", "USAGE", "k", "SAMPLES")]
    out = _same(pair, cmds)
    assert out[2] is None


def test_memory_usage_values(node):
    c = node.client()
    c.set("small", "x")
    c.set("big", "y" * 10000)
    c.set("ttl", "x", ex=100)
    small = c.memory_usage("small")
    assert 64 <= small <= 200
    assert 10000 < c.memory_usage("big") < 10300
    assert c.memory_usage("ttl") > small
    assert c.memory_usage("big", samples=0) == c.memory_usage("big")


# ------------------------------------------------------------------ in-process units

def test_clocks_kept_by_default():
    s = InProc()
    c = s.client()
    c.call("SET", "k", "v")
    db = s.srv.ks.db(0)
    assert type(db) is HookedDatabase and b"k" in db.clock
    assert s.srv.maxmemory == 0
    s.now += 3_000
    assert c.call("OBJECT", "IDLETIME", "k") == 3     # right without asking first
    for policy in ("allkeys-lru", "noeviction", "volatile-ttl"):
        c.call("CONFIG", "SET", "maxmemory-policy", policy)
        assert type(db) is HookedDatabase and db.clock is not None
    assert c.call("GET", "k") == b"v"
    assert c.call("OBJECT", "IDLETIME", "k") == 0
    c.call("CONFIG", "SET", "notify-keyspace-events", "Kn")
    assert s.srv.ks.on_new is not None


def test_lru_clock_follows_time_and_touches():
    s = InProc()
    c = s.client()
    c.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    c.call("SET", "a", "1")
    c.call("SET", "b", "1")
    s.now += 10_000
    assert c.call("OBJECT", "IDLETIME", "a") == 10
    c.call("GET", "a")
    for cmd in (("TYPE", "b"), ("EXISTS", "b"), ("TTL", "b"), ("OBJECT", "ENCODING", "b")):
        c.call(*cmd)
    assert c.call("OBJECT", "IDLETIME", "a") == 0
    assert c.call("OBJECT", "IDLETIME", "b") == 10
    c.call("RENAME", "b", "b2")                  # RENAME looks the key up: touched
    s.now += 5_000
    assert c.call("OBJECT", "IDLETIME", "b2") == 5
    c.call("SELECT", "1")
    c.call("SET", "m", "1")
    s.now += 3_000
    c.call("MOVE", "m", "0")                     # looked up (touched), then moved
    c.call("SELECT", "0")
    assert c.call("OBJECT", "IDLETIME", "m") == 0
    s.now += 2_000
    c.call("COPY", "m", "m2")
    assert c.call("OBJECT", "IDLETIME", "m2") == 0  # a new object
    assert c.call("OBJECT", "IDLETIME", "m") == 0   # COPY reads its source
    assert isinstance(c.call("OBJECT", "FREQ", "a"), ReplyError)


def test_lfu_counter_decay_and_log_factor():
    s = InProc()
    c = s.client()
    c.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
    c.call("CONFIG", "SET", "lfu-log-factor", "0")   # every access counts
    c.call("SET", "k", "1")
    assert c.call("OBJECT", "FREQ", "k") == 5
    for _ in range(20):
        c.call("GET", "k")
    assert c.call("OBJECT", "FREQ", "k") == 25
    s.now += 3 * 60_000                          # lfu-decay-time 1: one per minute
    assert c.call("OBJECT", "FREQ", "k") == 22
    c.call("CONFIG", "SET", "lfu-decay-time", "0")  # no decay: the stored counter
    s.now += 60 * 60_000
    assert c.call("OBJECT", "FREQ", "k") == 25
    for _ in range(400):
        c.call("GET", "k")
    assert c.call("OBJECT", "FREQ", "k") == 255
    c.call("CONFIG", "SET", "lfu-log-factor", "10")
    c.call("SET", "slow", "1")
    for _ in range(100):
        c.call("GET", "slow")
    assert 6 < c.call("OBJECT", "FREQ", "slow") < 40
    assert isinstance(c.call("OBJECT", "IDLETIME", "k"), ReplyError)


def test_memory_usage_protocol():
    class Compact:
        def memory_usage(self, samples):
            return 1000 + samples

    assert values.memory_usage(b"k", Compact(), 7) == \
        values.alloc_size(34) + values.DICT_ENTRY + 1007
    assert values.memory_usage(b"k", b"x" * 600) == \
        values.alloc_size(34) + values.DICT_ENTRY + values.alloc_size(633)
    generic = values.memory_usage(b"k", {b"a": [b"x" * 100] * 50}, 0)
    assert generic > 50 * 100


def test_evictor_keeps_memory_near_limit_in_process():
    s = InProc()
    c = s.client()
    for i in range(5000):
        c.call("SET", "pre:%d" % i, "x" * 200)
    limit = infomod.used_memory() + (2 << 20)
    c.call("CONFIG", "SET", "maxmemory", str(limit))
    c.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    for i in range(20000):
        assert c.call("SET", "k:%d" % i, "x" * 200) == b"OK"
    assert s.srv.evictor.evicted_keys > 0
    assert infomod.used_memory() - evict.not_counted(s.srv) <= limit + s.srv.evictor.slack * 4
    c.call("CONFIG", "SET", "maxmemory-policy", "volatile-lru")
    r = c.call("SET", "k:new", "x" * 100000)
    assert isinstance(r, ReplyError) and str(r) == OOM


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-random"])
def test_eviction_finds_keys_in_any_database(policy):
    """Empty databases cost nothing to sample; keys written to a database
    after the slot listing are still found."""
    s = InProc()
    c = s.client()
    for i in range(16):
        c.call("SELECT", str(i))
        c.call("PING")
    c.call("SELECT", "7")
    for i in range(3000):
        c.call("SET", "a:%d" % i, "x" * 200)
    c.call("CONFIG", "SET", "maxmemory-policy", policy)
    c.call("CONFIG", "SET", "maxmemory", str(infomod.used_memory() - (256 << 10)))
    t = time.perf_counter()
    assert c.call("SET", "trigger", "1") == b"OK"
    n = s.srv.evictor.evicted_keys
    assert n > 100
    assert (time.perf_counter() - t) / n < 0.002
    c.call("SELECT", "9")                      # a database listed as empty
    c.call("FLUSHALL")
    i = 0
    while s.srv.evictor.evicted_keys == n:     # fill db 9 until it must evict
        assert c.call("SET", "b:%d" % i, "x" * 200) == b"OK"
        i += 1
        assert i < 50000
    assert c.call("DBSIZE") < i


# ------------------------------------------------------------------ model

class ClockMachine(RuleBasedStateMachine):
    """Key commands with access clocks and the new-key hook switched on and
    off: the keyspace stays equal to a dict model, and the clock dicts only
    ever hold live keys."""

    def __init__(self) -> None:
        super().__init__()
        self.s = InProc()
        self.c = self.s.client()
        self.model: dict[int, dict[bytes, bytes]] = {0: {}, 1: {}}
        self.dbid = 0

    keys = st.sampled_from([b"a", b"b", b"c", b"{t}d"])
    vals = st.binary(min_size=1, max_size=5)

    @property
    def m(self):
        return self.model[self.dbid]

    @rule(k=keys, v=vals)
    def set(self, k, v):
        assert self.c.call("SET", k, v) == b"OK"
        self.m[k] = v

    @rule(k=keys, v=vals)
    def setnx(self, k, v):
        r = self.c.call("SET", k, v, "NX")
        if k in self.m:
            assert r is None
        else:
            self.m[k] = v

    @rule(k=keys)
    def get(self, k):
        assert self.c.call("GET", k) == self.m.get(k)

    @rule(k=keys)
    def delete(self, k):
        assert self.c.call("DEL", k) == (1 if self.m.pop(k, None) is not None else 0)

    @rule(k=keys, v=vals)
    def append(self, k, v):
        self.m[k] = self.m.get(k, b"") + v
        assert self.c.call("APPEND", k, v) == len(self.m[k])

    @rule(a=keys, b=keys)
    def rename(self, a, b):
        r = self.c.call("RENAME", a, b)
        if a not in self.m:
            assert isinstance(r, ReplyError)
        else:
            self.m[b] = self.m.pop(a)

    @rule(k=keys)
    def move(self, k):
        other = 1 - self.dbid
        r = self.c.call("MOVE", k, str(other))
        if k in self.m and k not in self.model[other]:
            assert r == 1
            self.model[other][k] = self.m.pop(k)
        else:
            assert r == 0

    @rule(a=keys, b=keys)
    def copy(self, a, b):
        r = self.c.call("COPY", a, b, "REPLACE")
        if a == b:
            assert isinstance(r, ReplyError)
        elif a in self.m:
            assert r == 1
            self.m[b] = self.m[a]
        else:
            assert r == 0

    @rule(pairs=st.lists(st.tuples(keys, vals), min_size=1, max_size=3))
    def mset(self, pairs):
        args = []
        for k, v in pairs:
            args += [k, v]
            self.m[k] = v
        assert self.c.call("MSET", *args) == b"OK"

    @rule()
    def flushdb(self):
        self.c.call("FLUSHDB")
        self.m.clear()

    @rule()
    def swapdb(self):
        self.c.call("SWAPDB", "0", "1")
        self.model[0], self.model[1] = self.model[1], self.model[0]

    @rule()
    def select(self):
        self.dbid = 1 - self.dbid
        self.c.call("SELECT", str(self.dbid))

    @rule(policy=st.sampled_from(["noeviction", "allkeys-lru", "allkeys-lfu",
                                  "volatile-ttl", "volatile-lfu"]))
    def policy(self, policy):
        assert self.c.call("CONFIG", "SET", "maxmemory-policy", policy) == b"OK"

    @rule(flags=st.sampled_from(["", "KEA", "En", "Kng$"]))
    def events(self, flags):
        assert self.c.call("CONFIG", "SET", "notify-keyspace-events", flags) == b"OK"

    @rule(k=keys)
    def idletime(self, k):
        r = self.c.call("OBJECT", "IDLETIME", k)
        if k not in self.m:
            assert r is None
        elif "lfu" in self.s.srv.cfg.get("maxmemory-policy"):
            assert isinstance(r, ReplyError)
        else:
            assert r >= 0

    @rule(ms=st.integers(0, 200_000))
    def time_passes(self, ms):
        self.s.now += ms

    @invariant()
    def keyspace_matches(self):
        for dbid, m in self.model.items():
            db = self.s.srv.ks.db(dbid)
            live = {k: v for k, v, _ in db.items()}
            assert live == m
            if db.clock is not None:
                assert set(db.clock) <= set(live)


TestClockMachine = ClockMachine.TestCase
TestClockMachine.settings = settings(max_examples=50, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
