"""SORT / SORT_RO on lists, sets and sorted sets: redis-py usage, the same
scripts against redis-server (raw RESP2/RESP3 replies, events, AOF), seeded
random sorts compared with redis-server, strtod edge cases, cluster mode."""

from __future__ import annotations

import random

import pytest
import redis

from pynode.commands.sort import sort_score
from tests import compare
from tests.helpers import Proc


def err(fn, *args):
    with pytest.raises(redis.ResponseError) as ei:
        fn(*args)
    return str(ei.value)


# ------------------------------------------------------------------ redis-py
def test_sort_basics(r):
    r.rpush("l", 3, 1, 2, 10)
    assert r.sort("l") == [b"1", b"2", b"3", b"10"]
    assert r.sort("l", desc=True) == [b"10", b"3", b"2", b"1"]
    assert r.sort("l", alpha=True) == [b"1", b"10", b"2", b"3"]
    assert r.sort("l", start=1, num=2) == [b"2", b"3"]
    assert r.sort("l", by="nosort") == [b"3", b"1", b"2", b"10"]
    assert r.sort("l", by="nosort", desc=True, start=1, num=2) == [b"2", b"1"]
    r.mset({"w_1": 4, "w_2": 3, "w_3": 2, "w_10": 1})
    assert r.sort("l", by="w_*") == [b"10", b"3", b"2", b"1"]
    r.hset("h_1", "name", "one")
    r.hset("h_2", "name", "two")
    assert r.sort("l", get=["#", "h_*->name"]) == [b"1", b"one", b"2", b"two", b"3", None,
                                                    b"10", None]
    assert r.sort("l", store="dst") == 4
    assert r.lrange("dst", 0, -1) == [b"1", b"2", b"3", b"10"]
    assert r.sort_ro("l", desc=True) == [b"10", b"3", b"2", b"1"]
    assert r.sort("nokey") == [] and r.sort("nokey", store="dst") == 0
    assert r.exists("dst") == 0
    r.set("str", "x")
    assert err(r.sort, "str").startswith("WRONGTYPE")
    r.rpush("bad", "1", "x")
    assert err(r.sort, "bad") == "One or more scores can't be converted into double"
    assert r.sort("bad", alpha=True) == [b"1", b"x"]


def test_sort_sets_and_zsets(r):
    r.sadd("s", 5, -1, 3)
    assert r.sort("s") == [b"-1", b"3", b"5"]
    assert r.sort("s", by="nosort", store="d") == 3       # sorted when stored
    assert r.lrange("d", 0, -1) == [b"-1", b"3", b"5"]
    r.zadd("z", {"c": 1, "a": 2, "b": 3})
    assert r.object("encoding", "z") == b"listpack"
    assert r.sort("z", alpha=True) == [b"a", b"b", b"c"]
    assert r.object("encoding", "z") == b"skiplist"        # Redis converts it too
    assert r.sort("z", by="nosort") == [b"c", b"a", b"b"]
    assert r.sort("z", by="nosort", desc=True, start=0, num=2) == [b"b", b"a"]


def test_sort_store_replaces_and_keeps_no_ttl(r):
    r.rpush("l", 2, 1)
    r.set("dst", "old")
    r.expire("dst", 100)
    assert r.sort("l", store="dst") == 2
    assert r.type("dst") == b"list" and r.ttl("dst") == -1
    assert r.object("encoding", "dst") == b"quicklist"


# ------------------------------------------------------------------ against redis-server
SCRIPT = """
RPUSH l 3 1 2 10 -5 2
SORT l
SORT l DESC
SORT l ALPHA
SORT l ALPHA DESC
SORT l LIMIT 1 2
SORT l LIMIT 0 0
SORT l LIMIT -5 2
SORT l LIMIT 10 2
SORT l LIMIT 5 10
SORT l LIMIT 2 -1
SORT l LIMIT x 1
SORT l LIMIT 1 x
SORT l LIMIT 1
SORT l LIMIT 9223372036854775807 1
SORT l BY nosort
SORT l BY nosort DESC
SORT l BY nosort LIMIT 1 2
SORT l BY nosort DESC LIMIT 1 2
SORT l BY nosort LIMIT 5 5
SORT l BY nosort DESC LIMIT 4 100
SORT l BY nosort LIMIT 6 1
SORT l BY nosort LIMIT 0 0
SORT l BY nosort BY w_*
SORT l BY w_* BY nosort
SET w_1 30
SET w_2 20
SET w_3 10
SET w_10 abc
SET w_-5 -1
SORT l BY w_*
SORT l BY w_* ALPHA
SORT l BY w_* ALPHA DESC
SORT l BY w_* ALPHA LIMIT 0 2
SET w_10 5
SORT l BY w_*
SORT l BY w_* DESC
SORT l BY w_* LIMIT 1 3
SORT l BY missing_*
SORT l BY missing_* DESC
HSET h_1 f 3 g x
HSET h_2 f 1
HSET h_3 f 2
HSET h_10 f 2.5
SORT l BY h_*->f
SORT l BY h_*->f DESC
SORT l BY h_*->f GET # GET h_*->f GET h_*->g
SORT l BY h_*->f GET nostar
SORT l BY h_*-> GET h_*->
SORT l BY w_*->f
SORT l GET # GET w_*
SORT l GET w_* ALPHA
SORT l GET h_*
SORT l GET *
SORT l GET # GET #
SORT l GET w_*->x
SORT l STORE dst
LRANGE dst 0 -1
TYPE dst
OBJECT ENCODING dst
SORT l BY nosort DESC STORE dst
LRANGE dst 0 -1
SORT l GET # GET w_* GET nokey_* STORE dst
LRANGE dst 0 -1
SORT l LIMIT 0 0 STORE dst
EXISTS dst
SORT l LIMIT 0 0 STORE dst
SORT nokey
SORT nokey BY nosort
SORT nokey STORE dst
SORT_RO l STORE dst
SORT_RO l
SORT_RO l BY w_* GET # DESC
SORT_RO l BY nosort LIMIT 1 1
SADD s 3 1 2 10 -5
SORT s
SORT s DESC
SORT s ALPHA
SORT s BY nosort
SORT s BY nosort DESC
SORT s BY nosort LIMIT 1 2
SORT s BY w_* GET #
SORT s STORE dst
LRANGE dst 0 -1
SORT s BY nosort STORE dst
LRANGE dst 0 -1
SORT s BY nosort DESC STORE dst
LRANGE dst 0 -1
SADD t b a c B A aa
SORT t ALPHA
SORT t ALPHA DESC LIMIT 1 3
SORT t
~ SORT t BY nosort
SORT t BY nosort STORE dst
LRANGE dst 0 -1
ZADD z 3 c 1 a 2 b 2 bb 10 x
OBJECT ENCODING z
SORT z BY nosort
OBJECT ENCODING z
SORT z BY nosort DESC
SORT z BY nosort LIMIT 1 2
SORT z BY nosort DESC LIMIT 1 2
SORT z BY nosort LIMIT 4 10
SORT z BY nosort DESC LIMIT 4 10
SORT z ALPHA
SORT z ALPHA DESC
SORT z
SORT z BY nosort STORE dst
LRANGE dst 0 -1
ZADD zn 1 10 2 9 3 8
SORT zn
SORT zn DESC LIMIT 0 2
SET str x
SORT str
SORT str BY foo
SORT str BADOPT
SORT l BADOPT
SORT l STORE
SORT l BY
SORT l GET
SORT l ASC DESC ASC
HSET hh a 1
SORT hh
SORT_RO hh
RPUSH nums 1.5 2e1 " 3" 0x10 inf -inf "" 007 -0
SORT nums
SORT nums DESC
SORT nums LIMIT 2 3 STORE dst
LRANGE dst 0 -1
RPUSH ties 2 10 1 b a 0 -0 0.0 +0
SET w_a 1
SET w_b 1
SORT ties BY w_*
SORT ties BY w_* DESC
RPUSH alph b a c "" "a b" A
SORT alph ALPHA
SORT alph ALPHA DESC
SORT alph ALPHA STORE dst
LRANGE dst 0 -1
RPUSH bad 1 x
SORT bad
SORT bad STORE dst
SORT bad ALPHA
SORT bad BY nosort
SET w_x 5
SORT bad BY w_*
LRANGE dst 0 -1
"""


def _script(text):
    return ["FLUSHALL", "CONFIG RESETSTAT"] + [line for line in text.strip().splitlines()
                                              if line.strip()]


@pytest.mark.parametrize("resp", [2, 3])
def test_same_replies_as_redis(server, real, resp):
    assert compare.mismatches([real.port, server.port], _script(SCRIPT), resp) == []
    # the same keyspace hits and misses (BY and GET lookups count)
    assert compare.keyspace_stats(server.port) == compare.keyspace_stats(real.port)


def test_random_sorts_match_redis(server, real):
    """Seeded random lists, weights, hashes and options: every reply equals
    redis-server's (ties avoided where Redis's order is unspecified)."""
    rnd = random.Random(20240607)
    lines = ["FLUSHALL"]
    elems = []
    for i in range(60):
        kind = rnd.randrange(4)
        if kind == 0:
            e = str(rnd.randrange(-1000, 1000))
        elif kind == 1:
            e = "%.3f" % rnd.uniform(-50, 50)
        elif kind == 2:
            e = "e%d" % rnd.randrange(1000)
        else:
            e = str(rnd.randrange(5))
        elems.append(e)
    lines.append("RPUSH lst " + " ".join('"%s"' % e for e in elems))
    nums = [e for e in elems if not e.startswith("e")]
    lines.append("RPUSH nums " + " ".join(nums))
    for k, e in enumerate(sorted(set(elems))):
        lines.append("SET wt_%s %d" % (e, k * 7 % 101))          # distinct weights
        lines.append("HSET obj_%s name n%03d score %d" % (e, (k * 13) % 97, k))
    for _ in range(150):
        key = rnd.choice(["lst", "nums"])
        parts = ["SORT", key]
        if rnd.random() < 0.4:
            parts += ["BY", rnd.choice(["wt_*", "obj_*->score", "obj_*->name", "nosort",
                                        "nosuch_*"])]
        if key == "lst" and "BY" not in parts or (
                "BY" in parts and parts[-1] in ("obj_*->name",)):
            parts.append("ALPHA")
        elif rnd.random() < 0.2:
            parts.append("ALPHA")
        if rnd.random() < 0.5:
            parts.append("DESC")
        if rnd.random() < 0.5:
            parts += ["LIMIT", str(rnd.randrange(-2, 70)), str(rnd.randrange(-1, 30))]
        for _ in range(rnd.randrange(3)):
            parts += ["GET", rnd.choice(["#", "wt_*", "obj_*->name", "obj_*->nope", "x"])]
        if "nosuch_*" in parts and "ALPHA" in parts:
            parts[parts.index("nosuch_*")] = "wt_*"    # all-missing ALPHA keys tie
        if rnd.random() < 0.25:
            parts += ["STORE", "out"]
            lines.append(" ".join(parts))
            lines.append("LRANGE out 0 -1")
        else:
            lines.append(" ".join(parts))
    for resp in (2, 3):
        assert compare.mismatches([real.port, server.port], lines, resp) == []


STRTOD = [b"1e-310", b"2.2250738585072014e-308", b"0x1p-1074", b"0x1p-1022",
          b"4.9406564584124654e-324", b"1e-400", b"0e-400", b"0x0p+0", b"0.0000", b"1e308",
          b"1e309", b" 5", b"\t5", b"\n5", b"\v5", b"\f5", b"\r5", b"0x10", b"inf", b"-inf",
          b"", b"1e2", b".5", b"5.", b"+3", b"5 ", b"nan", b"NaN(123)", b"-nan", b"1\x00abc",
          b"\x00", b"infinity", b"-Infinity", b"INFINITYx", b"0x1.8p1", b"1e+2", b"0x",
          b"1_0", b"0x1P", b"1e", b"1e+", b"-", b".", b"-.5", b"0X.8", b"  -0x1p3",
          b"2.2250738585072011e-308", b"1" * 400, b"0." + b"0" * 400 + b"1", b"-0",
          b"0x1p1024", b"1e-320", b"abc", b" ", b"\x005", b"0x1.fffffffffffff8p1023",
          b"0x1.fffffffffffffp1023", b"-1e-330", b"0x.00000000000000000001p-1000"]


def test_strtod_edge_cases_match_redis(server, real):
    """Each value on a fresh connection: Redis never clears errno before
    strtod, and a new connection's accept() leaves EAGAIN in it."""
    for v in STRTOD:
        got = []
        for p in (real, server):
            c = p.client()
            c.delete("l")
            c.rpush("l", v, "7")
            c.close()
            c = compare.Conn(p.port)
            got.append(c.call("SORT", "l"))
            c.close()
        assert got[0] == got[1], v


def test_sort_score_unit():
    assert sort_score(b"") == 0.0 and sort_score(b"\x00junk") == 0.0
    assert sort_score(b"  -0x1p3") == -8.0 and sort_score(b"1e2") == 100.0
    assert sort_score(b"inf") == float("inf") and sort_score(b"-Infinity") == float("-inf")
    for bad in (b"nan", b"1e309", b"1e-310", b"5 ", b"0x", b"1_0", b" "):
        assert sort_score(bad) is None, bad


def test_same_keyspace_events_as_redis(server, real):
    script = _script("""
RPUSH l 2 1
SORT l STORE dst
SORT l STORE dst
SORT l LIMIT 0 0 STORE dst
SORT l LIMIT 0 0 STORE dst
SORT l BY nosort STORE dst2
SORT nokey STORE dst2
SORT l
SORT_RO l
""")
    events = compare.notifications(real.port, script)
    assert (b"__keyevent@0__:sortstore", b"dst") in events
    assert compare.notifications(server.port, script) == events


def test_same_propagation_as_redis():
    args = ["--appendonly", "yes", "--appendfsync", "always"]
    script = ["RPUSH l 2 1", "SORT l STORE dst", "SORT l", "SORT_RO l",
              "SORT l LIMIT 0 0 STORE dst", "SORT l LIMIT 0 0 STORE dst",
              "SORT nokey STORE x", "SADD s 2 1", "SORT s BY nosort STORE d2",
              "SORT l BY nosort GET # STORE d3"]
    with Proc(args, redis_server=True) as real, Proc(args) as mine:
        for p in (real, mine):
            c = compare.Conn(p.port)
            for line in script:
                c.call(*compare.split_line(line)[1])
            c.close()
        want = compare.aof_commands(real.dir)
        assert [b"SORT", b"l", b"STORE", b"dst"] in want
        assert compare.aof_commands(mine.dir) == want


def _cluster_node(redis_server: bool) -> Proc:
    args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--appendonly", "no"]
    p = Proc(args, redis_server=redis_server).start()
    c = p.client()
    c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    from tests.test_replication import wait_until
    wait_until(lambda: b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"),
               what="cluster state ok")
    c.close()
    return p


def test_cluster_mode_refusals_as_redis():
    """Redis 7.0 refuses BY with a pattern and any GET in cluster mode,
    whatever slot the pattern's keys would hash to."""
    script = ["RPUSH {x}l 3 1 2", "SORT {x}l", "SORT {x}l BY nosort", "SORT {x}l BY w_*",
              "SORT {x}l BY {x}w_*", "SORT {x}l GET #", "SORT {x}l GET {x}w_*",
              "SORT {x}l BY {x}w_*->f", "SORT {x}l LIMIT 0 1 GET # GET {x}*",
              "SORT_RO {x}l GET #", "SORT {x}l BY nosort GET #", "SORT {x}l BADOPT GET #",
              "SORT {x}l STORE {x}d", "LRANGE {x}d 0 -1", "SORT {x}l STORE other"]
    real = _cluster_node(True)
    mine = _cluster_node(False)
    try:
        assert compare.mismatches([real.port, mine.port], script) == []
        c = compare.Conn(mine.port)
        c.call("RPUSH", "{x}l", "1")
        assert c.call("SORT", "{x}l", "BY", "{x}w_*") == \
            b"-ERR BY option of SORT denied in Cluster mode.\r\n"
        c.close()
    finally:
        real.cleanup()
        mine.cleanup()
