"""A 3+3 cluster formed and judged by the real tools: redis-cli --cluster create/check,
redis-cli -c, redis-py's RedisCluster, redis-benchmark --cluster, and raw RESP for
the exact MOVED / CROSSSLOT replies.

Runs against pynode; PYNODE_CLUSTER_SERVER=redis runs the same tests against
redis-server 7.0 (that is how these tests were proven).
"""

from __future__ import annotations

import re
import time

import pytest
import redis

from tests.cluster_helpers import (CHECK_OK_AGREE, CHECK_OK_COVERED, SLOTS, Cluster,
                                   key_for_slot, keyslot, parse_info, run)
from tests.helpers import raw_command

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(primaries=3, replicas=1).up()
    try:
        yield c
    finally:
        c.cleanup()


def _keys_on_distinct_primaries(cluster: Cluster) -> dict[int, str]:
    """One key per primary port: {port: key}."""
    out: dict[int, str] = {}
    for i in range(10000):
        k = "key:%d" % i
        port = cluster.owner_of(keyslot(k))
        out.setdefault(port, k)
        if len(out) == cluster.primaries:
            return out
    raise AssertionError("could not find keys on every primary")


def test_create_assigned_all_slots_and_replicas(cluster):
    out = ANSI.sub("", cluster.create_output)
    assert ">>> Performing hash slots allocation on 6 nodes..." in out
    assert out.count("Adding replica") == 3
    assert CHECK_OK_AGREE in out and CHECK_OK_COVERED in out
    nodes = cluster.nodes[0].nodes()
    primaries = [n for n in nodes if "master" in n["flags"]]
    replicas = [n for n in nodes if "slave" in n["flags"]]
    assert len(primaries) == 3 and len(replicas) == 3
    assert sum(len(n["slots"]) for n in primaries) == SLOTS
    assert set().union(*(n["slots"] for n in primaries)) == set(range(SLOTS))
    # each primary has exactly one replica
    assert sorted(r["master"] for r in replicas) == sorted(p["id"] for p in primaries)
    for node in cluster.nodes:
        info = node.info()
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_assigned"] == str(SLOTS)
        assert info["cluster_known_nodes"] == "6"
        assert info["cluster_size"] == "3"


def test_cluster_check_from_every_node(cluster):
    for port in cluster.ports:
        res = cluster.check(port)
        assert res.returncode == 0, res.stdout + res.stderr
        out = ANSI.sub("", res.stdout)
        assert CHECK_OK_AGREE in out, out
        assert CHECK_OK_COVERED in out, out
        assert "[ERR]" not in out and "[WARNING]" not in out, out
        assert out.count("M: ") == 3 and out.count("S: ") == 3, out


def test_redis_cli_c_follows_redirects(cluster):
    keys = _keys_on_distinct_primaries(cluster)
    entry = cluster.primary_ports()[0]
    for port, key in keys.items():
        res = cluster.cli("-c", "set", key, "v-" + key, port=entry)
        assert res.returncode == 0 and res.stdout.strip() == "OK", (res.stdout, res.stderr)
    for port, key in keys.items():
        res = cluster.cli("-c", "get", key, port=entry)
        assert res.stdout.strip() == "v-" + key, (res.stdout, res.stderr)
    # one interactive-style session reading commands from stdin: redirects are
    # announced as redis-cli does
    script = "".join("get %s\n" % k for k in keys.values())
    res = cluster.cli("-c", port=entry, input=script)
    lines = [line for line in res.stdout.splitlines() if line]
    got = [line for line in lines if not line.startswith("-> Redirected")]
    assert got == ["v-" + k for k in keys.values()], res.stdout
    redirects = [line for line in lines if line.startswith("-> Redirected to slot")]
    assert len(redirects) >= 2, res.stdout
    for line in redirects:
        m = re.match(r"-> Redirected to slot \[(\d+)\] located at 127\.0\.0\.1:(\d+)$", line)
        assert m, line
        assert cluster.owner_of(int(m.group(1))) == int(m.group(2))
    # without -c the node answers MOVED and redis-cli prints it
    other_port, other_key = next((p, k) for p, k in keys.items() if p != entry)
    res = cluster.cli("get", other_key, port=entry)
    assert res.stdout.strip() == "MOVED %d 127.0.0.1:%d" % (keyslot(other_key), other_port)


def test_redis_py_cluster_every_slot(cluster):
    rc = cluster.cluster_client()
    try:
        pipe = rc.pipeline(transaction=False)
        for slot in range(SLOTS):
            pipe.set(key_for_slot(slot), "value-%d" % slot)
        assert pipe.execute() == [True] * SLOTS
        pipe = rc.pipeline(transaction=False)
        for slot in range(SLOTS):
            pipe.get(key_for_slot(slot))
        got = pipe.execute()
        wrong = [(s, v) for s, v in enumerate(got) if v != "value-%d" % s]
        assert not wrong, wrong[:10]
        # single commands too, on a sample of slots spread over every primary
        for slot in range(0, SLOTS, 997):
            assert rc.get(key_for_slot(slot)) == "value-%d" % slot
        # every key lives on the primary that owns its slot
        for port in cluster.primary_ports():
            node = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            try:
                owned = next(n["slots"] for n in cluster.nodes[0].nodes()
                             if n["port"] == port)
                for slot in list(owned)[::500]:
                    assert node.get(key_for_slot(slot)) == "value-%d" % slot
            finally:
                node.close()
        # multi-key commands inside one hash tag work through the cluster client
        rc.mset({"{user1}:a": "1", "{user1}:b": "2"})
        assert rc.mget("{user1}:a", "{user1}:b") == ["1", "2"]
        assert rc.delete(*(key_for_slot(s) for s in range(0, 50))) == 50
    finally:
        rc.close()


def test_crossslot_error_text(cluster):
    port = cluster.primary_ports()[0]
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        with pytest.raises(redis.ResponseError) as e:
            r.mset({"foo": "1", "bar": "2"})
        # redis-py maps the CROSSSLOT code to its own exception and strips the code
        assert isinstance(e.value, redis.exceptions.ClusterCrossSlotError)
        assert str(e.value) == "Keys in request don't hash to the same slot"
    finally:
        r.close()
    payload = b"*5\r\n$4\r\nMSET\r\n$3\r\nfoo\r\n$1\r\n1\r\n$3\r\nbar\r\n$1\r\n2\r\n"
    assert raw_command(port, payload) == \
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"


def test_moved_error_shape(cluster):
    keys = _keys_on_distinct_primaries(cluster)
    ports = sorted(keys)
    entry = ports[0]
    for owner, key in keys.items():
        k = key.encode()
        payload = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k)
        reply = raw_command(entry, payload)
        if owner == entry:
            assert not reply.startswith(b"-"), reply
        else:
            assert reply == b"-MOVED %d 127.0.0.1:%d\r\n" % (keyslot(key), owner)
    # a replica redirects to its primary unless the connection said READONLY
    nodes = cluster.nodes[0].nodes()
    by_id = {n["id"]: n for n in nodes}
    replica = next(n for n in nodes if "slave" in n["flags"])
    primary = by_id[replica["master"]]
    slot = min(primary["slots"])
    k = key_for_slot(slot).encode()
    reply = raw_command(replica["port"], b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
    assert reply == b"-MOVED %d 127.0.0.1:%d\r\n" % (slot, primary["port"])


def test_redis_benchmark_cluster(cluster):
    res = run(["redis-benchmark", "--cluster", "-h", "127.0.0.1",
               "-p", str(cluster.ports[0]), "-t", "set,get", "-n", "20000", "-c", "20",
               "-q"], timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Cluster has 3 master nodes" in out, out
    assert "error" not in out.lower(), out
    assert re.search(r"^SET: [0-9.]+ requests per second", res.stdout, re.M), out
    assert re.search(r"^GET: [0-9.]+ requests per second", res.stdout, re.M), out


def test_replica_roles_in_info_replication(cluster):
    """Each replica says role:slave in INFO replication, naming the primary that
    CLUSTER NODES gives it; each primary counts its replica (clients and
    redis-cli --cluster read these fields)."""
    nodes = cluster.nodes[0].nodes()
    by_id = {n["id"]: n for n in nodes}
    deadline = time.monotonic() + 10      # a replica connects to its primary in cron
    while True:
        wrong = []
        for n in nodes:
            info = parse_info(cluster.node_by_port(n["port"]).call("INFO", "replication"))
            if "slave" in n["flags"]:
                primary = by_id[n["master"]]
                want = ("slave", "127.0.0.1", str(primary["port"]))
                got = (info.get("role"), info.get("master_host"), info.get("master_port"))
                if got != want:
                    wrong.append("replica %d: role/master_host/master_port %r, want %r"
                                 % (n["port"], got, want))
            elif (info.get("role"), info.get("connected_slaves")) != ("master", "1"):
                wrong.append("primary %d: role %r connected_slaves %r, want 'master' 1"
                             % (n["port"], info.get("role"), info.get("connected_slaves")))
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not wrong, "INFO replication disagrees with CLUSTER NODES:\n" + "\n".join(wrong)


def test_clusterdown_when_a_primary_is_lost_then_back():
    """3 primaries, no replicas: kill -9 one, the others mark it FAIL and answer
    CLUSTERDOWN; restarted from its nodes.conf it rejoins and the cluster is ok."""
    with Cluster(primaries=3, replicas=0) as c:
        rc = c.cluster_client()
        try:
            for slot in range(0, SLOTS, 512):
                rc.set(key_for_slot(slot), "v%d" % slot)
        finally:
            rc.close()
        victim = c.node_by_port(c.owner_of(0))
        survivors = [n for n in c.nodes if n is not victim]
        victim.proc.kill()
        deadline = time.monotonic() + 10 * c.node_timeout / 1000
        while time.monotonic() < deadline:
            if all(n.info()["cluster_state"] == "fail" for n in survivors):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("survivors never reported cluster_state:fail\n"
                                 + c.diagnostics())
        for n in survivors:
            flags = next(x["flags"] for x in n.nodes() if x["port"] == victim.port)
            assert "fail" in flags, (n.port, flags)
        # a key on a live primary: the whole cluster is down (full coverage required)
        owned = next(x["slots"] for x in survivors[0].nodes() if "myself" in x["flags"])
        slot = min(owned)
        k = key_for_slot(slot).encode()
        reply = raw_command(survivors[0].port, b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
        assert reply == b"-CLUSTERDOWN The cluster is down\r\n", reply
        # restart the victim from its own directory (nodes-<port>.conf): back to ok
        victim.start()
        c.wait_ok(timeout=30)
        rc = c.cluster_client()
        try:
            for slot in range(0, SLOTS, 512):
                assert rc.get(key_for_slot(slot)) in ("v%d" % slot, None)
            assert rc.set("after-restart", "1") and rc.get("after-restart") == "1"
        finally:
            rc.close()
