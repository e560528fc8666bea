"""`pynode proxy`: the pure parts (framing, slot map, split/join, SCAN cursor) as
units; then a proxy process in front of a 3+3 pynode cluster driven by plain
redis-py (`redis.Redis`) and node-redis (`createClient`): cross-slot MGET/MSET/DEL,
fan-out commands, transactions, pub/sub, bad input, a node dying mid-reply, and a
ledger run through a manual failover and a reshard."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

import hiredis
import pytest
import redis

from pynode.proxy import core as px
from tests.chaos import ChaosCluster
from tests.cluster_helpers import Cluster, free_ports, key_for_slot, keyslot, run
from tests.helpers import Proc, enc, raw_command, wait_ping, wait_until

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


# ---------------------------------------------------------------- units

FRAMES = [b"+OK\r\n", b"-ERR x\r\n", b":12\r\n", b"$3\r\nfoo\r\n", b"$-1\r\n", b"*-1\r\n",
          b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", b"_\r\n", b",1.5\r\n", b"#t\r\n", b"(123\r\n",
          b"%1\r\n+k\r\n*2\r\n:1\r\n$0\r\n\r\n", b"~1\r\n:1\r\n", b">2\r\n+a\r\n+b\r\n",
          b"=8\r\ntxt:abcd\r\n", b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", b"$4\r\na\r\nb\r\n",
          b"*0\r\n"]


def test_reply_end_finds_every_frame_at_any_split():
    stream = b"".join(FRAMES)
    for cut in range(len(stream) + 1):
        got, pos = [], 0
        buf = stream[:cut]
        while True:
            end = px.reply_end(buf, pos)
            if end < 0:
                break
            got.append(buf[pos:end])
            pos = end
        assert got == FRAMES[:len(got)]
        assert sum(map(len, got)) <= cut < sum(map(len, FRAMES[:len(got) + 1])) or \
            len(got) == len(FRAMES)


def test_reply_end_rejects_garbage():
    for bad in (b"?what\r\n", b"$x\r\nab\r\n", b"*abc\r\n"):
        with pytest.raises(px.FrameError):
            px.reply_end(bad)


def test_elements_of_aggregates():
    assert px.elements(b"*3\r\n$1\r\na\r\n$-1\r\n_\r\n") == [b"$1\r\na\r\n", b"$-1\r\n",
                                                             b"_\r\n"]
    assert px.elements(b"%1\r\n+k\r\n:1\r\n") == [b"+k\r\n", b":1\r\n"]
    assert px.elements(b"*0\r\n") == []


def test_slot_map_from_cluster_slots():
    m = px.SlotMap()
    reply = [[0, 99, [b"10.0.0.1", 7000, b"a"], [b"10.0.0.2", 7003, b"d"]],
             [100, 16383, [b"", 7001, b"b"]]]
    m.load_slots(reply, "127.0.0.1")
    assert m.primary[0] == ("10.0.0.1", 7000) and m.replicas[99] == (("10.0.0.2", 7003),)
    assert m.primary[100] == ("127.0.0.1", 7001) and m.replicas[100] == ()
    assert m.covered() and m.primaries() == [("10.0.0.1", 7000), ("127.0.0.1", 7001)]
    assert m.shards() == [0, 100]
    e = m.epoch
    m.move(5, ("10.0.0.9", 1))
    assert m.primary[5] == ("10.0.0.9", 1) and m.epoch == e + 1
    m.load_slots([[0, 10, [b"h", 1, b"x"]]], "h")
    assert not m.covered()


def test_split_and_join_keep_the_clients_order():
    argv = [b"MGET", b"a", b"{a}x", b"b", b"a"]
    groups = px.split(argv, 1)
    assert [(s, sub, pos) for s, sub, pos in groups] == [
        (keyslot("a"), [b"MGET", b"a", b"{a}x", b"a"], [0, 1, 3]),
        (keyslot("b"), [b"MGET", b"b"], [2])]
    parts = [([0, 1, 3], b"*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n1\r\n"), ([2], b"*1\r\n$1\r\n2\r\n")]
    assert px.join(b"mget", parts, 4) == b"*4\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n$1\r\n1\r\n"
    mset = px.split([b"MSET", b"a", b"1", b"b", b"2", b"{a}c", b"3"], 2)
    assert [sub for _, sub, _ in mset] == [[b"MSET", b"a", b"1", b"{a}c", b"3"],
                                          [b"MSET", b"b", b"2"]]
    assert px.join(b"mset", [([0], b"+OK\r\n"), ([1], b"+OK\r\n")], 2) == b"+OK\r\n"
    assert px.join(b"del", [([0], b":2\r\n"), ([1], b":1\r\n")], 3) == b":3\r\n"
    # an error in one part is the client's reply
    assert px.join(b"del", [([0], b":2\r\n"), ([1], b"-ERR x\r\n")], 3) == b"-ERR x\r\n"


def test_scan_cursor_and_redirect_parsing():
    assert px.scan_cursor(b"0") == (0, 0)
    assert px.scan_cursor(b"%d" % (77 << 10 | 2)) == (2, 77)
    assert px.scan_cursor(b"-1") is None and px.scan_cursor(b"x") is None
    assert px.scan_cursor(b"%d" % (1 << 64)) is None
    assert px.parse_redirect(b"-MOVED 3999 127.0.0.1:6381\r\n") == (3999, ("127.0.0.1", 6381))
    assert px.parse_redirect(b"-ASK 1 ::1:7000\r\n") == (1, ("::1", 7000))
    assert px.parse_redirect(b"-MOVED x\r\n") is None


def test_first_key():
    assert px.first_key("get", [b"GET", b"k"]) == b"k"
    assert px.first_key("eval", [b"EVAL", b"s", b"1", b"k1"]) == b"k1"
    assert px.first_key("eval", [b"EVAL", b"s", b"0"]) is None
    assert px.first_key("xread", [b"XREAD", b"STREAMS", b"s1", b"0"]) == b"s1"
    assert px.first_key("object", [b"OBJECT", b"ENCODING", b"k"]) == b"k"
    assert px.first_key("ping", [b"PING"]) is None
    assert px.first_key("nosuch", [b"NOSUCH", b"x"]) is None


def test_cmd_bytes_is_the_canonical_encoding():
    for argv in ([b"GET", b"k"], [b"SET", b"k", b""], [b"SET", b"k" * 1023, b"v" * 1024],
                 [b"PING"], [b"MSET", b"a", b"1", b"b", b"2"], [b"GET", b"x" * 5000]):
        assert px.cmd_bytes(argv) == hiredis.pack_command(tuple(argv))


def test_replay_safe_commands():
    def safe(*argv):
        return px.replay_safe(px.cmd_bytes([a.encode() for a in argv]))
    for argv in (("GET", "k"), ("MGET", "a", "b"), ("SET", "k", "v"), ("SET", "k", "v", "EX",
                 "10", "XX"), ("MSET", "a", "1"), ("DEL", "a", "b"), ("UNLINK", "a"),
                 ("HSET", "h", "f", "v"), ("SADD", "s", "m"), ("ZADD", "z", "1", "m"),
                 ("SETEX", "k", "10", "v"), ("PEXPIREAT", "k", "99999999999"),
                 ("hset", "h", "f", "v")):
        assert safe(*argv), argv
    for argv in (("INCR", "k"), ("LPUSH", "l", "x"), ("APPEND", "k", "x"),
                 ("SET", "k", "v", "NX"), ("SET", "k", "v", "get"), ("SETNX", "k", "v"),
                 ("MSETNX", "a", "1"), ("ZADD", "z", "INCR", "1", "m"), ("EXPIRE", "k", "9"),
                 ("RESTORE", "k", "0", "x"), ("RENAME", "a", "b"), ("BLPOP", "l", "0"),
                 ("EVAL", "return 1", "0"), ("SPOP", "s"), ("NOSUCH", "k"), ("CONFIG", "SET")):
        assert not safe(*argv), argv


# ---------------------------------------------------------------- processes

class ProxyProc:
    def __init__(self, seeds: list[int], *extra: str, exclude: set | None = None) -> None:
        self.port = free_ports(1, exclude=exclude or set())[0]
        self.log = "/tmp/pynode-proxy-%d.log" % self.port
        args = [sys.executable, "-m", "pynode", "proxy", "--port", str(self.port)]
        for p in seeds:
            args += ["--cluster", "127.0.0.1:%d" % p]
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen(args + list(extra), stdout=self.fh, stderr=self.fh,
                                     stdin=subprocess.DEVNULL)
        wait_ping(self.port, timeout=20)

    def client(self, **kw) -> redis.Redis:
        kw.setdefault("socket_timeout", 20)
        kw.setdefault("decode_responses", True)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.fh.close()
        os.unlink(self.log)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(primaries=3, replicas=1) as c:
        yield c


@pytest.fixture(scope="module")
def proxy(cluster):
    p = ProxyProc(cluster.ports[:2], exclude=set(cluster.ports))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def reference():
    """A standalone redis-server 7.0 for byte comparisons."""
    p = Proc(["--save", ""], redis_server=True).start()
    try:
        yield p
    finally:
        p.cleanup()


def test_cross_slot_multi_key_commands(cluster, proxy):
    r = proxy.client()
    keys = ["mk:%d" % i for i in range(40)]
    assert len({keyslot(k) for k in keys}) > 30
    assert r.mset({k: "v%d" % i for i, k in enumerate(keys)}) is True
    assert r.mget(keys + ["mk:none"]) == ["v%d" % i for i in range(40)] + [None]
    rc = cluster.cluster_client()
    try:
        assert [rc.get(k) for k in keys] == ["v%d" % i for i in range(40)]
    finally:
        rc.close()
    assert r.exists(*keys, "mk:none", keys[0]) == 41
    assert r.touch(*keys) == 40
    assert r.delete(*keys[:20], "mk:none") == 20
    assert r.unlink(*keys) == 20
    assert r.exists(*keys) == 0
    # all-or-nothing across slots: Redis's CROSSSLOT, nothing written
    with pytest.raises(redis.ResponseError, match="hash to the same slot"):
        r.msetnx({"nx:a": 1, "nx:b": 2})
    assert r.exists("nx:a", "nx:b") == 0
    assert r.msetnx({"{nx}a": 1, "{nx}b": 2}) is True
    r.delete("{nx}a", "{nx}b")
    # a pipeline over many slots with an error in the middle: replies in order
    r.lpush("mk:list", "x")
    pipe = r.pipeline(transaction=False)
    for k in keys[:10]:
        pipe.set(k, k).get(k)
    pipe.get("mk:list").incr(keys[0]).get(keys[1])
    res = pipe.execute(raise_on_error=False)
    assert res[:20] == [x for k in keys[:10] for x in (True, k)]
    assert "WRONGTYPE" in str(res[20]) and "not an integer" in str(res[21])
    assert res[22] == keys[1]
    r.delete("mk:list", *keys)
    info = r.info("proxy")
    assert info["proxy_split_commands"] >= 6 and info["proxy_primaries"] == 3
    assert info["proxy_slots_covered"] == 16384


def test_fanout_scan_dbsize_keys_flushall(cluster, proxy):
    r = proxy.client()
    r.flushall()
    assert r.dbsize() == 0
    keys = {"sc:%d" % i for i in range(300)}
    r.mset({k: "x" for k in keys})
    r.expire("sc:1", 1000)
    assert r.dbsize() == 300
    assert set(r.keys("sc:*")) == keys
    seen = []
    cursor = 0
    for _ in range(1000):
        cursor, batch = r.scan(cursor, count=20)
        seen.extend(batch)
        if cursor == 0:
            break
    assert cursor == 0 and sorted(seen) == sorted(keys)   # each key exactly once
    assert set(r.scan_iter(match="sc:1*")) == {k for k in keys if k.startswith("sc:1")}
    ks = r.info("keyspace")["db0"]
    assert (ks["keys"], ks["expires"]) == (300, 1) and 0 <= ks["avg_ttl"] <= 1000000
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        r.scan("abc")
    assert r.flushall() is True and r.dbsize() == 0


def test_single_key_commands_and_resp3(proxy):
    r = proxy.client(protocol=3)
    assert r.set("r3:k", "v") is True and r.hset("r3:h", mapping={"a": "1"}) == 1
    assert r.hgetall("r3:h") == {"a": "1"}
    assert r.mget("r3:k", "r3:h", "r3:none") == ["v", None, None]
    assert r.incrbyfloat("r3:f", 1.5) == 1.5
    assert r.eval("return redis.call('get', KEYS[1])", 1, "r3:k") == "v"
    raw = raw_command(proxy.port, enc("HELLO", "3") + enc("MGET", "r3:k", "r3:none"),
                      replies=2)
    assert raw.endswith(b"*2\r\n$1\r\nv\r\n_\r\n")
    r.delete("r3:k", "r3:h", "r3:f")


def test_scripts_and_functions_on_every_primary(proxy):
    r = proxy.client()
    sha = r.script_load("return redis.call('incr', KEYS[1])")
    keys = ["sf:%d" % i for i in range(12)]        # keys on every primary
    assert [r.evalsha(sha, 1, k) for k in keys] == [1] * 12
    lib = "#!lua name=proxylib\nredis.register_function('pget', " \
          "function(keys) return redis.call('get', keys[1]) end)"
    assert r.function_load(lib, replace=True) == "proxylib"
    assert [r.fcall("pget", 1, k) for k in keys] == ["1"] * 12
    assert r.function_delete("proxylib") is True
    assert r.script_flush() is True
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha(sha, 1, keys[0])
    r.delete(*keys)


def test_same_bytes_as_redis_server(proxy, reference):
    cases = [enc("GET"), enc("NOSUCHCMD", "a"), enc("PING"), enc("PING", "x"),
             enc("ECHO", "hi"), enc("SET", "dk", "v") + enc("LPUSH", "dk", "x"),
             enc("INCR", "dk"), enc("MGET", "dk", "dk:none"), enc("DEL", "dk"),
             enc("SELECT", "0"), enc("HELLO", "4"), enc("EXEC"), enc("DISCARD"),
             enc("MULTI") + enc("MULTI") + enc("DISCARD"),
             enc("CLIENT", "SETNAME", "a b"), enc("AUTH", "nopass"),
             # errors inside MULTI come at queue time; EXEC then refuses it all
             enc("MULTI") + enc("SET", "tk", "1") + enc("GET") + enc("NOSUCH", "x", "y")
             + enc("CONFIG", "NOPE") + enc("CONFIG") + enc("SAVE") + enc("SET", "tk", "2")
             + enc("EXEC") + enc("GET", "tk"),
             enc("MULTI") + enc("NOSUCH") + enc("DISCARD") + enc("MULTI") + enc("SET", "tk", "3")
             + enc("EXEC") + enc("DEL", "tk")]
    for payload in cases:
        reader = hiredis.Reader()
        reader.feed(payload)
        n = 0
        while reader.gets() is not False:
            n += 1
        want = raw_command(reference.port, payload, replies=n)
        got = raw_command(proxy.port, payload, replies=n)
        assert got == want, (payload, got, want)


@pytest.mark.parametrize("payload", [b"*1\r\n$x\r\n", b'SET "a\r\n', b"*2\r\n*1\r\n"])
def test_garbage_closes_that_client_only(proxy, reference, payload):
    other = proxy.client()
    assert other.set("gb:k", "1")
    want = raw_command(reference.port, enc("PING") + payload, read_until_close=True)
    got = raw_command(proxy.port, enc("PING") + payload, read_until_close=True)
    assert got == want and b"Protocol error" in got
    assert other.get("gb:k") == "1" and proxy.alive()
    other.delete("gb:k")


def test_transactions_and_watch(proxy):
    r = proxy.client()
    with r.pipeline(transaction=True) as p:
        p.set("{tx}a", 1).incr("{tx}a").get("{tx}a")
        assert p.execute() == [True, 2, "2"]
    # WATCH: a change by another client aborts the EXEC
    other = proxy.client()
    with r.pipeline(transaction=True) as p:
        p.watch("{tx}a")
        assert p.get("{tx}a") == "2"
        other.set("{tx}a", "changed")
        p.multi()
        p.set("{tx}a", "mine")
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("{tx}a") == "changed"
    with r.pipeline(transaction=True) as p:
        p.watch("{tx}a")
        p.multi()
        p.set("{tx}a", "mine")
        assert p.execute() == [True]
    assert r.get("{tx}a") == "mine"
    # cross-slot inside MULTI: refused at queue time as by a cluster node, then
    # EXECABORT, nothing ran
    with r.pipeline(transaction=True) as p:
        p.set("tx:x", 1).set("tx:y", 2)
        with pytest.raises(redis.ResponseError):
            p.execute()
    assert r.exists("tx:x", "tx:y") == 0
    raw = raw_command(proxy.port, enc("MULTI") + enc("SET", "tx:x", "1")
                      + enc("MSET", "{tx}1", "1", "{tx}2", "2") + enc("SET", "tx:y", "2")
                      + enc("MGET", "tx:x", "tx:y") + enc("EXEC"), replies=6)
    assert raw == (b"+OK\r\n+QUEUED\r\n-CROSSSLOT Keys in request don't hash to the same "
                   b"slot\r\n-CROSSSLOT Keys in request don't hash to the same slot\r\n"
                   b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
                   b"-EXECABORT Transaction discarded because of previous errors.\r\n"), raw
    assert r.exists("tx:x", "tx:y") == 0
    r.delete("{tx}a")


def test_blocking_and_pubsub(proxy):
    r = proxy.client()
    got = []
    t = threading.Thread(target=lambda: got.append(proxy.client().blpop(["bl:q"], 10)))
    t.start()
    time.sleep(0.3)
    assert r.get("{bl:q}x") is None      # the shared links are not held by BLPOP
    r.rpush("bl:q", "x")
    t.join(15)
    assert [list(x) for x in got] == [["bl:q", "x"]]
    ps = proxy.client().pubsub()
    ps.subscribe("ch:1")
    assert ps.get_message(timeout=5)["type"] == "subscribe"
    # PUBLISH counts the receivers on the node that got it (any node, in a cluster)
    assert r.publish("ch:1", "hi") in (0, 1)
    msg = ps.get_message(timeout=5)
    assert msg["type"] == "message" and msg["data"] == "hi"
    ps.close()


def _move_empty_slot(cluster, slot: int, dst: int) -> None:
    """Give an empty slot to another primary as redis-cli --cluster reshard does."""
    src = cluster.owner_of(slot)
    ids = {n["port"]: n["id"] for n in cluster.live_node().nodes()}
    assert cluster.node_by_port(src).call("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    cluster.node_by_port(dst).call("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
    cluster.node_by_port(src).call("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
    for port in (dst, src):
        cluster.node_by_port(port).call("CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
    wait_until(lambda: cluster.owner_of(slot) == dst, timeout=10, what="the slot moved")


def _recv_until(s: socket.socket, want: bytes, timeout: float = 5) -> bytes:
    got = b""
    s.settimeout(timeout)
    while not got.endswith(want):
        data = s.recv(65536)
        assert data, got
        got += data
    return got


def test_sharded_pubsub_and_a_slot_moving_away(cluster, proxy):
    """SSUBSCRIBE through the proxy: messages published straight on the shard
    and through the proxy arrive, with the bytes a subscriber on the node gets;
    when the channel's slot moves, the node's sunsubscribe is passed on (as
    redis-server sends it) and SSUBSCRIBE again follows the slot to its new
    owner."""
    ch = "sp:%s" % key_for_slot(7777)
    slot = keyslot(ch)
    owner = cluster.owner_of(slot)
    other = next(p for p in cluster.primary_ports() if p != owner)
    r = proxy.client()
    via = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    direct = socket.create_connection(("127.0.0.1", owner), timeout=5)
    try:
        for s in (via, direct):
            s.sendall(enc("SSUBSCRIBE", ch))
            assert _recv_until(s, b":1\r\n") == b"*3\r\n$10\r\nssubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (
                len(ch), ch.encode())
        assert cluster.node_by_port(owner).call("SPUBLISH", ch, "on the node") == 2
        assert r.spublish(ch, "through the proxy") == 2
        msgs = b"".join(b"*3\r\n$8\r\nsmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                        % (len(ch), ch.encode(), len(m), m)
                        for m in (b"on the node", b"through the proxy"))
        assert _recv_until(via, msgs) == _recv_until(direct, msgs) == msgs
        # the slot leaves the node: each subscriber gets the same unrequested sunsubscribe
        _move_empty_slot(cluster, slot, other)
        bye = b"*3\r\n$12\r\nsunsubscribe\r\n$%d\r\n%s\r\n:0\r\n" % (len(ch), ch.encode())
        assert _recv_until(via, bye) == _recv_until(direct, bye) == bye
        # subscribing again follows the slot (the node would say MOVED)
        direct.sendall(enc("SSUBSCRIBE", ch))
        assert _recv_until(direct, b"\r\n").startswith(b"-MOVED %d " % slot)
        via.sendall(enc("SSUBSCRIBE", ch))
        assert _recv_until(via, b":1\r\n").startswith(b"*3\r\n$10\r\nssubscribe")
        assert r.spublish(ch, "moved") == 1
        assert _recv_until(via, b"$5\r\nmoved\r\n").startswith(b"*3\r\n$8\r\nsmessage")
        # a plain redis-py PubSub through the proxy
        ps = proxy.client().pubsub()
        ps.ssubscribe(ch)
        assert ps.get_sharded_message(timeout=5)["type"] == "ssubscribe"
        assert r.spublish(ch, "hi") == 2
        m = ps.get_sharded_message(timeout=5)
        assert (m["type"], m["channel"], m["data"]) == ("smessage", ch, "hi")
        ps.close()
    finally:
        via.close()
        direct.close()
        _move_empty_slot(cluster, slot, owner)


def test_info_and_auth_pass_through(proxy):
    r = proxy.client()
    info = r.info()
    assert info["pynode_mode"] == "proxy" and info["connected_clients"] >= 1
    for field in ("proxy_backend_links", "proxy_retries", "proxy_slot_map_refreshes",
                  "total_commands_processed"):
        assert field in info
    # the cluster has no password: the node's own answer reaches the client
    with pytest.raises(redis.AuthenticationError, match="without any password configured"):
        r.execute_command("AUTH", "secret")
    with pytest.raises(redis.AuthenticationError, match="WRONGPASS|invalid username"):
        r.execute_command("AUTH", "nobody", "secret")
    assert r.ping()


def _rss(pid: int) -> int:
    with open("/proc/%d/status" % pid) as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def test_a_client_that_does_not_read_is_not_buffered_without_bound(proxy):
    """A pipeline of GETs whose replies come to ~200 MB, written and not read:
    the proxy stops reading the client's commands once its replies waiting to
    be sent pass the limit (8 MiB) or 256 commands are unanswered, serves
    others meanwhile, and every reply arrives once the client reads."""
    r = proxy.client()
    value = b"v" * 40000
    r.set("bp:big", value)
    reply = b"$%d\r\n%s\r\n" % (len(value), value)
    n = 5000
    base = _rss(proxy.proc.pid)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        payload = enc("GET", "bp:big") * n
        sender = threading.Thread(target=s.sendall, args=(payload,))
        sender.start()
        wait_until(lambda: r.info("proxy")["proxy_clients_reading_paused"] == 1, timeout=10,
                   what="the proxy stopped reading the client")
        time.sleep(1)
        grown = _rss(proxy.proc.pid) - base
        assert r.get("bp:big") == value.decode() and r.ping()     # others are served
        assert r.info("proxy")["proxy_clients_reading_paused"] == 1
        assert grown < 80 << 20, grown          # unbounded, it would be n * 40 KB
        got = 0
        want = len(reply) * n
        tail = b""
        while got < want:
            data = s.recv(1 << 20)
            assert data, "closed after %d of %d bytes" % (got, want)
            got += len(data)
            tail = (tail + data)[-len(reply):]
        sender.join(10)
        assert got == want and tail == reply
    wait_until(lambda: r.info("proxy")["proxy_clients_reading_paused"] == 0, timeout=10,
               what="no client paused")
    r.delete("bp:big")


# ------------------------------------------------------------ a node that misbehaves

class FakeNode:
    """Serves CLUSTER SLOTS (all slots itself), then misbehaves: GET gets half a
    reply and a closed connection, SET, INCR and LPUSH are counted and get a closed
    connection, TYPE gets bytes that are not RESP."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.writes = 0
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        reader = hiredis.Reader()
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                reader.feed(data)
                while True:
                    cmd = reader.gets()
                    if cmd is False:
                        break
                    name = cmd[0].upper()
                    if name == b"CLUSTER":
                        conn.sendall(b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d"
                                     b"\r\n$2\r\nid\r\n" % self.port)
                    elif name == b"GET":
                        conn.sendall(b"$10\r\nabc")
                        return
                    elif name in (b"SET", b"INCR", b"LPUSH"):
                        self.writes += 1
                        return
                    elif name == b"TYPE":
                        conn.sendall(b"?garbage\r\n")
                    else:
                        conn.sendall(b"+OK\r\n")

    def close(self) -> None:
        self.stopped = True
        self.sock.close()


def test_node_dying_mid_reply_and_garbage_from_a_node():
    node = FakeNode()
    p = ProxyProc([node.port], "--retry-timeout", "1")
    try:
        r = p.client()
        with pytest.raises(redis.ResponseError, match="closed the connection before its reply"):
            r.get("k")                   # a read: retried, then a clear error
        for cmd in (("LPUSH", "k", "v"), ("INCR", "k"), ("SET", "k", "v", "GET")):
            before = node.writes
            with pytest.raises(redis.ResponseError, match="may or may not have run"):
                r.execute_command(*cmd)
            assert node.writes == before + 1          # never sent twice
        # a write with the same effect run twice is sent again until --retry-timeout
        before = node.writes
        with pytest.raises(redis.ResponseError, match="closed the connection before its reply"):
            r.execute_command("SET", "k", "v")
        assert node.writes > before + 1
        with pytest.raises(redis.ResponseError, match="closed the connection"):
            r.execute_command("TYPE", "x")
        assert r.ping() and p.alive()
    finally:
        p.stop()
        node.close()


# ------------------------------------------------------------ failover and reshard

def _ledger_keys(writer: int) -> list[str]:
    """12 keys in 12 slots: 6 among the slots the test moves (0-299), 6 elsewhere."""
    return ["w%d:%s" % (writer, key_for_slot(s)) for s in
            [writer * 7 + 50 * j for j in range(6)] + [1000 + writer * 7 + 2000 * j
                                                       for j in range(6)]]


def _ledger_writer(port: int, keys: list[str], stop: threading.Event, out: dict,
                   pipelined: bool = False) -> None:
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30, decode_responses=True)
    expect: dict = {}
    errors = []
    rounds = 0
    while not stop.is_set():
        rounds += 1
        try:
            if rounds % 7 == 0:
                if r.delete(*keys[:6]) > 6:
                    errors.append("DEL counted too many")
                for k in keys[:6]:
                    expect[k] = None
            elif pipelined:
                # one read of SETs and GETs for keys of many slots (the batch path)
                pipe = r.pipeline(transaction=False)
                for k in keys:
                    pipe.set(k, str(rounds))
                    pipe.get(k)
                res = pipe.execute()
                if res != [True, str(rounds)] * len(keys):
                    errors.append("round %d: pipeline replied %r" % (rounds, res))
                for k in keys:
                    expect[k] = str(rounds)
            else:
                r.mset({k: str(rounds) for k in keys})
                for k in keys:
                    expect[k] = str(rounds)
            got = r.mget(keys)
            for k, v in zip(keys, got):
                if v != expect[k]:
                    errors.append("round %d: %s=%r want %r" % (rounds, k, v, expect[k]))
        except redis.RedisError as e:
            errors.append("round %d: %r" % (rounds, e))
            for k in keys:
                expect.pop(k, None)
    out.update(rounds=rounds, errors=errors, expect=expect)


class Ledger:
    """Plain clients writing through the proxy and keeping a ledger: four redis-py
    writers (one pipelining SET/GET over many slots) and one node-redis writer,
    MSET/MGET/DEL across slots, until `finish`."""

    def __init__(self, port: int, seconds: int = 120) -> None:
        node_pkg = os.path.join(NODE_DIR, "node_modules", "redis", "package.json")
        assert os.path.isfile(node_pkg), "run `npm ci --prefix tests/node`"
        self.port = port
        self.stop = threading.Event()
        self.outs: list[dict] = [{} for _ in range(4)]
        self.writers = [threading.Thread(target=_ledger_writer,
                                         args=(port, _ledger_keys(i), self.stop, self.outs[i],
                                               i == 3))
                        for i in range(4)]
        for w in self.writers:
            w.start()
        self.nodejs = subprocess.Popen(["node", os.path.join(NODE_DIR, "proxy_ledger.js"),
                                        str(port), str(seconds), ",".join(_ledger_keys(4))],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)

    def finish(self) -> list[dict]:
        self.stop.set()
        for w in self.writers:
            w.join(60)
        out, errtext = self.nodejs.communicate(timeout=90)   # closes its stdin: it stops
        assert self.nodejs.returncode == 0, errtext
        return self.outs + [json.loads(out.strip().splitlines()[-1])]

    def abort(self) -> None:
        self.stop.set()
        if self.nodejs.poll() is None:
            self.nodejs.kill()
            self.nodejs.communicate(timeout=10)
        for w in self.writers:
            w.join(60)


def _check_ledgers(ledgers: list[dict], cluster, min_rounds: int = 20) -> None:
    """No error reached a client, every writer made progress, and the cluster
    holds exactly what was acknowledged last (0 lost writes)."""
    errors = [e for led in ledgers for e in led["errors"]]
    assert errors == [], errors[:10]
    assert all(led["rounds"] > min_rounds for led in ledgers), [led["rounds"]
                                                                for led in ledgers]
    rc = cluster.cluster_client()
    try:
        for led in ledgers:
            for k, v in led["expect"].items():
                assert rc.get(k) == v, (k, rc.get(k), v)
    finally:
        rc.close()


def test_ledger_through_failover_and_reshard():
    with Cluster(primaries=3, replicas=1) as c:
        c.wait_replicas_synced()
        p = ProxyProc([c.ports[0]], exclude=set(c.ports))
        ledger = Ledger(p.port)
        try:
            time.sleep(2)
            # a SCAN begun before the failover and finished after it
            sr = p.client()
            static = {"st:%d" % i for i in range(200)}
            sr.mset({k: "1" for k in static})
            cursor, seen = sr.scan(0, match="st:*", count=10)
            # a manual failover of the primary of slot 0
            victim = c.owner_of(0)
            primary_id = next(n["id"] for n in c.live_node().nodes() if n["port"] == victim)
            replica = next(n["port"] for n in c.live_node().nodes()
                           if n["master"] == primary_id)
            assert c.node_by_port(replica).call("CLUSTER", "FAILOVER") == "OK"
            wait_until(lambda: c.owner_of(0) == replica, timeout=20,
                       what="the replica took over")
            c.wait_ok(timeout=60)
            while cursor:
                cursor, batch = sr.scan(cursor, match="st:*", count=50)
                seen += batch
            assert set(seen) == static
            # a reshard of its first 300 slots (half the ledger keys) to another primary
            nodes = c.live_node().nodes()
            ids = {n["port"]: n["id"] for n in nodes}
            dst = next(n["port"] for n in nodes if "master" in n["flags"]
                       and n["port"] != replica)
            res = run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % replica,
                       "--cluster-from", ids[replica], "--cluster-to", ids[dst],
                       "--cluster-slots", "300", "--cluster-yes", "--cluster-pipeline", "20"],
                      180)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
            c.wait_agree(timeout=60)
            assert c.owner_of(0) == dst and c.owner_of(299) == dst
            time.sleep(1)
            ledgers = ledger.finish()
            info = p.client().info("proxy")
        finally:
            ledger.abort()
            p.stop()
        _check_ledgers(ledgers, c)
        assert info["proxy_moved"] + info["proxy_ask"] + info["proxy_tryagain"] > 0, info


def _kill_once_replicated(cl, victim: int) -> None:
    """kill -9 of a primary once its replica holds every write it answered.
    Redis Cluster replicates asynchronously, so a kill -9 can lose the last
    acknowledged writes (unless the client WAITs) whatever stands in front of
    the nodes. The primary's writes are paused (CLIENT PAUSE WRITE) until its
    replica's acknowledged offset reaches its own: what the proxy sends it
    meanwhile is in flight when the process dies, and is what the proxy must
    replay on the promoted replica."""
    node = cl.node(victim)
    node.call("CLIENT", "PAUSE", "10000", "WRITE")
    deadline = time.monotonic() + 10
    while True:
        info = node.call("INFO", "replication")      # redis-py: slaveN as dicts
        acked = [int(v["offset"]) for k, v in info.items()
                 if k.startswith("slave") and isinstance(v, dict)]
        if acked and min(acked) >= int(info["master_repl_offset"]):
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    cl.kill(victim)


def test_ledger_through_kill_9_of_a_primary():
    """kill -9 of the primary of slot 0 (and, in the long form, of a random
    primary each round, restarted as a replica after): the writes in flight on
    the dead link are replayed on the promoted replica, so no client sees an
    error and every acknowledged write reads back."""
    rounds = int(os.environ.get("PYNODE_PROXY_KILLS", "1"))
    rng = random.Random(rounds)
    with ChaosCluster(primaries=3, replicas=1) as cl:
        cl.c.wait_replicas_synced()
        p = ProxyProc([cl.ports[0], cl.ports[1]], "--retry-timeout", "20",
                      exclude=set(cl.ports))
        ledger = Ledger(p.port, seconds=60 * rounds + 60)
        try:
            time.sleep(1)
            for i in range(rounds):
                victim = cl.c.owner_of(0) if i == 0 else cl.random_primary(rng)
                _kill_once_replicated(cl, victim)
                cl.wait_serving(down={victim}, timeout=30)
                time.sleep(0.5)
                if i + 1 < rounds:
                    cl.restart(victim)
                    cl.wait_replica(victim, timeout=30)
                    cl.c.wait_replicas_synced()
            ledgers = ledger.finish()
            info = p.client().info("proxy")
        finally:
            ledger.abort()
            p.stop()
        _check_ledgers(ledgers, cl, min_rounds=5)
        assert info["proxy_backend_link_failures"] > 0, info


def test_reads_from_replicas(cluster):
    p = ProxyProc(cluster.ports[:1], "--read-from-replicas", exclude=set(cluster.ports))
    try:
        r = p.client()
        keys = ["rr:%d" % i for i in range(30)]
        r.mset({k: k for k in keys})
        # CLUSTER SLOTS lists a replica once it has a replication offset
        wait_until(lambda: r.info("proxy")["proxy_replicas"] == 3, timeout=15,
                   what="the proxy knows the replicas")
        wait_until(lambda: r.mget(keys) == keys, timeout=10, what="replicas caught up")
        for k in keys:
            assert r.get(k) == k
        replicas = [n for n in cluster.nodes
                    if n.call("ROLE")[0] == "slave"]
        served = sum(int(n.client().info("commandstats").get("cmdstat_get", {})
                         .get("calls", 0)) for n in replicas)
        assert len(replicas) == 3 and served >= 30
        assert r.set("rr:w", "1") and r.get("rr:w") in ("1", None)   # writes: primaries
        r.delete(*keys, "rr:w")
    finally:
        p.stop()


def test_workers_share_the_port(cluster):
    p = ProxyProc(cluster.ports[:1], "--workers", "2", exclude=set(cluster.ports))
    try:
        # the second worker listens once it has started
        def served_by_other() -> bool:
            with p.client() as r:
                return r.info("server")["process_id"] != p.proc.pid
        wait_until(served_by_other, timeout=20, what="a connection served by the second worker")
        conns = [p.client() for _ in range(24)]
        keys = ["wk:%d" % i for i in range(24)]
        pids = set()
        ids = set()
        for i, r in enumerate(conns):
            info = r.info()
            pids.add(info["process_id"])
            assert info["proxy_workers"] == 2
            ids.add(r.client_id())
            assert r.mset({k: i for k in keys}) and r.mget(keys) == [str(i)] * 24
        assert len(pids) == 2 and p.proc.pid in pids      # the kernel spread them
        assert len(ids) == 24                             # client ids stay distinct
        for r in conns:
            r.close()
        conns[0].delete(*keys)
    finally:
        p.stop()
    other = (pids - {p.proc.pid}).pop()
    wait_until(lambda: not os.path.exists("/proc/%d" % other) or
               open("/proc/%d/stat" % other).read().split(")")[1].split()[0] == "Z",
               timeout=10, what="the second worker left with the first")


def test_acl_and_auth_against_redis_server_cluster():
    """pynode has no ACL users yet: checked in front of a redis-server cluster."""
    with Cluster(primaries=3, replicas=0, server="redis") as c:
        p = ProxyProc(c.ports[:1], exclude=set(c.ports))
        try:
            r = p.client()
            assert r.acl_setuser("pu", enabled=True, passwords=["+pw"], keys=["acl:*"],
                                 commands=["+@all"]) is True
            for n in c.nodes:                       # on every primary
                assert "pu" in n.call("ACL", "USERS")
            u = p.client(username="pu", password="pw")
            assert u.mset({"acl:%d" % i: i for i in range(10)}) is True
            assert u.mget(["acl:%d" % i for i in range(10)]) == [str(i) for i in range(10)]
            with pytest.raises(redis.exceptions.NoPermissionError):
                u.get("other")
            with pytest.raises(redis.AuthenticationError, match="invalid username-password"):
                p.client(username="pu", password="bad").ping()
            assert r.acl_deluser("pu") == 1
            assert all("pu" not in n.call("ACL", "USERS") for n in c.nodes)
        finally:
            p.stop()
