"""Real partitions between hosts: a 3+3 cluster over three network namespaces
(tests/netns_cluster.py), cut with `pynode chaos partition` under a ledger
writer whose writes are acknowledged by WAIT.

- A primary cut off alone: its replica is with the majority and is promoted;
  the primary refuses writes once node-timeout has passed; healed, it comes back
  as a replica of the new primary.
- A primary cut off together with its replica: no failover is possible; the
  minority primary refuses writes after node-timeout, the majority sees the
  shard's slots down; healed, the cluster is whole again with the same primary.
After each, every acknowledged write reads back.

Needs root for the namespaces (CI runs as root); elsewhere the test fails with
the reason, it does not skip.
"""

from __future__ import annotations

import time

import pytest
import redis

from pynode.chaos.netlab import available
from tests.chaos import Writer, assert_verified, keyslot
from tests.netns_cluster import PORT, NetCluster


@pytest.fixture
def netcluster():
    why = available()
    assert why is None, why
    cl = NetCluster(node_timeout=2000)
    try:
        yield cl.up()
    finally:
        cl.cleanup()


def slot_of_primary(cl: NetCluster, addr: str) -> int:
    for n in cl.view(addr):
        if "myself" in n["flags"]:
            return min(n["slots"])
    raise AssertionError("no myself line")


def write_refused(cl: NetCluster, addr: str, key: str) -> bool:
    """The node answers a write with an error (CLUSTERDOWN, or MOVED once it
    has learnt it lost the slot), not OK."""
    try:
        cl.call(addr, "SET", key, "x", timeout=1)
    except redis.exceptions.ResponseError as e:
        cl.refusal = "%s %s" % (type(e).__name__, e)
        return True
    return False


def key_in_slot(slot: int) -> str:
    for i in range(200000):
        k = "probe:%d" % i
        if keyslot(k) == slot:
            return k
    raise AssertionError("no key for slot %d" % slot)


def test_partition_primary_alone_then_with_its_replica(netcluster):
    cl = netcluster
    nt = cl.node_timeout / 1000.0
    w = Writer(cl, keys=600, batch=12, wait_ms=200, retry_window=30, seed=7).start()
    try:
        time.sleep(1.0)
        # 1. P2 cut off alone: the majority (P1, P3 and R2) fails over to R2
        p2, r2 = cl.p[1], cl.r[1]
        slot = slot_of_primary(cl, p2)
        probe = key_in_slot(slot)
        t0 = time.monotonic()
        cl.chaos("partition", "%s:%d" % (p2, PORT))
        cl.wait(lambda: write_refused(cl, p2, probe), t0 + 6 * nt + 10,
                "the cut-off primary refusing writes")
        assert time.monotonic() - t0 >= nt * 0.9, "refused before node-timeout: " + cl.refusal
        cl.wait(lambda: cl.owner(cl.p[0], slot) == r2, t0 + 20 * nt + 20,
                "the replica promoted on the majority side")
        cl.chaos("heal", "%s:%d" % (p2, PORT))
        deadline = time.monotonic() + 30 * nt + 30
        cl.wait(lambda: cl.info(p2, "replication").get("role") == "slave"
                and cl.info(p2, "replication").get("master_host") == r2, deadline,
                "the healed primary rejoining as a replica of the new one")
        cl.wait(lambda: not cl.problems(), deadline, "a healthy cluster after healing")
        assert_verified(w, timeout=30)

        # 2. host h1 (P1 and its replica R1) cut off from the other hosts: no
        # failover; the minority primary refuses writes, the majority sees the
        # shard's slots down; healing restores the same primary
        p1, r1 = cl.p[0], cl.r[0]
        slot = slot_of_primary(cl, p1)
        probe = key_in_slot(slot)
        t0 = time.monotonic()      # P1 is cut first, then R1
        for a in (p1, r1):
            cl.chaos("partition", "%s:%d" % (a, PORT))
        cl.wait(lambda: write_refused(cl, p1, probe), t0 + 6 * nt + 10,
                "the minority primary refusing writes")
        assert time.monotonic() - t0 >= nt * 0.9, "refused before node-timeout: " + cl.refusal
        cl.wait(lambda: "cluster_state:fail" in cl.call(cl.p[2], "CLUSTER", "INFO"),
                t0 + 6 * nt + 10, "the majority seeing the shard's slots down")
        time.sleep(3 * nt)        # longer than a failover would take: none may happen
        assert cl.info(r1, "replication").get("role") == "slave"
        assert cl.owner(cl.p[2], slot) is None
        log = cl.chaos("log").stdout
        assert log.count("OPEN") == 2, log
        cl.chaos("undo", "--all")
        deadline = time.monotonic() + 30 * nt + 30
        cl.wait(lambda: not cl.problems(), deadline, "a healthy cluster after healing")
        assert cl.owner(cl.p[2], slot) == p1
        assert "OPEN" not in cl.chaos("log").stdout
        assert type(cl.lab).load(cl.lab.name, cl.state_dir).rules == []
    finally:
        w.stop()
    assert_verified(w, timeout=30)
    assert w.stats.acked > 0, w.summary()
