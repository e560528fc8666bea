"""Streams in RDB/DUMP, the AOF and replication, judged by redis-server 7.0:
DUMP payloads byte-identical (rdbcompression no on both sides), RESTORE both
ways, RDB type 15 payloads, damaged payloads refused whole, propagation to the
AOF compared with redis-server's own AOF, the AOF rewrite, full sync both ways."""

from __future__ import annotations

import os
import random
import re
import struct
import time

import pytest
import redis

from storage import dump as dumpfmt
from storage import rdb, streams
from storage.sdsargs import quote
from tests.helpers import Proc
from tests.stream_compare import RawConn
from tests.test_streams import _cmds, blocking_scenario, random_script


def wait_until(fn, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (redis.ConnectionError, redis.ResponseError):
            pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


# a stream with a bit of everything: several nodes, tombstones, groups with
# pending entries, an idle consumer, a NOACK reader, an empty stream with a group
STATE = [
    ["CONFIG", "SET", "stream-node-max-entries", "5"],
] + [["XADD", "s", "%d-%d" % (i // 2 + 1, i % 2), "f", "v%d" % i, "n", str(i * 1000)]
     for i in range(23)] + [
    ["XADD", "s", "50-0", "other", "x" * 100],
    ["XDEL", "s", "2-1", "5-0", "6-1"],
    ["XTRIM", "s", "MINID", "2-0"],
    ["XGROUP", "CREATE", "s", "g1", "0"],
    ["XGROUP", "CREATE", "s", "g2", "$"],
    ["XGROUP", "CREATE", "s", "g3", "3-0", "ENTRIESREAD", "-1"],
    ["XREADGROUP", "GROUP", "g1", "alice", "COUNT", "4", "STREAMS", "s", ">"],
    ["XREADGROUP", "GROUP", "g1", "bob", "COUNT", "3", "STREAMS", "s", ">"],
    ["XREADGROUP", "GROUP", "g3", "nack", "NOACK", "COUNT", "2", "STREAMS", "s", ">"],
    ["XGROUP", "CREATECONSUMER", "s", "g2", "idle"],
    ["XCLAIM", "s", "g1", "carol", "0", "4-0", "TIME", "1700000000000", "RETRYCOUNT", "4"],
    ["XACK", "s", "g1", "3-0"],
    ["XGROUP", "CREATE", "e", "g", "$", "MKSTREAM"],
    ["XADD", "e2", "7-7", "k", "v"],
    ["XDEL", "e2", "7-7"],
    ["CONFIG", "SET", "stream-node-max-entries", "100"],
]


def run(port: int, script) -> list:
    c = RawConn(port)
    try:
        return [c.call(*[str(a) for a in cmd]) for cmd in script]
    finally:
        c.close()


def full(port: int, key: str) -> bytes:
    return run(port, [["XINFO", "STREAM", key, "FULL"]])[0]


@pytest.fixture
def both(server, real):
    """pynode and redis-server, flushed, writing uncompressed RDB strings."""
    for p in (server.port, real.port):
        run(p, [["FLUSHALL"], ["CONFIG", "SET", "rdbcompression", "no"]])
    yield server, real
    for p in (server.port, real.port):
        run(p, [["CONFIG", "SET", "rdbcompression", "yes"]])


# ------------------------------------------------------------------ DUMP / RESTORE
def test_dump_is_byte_identical_for_streams_built_by_the_same_commands(both):
    server, real = both
    rng = random.Random(5)
    for trial in range(25):
        script = [["DEL", "s"]]
        ms = 1
        for _ in range(rng.randint(1, 350)):
            ms += rng.choice([0, 1, 1, 1000, 1 << 33])
            fields = rng.choice([["a"], ["a", "b"], ["x" * 70], ["1", "-5"],
                                 ["r%d" % rng.randint(0, 4)]])
            args = []
            for f in fields:
                args += [f, rng.choice(["v", str(rng.randint(-10 ** 6, 10 ** 6)), "", "007",
                                        str(2 ** 63), "y" * rng.choice([1, 63, 64, 300, 4096])])]
            idarg = rng.choice(["%d-*" % ms, "%d-%d" % (ms, rng.randint(0, 3))])
            script.append(["XADD", "s", idarg] + args)
            if rng.random() < 0.05:
                script.append(["XDEL", "s"] + ["%d-0" % rng.randint(1, ms) for _ in range(6)])
        if rng.random() < 0.5:
            script.append(["XTRIM", "s", rng.choice(["MAXLEN", "MINID"]), rng.choice(["~", "="]),
                           str(rng.randint(0, 200))])
        assert run(server.port, script) == run(real.port, script)
        mine = run(server.port, [["DUMP", "s"]])[0]
        theirs = run(real.port, [["DUMP", "s"]])[0]
        assert mine == theirs, "trial %d" % trial


def test_restore_both_ways_keeps_groups_and_times(both):
    server, real = both
    assert run(server.port, STATE) == run(real.port, STATE)
    for key in ("s", "e", "e2"):
        theirs = redis.Redis(port=real.port).dump(key)
        mine_c = redis.Redis(port=server.port)
        mine_c.delete(key)
        assert mine_c.restore(key, 0, theirs) == b"OK"
        assert full(server.port, key) == full(real.port, key)
        assert mine_c.dump(key) == theirs             # the same bytes back
    # and the other way: pynode's payload into redis-server
    run(server.port, [["XREADGROUP", "GROUP", "g2", "dave", "STREAMS", "s", ">"],
                      ["XADD", "s", "60-0", "late", "1"]])
    payload = redis.Redis(port=server.port).dump("s")
    rc = redis.Redis(port=real.port)
    rc.delete("s")
    assert rc.restore("s", 0, payload) == b"OK"
    assert full(server.port, "s") == full(real.port, "s")
    assert rc.dump("s") == payload
    info = [["XINFO", "STREAM", "s"]]
    assert run(server.port, info) == run(real.port, info)


def test_compressed_redis_payload_restores(server, real):
    run(real.port, [["FLUSHALL"]] + STATE)
    run(server.port, [["FLUSHALL"]])
    payload = redis.Redis(port=real.port).dump("s")
    assert redis.Redis(port=server.port).restore("s", 0, payload) == b"OK"
    assert full(server.port, "s") == full(real.port, "s")


def _v1_payload(s: streams.Stream) -> bytes:
    """The same stream as RDB_TYPE_STREAM_LISTPACKS (15), as Redis < 7 wrote it."""
    enc = rdb.encode_length
    out = [enc(len(s.nodes))]
    for node in s.nodes:
        out.append(rdb.encode_string(node.master.to_bytes(16, "big")))
        out.append(rdb.encode_string(node.listpack()))
    out += [enc(s.length), enc(s.last_id >> 64), enc(s.last_id & streams.MASK)]
    groups = s.groups or {}
    out.append(enc(len(groups)))
    for name in sorted(groups):
        g = groups[name]
        out += [rdb.encode_string(name), enc(g.last_id >> 64), enc(g.last_id & streams.MASK),
                enc(len(g.pel))]
        for i, nack in g.pel.items():
            out += [i.to_bytes(16, "big"), struct.pack("<q", nack.delivery_time),
                    enc(nack.delivery_count)]
        out.append(enc(len(g.consumers)))
        for cname in sorted(g.consumers):
            c = g.consumers[cname]
            out += [rdb.encode_string(cname), struct.pack("<q", c.seen_time), enc(len(c.pel))]
            out += [i.to_bytes(16, "big") for i in c.pel]
    body = bytes((15,)) + b"".join(out) + struct.pack("<H", 9)
    return body + struct.pack("<Q", rdb.crc64(0, body))


def test_rdb_type_15_loads_as_redis_loads_it(server, real):
    for p in (server.port, real.port):
        run(p, [["FLUSHALL"]] + STATE)
    payload = redis.Redis(port=real.port).dump("s")
    s = dumpfmt.loads(payload)
    old = _v1_payload(s)
    for p in (server.port, real.port):
        c = redis.Redis(port=p)
        assert c.restore("old", 0, old) == b"OK"
    assert full(server.port, "old") == full(real.port, "old")
    groups = [["XINFO", "GROUPS", "old"]]
    assert run(server.port, groups) == run(real.port, groups)


def _sealed(body: bytes) -> bytes:
    body = bytes(body) + struct.pack("<H", 10)
    return body + struct.pack("<Q", rdb.crc64(0, body))


def _encoded(s: streams.Stream) -> bytes:
    t, payload = streams.encode_rdb(s)
    return bytes((t,)) + payload


def test_damaged_payloads_are_refused_and_load_nothing(server):
    run(server.port, [["FLUSHALL"]] + STATE)
    c = redis.Redis(port=server.port)
    good = c.dump("s")
    body = bytearray(good[:-10])
    bad = []
    lp_at = body.index(b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00") + 10   # first listpack
    for pos, val in ((lp_at + 8, 0x7F), (lp_at + 1, 0), (lp_at + 12, 0xC5)):
        b = bytearray(body)
        b[pos] = val                    # listpack size, element encoding, master count
        bad.append(_sealed(b))
    bad.append(_sealed(body[:len(body) // 2]))             # truncated
    bad.append(_sealed(body + b"\x00"))                    # a trailing byte
    s = dumpfmt.loads(good)
    s.length += 1                                          # length not what the nodes hold
    bad.append(_sealed(_encoded(s)))
    s = dumpfmt.loads(good)
    g = s.groups[b"g1"]
    id_, nack = g.pel.peekitem(0)
    del g.pel[id_]                                         # consumer PEL entry not in the group's
    bad.append(_sealed(_encoded(s)))
    s = dumpfmt.loads(good)
    s.nodes[1], s.nodes[2] = s.nodes[2], s.nodes[1]        # nodes out of order
    s.masters[1], s.masters[2] = s.masters[2], s.masters[1]
    bad.append(_sealed(_encoded(s)))
    for payload in bad:
        with pytest.raises(redis.ResponseError, match="Bad data format"):
            c.restore("x", 0, payload)
        assert not c.exists("x")
    with pytest.raises(redis.ResponseError, match="checksum"):
        c.restore("x", 0, good[:-1] + bytes([good[-1] ^ 1]))


def test_node_size_accounting_matches_the_encoded_listpacks(server):
    run(server.port, [["FLUSHALL"]] + STATE)
    s = dumpfmt.loads(redis.Redis(port=server.port).dump("s"))
    for node in s.nodes:
        assert node.lp_bytes() == len(node.listpack())


# ------------------------------------------------------------------ AOF
def _aof(proc) -> list:
    path = os.path.join(proc.dir, "appendonlydir", "appendonly.aof.1.incr.aof")
    data = open(path, "rb").read()
    out, p = [], 0
    while p < len(data):
        nl = data.index(b"\r\n", p)
        n = int(data[p + 1:nl])
        p = nl + 2
        args = []
        for _ in range(n):
            nl = data.index(b"\r\n", p)
            ln = int(data[p + 1:nl])
            args.append(data[nl + 2:nl + 2 + ln])
            p = nl + 4 + ln
        out.append(args)
    return out


def _norm(argv: list) -> str:
    """A propagated command with clock-dependent values masked (XCLAIM's
    TIME, ids XADD * generated)."""
    out = []
    for i, a in enumerate(argv):
        if i and argv[i - 1] == b"TIME":
            a = b"<time>"
        elif re.fullmatch(rb"1[0-9]{12}-[0-9]+", a):
            a = b"<id>"
        out.append(quote(a))
    return " ".join(out)


@pytest.fixture(scope="module")
def aof_pair():
    p = Proc(args=["--appendonly", "yes"]).start()
    rs = Proc(redis_server=True, args=["--appendonly", "yes"]).start()
    yield p, rs
    p.cleanup()
    rs.cleanup()


def _propagated(procs, action) -> list:
    starts = [len(_aof(p)) for p in procs]
    for p in procs:
        action(p.port)
    time.sleep(0.3)
    return [[_norm(a) for a in _aof(p)[n:]] for p, n in zip(procs, starts)]


AOF_SCRIPT = _cmds("""
FLUSHALL
XADD s 1-1 a 1
XADD s * a 2
XADD s MAXLEN ~ 1 * a 3
XADD s2 5-* a 1
""") + [["XADD", "big", "%d-1" % i, "f", "v"] for i in range(1, 260)] + _cmds("""
XADD big MAXLEN ~ 100 1000-1 f v
XTRIM big MAXLEN ~ 50
XTRIM big MINID ~ 230
XTRIM big MINID 240
XADD big MINID ~ 250 1001-1 f v
XTRIM big MAXLEN ~ 1000
XTRIM big MAXLEN ~ 0 LIMIT 5
XDEL big 250-1 251-1 9999-1
XDEL big 9999-1
XSETID s2 10-0
XSETID s2 11-0 ENTRIESADDED 5 MAXDELETEDID 1-0
XGROUP CREATE s g 0
XGROUP CREATE s g 0
XGROUP CREATE m g $ MKSTREAM
XREADGROUP GROUP g c COUNT 1 STREAMS s >
XREADGROUP GROUP g c STREAMS s >
XREADGROUP GROUP g c STREAMS s >
XREADGROUP GROUP g c STREAMS s 0
XREADGROUP GROUP g c9 STREAMS s 0
XGROUP CREATE s g2 0
XREADGROUP GROUP g2 n NOACK STREAMS s >
XACK s g 1-1
XACK s g 1-1
XCLAIM s g d 0 1-1 FORCE
XCLAIM s g d 0 1-1 JUSTID
XCLAIM s g d 0 1-1 LASTID 99-0
XCLAIM s g e 0 7-7 LASTID 100-0
XCLAIM s g e 0 7-7
XDEL s 1-1
XCLAIM s g e 0 1
XAUTOCLAIM s g f 0 0
XAUTOCLAIM s g f 0 0
XGROUP SETID s g 0
XREADGROUP GROUP g z STREAMS s >
XGROUP CREATECONSUMER s g q
XGROUP DELCONSUMER s g z
XGROUP DESTROY s g2
XGROUP SETID s g $ ENTRIESREAD 3
MULTI
XADD s * k v
XREADGROUP GROUP g c STREAMS s >
EXEC
""")


def test_propagation_matches_redis_aof(aof_pair):
    mine, theirs = _propagated(aof_pair, lambda port: run(port, AOF_SCRIPT))
    assert any(x.startswith('"XCLAIM"') for x in mine)
    assert '"XGROUP" "SETID" "s2"' not in mine
    assert mine == theirs


def test_propagation_of_served_blocked_clients_matches_redis_aof(aof_pair):
    mine, theirs = _propagated(aof_pair, lambda port: blocking_scenario(port))
    assert mine == theirs


def test_propagation_of_random_sequences_matches_redis_aof(aof_pair):
    script = random_script(random.Random(11), 300)
    mine, theirs = _propagated(aof_pair, lambda port: run(port, script))
    assert mine == theirs


def _commands_by_key(data: bytes) -> dict:
    """An AOF's commands grouped by key (a rewrite's key order follows each
    server's hash table)."""
    out: dict = {}
    pos = 0
    while pos < len(data):
        nl = data.index(b"\r\n", pos)
        n = int(data[pos + 1:nl])
        args = []
        q = nl + 2
        for _ in range(n):
            nl2 = data.index(b"\r\n", q)
            ln = int(data[q + 1:nl2])
            args.append(data[nl2 + 2:nl2 + 2 + ln])
            q = nl2 + 4 + ln
        pos = q
        if args[0] != b"SELECT":
            out.setdefault(args[2] if args[0] == b"XGROUP" else args[1], []).append(args)
    return out


def test_aof_rewrite_matches_redis_and_reloads():
    """The same data (RESTOREd from one payload, so times agree) rewritten by
    both servers without the RDB preamble gives the same commands, and both
    reload them to the same streams."""
    src = Proc(redis_server=True).start()
    try:
        run(src.port, STATE)
        sc = redis.Redis(port=src.port)
        payloads = {k: sc.dump(k) for k in ("s", "e", "e2")}
    finally:
        src.cleanup()
    args = ["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]
    procs = [Proc(args=args).start(), Proc(redis_server=True, args=args).start()]
    try:
        bases = []
        for proc in procs:
            c = proc.client()
            for k, v in payloads.items():
                c.restore(k, 0, v)
            c.bgrewriteaof()
            wait_until(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0
                       and c.info("persistence")["aof_rewrites"] >= 1, what="rewrite")
            d = os.path.join(proc.dir, "appendonlydir")
            base = [f for f in os.listdir(d) if ".base." in f][0]
            bases.append(_commands_by_key(open(os.path.join(d, base), "rb").read()))
            c.close()
        assert bases[0] == bases[1]
        assert [a[0] for a in bases[0][b"e2"]] == [b"XADD", b"XSETID"]   # the MAXLEN 0 trick
        assert sum(a[0] == b"XCLAIM" for a in bases[0][b"s"]) == 6
        for proc in procs:
            proc.stop()
            proc.start()
        seen = re.compile(rb"seen-time\r\n:\d+")
        for k in payloads:
            mine, theirs = (seen.sub(b"", full(proc.port, k)) for proc in procs)
            assert mine == theirs
    finally:
        for proc in procs:
            proc.cleanup()


# ------------------------------------------------------------------ replication
_SEEN = re.compile(rb"seen-time\r\n:\d+")

AFTER_SYNC = [["XREADGROUP", "GROUP", "g2", "dave", "STREAMS", "s", ">"],
              ["XADD", "s", "70-0", "after", "sync"],
              ["XREADGROUP", "GROUP", "g1", "alice", "COUNT", "3", "STREAMS", "s", ">"],
              ["XREADGROUP", "GROUP", "g3", "nack", "NOACK", "STREAMS", "s", ">"],
              ["XCLAIM", "s", "g1", "erin", "0", "4-0", "7-0"],
              ["XDEL", "s", "8-0"], ["XAUTOCLAIM", "s", "g1", "fred", "0", "0", "COUNT", "3"],
              ["XADD", "s", "MAXLEN", "~", "3", "90-0", "trim", "me"],
              ["XGROUP", "CREATE", "t", "g", "0", "MKSTREAM"], ["XADD", "t", "1-1", "x", "y"],
              ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "t", ">"]]


@pytest.mark.parametrize("primary_is_pynode", [True, False],
                         ids=["pynode-primary", "redis-primary"])
def test_pynode_replica_matches_redis_replica(primary_is_pynode):
    """A full sync of streams with groups, then the commands streamed after
    it: a pynode replica ends with exactly what a redis-server replica of
    the same primary has (seen times are the replicas' own clocks)."""
    primary = Proc(redis_server=not primary_is_pynode,
                   args=["--repl-diskless-sync-delay", "0"]).start()
    replicas = [Proc().start(), Proc(redis_server=True).start()]
    try:
        run(primary.port, STATE)
        for rp in replicas:
            c = rp.client()
            c.replicaof("127.0.0.1", primary.port)
            wait_until(lambda: c.info("replication")["master_link_status"] == "up", what="link")
            c.close()
        run(primary.port, AFTER_SYNC)
        pc = primary.client()
        assert pc.execute_command("WAIT", 2, 5000) == 2
        pc.close()
        for k in ("s", "e", "e2", "t"):
            mine, theirs = (_SEEN.sub(b"", full(rp.port, k)) for rp in replicas)
            assert mine == theirs, k
            assert b"erin" in mine or k != "s"
    finally:
        primary.cleanup()
        for rp in replicas:
            rp.cleanup()
