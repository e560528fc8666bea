"""SHUTDOWN FAILOVER and `shutdown-on-sigterm failover` (Valkey 9): a cluster primary
stopped this way first hands its slots to its best replica, so a rolling restart
loses no acknowledged write and keeps its slots writable but for a short pause.

A 3+1 cluster (cluster-node-timeout 2000 ms) under the chaos writer (a ledger of
writes acknowledged by WAIT 1, tests/chaos.py): each primary in turn is stopped
(SHUTDOWN FAILOVER, then SIGTERM with the option set), restarted, and must come
back as a replica of the replica that took over; nothing acknowledged is lost,
the writer gives up no write, and the slots were writable again long before a
failover by node timeout could have happened.
"""

from __future__ import annotations

import random
import signal
import socket
import time

import pytest
import redis

from tests.chaos import ChaosCluster, assert_verified, keyslot, ledger_writer

SEED = 20261207


@pytest.fixture(scope="module")
def cl():
    with ChaosCluster() as c:
        yield c


@pytest.fixture
def writer(cl):
    with ledger_writer(cl, SEED) as w:
        yield w


def stop_with_handover(cl: ChaosCluster, w: Writer, how: str, rng: random.Random) -> dict:
    victim = cl.random_primary(rng)
    slots = cl.topology()["primaries"][victim]
    heir = cl.replica_of(victim)
    proc = cl.node(victim).proc.proc
    t0 = time.monotonic()
    w.watch(how, slots, since=t0, not_from=victim)
    if how == "SHUTDOWN FAILOVER":
        c = cl.node(victim).client(socket_timeout=15)
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                c.execute_command("SHUTDOWN", "FAILOVER")  # no reply: the server exits
        finally:
            c.close()
    else:
        assert cl.call(victim, "CONFIG", "SET", "shutdown-on-sigterm", "failover") in (True, "OK")
        assert cl.call(victim, "CONFIG", "GET", "shutdown-on-sigterm") == {
            "shutdown-on-sigterm": "failover"}
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    t_exit = time.monotonic()
    log = cl.node(victim).proc.log()
    assert "Handover done" in log, log[-3000:]
    # the replica was primary before the old one exited: no failure detection needed
    t_first = w.wait_first_ok(how, timeout=10)
    roles = cl.roles()
    assert roles[heir] == "master"
    cl.restart(victim)
    cl.wait_replica(victim, primary=heir, timeout=30)
    cl.wait_healthy(timeout=30)
    w.wait_progress(acked=10, timeout=20)
    v = assert_verified(w)
    return {"victim": victim, "heir": heir, "stop_s": t_exit - t0,
            "first_write_s": t_first - t0, "checked": v.checked}


@pytest.mark.parametrize("how", ["SHUTDOWN FAILOVER", "SIGTERM"])
def test_stopping_a_primary_hands_its_slots_over_first(cl, writer, how):
    r = stop_with_handover(cl, writer, how, random.Random(SEED + len(how)))
    print(how, r)
    # writes resumed on the new primary well within one node timeout (an automatic
    # failover after a kill takes more than one node timeout by construction)
    assert r["first_write_s"] < cl.node_timeout / 1000, r
    assert writer.stats.failed == 0, writer.failures[:10]
    assert r["checked"] > 0


def test_shutdown_abort_cancels_the_handover_and_bad_syntax_is_refused(cl):
    cl.wait_healthy(timeout=30)
    victim = cl.random_primary(random.Random(SEED))
    for args in (("FAILOVER", "ABORT"), ("ABORT", "FAILOVER"), ("FAILOVER", "SIDEWAYS")):
        with pytest.raises(redis.exceptions.ResponseError, match="^syntax error$"):
            cl.call(victim, "SHUTDOWN", *args)
    with pytest.raises(redis.exceptions.ResponseError, match="^No shutdown in progress.$"):
        cl.call(victim, "SHUTDOWN", "ABORT")
    # a replica that never acknowledges (SIGSTOPped) holds the handover: ABORT ends it
    slots = cl.topology()["primaries"][victim]
    key = next(k for k in ("probe:%d" % i for i in range(10000)) if keyslot(k) in slots)
    heir = cl.replica_of(victim)
    cl.call(victim, "CONFIG", "SET", "shutdown-timeout", "20")
    cl.stop(heir)
    try:
        assert cl.call(victim, "SET", key, "1") in (True, "OK")
        waiting = socket.create_connection(("127.0.0.1", victim), timeout=10)
        try:
            waiting.sendall(b"SHUTDOWN FAILOVER\r\n")
            time.sleep(0.5)
            # writes are held meanwhile; reads are served
            held = socket.create_connection(("127.0.0.1", victim), timeout=10)
            held.sendall(b"SET %s 2\r\nGET %s\r\n" % (key.encode(), key.encode()))
            time.sleep(0.3)
            held.setblocking(False)
            with pytest.raises(BlockingIOError):
                held.recv(100)
            held.setblocking(True)
            assert cl.call(victim, "SHUTDOWN", "ABORT") in (True, "OK")
            assert waiting.recv(100) == b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n"
            got = b""
            while got.count(b"\r\n") < 3:
                got += held.recv(100)
            assert got == b"+OK\r\n$1\r\n2\r\n"
            held.close()
        finally:
            waiting.close()
        assert cl.node(victim).alive()
        assert cl.call(victim, "GET", key) == "2"
        assert "Shutdown and handover aborted." in cl.node(victim).proc.log()
    finally:
        cl.cont(heir)
        cl.call(victim, "CONFIG", "SET", "shutdown-timeout", "10")
    cl.wait_healthy(timeout=30)


def test_shutdown_failover_without_a_replica_just_shuts_down():
    """Nothing to hand over (a replica, or a primary without replicas): SHUTDOWN
    FAILOVER is a plain SHUTDOWN."""
    with ChaosCluster(replicas=0) as c:
        port = c.ports[0]
        proc = c.node(port).proc.proc
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(b"SHUTDOWN FAILOVER NOSAVE\r\n")
            assert s.recv(100) == b""  # closed without a reply, as SHUTDOWN
        finally:
            s.close()
        assert proc.wait(timeout=15) == 0
        assert "Handing my slots over" not in c.node(port).proc.log()
