"""DEBUG (pynode/commands/debug.py) against redis-server 7.0.15, byte for byte
where the reply is deterministic, and the cluster bus packet filter on a
3-primary pynode cluster."""

from __future__ import annotations

import re

import pytest

from tests.cluster_helpers import Cluster
from tests.compare import mismatches, run_script
from tests.helpers import Proc, wait_until

DEBUG_ON = ["--enable-debug-command", "yes"]

SCRIPT = [
    "DEBUG POPULATE 3", "DEBUG POPULATE 3 foo 2", "DEBUG POPULATE 2 bar 20",
    "MGET key:0 key:1 key:2 foo:0 foo:2 bar:0 bar:1", "DBSIZE",
    "DEBUG POPULATE -1", "DEBUG POPULATE x", "DEBUG POPULATE 1 a b c", "DEBUG POPULATE 1 a 0",
    "DEBUG POPULATE 1 a -1", "SET key:5 mine", "DEBUG POPULATE 7", "GET key:5", "GET key:6",
    "DBSIZE", "RPUSH l a b c", "DEBUG SDSLEN key:0", "SET s 123", "DEBUG SDSLEN s",
    "DEBUG SDSLEN nokey", "DEBUG LISTPACK l", "DEBUG QUICKLIST s", "DEBUG QUICKLIST nokey",
    "DEBUG LISTPACK nokey", "DEBUG HTSTATS 16", "DEBUG HTSTATS x", "DEBUG HTSTATS-KEY key:0",
    "DEBUG HTSTATS-KEY nokey", "DEBUG HTSTATS 5", "DEBUG PROTOCOL xx",
    "DEBUG QUICKLIST-PACKED-THRESHOLD x", "DEBUG QUICKLIST-PACKED-THRESHOLD -1",
    "DEBUG QUICKLIST-PACKED-THRESHOLD 5000000000", "DEBUG QUICKLIST-PACKED-THRESHOLD 1gb",
    "DEBUG QUICKLIST-PACKED-THRESHOLD 0", "DEBUG SET-SKIP-CHECKSUM-VALIDATION 0",
    "DEBUG AOF-FLUSH-SLEEP 0", "DEBUG REPLICATE foo", "DEBUG STRUCTSIZE", "DEBUG STRINGMATCH-TEST",
    "DEBUG SET-DISABLE-DENY-SCRIPTS 0", "DEBUG PAUSE-CRON 0", "DEBUG REPLYBUFFER RESIZING 1",
    "DEBUG REPLYBUFFER PEAK-RESET-TIME never", "DEBUG REPLYBUFFER PEAK-RESET-TIME reset",
    "DEBUG REPLYBUFFER PEAK-RESET-TIME x", "DEBUG REPLYBUFFER foo 1",
    "DEBUG REPLYBUFFER PEAK-RESET-TIME 100", "DEBUG CLIENT-EVICTION",
    "DEBUG CLUSTERLINK KILL all abc", "DEBUG DROP-CLUSTER-PACKET-FILTER x",
    "DEBUG DROP-CLUSTER-PACKET-FILTER 1", "DEBUG DROP-CLUSTER-PACKET-FILTER -1",
    "DEBUG LEAK foo", "DEBUG ERROR 'a\nb'", "DEBUG SLEEP 0", "DEBUG SET-ACTIVE-EXPIRE 1",
    "DEBUG RELOAD FOO", "DEBUG CONFIG-REWRITE-FORCE-ALL", "DEBUG OBJECT nokey", "DEBUG nosuch",
    "DEBUG SLEEP", "DEBUG OBJECT",
    "DEBUG RELOAD", "DBSIZE", "MGET key:0 foo:1", "LRANGE l 0 -1",
    "SET key:0 changed", "DEBUG RELOAD NOSAVE", "GET key:0",
    "SET key:0 changed", "SET newkey 1", "DEBUG RELOAD NOSAVE NOFLUSH MERGE", "GET key:0",
    "GET newkey", "DBSIZE",
] + ["DEBUG PROTOCOL " + t for t in ("string", "integer", "double", "bignum", "null", "array",
                                    "set", "map", "attrib", "push", "verbatim", "true",
                                    "false", "TRUE")]

OBJECTS = [
    "SET i 123", "SET e hello", "SET r " + "x" * 50, "SET c " + "ab" * 40, "APPEND a foo",
    "RPUSH l a b c", "CONFIG SET list-max-listpack-size 2", "RPUSH l2 a b c d e",
    "CONFIG SET list-max-listpack-size -2", "HSET h a 1",
    "HSET hh " + " ".join("f%d %d" % (i, i) for i in range(600)), "SADD si 1 2 3",
    "SADD sh a b", "ZADD z 1 a", "ZADD zz 1 " + "y" * 70, "XADD x 1-1 f v",
    "DEBUG OBJECT i", "DEBUG OBJECT e", "DEBUG OBJECT r", "DEBUG OBJECT c", "DEBUG OBJECT a",
    "DEBUG OBJECT l", "DEBUG OBJECT l2", "DEBUG OBJECT h", "DEBUG OBJECT hh", "DEBUG OBJECT si",
    "DEBUG OBJECT sh", "DEBUG OBJECT z", "DEBUG OBJECT zz", "DEBUG OBJECT x",
    "DEBUG SDSLEN e", "DEBUG SDSLEN r", "DEBUG SDSLEN c", "DEBUG SDSLEN a", "DEBUG SDSLEN i",
    "DEBUG LISTPACK h", "DEBUG LISTPACK z", "DEBUG LISTPACK hh", "DEBUG QUICKLIST l",
    "DEBUG QUICKLIST l 1", "DEBUG HTSTATS-KEY zz", "DEBUG HTSTATS-KEY si",
    "EVAL \"return redis.pcall('multi')\" 0", "DEBUG SET-DISABLE-DENY-SCRIPTS 1",
    "EVAL \"return redis.pcall('multi')\" 0", "DEBUG SET-DISABLE-DENY-SCRIPTS 0",
    "EVAL \"return redis.pcall('multi')\" 0",
]


@pytest.fixture(scope="module")
def pair():
    a = Proc(args=DEBUG_ON).start()
    b = Proc(redis_server=True, args=DEBUG_ON).start()
    yield a, b
    a.stop()
    b.stop()


def _flush(*procs):
    for p in procs:
        run_script([p.port], ["FLUSHALL"])


@pytest.mark.parametrize("resp", [2, 3])
def test_replies_match_redis(pair, resp):
    a, b = pair
    _flush(a, b)
    assert mismatches([a.port, b.port], SCRIPT, resp) == []


def test_object_sdslen_listpack_quicklist_per_encoding(pair):
    a, b = pair
    _flush(a, b)
    for line, (mine, theirs) in run_script([a.port, b.port], OBJECTS):
        mask = lambda r: re.sub(rb"at:0x[0-9a-f]+|lru:\d+|lru_seconds_idle:\d+", b"", r)  # noqa: E731
        assert mask(mine) == mask(theirs), line


def test_help_is_redis_without_jemalloc(pair):
    # pynode reports mem_allocator:libc: like a redis-server built without
    # jemalloc, it has no MALLCTL / MALLCTL-STR
    a, b = pair
    [(_, (mine, theirs))] = run_script([a.port, b.port], ["DEBUG HELP"])
    lines = theirs.split(b"\r\n")
    i = lines.index(b"+MALLCTL <key> [<val>]")
    del lines[i:i + 4]
    lines[0] = b"*%d" % (int(lines[0][1:]) - 4)
    assert mine == b"\r\n".join(lines)
    [(_, (mine, theirs))] = run_script([a.port, b.port], ["DEBUG MALLCTL x"])
    assert mine.startswith(b"-ERR unknown subcommand or wrong number of arguments for 'MALLCTL'")


def test_htstats_counts_keys_and_expires(pair):
    a, _ = pair
    _flush(a)
    [(_, (r,))] = run_script([a.port], ["DEBUG HTSTATS 0"])
    assert r.count(b"No stats available for empty dictionaries") == 2
    out = run_script([a.port], ["DEBUG POPULATE 9", "EXPIRE key:1 100", "DEBUG HTSTATS 0"])
    text = out[-1][1][0]
    assert b" table size: 16\n number of elements: 9\n" in text
    assert text.split(b"[Expires HT]")[1].startswith(
        b"\nHash table 0 stats (main hash table):\n table size: 4\n number of elements: 1\n")


def test_reload_from_a_missing_file_keeps_the_data():
    with Proc(args=DEBUG_ON) as p:
        out = run_script([p.port], ["SET k v", "DEBUG RELOAD NOSAVE", "GET k"])
        assert out[1][1][0] == b"-ERR Error trying to load the RDB dump\r\n"
        assert out[2][1][0] == b"$1\r\nv\r\n"


def test_loadaof_replays_the_aof():
    with Proc(args=DEBUG_ON + ["--appendonly", "yes"]) as p:
        out = run_script([p.port], ["SET k v", "RPUSH l a b", "DEBUG LOADAOF", "GET k",
                                    "LRANGE l 0 -1", "DBSIZE"])
        assert [r[0] for _, r in out[2:]] == [b"+OK\r\n", b"$1\r\nv\r\n",
                                                b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b":2\r\n"]
    with Proc(args=DEBUG_ON) as p:                  # no AOF: an error, nothing lost
        out = run_script([p.port], ["SET k v", "DEBUG LOADAOF", "GET k"])
        assert out[1][1][0].startswith(b"-ERR Error trying to load the AOF files")
        assert out[2][1][0] == b"$1\r\nv\r\n"


@pytest.mark.parametrize("sub,sig,text", [
    ("SEGFAULT", -11, "crashed by signal: 11"),
    ("PANIC", -6, "Guru Meditation: DEBUG PANIC called at Unix time"),
    ("ASSERT", -6, "=== ASSERTION FAILED ==="),
    ("OOM", -6, "Out Of Memory allocating"),
])
def test_crashes_end_the_process_by_signal_and_log(sub, sig, text):
    p = Proc(args=DEBUG_ON).start()
    try:
        with pytest.raises(AssertionError):
            run_script([p.port], ["DEBUG " + sub])     # the connection just closes
        assert p.proc.wait(timeout=10) == sig
        log = p.log()
        assert "=== REDIS BUG REPORT START" in log and text in log
    finally:
        p.stop()


# ------------------------------------------------------------------ cluster
def _flags_of(node, node_id):
    for n in node.nodes():
        if n["id"] == node_id:
            return n["flags"]
    return set()


def test_drop_packet_filter_partitions_and_heals_a_node():
    """As Redis's cluster tests partition a node: DROP-CLUSTER-PACKET-FILTER -2
    (every incoming bus message dropped, the link freed) with PAUSE-CRON 1
    (it sends nothing either) on that node only."""
    c = Cluster(primaries=3, replicas=0, server="pynode", node_timeout=1000, extra=DEBUG_ON)
    c.up(timeout=60)
    try:
        victim, others = c.nodes[0], c.nodes[1:]
        vid = victim.call("CLUSTER", "MYID")
        before = int(victim.info()["cluster_stats_messages_received"])
        assert victim.call("DEBUG", "DROP-CLUSTER-PACKET-FILTER", "-2")
        assert victim.call("DEBUG", "CLOSE-CLUSTER-LINK-ON-PACKET-DROP", "1")
        assert victim.call("DEBUG", "PAUSE-CRON", "1")
        wait_until(lambda: all("fail" in _flags_of(o, vid) for o in others), timeout=20,
                   what="the partitioned node marked FAIL by its peers")
        for o in others:
            assert o.info()["cluster_state"] == "fail"      # its slots are uncovered
        # messages still arrive and are counted, then dropped
        assert int(victim.info()["cluster_stats_messages_received"]) > before
        assert "Dropping packet that matches debug drop filter" in victim.proc.log()

        assert victim.call("DEBUG", "DROP-CLUSTER-PACKET-FILTER", "-1")
        assert victim.call("DEBUG", "CLOSE-CLUSTER-LINK-ON-PACKET-DROP", "0")
        assert victim.call("DEBUG", "PAUSE-CRON", "0")

        def healed():
            for n in c.nodes:
                if n.info()["cluster_state"] != "ok":
                    return False
                if any(f & {"fail", "fail?"} for f in (x["flags"] for x in n.nodes())):
                    return False
            return True
        wait_until(healed, timeout=30, what="the cluster to converge after healing")
    finally:
        c.cleanup()

