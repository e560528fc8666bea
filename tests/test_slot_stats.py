"""CLUSTER SLOT-STATS (Valkey 8) and the per-slot counters (pynode/slotstats.py).

One node owns slots 0..8191 (cluster-require-full-coverage no, so it serves
them); the counters are checked byte for byte after a known workload, the
replies in both protocols, the errors in Valkey's words.  A 3-primary cluster
then finds the hot slot of a skewed load with ORDERBY.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis

from tests.cluster_helpers import (Cluster, free_ports, key_for_slot, keyslot,
                                   single_node_cluster)
from tests.helpers import Proc, enc, raw_command, wait_ping, wait_until

MINE = 8192          # the node owns slots [0, MINE)


@pytest.fixture(scope="module")
def node():
    p = single_node_cluster(["--cluster-require-full-coverage", "no",
                             "--cluster-slot-stats-enabled", "yes"], 0, MINE - 1)
    yield p
    p.cleanup()


@pytest.fixture
def r(node):
    c = node.client()
    c.config_set("cluster-slot-stats-enabled", "yes")
    c.flushall()
    c.config_resetstat()
    yield c
    c.close()


def stats(c, *args) -> list:
    """CLUSTER SLOT-STATS ... as [(slot, {metric: value})] (RESP2 reply)."""
    out = []
    for slot, flat in c.execute_command("CLUSTER", "SLOT-STATS", *args):
        pairs = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2])
        m = {(k.decode() if isinstance(k, bytes) else k): v for k, v in pairs}
        out.append((slot, m))
    return out


def one(c, slot: int) -> dict:
    [(s, m)] = stats(c, "SLOTSRANGE", slot, slot)
    assert s == slot
    return m


def totals(c) -> dict:
    t = {"cpu-usec": 0, "network-bytes-in": 0, "network-bytes-out": 0}
    for _, m in stats(c, "SLOTSRANGE", 0, 16383):
        for k in t:
            t[k] += m[k]
    return t


def conversation(port: int, *cmds) -> list[bytes]:
    """Send commands one at a time on one connection; each raw reply."""
    import hiredis
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for cmd in cmds:
            s.sendall(enc(*cmd))
            reader = hiredis.Reader()
            buf = b""
            while True:
                data = s.recv(65536)
                assert data, "connection closed"
                buf += data
                reader.feed(data)
                if reader.gets() is not False:
                    break
            out.append(buf)
    return out


# ---------------------------------------------------------------- replies
def test_reply_shape_resp2_and_resp3(node, r):
    body = (b"$9\r\nkey-count\r\n:0\r\n$8\r\ncpu-usec\r\n:0\r\n"
            b"$16\r\nnetwork-bytes-in\r\n:0\r\n$17\r\nnetwork-bytes-out\r\n:0\r\n")
    got = raw_command(node.port, enc("CLUSTER", "SLOT-STATS", "SLOTSRANGE", 7, 7), replies=1)
    assert got == b"*1\r\n*2\r\n:7\r\n*8\r\n" + body
    got = raw_command(node.port, enc("HELLO", 3) + enc("CLUSTER", "SLOT-STATS", "SLOTSRANGE",
                                                       7, 7), replies=2)
    assert got.endswith(b"*1\r\n*2\r\n:7\r\n%4\r\n" + body)
    # off: key-count only
    r.config_set("cluster-slot-stats-enabled", "no")
    got = raw_command(node.port, enc("CLUSTER", "SLOT-STATS", "ORDERBY", "key-count",
                                     "LIMIT", 1, "ASC"), replies=1)
    assert got == b"*1\r\n*2\r\n:0\r\n*2\r\n$9\r\nkey-count\r\n:0\r\n"
    got = raw_command(node.port, enc("HELLO", 3) + enc("CLUSTER", "SLOT-STATS", "ORDERBY",
                                                       "key-count", "LIMIT", 1, "ASC"), replies=2)
    assert got.endswith(b"*1\r\n*2\r\n:0\r\n%1\r\n$9\r\nkey-count\r\n:0\r\n")


def test_errors(r):
    cases = [
        (("SLOT-STATS",), "wrong number of arguments for 'cluster|slot-stats' command"),
        (("SLOT-STATS", "SLOTSRANGE"), "wrong number of arguments for 'cluster|slot-stats'"),
        (("SLOT-STATS", "SLOTSRANGE", 1), "unknown subcommand or wrong number of arguments "
                                          "for 'SLOT-STATS'. Try CLUSTER HELP."),
        (("SLOT-STATS", "SLOTSRANGE", 1, 2, 3), "unknown subcommand or wrong number"),
        (("SLOT-STATS", "NOPE", 1), "unknown subcommand or wrong number of arguments for "
                                    "'SLOT-STATS'"),
        (("SLOT-STATS", "SLOTSRANGE", 5, 4),
         "Start slot number 5 is greater than end slot number 4"),
        (("SLOT-STATS", "SLOTSRANGE", -1, 4), "Invalid or out of range slot"),
        (("SLOT-STATS", "SLOTSRANGE", 0, 16384), "Invalid or out of range slot"),
        (("SLOT-STATS", "SLOTSRANGE", "a", 1), "Invalid or out of range slot"),
        (("SLOT-STATS", "ORDERBY", "memory"), "Unrecognized sort metric for ORDERBY."),
        (("SLOT-STATS", "ORDERBY", "key-count", "LIMIT", 0),
         "Limit has to lie in between 1 and 16384 (maximum number of slots)."),
        (("SLOT-STATS", "ORDERBY", "key-count", "LIMIT", 16385), "Limit has to lie in"),
        (("SLOT-STATS", "ORDERBY", "key-count", "LIMIT", "x"), "Limit has to lie in"),
        (("SLOT-STATS", "ORDERBY", "key-count", "LIMIT"), "syntax error"),
        (("SLOT-STATS", "ORDERBY", "key-count", "UP"), "syntax error"),
        (("SLOT-STATS", "ORDERBY", "key-count", "ASC", "DESC"),
         "Multiple filters of the same type are disallowed."),
        (("SLOT-STATS", "ORDERBY", "key-count", "LIMIT", 1, "LIMIT", 2),
         "Multiple filters of the same type are disallowed."),
    ]
    for args, msg in cases:
        with pytest.raises(redis.ResponseError) as e:
            r.execute_command("CLUSTER", *args)
        assert msg in str(e.value), (args, str(e.value))
    # the metrics other than key-count need cluster-slot-stats-enabled
    r.config_set("cluster-slot-stats-enabled", "no")
    for metric in ("cpu-usec", "network-bytes-in", "network-bytes-out"):
        with pytest.raises(redis.ResponseError, match="Unrecognized sort metric"):
            r.execute_command("CLUSTER", "SLOT-STATS", "ORDERBY", metric)
    assert stats(r, "ORDERBY", "KEY-COUNT", "LIMIT", 1)[0][1] == {"key-count": 0}


def test_not_in_cluster_mode_and_not_in_command():
    with Proc() as p:
        c = p.client()
        with pytest.raises(redis.ResponseError, match="This instance has cluster support "
                                                       "disabled"):
            c.execute_command("CLUSTER", "SLOT-STATS", "SLOTSRANGE", 0, 1)
        # Redis 7.0's COMMAND does not know it
        listed = raw_command(p.port, enc("COMMAND", "LIST"), replies=1)
        assert b"cluster|slots" in listed and b"slot-stats" not in listed
        assert raw_command(p.port, enc("COMMAND", "INFO", "cluster|slot-stats"), replies=1) \
            == raw_command(p.port, enc("COMMAND", "INFO", "cluster|nosuch"), replies=1)
        assert b"slot-stats" not in raw_command(p.port, enc("COMMAND", "INFO", "cluster"),
                                                replies=1)
        # CONFIG GET shows the (hidden) directive for its exact name only
        assert c.config_get("cluster-slot-stats-enabled") == {
            "cluster-slot-stats-enabled": "no"}
        assert "cluster-slot-stats-enabled" not in c.config_get("*")
        with pytest.raises(redis.ResponseError, match="argument must be 'yes' or 'no'"):
            c.config_set("cluster-slot-stats-enabled", "maybe")


# ---------------------------------------------------------------- semantics
def test_slotsrange_lists_only_my_slots(r):
    assert [s for s, _ in stats(r, "SLOTSRANGE", MINE - 2, MINE + 1)] == [MINE - 2, MINE - 1]
    assert stats(r, "SLOTSRANGE", MINE, 16383) == []
    assert len(stats(r, "SLOTSRANGE", 0, 16383)) == MINE


def test_orderby_limit_and_order(r):
    a, b, c = 300, 200, 100          # slots with 3, 2 and 1 keys
    for slot, n in ((a, 3), (b, 2), (c, 1)):
        for i in range(n):
            r.set("%s:%d" % (key_for_slot(slot), i), "v")
    top = stats(r, "ORDERBY", "key-count", "LIMIT", 3)
    assert [(s, m["key-count"]) for s, m in top] == [(a, 3), (b, 2), (c, 1)]
    assert set(top[0][1]) == {"key-count", "cpu-usec", "network-bytes-in",
                              "network-bytes-out"}
    # ties: lower slot first, in both orders
    assert [s for s, _ in stats(r, "ORDERBY", "key-count", "ASC", "LIMIT", 3)] == [0, 1, 2]
    assert [s for s, _ in stats(r, "ORDERBY", "key-count", "LIMIT", 5, "DESC")] == \
        [a, b, c, 0, 1]
    # no LIMIT: every slot of mine
    assert len(stats(r, "orderby", "key-count")) == MINE
    # ordered by a counter
    assert stats(r, "ORDERBY", "network-bytes-in", "LIMIT", 1)[0][0] == a


def test_counts_after_a_known_workload(node, r):
    s = 1234
    k = key_for_slot(s)
    replies = conversation(node.port, ("SET", k, "hello"), ("GET", k), ("GET", k + "x"),
                           ("PING",), ("MSET", key_for_slot(1), 1, key_for_slot(2), 2))
    assert replies[:2] == [b"+OK\r\n", b"$5\r\nhello\r\n"]
    m = one(r, s)
    sent = enc("SET", k, "hello") + enc("GET", k) + enc("GET", k + "x")
    assert m["network-bytes-in"] == len(sent)
    assert m["network-bytes-out"] == len(b"+OK\r\n$5\r\nhello\r\n$-1\r\n")
    assert m["cpu-usec"] > 0 and m["key-count"] == 1
    # keyless (PING) and cross-slot (CROSSSLOT) commands count for no slot
    assert replies[4].startswith(b"-CROSSSLOT")
    assert totals(r) == {k2: m[k2] for k2 in ("cpu-usec", "network-bytes-in",
                                               "network-bytes-out")}


def test_multi_exec_counts_for_the_transaction_slot(node, r):
    t = 2020
    a, b = key_for_slot(t) + "a", key_for_slot(t) + "b"
    cmds = [("MULTI",), ("SET", a, 1), ("INCR", b), ("EXEC",)]
    replies = conversation(node.port, *cmds)
    assert replies[3] == b"*2\r\n+OK\r\n:1\r\n"
    m = one(r, t)
    # MULTI's 15 bytes come with EXEC; the queued commands count as they arrive
    assert m["network-bytes-in"] == sum(len(enc(*c)) for c in cmds)
    assert m["network-bytes-out"] == len(b"+QUEUED\r\n" * 2 + replies[3])
    assert m["cpu-usec"] > 0


def test_script_counts_for_its_keys_slot(node, r):
    s = 4000
    k = key_for_slot(s)
    cmd = ("EVAL", "redis.call('set', KEYS[1], 'x') return redis.call('get', KEYS[1])", 1, k)
    [reply] = conversation(node.port, cmd)
    assert reply == b"$1\r\nx\r\n"
    m = one(r, s)
    assert m["network-bytes-in"] == len(enc(*cmd))
    assert m["network-bytes-out"] == len(reply)
    assert m["cpu-usec"] > 0
    # a script allowed to cross slots counts for none, whatever keys it declares
    r.config_resetstat()
    assert r.eval("#!lua flags=allow-cross-slot-keys\nreturn redis.call('get', KEYS[1])",
                  1, k) == b"x"
    assert totals(r) == {"cpu-usec": 0, "network-bytes-in": 0, "network-bytes-out": 0}


def test_sharded_pubsub_and_blocked_clients(node, r):
    ch_slot, list_slot = 5000, 6000
    ch = key_for_slot(ch_slot)
    sub = node.client()
    ps = sub.pubsub()
    ps.ssubscribe(ch)
    wait_until(lambda: ps.get_message(timeout=0.1) is not None, what="ssubscribe")
    before = one(r, ch_slot)["network-bytes-out"]
    assert r.execute_command("SPUBLISH", ch, "hi") == 1
    msg = b"*3\r\n$8\r\nsmessage\r\n$%d\r\n%s\r\n$2\r\nhi\r\n" % (len(ch), ch.encode())
    # the subscriber's message and the publisher's :1
    assert one(r, ch_slot)["network-bytes-out"] - before == len(msg) + len(b":1\r\n")
    ps.close()
    sub.close()
    # a BLPOP served later: its reply and the time of serving it count
    lk = key_for_slot(list_slot)
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(enc("BLPOP", lk, 5))
        wait_until(lambda: r.info("clients")["blocked_clients"] == 1, what="blocked")
        r.rpush(lk, "v")
        reply = s.recv(1024)
    assert reply == b"*2\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(lk), lk.encode())
    m = one(r, list_slot)
    assert m["network-bytes-out"] == len(reply) + len(b":1\r\n")
    assert m["network-bytes-in"] == len(enc("BLPOP", lk, 5)) + len(enc("RPUSH", lk, "v"))


def test_off_counts_nothing_and_resetstat_clears(node, r):
    s = 777
    k = key_for_slot(s)
    r.config_set("cluster-slot-stats-enabled", "no")
    r.set(k, "1")
    r.config_set("cluster-slot-stats-enabled", "yes")
    m = one(r, s)
    assert m == {"key-count": 1, "cpu-usec": 0, "network-bytes-in": 0, "network-bytes-out": 0}
    r.get(k)
    assert one(r, s)["network-bytes-in"] > 0
    r.config_resetstat()
    assert one(r, s) == {"key-count": 1, "cpu-usec": 0, "network-bytes-in": 0,
                         "network-bytes-out": 0}


def test_counting_goes_on_after_a_busy_script(node, r):
    # a busy script diverts the dispatcher (-BUSY for others) and puts it back
    r.config_set("busy-reply-threshold", 50)
    r.eval("return 1", 0)           # the client's scripts now run where they can yield
    try:
        r.eval("local t = redis.call('time') "
               "while true do local n = redis.call('time') "
               "if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 300000 then break end end", 0)
    finally:
        r.config_set("busy-reply-threshold", 5000)
    wait_until(lambda: "Slow script detected" in node.log(), what="the slow script's log line")
    s = 909
    r.get(key_for_slot(s))
    assert one(r, s)["network-bytes-in"] == len(enc("GET", key_for_slot(s)))


def test_a_slot_with_a_new_owner_starts_from_zero(r):
    s = MINE - 1
    k = key_for_slot(s)
    r.get(k)
    assert one(r, s)["network-bytes-in"] > 0
    r.execute_command("CLUSTER", "DELSLOTS", s)
    r.execute_command("CLUSTER", "ADDSLOTS", s)
    assert one(r, s)["network-bytes-in"] == 0


# ---------------------------------------------------------------- a real cluster
def test_hot_slot_of_a_skewed_load_on_three_primaries():
    with Cluster(primaries=3, replicas=0, server="pynode",
                 extra=["--cluster-slot-stats-enabled", "yes"]) as cl:
        rc = cl.cluster_client()
        try:
            hot = "user:42:profile"
            value = "x" * 200
            t0 = time.monotonic()
            pipe = rc.pipeline()
            for i in range(600):
                pipe.set(hot, value)
                pipe.get(hot)
                if i % 30 == 0:
                    pipe.set("cold:%d" % i, "v")
            pipe.execute()
            assert time.monotonic() - t0 < 30
            owner = next(n for n in cl.nodes if keyslot(hot) in
                         next(x for x in n.nodes() if "myself" in x["flags"])["slots"])
            for metric in ("cpu-usec", "network-bytes-in", "network-bytes-out"):
                [(slot, m)] = stats(owner.client(), "ORDERBY", metric,
                                    "LIMIT", 1)
                assert slot == keyslot(hot), metric
            # the other primaries never saw it
            for n in cl.nodes:
                if n is not owner:
                    top = stats(n.client(), "ORDERBY", "cpu-usec",
                                "LIMIT", 1)[0]
                    assert top[0] != keyslot(hot)
                    assert top[1]["network-bytes-in"] < 1000
        finally:
            rc.close()



def test_replication_stream_counts_once_per_replica():
    replica = Proc(["--cluster-enabled", "yes", "--appendonly", "no"],
                   port=free_ports(1)[0]).start(wait=False)
    try:
        primary = single_node_cluster(["--cluster-slot-stats-enabled", "yes",
                                       "--repl-diskless-sync-delay", "0"])
    except BaseException:
        replica.cleanup()
        raise
    try:
        wait_ping(replica.port)
        pc, rc = primary.client(), replica.client(decode_responses=True)
        rc.execute_command("CLUSTER", "MEET", "127.0.0.1", primary.port)
        pid = pc.execute_command("CLUSTER", "MYID").decode()
        wait_until(lambda: pid in rc.execute_command("CLUSTER", "NODES"), what="meet")
        rc.execute_command("CLUSTER", "REPLICATE", pid)
        wait_until(lambda: (pc.info("replication").get("slave0") or {}).get("state")
                   == "online", what="replica online")
        s = 3333
        k = key_for_slot(s)
        pc.set(key_for_slot(s + 1), "first")          # the stream's SELECT goes with it
        pc.config_resetstat()
        pc.set(k, "v")
        m = one(pc, s)
        # the reply, and the propagated SET once for the one replica
        assert m["network-bytes-out"] == len(b"+OK\r\n") + len(enc("SET", k, "v"))
        # the replica lists its primary's slots
        wait_until(lambda: len(stats(rc, "SLOTSRANGE", 0, 16383)) == 16384,
                   what="the replica's view of its primary's slots")
    finally:
        replica.cleanup()
        primary.cleanup()


def test_a_slot_given_away_and_back_counts_from_zero(node, r):
    """A slot whose owner changes starts its counters again (the one slot
    only: its neighbours in the same block of slots keep theirs)."""
    moved, kept = 5000, 5001
    for slot in (moved, kept):
        k = key_for_slot(slot)
        r.set(k, "v")
        r.get(k)
        r.delete(k)
    before = {s: one(r, s) for s in (moved, kept)}
    assert all(m["network-bytes-in"] > 0 for m in before.values())
    assert r.execute_command("CLUSTER", "DELSLOTS", moved) == b"OK"
    assert r.execute_command("CLUSTER", "ADDSLOTS", moved) == b"OK"
    assert one(r, moved) == {"key-count": 0, "cpu-usec": 0, "network-bytes-in": 0,
                             "network-bytes-out": 0}
    assert one(r, kept) == before[kept]
