"""`redis-cli --cluster` against pynode, every subcommand: info, call, set-timeout,
reshard, rebalance (weights, threshold, empty masters), add-node (primary and
replica), del-node, fix (open slot with a key on both sides, uncovered slot) and
backup.  The tests run in order on one cluster, as an operator would; the data
written at the start must read back after every step.
(PYNODE_CLUSTER_SERVER=redis runs them against redis-server 7.0.)
"""

from __future__ import annotations

import os
import re
import time

import pytest
import redis

from storage import rdb
from tests.cluster_helpers import Cluster, keyslot, run

KEYS = 3000


def cli(*args: str, timeout: float = 900, input: str | None = None) -> str:
    res = run(["redis-cli", "--cluster", *args], timeout, input=input)
    out = res.stdout + res.stderr
    assert res.returncode == 0, "redis-cli --cluster %s failed:\n%s" % (" ".join(args), out)
    return out


def cli_fails(*args: str, timeout: float = 120) -> str:
    res = run(["redis-cli", "--cluster", *args], timeout)
    assert res.returncode != 0
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def cl():
    c = Cluster(primaries=3, replicas=0, conf_file=True,
                extra=["--enable-debug-command", "local"])
    with c:
        rc = c.cluster_client()
        pipe = rc.pipeline()
        for i in range(KEYS):
            pipe.set("key:%d" % i, "v%d" % i)
        pipe.execute()
        rc.close()
        yield c


def host(cl, port=None) -> str:
    return "127.0.0.1:%d" % (port or cl.ports[0])


def ids(cl) -> dict[int, str]:
    return {n["port"]: n["id"] for n in cl.live_node().nodes()}


def slot_counts(cl) -> dict[int, int]:
    return {n["port"]: len(n["slots"]) for n in cl.live_node().nodes() if "master" in n["flags"]}


def check_data(cl) -> None:
    rc = cl.cluster_client()
    try:
        got = rc.mget_nonatomic(["key:%d" % i for i in range(KEYS)])
    finally:
        rc.close()
    bad = [i for i, v in enumerate(got) if v != "v%d" % i]
    assert not bad, "%d keys lost or wrong, e.g. %s" % (len(bad), bad[:5])
    # primaries that serve slots (a drained node's role change may not have reached
    # every view yet; its data is a replica's copy, not an extra copy of a key)
    sizes = {p: redis.Redis(port=p).dbsize() for p, n in slot_counts(cl).items() if n}
    assert sum(sizes.values()) == KEYS + extra_keys(cl), "dbsize per primary %s\n%s" % (
        sizes, cl.diagnostics())


def extra_keys(cl) -> int:
    return getattr(cl, "extra_keys", 0)


def test_info_and_call(cl):
    out = cli("info", host(cl))
    assert "[OK] %d keys in 3 masters." % KEYS in out
    for p in cl.ports:
        n = redis.Redis(port=p).dbsize()
        assert re.search(r"127\.0\.0\.1:%d \(\w+\.\.\.\) -> %d keys \| \d+ slots \| 0 slaves\."
                         % (p, n), out), out
    out = cli("call", host(cl), "DBSIZE")
    for p in cl.ports:
        assert "127.0.0.1:%d: %d" % (p, redis.Redis(port=p).dbsize()) in out


def test_set_timeout_rewrites_every_config(cl):
    out = cli("set-timeout", host(cl), "3000")
    assert "New node timeout set. 3 OK, 0 ERR." in out
    for node in cl.nodes:
        assert node.call("CONFIG", "GET", "cluster-node-timeout") == {
            "cluster-node-timeout": "3000"}
        conf = open(os.path.join(node.dir, "test-%d.conf" % node.port)).read()
        assert "cluster-node-timeout 3000" in conf
    cli("set-timeout", host(cl), "2000")


def test_reshard(cl):
    i = ids(cl)
    a, b = cl.ports[0], cl.ports[1]
    before = slot_counts(cl)
    out = cli("reshard", host(cl), "--cluster-from", i[a], "--cluster-to", i[b],
              "--cluster-slots", "1000", "--cluster-yes", "--cluster-pipeline", "10")
    assert "Moving slot" in out
    cl.wait_agree()
    after = slot_counts(cl)
    assert after[a] == before[a] - 1000 and after[b] == before[b] + 1000
    check_data(cl)
    # from every other primary to one
    c = cl.ports[2]
    cli("reshard", host(cl), "--cluster-from", "all", "--cluster-to", i[c],
        "--cluster-slots", "600", "--cluster-yes")
    cl.wait_agree()
    assert slot_counts(cl)[c] == after[c] + 600
    check_data(cl)


def test_rebalance_weights_and_threshold(cl):
    i = ids(cl)
    a = cl.ports[0]
    # weight 1.25 of 3.25: 6302 slots, 840 more than an even share
    cli("rebalance", host(cl), "--cluster-weight", "%s=1.25" % i[a], "--cluster-pipeline", "20")
    cl.wait_agree()
    counts = slot_counts(cl)
    assert abs(counts[a] - 16384 * 1.25 / 3.25) <= 3, counts
    check_data(cl)
    # 15% over an even share is under a 50% threshold, over the default 2%
    out = cli("rebalance", host(cl), "--cluster-threshold", "50")
    assert "No rebalancing needed! All nodes are within the 50.00% threshold." in out
    assert slot_counts(cl) == counts
    cli("rebalance", host(cl))
    cl.wait_agree()
    assert all(abs(n - 16384 / 3) <= 3 for n in slot_counts(cl).values())
    check_data(cl)


def test_add_nodes_and_use_empty_masters(cl):
    new_primary = cl.add_node()
    out = cli("add-node", host(cl, new_primary.port), host(cl))
    assert "[OK] New node added correctly." in out
    cl.wait_ok()          # a new primary says CLUSTERDOWN for its first seconds, as Redis
    cl.wait_agree()
    pid = new_primary.call("CLUSTER", "MYID")
    r1 = cl.add_node()
    cli("add-node", host(cl, r1.port), host(cl), "--cluster-slave", "--cluster-master-id", pid)
    cl.wait_agree()          # add-node checks agreement first: let the news spread
    r2 = cl.add_node()
    cli("add-node", host(cl, r2.port), host(cl), "--cluster-slave")   # fewest replicas
    cl.wait_agree()

    def roles_known():
        nodes = {n["port"]: n for n in cl.live_node().nodes()}
        return ("slave" in nodes[r1.port]["flags"] and "slave" in nodes[r2.port]["flags"],
                nodes)
    deadline = time.monotonic() + 30
    while not roles_known()[0] and time.monotonic() < deadline:
        time.sleep(0.2)
    nodes = roles_known()[1]
    assert nodes[r1.port]["master"] == pid and "slave" in nodes[r1.port]["flags"]
    assert "slave" in nodes[r2.port]["flags"] and nodes[r2.port]["master"] != pid
    cli("rebalance", host(cl), "--cluster-use-empty-masters", "--cluster-pipeline", "50")
    cl.wait_agree()
    counts = slot_counts(cl)
    assert len(counts) == 4 and all(abs(n - 4096) <= 3 for n in counts.values()), counts
    check_data(cl)
    # the new primary's replica holds its keys
    cl.wait_replicas_synced()
    now_mine = next(n["slots"] for n in cl.live_node().nodes() if n["port"] == new_primary.port)
    mine = [k for k in ("key:%d" % j for j in range(KEYS)) if keyslot(k) in now_mine]
    ro = redis.Redis(port=r1.port, decode_responses=True)
    ro.execute_command("READONLY")
    deadline = time.monotonic() + 20
    while ro.dbsize() < len(mine) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ro.dbsize() == len(mine) > 0
    assert ro.get(mine[0]) == "v" + mine[0].split(":")[1]
    ro.close()
    cl.added = (new_primary.port, r1.port, r2.port)


def test_drain_and_del_node(cl):
    p4, r1, r2 = cl.added
    i = ids(cl)
    out = cli_fails("del-node", host(cl), i[p4])
    assert "is not empty! Reshard data away and try again." in out
    cli("rebalance", host(cl), "--cluster-weight", "%s=0" % i[p4], "--cluster-pipeline", "50")
    cl.wait_agree()
    assert slot_counts(cl).get(p4, 0) == 0      # empty: a bare master, or a replica of the
                                                # node that took its last slot
    check_data(cl)
    for port in (r1, r2, p4):
        out = cli("del-node", host(cl), i[port])
        assert "Sending CLUSTER FORGET messages to the cluster" in out
        cl.remove_node(port)
    cl.wait_ok()
    res = cl.wait_agree()
    assert len(re.findall(r"M: [0-9a-f]{40} ", res.stdout)) == 3
    assert not re.findall(r"S: [0-9a-f]{40} ", res.stdout)
    check_data(cl)


def test_fix_open_slot_with_a_key_on_both_sides(cl):
    i = ids(cl)
    tag = "{fix}"
    slot = keyslot(tag)
    src = cl.owner_of(slot)
    dst = next(p for p in cl.primary_ports() if p != src)
    S, D = redis.Redis(port=src), redis.Redis(port=dst)
    for j in range(20):
        S.set("%s%d" % (tag, j), j)
    cl.extra_keys = 20
    D.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", i[src])
    S.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", i[dst])
    S.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS",
                      *["%s%d" % (tag, j) for j in range(10)])
    # as after a crash between RESTORE on the target and DEL on the source
    S.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "COPY", "KEYS", tag + "15")
    out = run(["redis-cli", "--cluster", "check", host(cl)], 60).stdout
    assert "[WARNING] The following slots are open: %d." % slot in out
    out = cli("fix", host(cl), "--cluster-yes")
    assert "Checking key values on both nodes" in out and "Value check failed" not in out
    cl.wait_agree()
    owner = cl.owner_of(slot)
    other = src if owner == dst else dst
    assert redis.Redis(port=owner).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 20
    assert redis.Redis(port=other).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    rc = cl.cluster_client()
    assert [int(rc.get("%s%d" % (tag, j))) for j in range(20)] == list(range(20))
    rc.close()
    check_data(cl)


def test_fix_uncovered_slot(cl):
    slot = keyslot("{uncovered}")
    owner = cl.owner_of(slot)
    redis.Redis(port=owner).set("{uncovered}k", "v")
    cl.extra_keys = extra_keys(cl) + 1
    for p in cl.ports:
        redis.Redis(port=p).execute_command("CLUSTER", "DELSLOTS", slot)
    deadline = time.monotonic() + 20
    while "[ERR] Not all 16384 slots are covered by nodes." not in run(
            ["redis-cli", "--cluster", "check", host(cl)], 60).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # this question is asked even with --cluster-yes (redis-cli's ignore_force)
    out = cli("fix", host(cl), "--cluster-yes", input="yes\n")
    assert "Covering slot %d with 127.0.0.1:%d" % (slot, owner) in out
    cl.wait_ok()
    cl.wait_agree()
    assert cl.owner_of(slot) == owner
    check_data(cl)


def test_backup(cl, tmp_path):
    out = cli("backup", host(cl), str(tmp_path))
    assert "[OK] Backup created into: %s" % tmp_path in out
    files = sorted(os.listdir(tmp_path))
    assert "nodes.json" in files
    rdbs = [f for f in files if f.endswith(".rdb")]
    assert len(rdbs) == 3
    loaded = {}
    for f in rdbs:
        data = open(os.path.join(tmp_path, f), "rb").read()
        rdb.load(data, lambda db, k, v, e: loaded.__setitem__(k, v))
    assert len(loaded) == KEYS + extra_keys(cl)
    assert all(loaded[b"key:%d" % j] == b"v%d" % j for j in range(KEYS))
