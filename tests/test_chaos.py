"""Chaos, short form (default suite): a 3+3 cluster, cluster-node-timeout 2000 ms,
under a writer that keeps a ledger of writes acknowledged by WAIT 1 (tests/chaos.py
defines the words: acknowledged, retried, failed, lost).

- kill -9 a random primary, wait until every slot is served, restart it, wait until it
  is a replica; twice.  After each round: cluster_state:ok everywhere, one primary per
  slot, the restarted node a replica, every acknowledged write reads back.
- SIGSTOP a primary past node-timeout, SIGCONT: it is a replica, redirects writes
  (MOVED), never acknowledges a stale write, reads follow to the new values.
- kill -9 a replica: no failover, not one error for the writer.
- CLUSTER FAILOVER on a replica under load: no write given up, none lost.
- kill -9 a primary while every write is a function call that writes its key
  twice (replicated as MULTI/EXEC): nothing acknowledged is lost, no replica
  shows the intermediate value, and the library is on every node afterwards
  (replicated, kept by the promoted replica, restored by the restarted node's
  sync).

The long form (20 rounds, failover times) is `make chaos` (tests/chaos_long.py).
PYNODE_CLUSTER_SERVER=redis runs the same against redis-server 7.0 (how this was
proven).
"""

from __future__ import annotations

import random

import pytest

from tests.chaos import (ChaosCluster, Writer, kill_primary_round, kill_replica, ledger_writer,
                         manual_failover, sigstop_primary, verify)

# failover timing: alone on the machine in `make test`
pytestmark = pytest.mark.serial

SEED = 20260601


@pytest.fixture(scope="module")
def cl():
    with ChaosCluster() as c:
        yield c


@pytest.fixture
def writer(cl):
    with ledger_writer(cl, SEED) as w:
        yield w


def test_kill_primary_restart_twice(cl, writer):
    rng = random.Random(SEED)
    results = [kill_primary_round(cl, writer, rng, name="round %d" % i) for i in (1, 2)]
    for i, r in enumerate(results, 1):
        print("round %d: kill -9 primary %d, replica %d promoted, first write after "
              "%.2fs (%.2fx node-timeout), %d keys checked"
              % (i, r["victim"], r["heir"], r["failover_s"],
                 r["failover_s"] * 1000 / cl.node_timeout, r["checked"]))
        assert r["lost"] == 0
        # bounded failover: the writer's first successful write on the lost slots
        assert 0 < r["failover_s"] < 15 * cl.node_timeout / 1000
    assert writer.stats.failed == 0, writer.failures[:10]
    roles = cl.roles()
    assert sorted(roles.values()).count("master") == 3
    assert all(roles[r["victim"]] == "slave -> %d" % r["heir"] for r in results[-1:])


def test_sigstop_primary_comes_back_as_replica(cl, writer):
    r = sigstop_primary(cl, writer, random.Random(SEED + 1))
    print("sigstop:", r)
    assert cl.roles()[r["victim"]] == "slave -> %d" % r["heir"]
    assert r["changed_keys"] >= 20
    assert writer.stats.failed == 0, writer.failures[:10]


def test_kill_replica_no_failover_no_errors(cl, writer):
    before = cl.roles()
    r = kill_replica(cl, writer, random.Random(SEED + 2))
    print("kill replica:", r)
    assert cl.roles() == before
    assert writer.stats.failed == 0, writer.failures[:10]


def test_manual_failover_under_load(cl, writer):
    r = manual_failover(cl, writer, random.Random(SEED + 3))
    print("manual failover:", r)
    roles = cl.roles()
    assert roles[r["replica"]] == "master"
    assert roles[r["primary"]] == "slave -> %d" % r["replica"]
    assert writer.stats.failed == 0, writer.failures[:10]


def test_ledger_check_catches_loss(cl, writer):
    """The check is not vacuous: a deleted acknowledged key is reported lost, a value
    never written is reported as a phantom."""
    writer.wait_progress(acked=200, timeout=20)
    writer.stop()
    acked, _, _ = writer.snapshot()
    assert verify(writer).ok()
    lost_key, phantom_key = sorted(acked)[:2]
    rc = cl.cluster_client()
    try:
        rc.delete(lost_key)
        rc.set(phantom_key, "s999999999")
    finally:
        rc.close()
    v = verify(writer)
    assert [k for k, _, _ in v.lost] == [lost_key]
    assert [k for k, _, _ in v.phantom] == [phantom_key]


CHAOS_LIB = ("#!lua name=chaoslib\n"
             "redis.register_function('chaos_set', function(k, a) "
             "redis.call('set', k[1], 'tmp') return redis.call('set', k[1], a[1]) end)")


def test_kill_primary_under_function_writes(cl):
    cl.wait_healthy(timeout=30)
    for port in cl.topology()["primaries"]:
        assert cl.call(port, "FUNCTION", "LOAD", "REPLACE", CHAOS_LIB) in ("chaoslib",
                                                                          b"chaoslib")
    w = Writer(cl, keys=1500, max_seconds=150, seed=SEED + 1, function="chaos_set")
    w.start()
    try:
        w.wait_progress(acked=50, timeout=20)
        r = kill_primary_round(cl, w, random.Random(SEED + 1), name="function writes")
    finally:
        w.stop()
    print("writer:", w.summary())
    assert r["lost"] == 0 and r["checked"] > 0
    v = verify(w)
    assert v.ok(), (v.lost[:5], v.phantom[:5])
    for port in cl.live_ports():
        libs = cl.call(port, "FUNCTION", "LIST")
        assert "chaoslib" in repr(libs), (port, libs)
