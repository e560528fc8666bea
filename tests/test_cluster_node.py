"""cluster-enabled yes: real pynode processes forming a cluster over the bus.

One module-scoped cluster (3 primaries A B C + 1 replica D of A, node timeout
1000 ms) carries most tests; start-up refusals, RESET and cluster-disabled
errors use processes of their own. Shapes of CLUSTER SLOTS / SHARDS are compared
with a real redis-server 7.0 cluster of the same shape, formed the same way.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time

import msgpack
import pytest
import redis

from gossip.nodes_conf import parse as parse_nodes_conf
from tests.helpers import Proc, wait_ping

TIMEOUT_MS = 1000
FUZZ_SECONDS = float(os.environ.get("PYNODE_BUS_FUZZ_SECONDS", "10"))
RANGES = [(0, 5460), (5461, 10922), (10923, 16383)]


# ----------------------------------------------------------------------------- helpers


def cluster_args(extra=()) -> list[str]:
    return ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(TIMEOUT_MS), "--appendonly", "no", *extra]


def start_all(procs: list[Proc]) -> None:
    for p in procs:
        p.start(wait=False)
    for p in procs:
        try:
            wait_ping(p.port, timeout=15)
        except TimeoutError:
            raise AssertionError("node %d did not start:\n%s" % (p.port, p.log()))


def call(p: Proc, *args):
    c = redis.Redis(host="127.0.0.1", port=p.port, socket_timeout=5, decode_responses=True)
    try:
        return c.execute_command(*args)
    finally:
        c.close()


def wait_until(pred, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            last = e
        time.sleep(every)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


def info(p: Proc) -> dict[str, str]:
    text = call(p, "CLUSTER", "INFO")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def nodes(p: Proc) -> dict[str, dict]:
    out = {}
    for line in call(p, "CLUSTER", "NODES").splitlines():
        f = line.split()
        out[f[0]] = {"addr": f[1], "flags": set(f[2].split(",")), "primary": f[3],
                     "epoch": int(f[6]), "link": f[7], "slots": f[8:]}
    return out


def all_ok(procs: list[Proc], n_nodes: int) -> bool:
    for p in procs:
        i = info(p)
        if i["cluster_state"] != "ok" or int(i["cluster_known_nodes"]) != n_nodes:
            return False
        for rec in nodes(p).values():
            if rec["flags"] & {"handshake", "fail", "fail?", "noaddr"}:
                return False
    return True


def resp_read(sock: socket.socket):
    """A minimal RESP2/RESP3 reader (enough for CLUSTER replies)."""
    buf = bytearray()

    def line() -> bytes:
        while b"\r\n" not in buf:
            d = sock.recv(65536)
            if not d:
                raise ConnectionError("closed")
            buf.extend(d)
        i = buf.index(b"\r\n")
        out = bytes(buf[:i])
        del buf[:i + 2]
        return out

    def exact(n: int) -> bytes:
        while len(buf) < n + 2:
            d = sock.recv(65536)
            if not d:
                raise ConnectionError("closed")
            buf.extend(d)
        out = bytes(buf[:n])
        del buf[:n + 2]
        return out

    def one():
        ln = line()
        t, rest = ln[:1], ln[1:]
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [one() for _ in range(n)]
        if t == b"%":
            return ("map", [(one(), one()) for _ in range(int(rest))])
        if t in (b"$", b"="):
            n = int(rest)
            return None if n < 0 else ("verbatim" if t == b"=" else "bulk", exact(n))
        if t == b":":
            return int(rest)
        if t == b"+":
            return ("status", rest)
        if t == b"-":
            return ("error", rest)
        if t == b"_":
            return None
        raise ValueError(ln)

    return one


def raw_call(port: int, *args: bytes, resp3: bool = False):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        read = resp_read(s)
        if resp3:
            s.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
            read()
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        return read()


def form(procs: list[Proc], replica_of: dict[int, int] | None = None) -> None:
    """MEET everyone from node 0, split the slots over the first three, set replicas."""
    for p in procs[1:]:
        assert call(procs[0], "CLUSTER", "MEET", "127.0.0.1", str(p.port)) == "OK"
    for p, (a, b) in zip(procs, RANGES):
        assert call(p, "CLUSTER", "ADDSLOTSRANGE", str(a), str(b)) == "OK"
    try:
        wait_until(lambda: all(len(nodes(p)) == len(procs) and not any(
            "handshake" in r["flags"] for r in nodes(p).values()) for p in procs),
            15, "every node to know every node")
    except AssertionError as e:
        views = "\n".join("%d:\n%s" % (p.port, call(p, "CLUSTER", "NODES")) for p in procs)
        raise AssertionError("%s\n%s\n%s" % (e, views, procs[0].log()[-3000:])) from None
    roles = {}
    for r, prim in (replica_of or {}).items():
        pid = call(procs[prim], "CLUSTER", "MYID")
        assert call(procs[r], "CLUSTER", "REPLICATE", pid) == "OK"
        roles[call(procs[r], "CLUSTER", "MYID")] = pid

    def replicas_known() -> bool:
        for p in procs:
            table = nodes(p)
            if any("slave" not in table[rid]["flags"] or table[rid]["primary"] != pid
                   for rid, pid in roles.items()):
                return False
        return True

    wait_until(lambda: all_ok(procs, len(procs)), 15, "cluster_state:ok on every node")
    wait_until(replicas_known, 15, "every node to see the replicas as replicas")


@pytest.fixture(scope="module")
def cl():
    procs = [Proc(cluster_args(["--loglevel", "verbose"])) for _ in range(4)]
    try:
        start_all(procs)
        form(procs, {3: 0})
        yield procs
    finally:
        for p in procs:
            p.cleanup()


# ----------------------------------------------------------------------------- formation


def test_meet_makes_everyone_know_everyone(cl):
    ids = [call(p, "CLUSTER", "MYID") for p in cl]
    assert len(set(ids)) == 4
    for p, myid in zip(cl, ids):
        table = nodes(p)
        assert set(table) == set(ids)
        assert "myself" in table[myid]["flags"]
        for nid, rec in table.items():
            assert not rec["flags"] & {"handshake", "noaddr", "fail", "fail?"}, rec
            assert rec["link"] == "connected"
            port = int(rec["addr"].split("@")[0].rsplit(":", 1)[1])
            assert port == cl[ids.index(nid)].port
            assert rec["addr"].startswith("127.0.0.1:")


def test_slots_split_and_distinct_epochs(cl):
    for p in cl:
        i = info(p)
        assert i["cluster_state"] == "ok"
        assert i["cluster_slots_assigned"] == "16384"
        assert i["cluster_slots_ok"] == "16384"
        assert i["cluster_size"] == "3"
        assert i["cluster_known_nodes"] == "4"
        assert int(i["cluster_stats_messages_ping_sent"]) > 0
        assert int(i["cluster_stats_messages_received"]) > 0
        # collisions are resolved one PING at a time: wait (bounded) for it
        wait_until(lambda: len({r["epoch"] for r in nodes(p).values()
                                if "master" in r["flags"]}) == 3, 10,
                   "distinct config epochs")
        primaries = {nid: r for nid, r in nodes(p).items() if "master" in r["flags"]}
        epochs = [r["epoch"] for r in primaries.values()]
        assert len(set(epochs)) == 3, epochs  # collisions resolved
        assert sorted(r["slots"][0] for r in primaries.values()) == sorted(
            "%d-%d" % ab for ab in RANGES)
        assert int(i["cluster_current_epoch"]) >= max(epochs)
    # INFO knows it is a cluster node
    c = cl[0].client(decode_responses=True)
    try:
        assert c.info("server")["redis_mode"] == "cluster"
        assert c.info("cluster")["cluster_enabled"] == 1
        assert c.info("clients")["cluster_connections"] >= 3
    finally:
        c.close()


def test_replicate_sets_role(cl):
    a_id = call(cl[0], "CLUSTER", "MYID")
    d_id = call(cl[3], "CLUSTER", "MYID")
    for p in cl:
        rec = nodes(p)[d_id]
        assert "slave" in rec["flags"] and rec["primary"] == a_id
    reps = call(cl[1], "CLUSTER", "REPLICAS", a_id)
    assert len(reps) == 1 and reps[0].startswith(d_id + " ")
    # the same lines; a PONG may arrive between the two calls, so the
    # ping-sent and pong-received fields (5 and 6) are left out
    def stable(lines):
        return [l.split()[:4] + l.split()[6:] for l in lines]
    assert stable(call(cl[1], "CLUSTER", "SLAVES", a_id)) == stable(reps)
    with pytest.raises(redis.ResponseError, match="The specified node is not a master"):
        call(cl[1], "CLUSTER", "REPLICAS", d_id)
    with pytest.raises(redis.ResponseError, match="Can't forget my master!"):
        call(cl[3], "CLUSTER", "FORGET", a_id)
    with pytest.raises(redis.ResponseError, match="Please use SETSLOT only with masters."):
        call(cl[3], "CLUSTER", "SETSLOT", "100", "STABLE")
    # what redis-cli --cluster create / check rely on
    out = subprocess.run(["redis-cli", "--cluster", "check", "127.0.0.1:%d" % cl[0].port],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All nodes agree about slots configuration" in out.stdout
    assert "All 16384 slots covered" in out.stdout
    assert "1 additional replica(s)" in out.stdout


def test_links_and_bumpepoch(cl):
    ids = {call(p, "CLUSTER", "MYID") for p in cl}
    links = raw_call(cl[1].port, b"CLUSTER", b"LINKS")
    rows = [dict(zip(r[::2], r[1::2])) for r in links]
    keys = [k[1] for k in links[0][::2]]
    assert keys == [b"direction", b"node", b"create-time", b"events",
                    b"send-buffer-allocated", b"send-buffer-used"]
    to = {r[("bulk", b"node")][1].decode() for r in rows if r[("bulk", b"direction")] == ("bulk", b"to")}
    assert to == ids - {call(cl[1], "CLUSTER", "MYID")}
    # The highest epoch already is the node's own: STILL; otherwise BUMPED.
    r = raw_call(cl[0].port, b"CLUSTER", b"BUMPEPOCH")
    assert r[0] == "status" and r[1].split()[0] in (b"BUMPED", b"STILL")
    assert int(r[1].split()[1]) == nodes(cl[0])[call(cl[0], "CLUSTER", "MYID")]["epoch"]
    wait_until(lambda: all_ok(cl, 4), 10, "cluster ok after BUMPEPOCH")


# ----------------------------------------------------------------------------- reply shapes vs Redis


def _normalise_slots(reply, port_index: dict[int, int], id_index: dict[bytes, int]):
    out = []
    for entry in reply:
        start, end, *nodes_ = entry
        out.append((start, end, [(n[0], port_index[n[1]], id_index[n[2][1]], n[3]) for n in nodes_]))
    return sorted(out)


def _normalise_shards(reply, port_index, id_index, drop_replicas: bool):
    def m(x):
        assert x[0] == "map" if isinstance(x, tuple) else True
        return x[1] if isinstance(x, tuple) else [(x[i], x[i + 1]) for i in range(0, len(x), 2)]

    shards = []
    for shard in reply:
        d = dict((k[1].decode(), v) for k, v in m(shard))
        nodes_out = []
        for node in d["nodes"]:
            pairs = []
            for k, v in m(node):
                key = k[1].decode()
                if key == "id":
                    v = id_index[v[1]]
                elif key == "port":
                    v = port_index[v]
                elif key == "replication-offset":
                    v = "offset"
                pairs.append((key, v))
            if drop_replicas and ("role", ("bulk", b"replica")) in pairs:
                continue
            nodes_out.append(pairs)
        shards.append((tuple(d["slots"]), repr(nodes_out), list(d)))
    return sorted(shards)


def _indexes(procs):
    port_index = {p.port: i for i, p in enumerate(procs)}
    id_index = {call(p, "CLUSTER", "MYID").encode(): i for i, p in enumerate(procs)}
    return port_index, id_index


def test_slots_and_shards_match_redis(cl):
    real = [Proc(cluster_args(), redis_server=True) for _ in range(3)]
    try:
        start_all(real)
        form(real)
        rports, rids = _indexes(real)
        ports, ids = _indexes(cl[:3])
        ports[cl[3].port] = 3
        ids[call(cl[3], "CLUSTER", "MYID").encode()] = 3
        for resp3 in (False, True):
            ours = raw_call(cl[0].port, b"CLUSTER", b"SLOTS", resp3=resp3)
            theirs = raw_call(real[0].port, b"CLUSTER", b"SLOTS", resp3=resp3)
            # D does not replicate yet (offset 0): as Redis, an unavailable replica is not listed
            assert _normalise_slots(ours, ports, ids) == _normalise_slots(theirs, rports, rids)
            ours = raw_call(cl[0].port, b"CLUSTER", b"SHARDS", resp3=resp3)
            theirs = raw_call(real[0].port, b"CLUSTER", b"SHARDS", resp3=resp3)
            assert (_normalise_shards(ours, ports, ids, True)
                    == _normalise_shards(theirs, rports, rids, True))
            # the replica is in its primary's shard, "loading" until it replicates
            shard_a = [s for s in _normalise_shards(ours, ports, ids, False) if s[0][0] == 0][0]
            assert "'role', ('bulk', b'replica')" in shard_a[1]
            assert "('health', ('bulk', b'loading'))" in shard_a[1]
            for cmd in (b"INFO", b"NODES"):
                o = raw_call(cl[0].port, b"CLUSTER", cmd, resp3=resp3)
                t = raw_call(real[0].port, b"CLUSTER", cmd, resp3=resp3)
                assert o[0] == t[0]  # bulk in RESP2, verbatim in RESP3
        oi, ti = info(cl[0]), info(real[0])
        core = [k for k in ti if not k.startswith("cluster_stats_messages")]
        assert [k for k in oi if not k.startswith("cluster_stats_messages")] == core
    finally:
        for p in real:
            p.cleanup()


# ----------------------------------------------------------------------------- slots & keys


def test_keyslot_countkeysinslot_getkeysinslot(cl):
    assert call(cl[0], "CLUSTER", "KEYSLOT", "foo") == 12182
    assert call(cl[0], "CLUSTER", "KEYSLOT", "{user1000}.following") == call(
        cl[0], "CLUSTER", "KEYSLOT", "user1000")
    slot = call(cl[0], "CLUSTER", "KEYSLOT", "{t}")
    owner = next(p for p, (a, b) in zip(cl, RANGES) if a <= slot <= b)
    c = owner.client()
    try:
        for i in range(5):
            c.set("{t}k%d" % i, i)
    finally:
        c.close()
    assert call(owner, "CLUSTER", "COUNTKEYSINSLOT", str(slot)) == 5
    # newest first, as redis-server 7.0 (a key goes to the head of its slot's
    # list when created; an overwrite keeps its place)
    assert call(owner, "CLUSTER", "GETKEYSINSLOT", str(slot), "3") == [
        "{t}k4", "{t}k3", "{t}k2"]
    c = owner.client()
    try:
        c.delete("{t}k2")
        c.set("{t}k2", "again")
        c.set("{t}k3", "overwritten")
    finally:
        c.close()
    assert call(owner, "CLUSTER", "GETKEYSINSLOT", str(slot), "100") == [
        "{t}k2", "{t}k4", "{t}k3", "{t}k1", "{t}k0"]
    assert call(owner, "CLUSTER", "GETKEYSINSLOT", str(slot), "0") == []
    for bad, msg in ((["COUNTKEYSINSLOT", "16384"], "Invalid slot"),
                     (["COUNTKEYSINSLOT", "x"], "value is not an integer or out of range"),
                     (["GETKEYSINSLOT", "1", "-1"], "Invalid slot or number of keys"),
                     (["ADDSLOTS", "x"], "Invalid or out of range slot"),
                     (["ADDSLOTS", "1"], "Slot 1 is already busy"),
                     (["ADDSLOTSRANGE", "5", "3"], "start slot number 5 is greater than end slot number 3"),
                     (["ADDSLOTSRANGE", "1"], "wrong number of arguments for 'cluster|addslotsrange' command"),
                     (["SETSLOT", "1", "foo"], "Invalid CLUSTER SETSLOT action or number of arguments"),
                     (["SETSLOT", "1", "MIGRATING", "abc"], "I don't know about node abc"),
                     (["SETSLOT", "1", "IMPORTING", "abc"], "I'm already the owner of hash slot 1"),
                     (["MEET", "1.2.3", "4"], "Invalid node address specified: 1.2.3:4"),
                     (["MEET", "127.0.0.1", "x"], "Invalid TCP base port specified: x"),
                     (["SET-CONFIG-EPOCH", "5"], "only when the node does not know any other node"),
                     (["COUNT-FAILURE-REPORTS", "abc"], "Unknown node abc"),
                     (["RESET", "foo"], "syntax error")):
        with pytest.raises(redis.ResponseError, match=msg.replace("(", r"\(").replace("|", r"\|")):
            call(cl[0], "CLUSTER", *bad)
    # keys in a slot block giving it away and RESET of a primary
    other = [p for p in cl[:3] if p is not owner][0]
    oid = call(other, "CLUSTER", "MYID")
    with pytest.raises(redis.ResponseError, match="while I still hold keys for this hash slot"):
        call(owner, "CLUSTER", "SETSLOT", str(slot), "NODE", oid)
    with pytest.raises(redis.ResponseError, match="can't be called with master nodes containing keys"):
        call(owner, "CLUSTER", "RESET")
    # migration marks show up in CLUSTER NODES and go away with STABLE
    assert call(owner, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", oid) == "OK"
    mine = nodes(owner)[call(owner, "CLUSTER", "MYID")]
    assert "[%d->-%s]" % (slot, oid) in mine["slots"]
    assert call(owner, "CLUSTER", "SETSLOT", str(slot), "STABLE") == "OK"
    assert "[%d->-%s]" % (slot, oid) not in nodes(owner)[call(owner, "CLUSTER", "MYID")]["slots"]


# ----------------------------------------------------------------------------- pub/sub


def test_publish_reaches_other_nodes(cl):
    sub = cl[2].client(decode_responses=True)
    ps = sub.pubsub()
    try:
        ps.subscribe("news")
        assert ps.get_message(timeout=2)["type"] == "subscribe"
        # no local subscriber on A: the count is local only, as Redis
        assert call(cl[0], "PUBLISH", "news", "hello") == 0
        msg = None
        deadline = time.monotonic() + 5
        while msg is None and time.monotonic() < deadline:
            msg = ps.get_message(timeout=0.5)
        assert msg is not None and msg["type"] == "message"
        assert (msg["channel"], msg["data"]) == ("news", "hello")
        # a local subscriber is counted
        assert call(cl[2], "PUBLISH", "news", "x") == 1
    finally:
        ps.close()
        sub.close()


# ----------------------------------------------------------------------------- bus garbage


def _bus_port(p: Proc) -> int:
    return p.port + 10000


def _valid_frame_payload() -> bytes:
    return msgpack.packb({"sig": b"PYnB", "ver": 1, "type": 0, "hdr": {"id": "x"}}, use_bin_type=True)


def test_bus_garbage_closes_links_only(cl):
    target = cl[1]
    port = _bus_port(target)
    rng = random.Random(1234)
    sent = {"conns": 0}
    stop = time.monotonic() + FUZZ_SECONDS

    def attack():
        while time.monotonic() < stop:
            kind = rng.randrange(5)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    sent["conns"] += 1
                    if kind == 0:
                        s.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 4096))))
                    elif kind == 1:  # oversized length prefix
                        s.sendall(struct.pack(">I", rng.choice([0, 0xFFFFFFFF, (1 << 20) + 1])) + b"x" * 64)
                    elif kind == 2:  # truncated frame, then hang up
                        s.sendall(struct.pack(">I", 5000) + b"\x81" * 100)
                    elif kind == 3:  # well-formed frame, bad message
                        payload = _valid_frame_payload()
                        s.sendall(struct.pack(">I", len(payload)) + payload)
                    else:  # msgpack garbage of the announced length
                        payload = bytes(rng.getrandbits(8) for _ in range(200))
                        s.sendall(struct.pack(">I", len(payload)) + payload)
                    s.settimeout(0.2)
                    try:
                        s.recv(100)
                    except OSError:
                        pass
            except OSError:
                pass

    threads = [threading.Thread(target=attack) for _ in range(4)]
    for t in threads:
        t.start()
    c = target.client()
    try:
        pings = 0
        while time.monotonic() < stop:
            assert c.ping()
            pings += 1
            time.sleep(0.05)
    finally:
        for t in threads:
            t.join(timeout=FUZZ_SECONDS + 10)
        c.close()
    assert pings > 0 and sent["conns"] > 20
    assert target.proc.poll() is None, target.log()[-3000:]
    wait_until(lambda: all_ok(cl, 4), 10, "cluster ok after bus garbage")
    # every bad frame is counted and logged (verbose) with the running count
    log = target.log()
    assert log.count("Bad cluster bus frame") >= sent["conns"] // 3, log[-2000:]
    assert "bad frames so far" in log and "partial frame" in log


# ----------------------------------------------------------------------------- persistence


def test_kill9_restart_keeps_identity(cl):
    victim = cl[2]
    path = os.path.join(victim.dir, "nodes.conf")
    before = nodes(victim)
    myid = call(victim, "CLUSTER", "MYID")
    conf = parse_nodes_conf(open(path).read())  # a complete, parseable file
    assert conf.myself.id == myid
    assert not [f for f in os.listdir(victim.dir) if f.startswith("temp-")]
    victim.kill(signal.SIGKILL)
    time.sleep(0.3)
    victim.start()
    assert call(victim, "CLUSTER", "MYID") == myid
    after = nodes(victim)
    assert after[myid]["slots"] == before[myid]["slots"] == ["%d-%d" % RANGES[2]]
    assert {k: v["epoch"] for k, v in after.items()} == {k: v["epoch"] for k, v in before.items()}
    wait_until(lambda: all_ok(cl, 4), 15, "cluster ok after the restart")


def test_second_process_on_same_nodes_conf_refused(cl):
    other = Proc(cluster_args(), workdir=cl[0].dir)
    try:
        other.start(wait=False)
        assert other.wait_exit(15) == 1
        assert ("Sorry, the cluster configuration file nodes.conf is already used by a "
                "different Redis Cluster node.") in other.log(), other.log()
    finally:
        other.stop()
    assert call(cl[0], "PING") is True


def test_forget_bans_the_node(cl):
    a, d = cl[0], cl[3]
    d_id = call(d, "CLUSTER", "MYID")
    # D replicates A: forget it on B
    b = cl[1]
    assert call(b, "CLUSTER", "FORGET", d_id) == "OK"
    assert d_id not in nodes(b)
    time.sleep(2.5)  # gossip from A, C and D itself must not bring it back (60 s ban)
    assert d_id not in nodes(b)
    assert d_id in nodes(a)
    with pytest.raises(redis.ResponseError, match="Unknown node"):
        call(b, "CLUSTER", "FORGET", d_id)
    with pytest.raises(redis.ResponseError, match="I tried hard but I can't forget myself"):
        call(b, "CLUSTER", "FORGET", call(b, "CLUSTER", "MYID"))
    # an explicit MEET brings it back
    assert call(b, "CLUSTER", "MEET", "127.0.0.1", str(d.port)) == "OK"
    wait_until(lambda: d_id in nodes(b) and all_ok(cl, 4), 10, "D known again on B")


# ----------------------------------------------------------------------------- own processes


def test_corrupt_nodes_conf_stops_startup(tmp_path):
    good = ("%s 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-100\n" % ("a" * 40))
    cases = {
        "badline": good + "zzz 127.0.0.1:7001@17001 master - 0 0 2 connected\n"
                   + "vars currentEpoch 2 lastVoteEpoch 0\n",
        "truncated": good + "vars currentEpoch 2 lastVo",
    }
    for name, text in cases.items():
        d = tmp_path / name
        d.mkdir()
        (d / "nodes.conf").write_text(text)
        p = Proc(cluster_args(), workdir=str(d))
        try:
            p.start(wait=False)
            assert p.wait_exit(15) == 1, p.log()
            log = p.log()
            assert "corrupted cluster config file" in log
            assert ("line 2" if name == "badline" else "line 2") in log
            assert "To recover" in log
            assert (d / "nodes.conf").read_text() == text  # untouched
        finally:
            p.stop()


def test_reset_soft_and_hard_and_disabled(tmp_path):
    e = Proc(cluster_args())
    f = Proc(cluster_args())
    plain = Proc()
    try:
        start_all([e, f, plain])
        with pytest.raises(redis.ResponseError, match="This instance has cluster support disabled"):
            call(plain, "CLUSTER", "INFO")
        with pytest.raises(redis.ResponseError, match="This instance has cluster support disabled"):
            call(plain, "CLUSTER", "KEYSLOT", "foo")
        assert call(e, "CLUSTER", "SET-CONFIG-EPOCH", "5") == "OK"
        with pytest.raises(redis.ResponseError, match="Node config epoch is already non-zero"):
            call(e, "CLUSTER", "SET-CONFIG-EPOCH", "6")
        assert call(e, "CLUSTER", "ADDSLOTSRANGE", "0", "99") == "OK"
        assert call(e, "CLUSTER", "MEET", "127.0.0.1", str(f.port)) == "OK"
        wait_until(lambda: all(len(nodes(p)) == 2 and not any(
            "handshake" in r["flags"] for r in nodes(p).values()) for p in (e, f)), 10, "E and F meet")
        e_id = call(e, "CLUSTER", "MYID")
        assert call(e, "CLUSTER", "RESET", "SOFT") == "OK"
        t = nodes(e)
        assert list(t) == [e_id] and t[e_id]["slots"] == [] and t[e_id]["epoch"] == 5
        assert call(e, "CLUSTER", "RESET", "HARD") == "OK"
        new_id = call(e, "CLUSTER", "MYID")
        assert new_id != e_id
        i = info(e)
        assert (i["cluster_current_epoch"], i["cluster_my_epoch"], i["cluster_known_nodes"]) == ("0", "0", "1")
        conf = parse_nodes_conf(open(os.path.join(e.dir, "nodes.conf")).read())
        assert conf.myself.id == new_id and conf.current_epoch == 0
        # F still knows the old E until it fails and is forgotten by the operator
        # F still knows the old E (its address answers with another id now)
        assert call(f, "CLUSTER", "FORGET", e_id) == "OK"
        assert len(nodes(f)) == 1
    finally:
        for p in (e, f, plain):
            p.cleanup()
