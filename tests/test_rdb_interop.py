"""dump.rdb interoperability matrix with redis-server 7.0.15, both ways.

One server is filled with every type in every encoding Redis 7.0 saves
(strings int/embstr/raw, LZF-compressible and not; quicklists of one and many
nodes, compressed nodes; intset and hashtable sets; listpack and hashtable
hashes; listpack and skiplist sorted sets with infinite scores; streams with
consumer groups, pending entries and deleted entries; sparse and dense
HyperLogLogs), with millisecond expiry, in databases 0..3, plus a function
library.  It SAVEs, the other server starts on the file, and every key is
compared: TYPE, OBJECT ENCODING, DEBUG DIGEST-VALUE, PEXPIRETIME, the value
read back, and XINFO STREAM FULL for streams."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time

import pytest

from tests.helpers import Proc, wait_until

ARGS = ["--enable-debug-command", "yes"]
LIB = ("#!lua name=interop\n"
       "redis.register_function('interop_f', function() return 'moved' end)\n"
       "redis.register_function{function_name='interop_ro', callback=function() "
       "return 1 end, flags={'no-writes'}}")
DBS = (0, 1, 2, 3)


def fill(c, db: int, now_ms: int) -> list:
    """The dataset of one database; the keys that get a millisecond expiry."""
    c.execute_command("SELECT", db)
    sfx = str(db)
    p = c.pipeline(transaction=False)
    p.set("s:int", "12345" + sfx)
    p.set("s:neg", "-9223372036854775808")
    p.set("s:emb", "hello" + sfx)
    p.set("s:empty", "")
    p.set("s:float", "3.14" + sfx)
    p.set("s:raw", "abc" * 40 + sfx)                    # LZF-compressed in the file
    p.set("s:rand", os.urandom(40).hex() + sfx)       # > 20 bytes, not compressible
    p.set("s:bin", bytes(range(256)) * 3)
    p.append("s:append", "x" * 10)
    p.rpush("l:small", "a", "1", "-5", "b" * 70, sfx)
    p.rpush("l:many", *[str(i) * (i % 7 + 1) for i in range(1500)])
    p.sadd("set:int", 1, -2, 3, 70000, 2 ** 40, int(sfx))
    p.sadd("set:str", "a", "b", "c" + sfx)
    p.sadd("set:big", *range(600))
    p.hset("h:lp", mapping={"f1": "v1", "f2": "22", "n": sfx})
    p.hset("h:ht", mapping={"f1": "v" * 100, "f2": "x"})
    p.hset("h:big", mapping={"f%d" % i: i for i in range(300)})
    p.zadd("z:lp", {"a": 1.5, "b": -2, "c": 3e10, "d" + sfx: 0})
    p.zadd("z:inf", {"lo": float("-inf"), "hi": float("inf"), "mid": 0.1})
    p.zadd("z:sk", {"m" * 80: 1, "x": 2})
    p.zadd("z:big", {"m%d" % i: i / 7 for i in range(200)})
    p.pfadd("hll:sparse", "a", "b", "c", sfx)
    p.pfadd("hll:dense", *["e%d" % i for i in range(5000)])
    for i in range(1, 8):
        p.xadd("st", {"f": i, "g": sfx}, id="%d-%d" % (1000 + i, i))
    p.execute()
    c.xgroup_create("st", "g1", id="0")
    c.xgroup_create("st", "g2", id="1003-3")
    c.xreadgroup("g1", "alice", {"st": ">"}, count=3)
    c.xreadgroup("g1", "bob", {"st": ">"}, count=2)
    c.xreadgroup("g2", "carol", {"st": ">"}, count=1)
    c.xack("st", "g1", "1001-1")
    c.xdel("st", "1006-6")
    c.xadd("st:empty", {"a": 1}, id="5-5")
    c.xdel("st:empty", "5-5")
    c.xgroup_create("st:empty", "none", id="$")
    expiring = ["s:emb", "l:small", "set:int", "h:lp", "z:sk", "hll:dense", "st"]
    for i, k in enumerate(expiring):
        c.pexpireat(k, now_ms + 3_600_000 + 123 + i * 7 + db)
    return expiring


def key_facts(c, db: int) -> dict:
    """key -> everything compared after the move."""
    c.execute_command("SELECT", db)
    out = {}
    for k in sorted(c.keys("*")):
        t = c.type(k)
        facts = {"type": t, "enc": c.object("encoding", k),
                 "digest": c.execute_command("DEBUG", "DIGEST-VALUE", k),
                 "pexpiretime": c.execute_command("PEXPIRETIME", k)}
        if t == b"string":
            facts["value"] = c.get(k)
        elif t == b"list":
            facts["value"] = c.lrange(k, 0, -1)
        elif t == b"set":
            facts["value"] = sorted(c.smembers(k))
        elif t == b"hash":
            facts["value"] = sorted(c.hgetall(k).items())
        elif t == b"zset":
            facts["value"] = c.zrange(k, 0, -1, withscores=True)
        elif t == b"stream":
            facts["value"] = c.execute_command("XINFO", "STREAM", k, "FULL")
            facts["groups"] = c.execute_command("XINFO", "GROUPS", k)
        out[k] = facts
    return out


def functions(c) -> list:
    """FUNCTION LIST WITHCODE, each library's functions sorted (redis-server
    lists them in its dict's order, which its random hash seed changes)."""
    out = []
    for lib in c.function_list(withcode=True):
        lib = list(lib)
        i = lib.index(b"functions") + 1
        lib[i] = sorted(lib[i])
        out.append(lib)
    return out


def _cleanup(procs, dirs) -> None:
    for p in procs:
        p.cleanup()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def everything(c) -> dict:
    return {db: key_facts(c, db) for db in DBS}


def _without_string_encodings(facts: dict) -> dict:
    """Loading makes strings anew (int, embstr up to 44 bytes, else raw), so
    a string's encoding after a load need not be the writer's (APPEND,
    PFADD make raw strings)."""
    return {db: {k: {n: v for n, v in f.items() if not (n == "enc" and f["type"] == b"string")}
                 for k, f in keys.items()} for db, keys in facts.items()}


@pytest.mark.parametrize("writer", ["pynode", "redis"])
def test_dump_rdb_matrix_loads_in_both_servers(writer):
    """The writer's dump.rdb loads in redis-server and in pynode: both hold
    the same keys, values, encodings, expiry and functions, and those are
    the writer's (string encodings apart, see above)."""
    dirs = [tempfile.mkdtemp(prefix="pynode-rdbmx-") for _ in range(2)]
    src = Proc(ARGS + ["--list-compress-depth", "1", "--list-max-listpack-size", "8"],
               redis_server=writer == "redis").start()
    loaded = []
    try:
        c = src.client()
        now_ms = int(time.time() * 1000)
        for db in DBS:
            fill(c, db, now_ms)
        c.function_load(LIB)
        c.execute_command("SELECT", 0)
        want = everything(c)
        want_digest = c.execute_command("DEBUG", "DIGEST")
        want_functions = functions(c)
        encs = {f["enc"] for db in DBS for f in want[db].values()}
        assert encs == {b"int", b"embstr", b"raw", b"quicklist", b"intset", b"hashtable",
                        b"listpack", b"skiplist", b"stream"}
        assert c.save()
        for d in dirs:
            shutil.copy(os.path.join(src.dir, "dump.rdb"), os.path.join(d, "dump.rdb"))
        c.close()
        src.cleanup()
        for d, rs in zip(dirs, (False, True)):
            loaded.append(Proc(ARGS, redis_server=rs, workdir=d).start())
        got = []
        for p in loaded:
            d = p.client()
            assert d.execute_command("DEBUG", "DIGEST") == want_digest
            assert functions(d) == want_functions
            assert d.fcall("interop_f", 0) == b"moved"
            assert d.fcall_ro("interop_ro", 0) == 1
            got.append(everything(d))
            d.execute_command("SELECT", 2)
            assert 3_590_000 < d.pttl("s:emb") <= 3_600_200
            d.close()
        mine, ref = got
        for db in DBS:
            assert sorted(mine[db]) == sorted(ref[db]), db
            for k, facts in ref[db].items():
                assert mine[db][k] == facts, (db, k)
        assert _without_string_encodings(ref) == _without_string_encodings(want)
    finally:
        _cleanup([src] + loaded, dirs)


def test_both_servers_write_loadable_files_of_the_same_dataset():
    """The same commands on both servers; each loads the other's file and
    the two end with the same digest and the same encodings."""
    dirs = [tempfile.mkdtemp(prefix="pynode-rdbx-") for _ in range(2)]
    procs = []
    try:
        now_ms = int(time.time() * 1000)
        facts = []
        for i, rs in enumerate((False, True)):
            p = Proc(ARGS, redis_server=rs).start()
            procs.append(p)
            c = p.client()
            for db in DBS:
                fill(c, db, now_ms)
            c.execute_command("SELECT", 0)
            # random string values differ between the two fills
            for db in DBS:
                c.execute_command("SELECT", db)
                c.set("s:rand", "r" * 10 + "%d" % db + "0123456789abcdef" * 4)
            assert c.save()
            shutil.copy(os.path.join(p.dir, "dump.rdb"), os.path.join(dirs[1 - i], "dump.rdb"))
            c.close()
            p.cleanup()
        procs = []
        for i, rs in enumerate((False, True)):
            p = Proc(ARGS, redis_server=rs, workdir=dirs[i]).start()
            procs.append(p)
            c = p.client()
            f = everything(c)
            for db in DBS:      # XINFO FULL holds delivery times: per-server
                for k in f[db]:
                    f[db][k].pop("value", None) if f[db][k]["type"] == b"stream" else None
            facts.append((c.execute_command("DEBUG", "DIGEST"), f))
            c.close()
        assert facts[0] == facts[1]
    finally:
        _cleanup(procs, dirs)


def _clock_source(writer_is_redis: bool, policy: str) -> Proc:
    """A server under `policy` holding keys whose idle time / LFU counter
    were set by RESTORE ... IDLETIME / FREQ, and a key freshly accessed."""
    src = Proc(ARGS + ["--maxmemory-policy", policy, "--repl-diskless-sync-delay", "0"],
               redis_server=writer_is_redis).start()
    c = src.client()
    c.set("tmp", "v")
    payload = c.dump("tmp")
    opt = "IDLETIME" if policy.endswith("lru") else "FREQ"
    for key, n in (("k10", 10), ("k200", 200), ("k5000", 5000)):
        if opt == "FREQ" and n > 255:
            n = 255
        c.execute_command("RESTORE", key, 0, payload, opt, n)
    c.delete("tmp")
    c.rpush("fresh", "x")
    c.close()
    return src


def _clocks(c, policy: str) -> dict:
    sub = "IDLETIME" if policy.endswith("lru") else "FREQ"
    return {k: c.execute_command("OBJECT", sub, k) for k in ("k10", "k200", "k5000", "fresh")}


def _seconds_since(t0: float) -> int:
    """Whole idle seconds that can have gone by since t0 (clocks tick by the
    second on both servers, so one more)."""
    return math.ceil(time.monotonic() - t0) + 1


def _same_counters(mine: dict, ref: dict) -> None:
    """LFU counters carried over: k10/k200/k5000 were set to 10/200/255.  A
    counter decays by one per minute boundary it sits across (lfu-decay-time
    1), so a load and a read on either side of one may see one less."""
    for k in ref:
        assert abs(mine[k] - ref[k]) <= 1, (k, mine, ref)
    for k, want in (("k10", 10), ("k200", 200), ("k5000", 255)):
        assert want - 1 <= mine[k] <= want, (k, mine)


@pytest.mark.parametrize("writer", ["pynode", "redis"])
@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu"])
def test_lru_and_lfu_info_travels_in_dump_rdb(writer, policy):
    """Under an LRU policy Redis saves each key's idle seconds (RDB_OPCODE_IDLE),
    under an LFU one its counter (RDB_OPCODE_FREQ); a server loading the file
    under the same kind of policy takes them over."""
    src = _clock_source(writer == "redis", policy)
    dirs = [tempfile.mkdtemp(prefix="pynode-rdbclk-") for _ in range(2)]
    loaded = []
    try:
        c = src.client()
        t0 = time.monotonic()
        before = _clocks(c, policy)
        assert c.save()
        c.close()
        for d in dirs:
            shutil.copy(os.path.join(src.dir, "dump.rdb"), os.path.join(d, "dump.rdb"))
        src.cleanup()
        got = []
        for d, rs in zip(dirs, (False, True)):
            p = Proc(ARGS + ["--maxmemory-policy", policy], redis_server=rs, workdir=d).start()
            loaded.append(p)
            c = p.client()
            got.append(_clocks(c, policy))
            c.close()
        mine, ref = got
        if policy.endswith("lfu"):
            _same_counters(mine, ref)
        else:       # seconds go by between saving and asking
            slack = _seconds_since(t0)
            for k in before:
                assert abs(mine[k] - ref[k]) <= slack, (k, mine, ref)
                assert 0 <= mine[k] - before[k] <= slack, (k, mine, before)
            assert mine["k5000"] >= 5000
    finally:
        _cleanup([src] + loaded, dirs)


@pytest.mark.parametrize("primary", ["pynode", "redis"])
@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu"])
def test_full_sync_carries_lru_and_lfu_info(primary, policy):
    """The full sync's RDB holds the same LRU/LFU info as dump.rdb: replicas
    (pynode and redis-server) under the same policy take it over."""
    src = _clock_source(primary == "redis", policy)
    replicas = []
    try:
        c = src.client()
        t0 = time.monotonic()
        before = _clocks(c, policy)
        got = []
        for rs in (False, True):
            p = Proc(ARGS + ["--maxmemory-policy", policy], redis_server=rs).start()
            replicas.append(p)
            rc = p.client()
            rc.replicaof("127.0.0.1", src.port)
            wait_until(lambda rc=rc: (rc.info("replication").get("master_link_status") == "up"
                                      and rc.dbsize() == 4), 20, "the full sync")
            got.append(_clocks(rc, policy))
            rc.close()
        c.close()
        mine, ref = got
        if policy.endswith("lfu"):
            _same_counters(mine, ref)
        else:
            slack = _seconds_since(t0)
            for k in before:
                assert abs(mine[k] - ref[k]) <= slack, (k, mine, ref)
                assert 0 <= mine[k] - before[k] <= slack, (k, mine, before)
    finally:
        _cleanup([src] + replicas, [])
