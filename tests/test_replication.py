"""Replication: pynode primary/replica pairs, and interop with redis-server."""

import signal
import socket
import time

import pytest
import redis

from tests.helpers import Proc, wait_until


def link_up(c):
    return c.info("replication").get("master_link_status") == "up"


def synced(p, r):
    """The replica has applied everything the primary produced."""
    return wait_until(lambda: link_up(r) and r.info("replication")["slave_repl_offset"]
                      == p.info("replication")["master_repl_offset"], what="replica offset")


def dump_all(c, dbs=(0, 2)):
    out = {}
    for db in dbs:
        c.execute_command("SELECT", db)
        for k in c.keys("*"):
            out[(db, k)] = c.get(k)
    c.execute_command("SELECT", 0)
    return out


@pytest.fixture(scope="module")
def pair():
    p = Proc(["--enable-debug-command", "yes"]).start()
    r = Proc().start()
    pc, rc = p.client(), r.client()
    pc.set("before", "1")
    pc.set("ttl", "v", px=3600000)
    pc.execute_command("SELECT", 2)
    pc.set("db2", "x")
    pc.execute_command("SELECT", 0)
    assert rc.execute_command("REPLICAOF", "127.0.0.1", p.port) == b"OK"
    wait_until(lambda: link_up(rc), what="link up")
    yield p, r, pc, rc
    pc.close()
    rc.close()
    r.cleanup()
    p.cleanup()


def test_full_sync_then_stream(pair):
    p, r, pc, rc = pair
    assert rc.get("before") == b"1"
    assert abs(rc.pexpiretime("ttl") - pc.pexpiretime("ttl")) == 0
    pc.set("after", "2")
    pc.incr("counter")
    pc.incrby("counter", 5)
    pc.mset({"m1": "a", "m2": "b"})
    pc.delete("m2")
    pc.set("ex", "1", ex=100)
    pc.expire("after", 1000)
    tx = pc.pipeline(transaction=True)
    tx.set("t1", "1").set("t2", "2")
    tx.execute()
    pc.execute_command("SELECT", 2)
    pc.append("db2", "yz")
    pc.execute_command("SELECT", 0)
    synced(pc, rc)
    assert dump_all(rc) == dump_all(pc)
    assert rc.get("counter") == b"6"
    assert rc.pexpiretime("ex") == pc.pexpiretime("ex")       # SET EX went as PXAT
    assert rc.pexpiretime("after") == pc.pexpiretime("after")


def test_readonly_and_role_and_info(pair):
    p, r, pc, rc = pair
    with pytest.raises(redis.exceptions.ReadOnlyError):
        rc.set("x", "1")
    raw = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    raw.sendall(b"SET x 1\r\n")
    assert raw.recv(1000) == b"-READONLY You can't write against a read only replica.\r\n"
    raw.close()
    assert rc.get("before") == b"1"           # reads are fine
    ri = rc.info("replication")
    pi = pc.info("replication")
    for f in ("role", "master_host", "master_port", "master_link_status",
              "master_last_io_seconds_ago", "master_sync_in_progress",
              "slave_read_repl_offset", "slave_repl_offset", "slave_priority",
              "slave_read_only", "replica_announced", "connected_slaves",
              "master_failover_state", "master_replid", "master_replid2",
              "master_repl_offset", "second_repl_offset", "repl_backlog_active",
              "repl_backlog_size", "repl_backlog_first_byte_offset", "repl_backlog_histlen"):
        assert f in ri, f
    assert ri["role"] == "slave" and ri["master_port"] == p.port
    assert ri["master_link_status"] == "up" and ri["master_sync_in_progress"] == 0
    assert ri["master_replid"] == pi["master_replid"]
    assert pi["role"] == "master" and pi["connected_slaves"] == 1
    s0 = pi["slave0"]
    assert s0["ip"] == "127.0.0.1" and s0["port"] == r.port and s0["state"] == "online"
    assert pi["repl_backlog_active"] == 1
    assert rc.execute_command("ROLE")[:4] == [b"slave", b"127.0.0.1", p.port, b"connected"]
    role = pc.execute_command("ROLE")
    assert role[0] == b"master" and role[2][0][:2] == [b"127.0.0.1", str(r.port).encode()]
    flags = [cl["flags"] for cl in rc.client_list()]
    assert "M" in flags
    assert pc.client_list(_type="replica")[0]["flags"] == "S"
    assert rc.execute_command("REPLICAOF", "127.0.0.1", p.port) == \
        b"OK Already connected to specified master"
    with pytest.raises(redis.ResponseError, match="Invalid master port"):
        rc.execute_command("REPLICAOF", "127.0.0.1", "99999")
    with pytest.raises(redis.ResponseError, match="WAIT cannot be used with replica"):
        rc.execute_command("WAIT", 1, 10)


def test_replica_does_not_expire_keys_itself(pair):
    p, r, pc, rc = pair
    pc.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    try:
        pc.set("shortlived", "v", px=200)
        synced(pc, rc)
        time.sleep(0.35)
        assert rc.get("shortlived") is None           # logically expired on the replica
        assert rc.exists("shortlived") == 0
        n = rc.dbsize()                               # ... but still stored
        assert n == pc.dbsize()
        assert pc.get("shortlived") is None           # primary expires it -> DEL
        synced(pc, rc)
        assert rc.dbsize() == n - 1
    finally:
        pc.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")


def test_wait_and_partial_resync_after_kill(pair):
    p, r, pc, rc = pair
    pc.set("w", "1")
    assert pc.execute_command("WAIT", 1, 5000) == 1
    before = pc.info("stats")["sync_partial_ok"]
    assert pc.execute_command("CLIENT", "KILL", "TYPE", "replica") == 1
    pc.set("during_kill", "1")
    wait_until(lambda: pc.info("stats")["sync_partial_ok"] == before + 1, what="+CONTINUE")
    synced(pc, rc)
    assert rc.get("during_kill") == b"1"
    assert "Partial resynchronization request from 127.0.0.1:%d accepted" % r.port in p.log()
    assert rc.execute_command("CLIENT", "KILL", "TYPE", "master") == 1
    pc.set("after_master_kill", "2")
    wait_until(lambda: pc.info("stats")["sync_partial_ok"] == before + 2, what="+CONTINUE")
    synced(pc, rc)
    assert rc.get("after_master_kill") == b"2"
    assert "Successful partial resynchronization with master." in r.log()
    assert pc.info("stats")["sync_full"] == 1


def test_wait_pipelined_order(pair):
    p, r, pc, rc = pair
    raw = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    raw.sendall(b"SET pw 1\r\nWAIT 1 5000\r\nGET pw\r\n")
    buf = b""
    deadline = time.monotonic() + 5
    while buf.count(b"\r\n") < 4 and time.monotonic() < deadline:
        buf += raw.recv(1000)
    raw.close()
    assert buf == b"+OK\r\n:1\r\n$1\r\n1\r\n"


def test_min_replicas_to_write(pair):
    p, r, pc, rc = pair
    pc.config_set("min-replicas-to-write", 1)
    try:
        assert pc.set("mr", "1")                      # one good replica: allowed
        assert pc.info("replication")["min_slaves_good_slaves"] == 1
        pc.config_set("min-replicas-to-write", 2)
        with pytest.raises(redis.ResponseError, match="Not enough good replicas to write."):
            pc.set("mr", "2")
        raw = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        raw.sendall(b"SET mr 3\r\n")
        assert raw.recv(1000) == b"-NOREPLICAS Not enough good replicas to write.\r\n"
        raw.close()
        assert pc.get("mr") == b"1"                   # reads still work
    finally:
        pc.config_set("min-replicas-to-write", 0)
    assert pc.set("mr", "4")


def test_wait_without_replicas_times_out():
    with Proc() as p:
        c = p.client()
        c.set("k", "v")
        t0 = time.monotonic()
        assert c.execute_command("WAIT", 1, 300) == 0
        assert time.monotonic() - t0 >= 0.28
        # the server kept serving other clients meanwhile
        assert c.execute_command("WAIT", 0, 0) == 0
        c.config_set("min-replicas-to-write", 1)
        with pytest.raises(redis.ResponseError, match="Not enough good replicas"):
            c.set("k", "w")
        c.close()


def test_full_resync_when_backlog_exceeded():
    with Proc() as p, Proc() as r:
        pc, rc = p.client(), r.client()
        pc.config_set("repl-backlog-size", 16384)
        pc.set("a", "1")
        rc.replicaof("127.0.0.1", p.port)
        wait_until(lambda: link_up(rc), what="link up")
        synced(pc, rc)
        r.proc.send_signal(signal.SIGSTOP)
        try:
            pc.execute_command("CLIENT", "KILL", "TYPE", "replica")
            for i in range(100):
                pc.set("fill:%d" % i, "x" * 1000)         # 100 KB > backlog
        finally:
            r.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: pc.info("stats")["sync_full"] == 2, what="second full sync")
        synced(pc, rc)
        assert rc.dbsize() == 101
        assert "for lack of backlog" in p.log()
        info = pc.info("replication")
        assert info["repl_backlog_size"] == 16384
        assert info["repl_backlog_histlen"] == 16384
        pc.close()
        rc.close()


def test_promotion_keeps_data_and_replid2():
    with Proc() as p, Proc() as r, Proc() as r2:
        pc, rc, r2c = p.client(), r.client(), r2.client()
        for i in range(20):
            pc.set("k%d" % i, i)
        rc.replicaof("127.0.0.1", p.port)
        r2c.replicaof("127.0.0.1", p.port)
        wait_until(lambda: link_up(rc) and link_up(r2c), what="links up")
        pc.set("last", "x")
        synced(pc, rc)
        synced(pc, r2c)
        old = pc.info("replication")
        p.stop()                                          # the primary goes away
        assert rc.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
        info = rc.info("replication")
        assert info["role"] == "master"
        assert info["master_replid2"] == old["master_replid"]
        assert info["second_repl_offset"] == old["master_repl_offset"] + 1
        assert info["master_replid"] != old["master_replid"]
        assert rc.dbsize() == 21 and rc.get("last") == b"x"
        assert rc.set("new", "1")                         # writable now
        # a replica of the old primary continues partially from the promoted one
        r2c.replicaof("127.0.0.1", r.port)
        wait_until(lambda: link_up(r2c), what="r2 link up")
        wait_until(lambda: r2c.get("new") == b"1", what="stream from the new primary")
        assert rc.info("stats")["sync_partial_ok"] == 1
        assert rc.info("stats")["sync_full"] == 0
        assert r2c.info("replication")["master_replid"] == info["master_replid"]
        for c in (pc, rc, r2c):
            c.close()


def test_real_redis_replica_of_pynode():
    with Proc() as p, Proc(redis_server=True) as rs:
        pc, rsc = p.client(), rs.client()
        pc.set("s", "v")
        pc.set("big", "z" * 10000)
        pc.set("ttl", "t", px=3600000)
        pc.execute_command("SELECT", 2)
        pc.set("db2", "2")
        pc.execute_command("SELECT", 0)
        rsc.replicaof("127.0.0.1", p.port)
        wait_until(lambda: link_up(rsc), what="redis-server link up")
        pc.set("streamed", "1")
        pc.incr("n")
        assert pc.execute_command("WAIT", 1, 5000) == 1
        assert dump_all(rsc) == dump_all(pc)
        assert rsc.pexpiretime("ttl") == pc.pexpiretime("ttl")
        assert rsc.get("n") == b"1"
        pc.close()
        rsc.close()


def test_pynode_replica_of_real_redis():
    with Proc(redis_server=True, args=["--repl-diskless-sync-delay", "0"]) as rs, \
            Proc() as r:
        rsc, rc = rs.client(), r.client()
        rsc.set("compressible", "abc" * 1000)             # LZF in Redis's RDB
        rsc.set("int", 42)
        rsc.set("ttl", "t", ex=1000)
        rsc.execute_command("SELECT", 2)
        rsc.set("db2", "2")
        rsc.execute_command("SELECT", 0)
        rc.replicaof("127.0.0.1", rs.port)
        wait_until(lambda: link_up(rc), what="link up")
        rsc.set("streamed", "1")
        rsc.expire("int", 500)
        assert rsc.execute_command("WAIT", 1, 5000) == 1
        assert dump_all(rc) == dump_all(rsc)
        assert rc.get("compressible") == b"abc" * 1000
        assert rc.pexpiretime("ttl") == rsc.pexpiretime("ttl")
        assert rc.pexpiretime("int") == rsc.pexpiretime("int")
        rc.execute_command("CLIENT", "KILL", "TYPE", "master")
        rsc.set("after_kill", "1")
        wait_until(lambda: rc.get("after_kill") == b"1", what="partial resync from redis")
        assert rsc.info("stats")["sync_partial_ok"] == 1
        rsc.close()
        rc.close()


def test_replica_with_aof_syncs_and_keeps_the_data_across_a_restart():
    """appendonly yes on the replica: after the full sync its AOF is rewritten
    from the synced data (as Redis's restartAOFAfterSYNC), so a restart of the
    replica alone brings the data back."""
    p = Proc().start()
    r = Proc(["--appendonly", "yes"]).start()
    try:
        pc, rc = p.client(), r.client()
        pc.mset({"a": "1", "b": "2"})
        assert rc.execute_command("REPLICAOF", "127.0.0.1", p.port) == b"OK"
        wait_until(lambda: link_up(rc), what="link up")
        pc.set("c", "3")
        synced(pc, rc)
        assert rc.mget("a", "b", "c") == [b"1", b"2", b"3"]
        wait_until(lambda: rc.info("persistence")["aof_rewrite_in_progress"] == 0,
                   what="AOF rewrite done")
        rc.close()
        r.stop()
        r2 = Proc(["--appendonly", "yes"], port=r.port, workdir=r.dir).start()
        try:
            assert r2.client().mget("a", "b", "c") == [b"1", b"2", b"3"]
        finally:
            r2.stop()
    finally:
        r.cleanup()
        p.cleanup()
