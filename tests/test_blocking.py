"""Blocking commands (pynode/blocking.py with BLPOP BRPOP BLMPOP BLMOVE
BRPOPLPUSH): in-process with a clock we drive (FIFO, timeouts, MULTI/EXEC
wake-up, what is propagated and in which order, CLIENT UNBLOCK, clients that
go away) and with real processes, compared with redis-server where it says
the same thing (timeouts, pipelines, role change), and in a real cluster
(-MOVED when the slot moves away, -CLUSTERDOWN)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from pynode.blocking import parse_timeout
from pynode.commands import CommandError
from tests.helpers import Proc, enc, wait_ping
from tests.inproc import InProc, ReplyError
from tests.test_lists import RawConn



# ----------------------------------------------------------------------------- in-process

class World:
    """An in-process server whose propagated commands are recorded."""

    def __init__(self, **cfg) -> None:
        self.p = InProc(**cfg)
        self.srv = self.p.srv
        self.log: list = []
        self.srv.repl_feed = lambda dbid, argv: self.log.append(
            (dbid, [bytes(a).upper() if i == 0 else bytes(a) for i, a in enumerate(argv)]))

    def client(self):
        return self.p.client()

    def blocked(self) -> int:
        return len(self.srv.blocking.clients)

    def cmds(self) -> list:
        out = [argv for _, argv in self.log]
        self.log.clear()
        return out


def test_fifo_per_key_across_three_clients():
    w = World()
    a, b, c, pusher = w.client(), w.client(), w.client(), w.client()
    for cl in (a, b, c):
        assert cl.call("BLPOP", "k", 0) is None
    assert w.blocked() == 3
    assert pusher.call("RPUSH", "k", "1", "2") == 2
    assert a.take() == [[b"k", b"1"]]
    assert b.take() == [[b"k", b"2"]]
    assert c.take() == []
    assert w.blocked() == 1
    assert pusher.call("EXISTS", "k") == 0            # both elements were taken
    pusher.call("LPUSH", "k", "3")
    assert c.take() == [[b"k", b"3"]]
    assert w.blocked() == 0
    assert w.srv.ks.db(0).blocking_keys == {}


def test_several_keys_first_ready_key_wins_and_cleanup():
    w = World()
    a, p = w.client(), w.client()
    assert a.call("BRPOP", "k1", "k2", "k1", 0) is None          # duplicates are fine
    p.call("RPUSH", "k2", "x", "y")
    assert a.take() == [[b"k2", b"y"]]
    assert w.srv.ks.db(0).blocking_keys == {}
    assert p.call("LRANGE", "k2", 0, -1) == [b"x"]


def test_timeouts_with_the_clock():
    w = World()
    a, b = w.client(), w.client()
    b.call("HELLO", "3")
    assert a.call("BLPOP", "k", "1.5") is None
    assert b.call("BLMOVE", "k", "d", "LEFT", "LEFT", "0.25") is None
    w.p.now += 200
    assert w.srv.blocking.check_timeouts() == 0
    w.p.now += 100
    assert w.srv.blocking.check_timeouts() == 1
    assert b.t.buf.endswith(b"_\r\n")                            # RESP3 null
    b.take()
    w.p.now += 1500
    assert w.srv.blocking.check_timeouts() == 1
    assert a.t.buf == b"*-1\r\n"                                  # a null array, RESP2
    assert w.blocked() == 0


def test_zero_timeout_waits_forever():
    w = World()
    a = w.client()
    a.call("BLPOP", "k", 0)
    w.p.now += 10 ** 9
    assert w.srv.blocking.check_timeouts() == 0
    assert w.blocked() == 1


@pytest.mark.parametrize("text,ms", [(b"0", 0), (b"1", 1000), (b"0.1", 100), (b"0.0001", 1),
                                     (b"-0.0001", 0), (b"0x1p-3", 125), (b"1e-400", 1),
                                     (b".5", 500), (b"5.", 5000),
                                     (b"9223372036854775.807", 9223372036854775807)])
def test_timeout_values(text, ms):
    assert parse_timeout(text) == ms


@pytest.mark.parametrize("text,err", [(b"x", "not a float"), (b"-1", "negative"),
                                      (b"inf", "negative"), (b"nan", "not a float"),
                                      (b" 1", "not a float"), (b"1_0", "not a float"),
                                      (b"1e5000", "not a float"), (b"", "not a float"),
                                      (b"9223372036854775.808", "negative")])
def test_bad_timeouts(text, err):
    with pytest.raises(CommandError, match=err):
        parse_timeout(text)
    with pytest.raises(CommandError, match="not an integer"):
        parse_timeout(b"1.5", unit_seconds=False)


def test_multi_exec_push_wakes_after_exec_and_propagates_after_it():
    w = World()
    a, p = w.client(), w.client()
    a.call("BLPOP", "k", 0)
    p.call("MULTI")
    p.call("RPUSH", "k", "a")
    p.call("LPUSH", "k", "b")
    assert a.take() == []                    # queued, nothing happened yet
    assert p.call("EXEC") == [1, 2]
    assert a.take() == [[b"k", b"b"]]
    assert w.cmds() == [[b"MULTI"], [b"RPUSH", b"k", b"a"], [b"LPUSH", b"k", b"b"],
                        [b"EXEC"], [b"LPOP", b"k"]]


def test_blocking_commands_inside_multi_never_block():
    w = World()
    p = w.client()
    p.call("MULTI")
    for cmd in (["BLPOP", "k", 0], ["BLMOVE", "k", "d", "LEFT", "LEFT", 0],
                ["BLMPOP", 0, 1, "k", "LEFT"], ["BRPOPLPUSH", "k", "d", 0]):
        assert p.call(*cmd) == b"QUEUED"
    assert p.call("EXEC") == [None, None, None, None]
    assert w.blocked() == 0


def test_served_pops_propagate_as_redis():
    w = World()
    a, b, c, d, p = (w.client() for _ in range(5))
    a.call("BLPOP", "q1", 0)
    b.call("BLMPOP", 0, 1, "q2", "RIGHT", "COUNT", 5)
    c.call("BLMOVE", "q3", "dst", "RIGHT", "LEFT", 0)
    d.call("BRPOPLPUSH", "q4", "dst", 0)
    w.cmds()
    p.call("RPUSH", "q1", "x")
    p.call("RPUSH", "q2", "1", "2", "3")
    p.call("RPUSH", "q3", "m")
    p.call("RPUSH", "q4", "n")
    assert b.take() == [[b"q2", [b"3", b"2", b"1"]]]
    assert c.take() == [b"m"] and d.take() == [b"n"]
    assert p.call("LRANGE", "dst", 0, -1) == [b"n", b"m"]
    assert w.cmds() == [[b"RPUSH", b"q1", b"x"], [b"LPOP", b"q1"],
                        [b"RPUSH", b"q2", b"1", b"2", b"3"], [b"RPOP", b"q2", b"3"],
                        [b"RPUSH", b"q3", b"m"], [b"LMOVE", b"q3", b"dst", b"right", b"left"],
                        [b"RPUSH", b"q4", b"n"], [b"RPOPLPUSH", b"q4", b"dst"]]


def test_blmove_chain_serves_the_next_waiter():
    w = World()
    a, b, p = w.client(), w.client(), w.client()
    a.call("BLMOVE", "src", "mid", "LEFT", "RIGHT", 0)
    b.call("BLPOP", "mid", 0)
    p.call("RPUSH", "src", "v")
    assert a.take() == [b"v"]
    assert b.take() == [[b"mid", b"v"]]
    assert p.call("EXISTS", "src", "mid") == 0
    assert w.cmds() == [[b"RPUSH", b"src", b"v"], [b"LMOVE", b"src", b"mid", b"left", b"right"],
                        [b"LPOP", b"mid"]]


def test_blmove_to_a_key_of_the_wrong_type_fails_the_waiter():
    w = World()
    a, p = w.client(), w.client()
    a.call("BLMOVE", "src", "str", "LEFT", "RIGHT", 0)
    p.call("SET", "str", "x")
    p.call("RPUSH", "src", "v")
    got = a.take()
    assert len(got) == 1 and isinstance(got[0], ReplyError) and got[0].startswith("WRONGTYPE")
    assert p.call("LRANGE", "src", 0, -1) == [b"v"]
    assert w.blocked() == 0


def test_key_of_another_type_keeps_waiting():
    w = World()
    a, p = w.client(), w.client()
    a.call("BLPOP", "k", 0)
    p.call("SET", "k", "string")
    assert a.take() == [] and w.blocked() == 1
    p.call("DEL", "k")
    p.call("RPUSH", "k", "now")
    assert a.take() == [[b"k", b"now"]]


def test_push_then_delete_inside_multi_serves_nobody():
    w = World()
    a, p = w.client(), w.client()
    a.call("BLPOP", "k", 0)
    p.call("MULTI")
    p.call("RPUSH", "k", "x")
    p.call("DEL", "k")
    p.call("EXEC")
    assert a.take() == [] and w.blocked() == 1


def test_swapdb_and_flushall_offer_the_new_data():
    w = World()
    a, p = w.client(), w.client()
    a.call("BLPOP", "k", 0)
    p.call("SELECT", 1)
    p.call("RPUSH", "k", "from-db1")
    assert a.take() == []                         # another database
    p.call("SWAPDB", 0, 1)
    assert a.take() == [[b"k", b"from-db1"]]
    a.call("BLPOP", "k", 0)
    p.call("SELECT", 0)
    p.call("FLUSHALL")
    assert a.take() == [] and w.blocked() == 1


def test_client_unblock_timeout_error_and_unknown():
    w = World()
    a, b, p = w.client(), w.client(), w.client()
    a.call("BLPOP", "k", 0)
    b.call("BLMOVE", "k", "d", "LEFT", "LEFT", 0)
    ida = a.c.id
    idb = b.c.id
    assert p.call("CLIENT", "UNBLOCK", ida) == 1
    assert a.take() == [None]
    assert p.call("CLIENT", "UNBLOCK", idb, "ERROR") == 1
    got = b.take()
    assert got == [ReplyError("UNBLOCKED client unblocked via CLIENT UNBLOCK")]
    assert p.call("CLIENT", "UNBLOCK", ida) == 0
    assert p.call("CLIENT", "UNBLOCK", 12345) == 0
    assert p.call("CLIENT", "UNBLOCK", ida, "MAYBE") == \
        ReplyError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    assert w.blocked() == 0


def test_disconnect_while_blocked_cleans_up():
    w = World()
    a, b, p = w.client(), w.client(), w.client()
    a.call("BLPOP", "k", 0)
    b.call("BLPOP", "k", 0)
    a.close()
    assert w.blocked() == 1
    p.call("RPUSH", "k", "x", "y")
    assert b.take() == [[b"k", b"x"]]
    assert p.call("LRANGE", "k", 0, -1) == [b"y"]            # nothing lost to a
    assert w.srv.ks.db(0).blocking_keys == {}


def test_killed_client_is_not_served():
    w = World()
    a, b, p = w.client(), w.client(), w.client()
    a.call("BLPOP", "k", 0)
    b.call("BLPOP", "k", 0)
    assert p.call("CLIENT", "KILL", "ID", a.c.id) == 1       # closing, not gone yet
    p.call("RPUSH", "k", "x")
    assert b.take() == [[b"k", b"x"]]
    assert a.take() == []
    assert w.blocked() == 0


def test_client_list_flag_and_info_while_blocked():
    w = World()
    a, p = w.client(), w.client()
    a.call("BLPOP", "k", 5)
    lines = p.call("CLIENT", "LIST").decode().splitlines()
    mine = [ln for ln in lines if ("id=%d " % a.c.id) in ln][0]
    assert " flags=b " in mine and " cmd=blpop " in mine
    info = p.call("INFO", "clients").decode()
    assert "blocked_clients:1" in info and "clients_in_timeout_table:1" in info
    p.call("RPUSH", "k", "v")
    info = p.call("INFO", "clients").decode()
    assert "blocked_clients:0" in info


def test_waiters_in_other_databases_are_separate():
    w = World()
    a, b, p = w.client(), w.client(), w.client()
    b.call("SELECT", 2)
    a.call("BLPOP", "k", 0)
    b.call("BLPOP", "k", 0)
    p.call("SELECT", 2)
    p.call("RPUSH", "k", "two")
    assert b.take() == [[b"k", b"two"]] and a.take() == []
    assert w.log[-1] == (2, [b"LPOP", b"k"])


# ----------------------------------------------------------------------------- processes

def _wait_blocked(c: redis.Redis, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while int(c.info("clients")["blocked_clients"]) != n:
        assert time.monotonic() < deadline, "blocked_clients never reached %d" % n
        time.sleep(0.01)


def _both(server, real):
    return [("pynode", server.port), ("redis", real.port)]


def test_fractional_timeouts_and_replies_match_redis(server, real):
    for name, port in _both(server, real):
        for resp3 in (False, True):
            c = RawConn(port, resp3)
            c.call("FLUSHALL")
            t0 = time.monotonic()
            got = c.call("BLPOP", "nokey", "0.2")
            dt = time.monotonic() - t0
            assert got == (b"_\r\n" if resp3 else b"*-1\r\n"), name
            assert 0.18 <= dt < 2, (name, dt)
            assert c.call("BLMOVE", "nokey", "d", "LEFT", "LEFT", "0.05") == \
                (b"_\r\n" if resp3 else b"*-1\r\n"), name
            assert c.call("BLPOP", "nokey", "-1") == b"-ERR timeout is negative\r\n"
            c.close()


def test_fifo_across_three_connections(server):
    r = server.client()
    r.flushall()
    conns = [RawConn(server.port) for _ in range(3)]
    try:
        for i, c in enumerate(conns):
            c.send("BLPOP", "q", "0")
            _wait_blocked(r, i + 1)
        r.rpush("q", "a", "b", "c")
        assert [c.read() for c in conns] == [b"*2\r\n$1\r\nq\r\n$1\r\n%s\r\n" % v
                                             for v in (b"a", b"b", b"c")]
    finally:
        for c in conns:
            c.close()
        r.close()


def test_pipelined_commands_wait_for_the_blocking_one(server, real):
    for name, port in _both(server, real):
        r = redis.Redis(port=port)
        r.flushall()
        c = RawConn(port)
        c.sock.sendall(enc("BLPOP", "k", "0") + enc("PING") + enc("RPUSH", "after", "1"))
        _wait_blocked(r, 1)
        assert r.exists("after") == 0, name        # held behind the blocked command
        c.sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            c.read()
        c.sock.settimeout(5)
        r.rpush("k", "v")
        assert c.read() == b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n"
        assert c.read() == b"+PONG\r\n"
        assert c.read() == b":1\r\n"
        c.close()
        r.close()


def test_multi_exec_wakes_blocked_client(server):
    r = server.client()
    r.flushall()
    c = RawConn(server.port)
    try:
        c.send("BRPOP", "k", "0")
        _wait_blocked(r, 1)
        with r.pipeline(transaction=True) as p:
            p.rpush("k", "a", "b")
            p.lpush("k", "c")
            p.execute()
        assert c.read() == b"*2\r\n$1\r\nk\r\n$1\r\nb\r\n"
        assert r.lrange("k", 0, -1) == [b"c", b"a"]
    finally:
        c.close()
        r.close()


def test_client_unblock_and_disconnect(server):
    r = server.client()
    r.flushall()
    a = RawConn(server.port)
    b = RawConn(server.port)
    try:
        ida = int(a.call("CLIENT", "ID")[1:-2])
        idb = int(b.call("CLIENT", "ID")[1:-2])
        a.send("BLPOP", "k", "0")
        b.send("BLMPOP", "0", "1", "k", "LEFT")
        _wait_blocked(r, 2)
        flags = {ln.split()[0]: ln for ln in r.execute_command("CLIENT", "LIST").decode()
                 .splitlines()}
        assert " flags=b " in flags["id=%d" % ida]
        assert r.client_unblock(ida) == 1
        assert a.read() == b"*-1\r\n"
        assert r.client_unblock(idb, error=True) == 1
        assert b.read() == b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
        assert a.call("PING") == b"+PONG\r\n"       # both connections go on working
        a.send("BLPOP", "k", "0")
        _wait_blocked(r, 1)
        a.close()                                    # disconnect while blocked
        _wait_blocked(r, 0)
        r.rpush("k", "kept")
        assert r.lrange("k", 0, -1) == [b"kept"]
    finally:
        b.close()
        r.close()


def test_client_unblock_wait_and_argument_errors_match_redis(server, real):
    for name, port in _both(server, real):
        r = redis.Redis(port=port)
        c = RawConn(port)
        cid = int(c.call("CLIENT", "ID")[1:-2])
        for reason, want in ((None, b":0\r\n"), ("ERROR", b"-UNBLOCKED client unblocked via "
                                                          b"CLIENT UNBLOCK\r\n")):
            c.send("WAIT", "1", "0")                # no replica: waits forever
            _wait_blocked(r, 1)
            line = [ln for ln in r.execute_command("CLIENT", "LIST").decode().splitlines()
                    if ln.startswith("id=%d " % cid)][0]
            assert " flags=b " in line, (name, line)
            args = ["CLIENT", "UNBLOCK", cid] + ([reason] if reason else [])
            assert r.execute_command(*args) == 1, name
            assert c.read() == want, name
            _wait_blocked(r, 0)
        errs = [RawConn(port).call(*cmd) for cmd in (
            ["CLIENT", "UNBLOCK", "abc", "MAYBE"], ["CLIENT", "UNBLOCK", "abc"],
            ["CLIENT", "UNBLOCK", "1", "timeout", "x"])]
        assert errs == [b"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n",
                        b"-ERR value is not an integer or out of range\r\n",
                        b"-ERR unknown subcommand or wrong number of arguments for 'UNBLOCK'. "
                        b"Try CLIENT HELP.\r\n"], name
        c.close()
        r.close()


def test_blocked_clients_get_unblocked_error_when_turned_replica(tmp_path):
    """REPLICAOF on a primary: -UNBLOCKED ... (master -> replica?) and the
    connection is closed, as redis-server does."""
    for redis_server in (True, False):
        p = Proc(redis_server=redis_server).start()
        try:
            r = p.client()
            c = RawConn(p.port)
            c.send("BLPOP", "k", "0")
            _wait_blocked(r, 1)
            r.execute_command("REPLICAOF", "127.0.0.1", "1")      # nothing listens there
            assert c.read() == (b"-UNBLOCKED force unblock from blocking operation, "
                                b"instance state changed (master -> replica?)\r\n")
            c.sock.settimeout(5)
            assert c.sock.recv(100) == b""                      # closed by the server
            r.execute_command("REPLICAOF", "NO", "ONE")
            r.close()
            c.close()
        finally:
            p.cleanup()


@pytest.mark.parametrize("replica_is_redis", [True, False])
def test_lists_and_served_pops_reach_a_replica(replica_is_redis):
    """Full sync of lists (quicklist RDB) to a replica, then the stream: pushes
    and the pops of clients served later arrive in order."""
    p = Proc().start()
    rep = Proc(redis_server=replica_is_redis).start()
    try:
        pc = p.client()
        rc = rep.client()
        pc.rpush("before", *range(3000))
        pc.lpush("before", *["x" * 100] * 200)
        rc.execute_command("REPLICAOF", "127.0.0.1", p.port)

        def synced():
            info = rc.info("replication")
            return (info.get("master_link_status") == "up" and info["slave_repl_offset"]
                    == pc.info("replication")["master_repl_offset"])

        deadline = time.monotonic() + 20
        while not synced():
            assert time.monotonic() < deadline, "replica never caught up"
            time.sleep(0.05)
        assert rc.lrange("before", 0, -1) == pc.lrange("before", 0, -1)
        assert rc.dump("before") == pc.dump("before")
        waiters = [RawConn(p.port) for _ in range(3)]
        waiters[0].send("BLPOP", "q", "0")
        waiters[1].send("BLMOVE", "q", "moved", "RIGHT", "LEFT", "0")
        waiters[2].send("BLMPOP", "0", "1", "q", "LEFT", "COUNT", "2")
        _wait_blocked(pc, 3)
        pc.rpush("q", "a", "b", "c", "d", "e")
        for w in waiters:
            w.read()
            w.close()
        pc.set("end", "1")
        deadline = time.monotonic() + 20
        while not synced():
            assert time.monotonic() < deadline, "replica never caught up"
            time.sleep(0.05)
        assert rc.lrange("q", 0, -1) == pc.lrange("q", 0, -1) == [b"d"]
        assert rc.lrange("moved", 0, -1) == pc.lrange("moved", 0, -1) == [b"e"]
        pc.close()
        rc.close()
    finally:
        rep.cleanup()
        p.cleanup()


def test_blocked_client_after_threads_push(server):
    """redis-py's own BLPOP in threads, woken by pushes from another client."""
    r = server.client()
    r.flushall()
    results = []

    def worker():
        c = server.client()
        results.append(c.blpop(["jobs"], 5))
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    _wait_blocked(r, 3)
    r.rpush("jobs", "j1", "j2", "j3")
    for t in threads:
        t.join(10)
    assert sorted(results) == [(b"jobs", b"j1"), (b"jobs", b"j2"), (b"jobs", b"j3")]
    r.close()


# ----------------------------------------------------------------------------- cluster

def _cluster_call(port, *args):
    c = redis.Redis(port=port, socket_timeout=5, decode_responses=True)
    try:
        return c.execute_command(*args)
    finally:
        c.close()


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def two_nodes():
    """A cluster of two primaries: A owns 0-8191, B 8192-16383."""
    args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "1000", "--appendonly", "no"]
    procs = [Proc(list(args)) for _ in range(2)]
    try:
        for p in procs:
            p.start(wait=False)
        for p in procs:
            wait_ping(p.port, timeout=15)
        a, b = procs
        assert _cluster_call(a.port, "CLUSTER", "MEET", "127.0.0.1", str(b.port)) == "OK"
        _cluster_call(a.port, "CLUSTER", "ADDSLOTSRANGE", "0", "8191")
        _cluster_call(b.port, "CLUSTER", "ADDSLOTSRANGE", "8192", "16383")
        _wait(lambda: all(_cluster_call(p.port, "CLUSTER", "INFO").find("cluster_state:ok") >= 0
                          and "handshake" not in _cluster_call(p.port, "CLUSTER", "NODES")
                          for p in procs), 20, "cluster_state:ok")
        yield procs
    finally:
        for p in procs:
            p.cleanup()


def test_cluster_blocked_client_gets_moved_then_clusterdown(two_nodes):
    a, b = two_nodes
    from storage.slots import keyslot
    key = next("k%d" % i for i in range(1000) if keyslot(b"k%d" % i) < 8192)
    slot = keyslot(key.encode())
    other = next("k%d" % i for i in range(1000)
                 if keyslot(b"k%d" % i) < 8192 and keyslot(b"k%d" % i) != slot)
    ra = redis.Redis(port=a.port, socket_timeout=5)
    c1 = RawConn(a.port)
    c2 = RawConn(a.port)
    try:
        c1.send("BLPOP", key, "0")
        c2.send("BLPOP", other, "0")
        _wait_blocked(ra, 2)
        b_id = _cluster_call(b.port, "CLUSTER", "MYID")
        for p in (b, a):
            assert _cluster_call(p.port, "CLUSTER", "SETSLOT", str(slot), "NODE", b_id) == "OK"
        c1.sock.settimeout(5)
        assert c1.read() == b"-MOVED %d 127.0.0.1:%d\r\n" % (slot, b.port)
        _wait_blocked(ra, 1)
        # the cluster fails (a slot without owner, full coverage required)
        free_slot = next(s for s in range(8192) if s not in (slot, keyslot(other.encode())))
        _cluster_call(a.port, "CLUSTER", "DELSLOTS", str(free_slot))
        c2.sock.settimeout(10)
        assert c2.read() == b"-CLUSTERDOWN The cluster is down\r\n"
        _wait_blocked(ra, 0)
    finally:
        c1.close()
        c2.close()
        ra.close()
