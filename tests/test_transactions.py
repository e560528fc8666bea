"""MULTI / EXEC / DISCARD / WATCH / UNWATCH against Redis 7.0 behaviour.

Set PYNODE_TEST_AGAINST_REDIS=1 to run the same tests against a real
redis-server (to check that the expectations are Redis's own)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time

import pytest
import redis

from tests.helpers import Proc, raw_command

AGAINST_REDIS = bool(os.environ.get("PYNODE_TEST_AGAINST_REDIS"))


@pytest.fixture(scope="module")
def server():
    p = Proc(redis_server=AGAINST_REDIS).start()
    yield p
    p.cleanup()


@pytest.fixture
def r2(server):
    c = server.client()
    yield c
    c.close()


class Conn:
    """A raw RESP connection: send commands, read exact reply bytes."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, *args) -> None:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))

    def read_exact(self, n: int) -> bytes:
        deadline = time.monotonic() + 5
        while len(self.buf) < n:
            assert time.monotonic() < deadline, "timed out reading %r" % self.buf
            data = self.s.recv(65536)
            assert data, "connection closed"
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def call(self, *args, expect: bytes) -> bytes:
        self.send(*args)
        got = self.read_exact(len(expect))
        assert got == expect, (args, got, expect)
        return got

    def drain(self, quiet: float = 0.3) -> bytes:
        """Everything that arrives until the connection is quiet."""
        self.s.settimeout(quiet)
        try:
            while True:
                data = self.s.recv(65536)
                if not data:
                    break
                self.buf += data
        except socket.timeout:
            pass
        self.s.settimeout(5)
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        self.s.close()


@pytest.fixture
def conn(server, r):
    c = Conn(server.port)
    yield c
    c.close()


# ------------------------------------------------------------------ basics
def test_multi_exec_returns_all_replies(r):
    p = r.pipeline(transaction=True)
    p.set("a", "1").incr("a").get("a").get("missing")
    assert p.execute() == [True, 2, b"2", None]


def test_queued_replies_and_exec_array_wire_shape(server, r):
    out = raw_command(server.port, b"MULTI\r\nSET k v\r\nGET k\r\nGET nokey\r\nEXEC\r\n")
    assert out == (b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"
                   b"*3\r\n+OK\r\n$1\r\nv\r\n$-1\r\n")


def test_empty_transaction(server, r):
    assert raw_command(server.port, b"MULTI\r\nEXEC\r\n") == b"+OK\r\n*0\r\n"


def test_exec_and_discard_without_multi(server, r):
    out = raw_command(server.port, b"EXEC\r\nDISCARD\r\n")
    assert out == b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n"


def test_nested_multi_is_an_error_but_does_not_abort(server, r):
    out = raw_command(server.port, b"MULTI\r\nMULTI\r\nSET a 1\r\nEXEC\r\n")
    assert out == (b"+OK\r\n-ERR MULTI calls can not be nested\r\n+QUEUED\r\n"
                   b"*1\r\n+OK\r\n")
    assert r.get("a") == b"1"


def test_watch_inside_multi_is_an_error_but_does_not_abort(server, r):
    out = raw_command(server.port, b"MULTI\r\nWATCH x\r\nSET a 2\r\nEXEC\r\n")
    assert out == (b"+OK\r\n-ERR WATCH inside MULTI is not allowed\r\n+QUEUED\r\n"
                   b"*1\r\n+OK\r\n")
    assert r.get("a") == b"2"


def test_unknown_command_aborts_exec(server, r):
    out = raw_command(server.port, b"MULTI\r\nFOO bar\r\nSET a 1\r\nEXEC\r\nEXEC\r\n")
    assert out == (b"+OK\r\n-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"
                   b"+QUEUED\r\n"
                   b"-EXECABORT Transaction discarded because of previous errors.\r\n"
                   b"-ERR EXEC without MULTI\r\n")
    assert r.get("a") is None


def test_wrong_arity_aborts_exec(r):
    p = r.pipeline(transaction=True)
    p.set("a", "1")
    p.execute_command("GET")
    with pytest.raises(redis.ResponseError) as e:
        p.execute()
    assert "EXECABORT" in str(e.value) or "wrong number of arguments" in str(e.value)
    assert r.get("a") is None


def test_wrong_arity_aborts_exec_raw(server, r):
    out = raw_command(server.port, b"MULTI\r\nSET a\r\nSET b 1\r\nEXEC\r\nGET b\r\n")
    assert out == (b"+OK\r\n-ERR wrong number of arguments for 'set' command\r\n+QUEUED\r\n"
                   b"-EXECABORT Transaction discarded because of previous errors.\r\n"
                   b"$-1\r\n")


def test_runtime_errors_do_not_abort_the_others(server, r):
    r.set("s", "notanumber")
    out = raw_command(server.port,
                      b"MULTI\r\nSET a 1\r\nINCR s\r\nSET a 1 2 3\r\nINCR a\r\nEXEC\r\n")
    assert out == (b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"
                   b"*4\r\n+OK\r\n-ERR value is not an integer or out of range\r\n"
                   b"-ERR syntax error\r\n:2\r\n")
    assert r.get("a") == b"2"


def test_discard_drops_the_queue(server, r):
    out = raw_command(server.port, b"MULTI\r\nSET a 1\r\nDISCARD\r\nGET a\r\nEXEC\r\n")
    assert out == b"+OK\r\n+QUEUED\r\n+OK\r\n$-1\r\n-ERR EXEC without MULTI\r\n"


def test_select_inside_multi_persists(server, r):
    out = raw_command(server.port,
                      b"MULTI\r\nSELECT 3\r\nSET a in3\r\nEXEC\r\nGET a\r\n")
    assert out == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n+OK\r\n$3\r\nin3\r\n"
    assert r.get("a") is None


def test_quit_inside_multi_is_not_queued(r, conn):
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("SET", "a", "1", expect=b"+QUEUED\r\n")
    conn.call("QUIT", expect=b"+OK\r\n")
    assert conn.s.recv(100) == b""          # closed
    assert r.get("a") is None


def test_reset_inside_multi_discards(server, r):
    out = raw_command(server.port, b"MULTI\r\nSET a 1\r\nRESET\r\nEXEC\r\n")
    assert out == b"+OK\r\n+QUEUED\r\n+RESET\r\n-ERR EXEC without MULTI\r\n"
    assert r.get("a") is None


def test_resp3_exec_and_null_on_touched_watch(server, r, conn):
    conn.send("HELLO", "3")
    assert conn.drain().startswith(b"%7\r\n")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("GET", "nokey", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n_\r\n")
    conn.call("WATCH", "k", expect=b"+OK\r\n")
    r.set("k", "changed")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"_\r\n")


# ------------------------------------------------------------------ WATCH
def test_watch_touched_by_other_client_fails_exec(r, r2, conn):
    r.set("x", "1")
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r2.set("x", "2")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("SET", "x", "3", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")
    assert r.get("x") == b"2"


def test_watch_untouched_exec_succeeds(r, conn):
    r.set("x", "1")
    conn.call("WATCH", "x", "y", "x", expect=b"+OK\r\n")
    r.set("other", "1")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("SET", "x", "3", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+OK\r\n")
    assert r.get("x") == b"3"


def test_own_write_after_watch_fails_exec(r, conn):
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    conn.call("SET", "x", "mine", expect=b"+OK\r\n")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")


def test_watch_with_redis_py_raises_watcherror(r, r2):
    r.set("bal", "10")
    with r.pipeline() as p:
        p.watch("bal")
        assert int(p.get("bal")) == 10
        r2.incr("bal")
        p.multi()
        p.set("bal", 100)
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("bal") == b"11"


def test_after_exec_keys_are_no_longer_watched(r, conn):
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")
    r.set("x", "changed")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_after_failed_exec_keys_are_no_longer_watched(r, conn):
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.set("x", "1")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")
    r.set("x", "2")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_unwatch(r, conn):
    conn.call("UNWATCH", expect=b"+OK\r\n")
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.set("x", "1")
    conn.call("UNWATCH", expect=b"+OK\r\n")      # clears the dirty flag too
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_discard_clears_dirty_flag_and_unwatches(r, conn):
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.set("x", "1")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("DISCARD", expect=b"+OK\r\n")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")
    conn.call("WATCH", "y", expect=b"+OK\r\n")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("DISCARD", expect=b"+OK\r\n")
    r.set("y", "1")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_watch_remembers_the_db_of_the_key(r, conn):
    conn.call("SELECT", "5", expect=b"+OK\r\n")
    conn.call("SET", "x", "30", expect=b"+OK\r\n")
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    conn.call("SELECT", "1", expect=b"+OK\r\n")
    conn.call("SET", "x", "10", expect=b"+OK\r\n")      # same name, other db
    conn.call("SELECT", "5", expect=b"+OK\r\n")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_watch_sees_del_and_expire(r, r2, conn):
    for touch in (lambda: r2.delete("x"), lambda: r2.expire("x", 100),
                  lambda: r2.persist("x"), lambda: r2.incr("x")):
        r.set("x", "1")
        r.pexpire("x", 100000)
        conn.call("WATCH", "x", expect=b"+OK\r\n")
        touch()
        conn.call("MULTI", expect=b"+OK\r\n")
        conn.call("PING", expect=b"+QUEUED\r\n")
        conn.call("EXEC", expect=b"*-1\r\n")


def test_noop_writes_do_not_touch(r, conn):
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.delete("x")                       # nothing deleted: no change
    r.expire("x", 10)                   # no key: no change
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_watched_key_that_expires_fails_exec(r, conn):
    r.set("x", "foo")
    r.pexpire("x", 100)
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    time.sleep(0.25)
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")


def _stale(c, key="x"):
    """A key that is logically expired (still present, or already reclaimed by
    the active expiry: either way WATCH must treat it as not existing)."""
    c.set(key, "foo")
    c.pexpire(key, 1)
    time.sleep(0.01)


def test_watch_stale_key_does_not_fail_exec(r, conn):
    _stale(r)
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_deleting_watched_stale_key_does_not_fail_exec(r, conn):
    _stale(r)
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    assert r.exists("x") == 0          # lazy expiry deletes it
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_setting_watched_stale_key_fails_exec(r, conn):
    _stale(r)
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.set("x", "new")
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")


def test_flushdb_while_watching_stale_key_does_not_fail_exec(r, conn):
    _stale(r)
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.flushdb()
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


@pytest.mark.parametrize("flush", ["flushall", "flushdb"])
def test_flush_touches_existing_watched_keys(r, conn, flush):
    r.set("x", "30")
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    getattr(r, flush)()
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")


@pytest.mark.parametrize("flush", ["flushall", "flushdb"])
def test_flush_does_not_touch_missing_watched_keys(r, conn, flush):
    r.set("other", "1")
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    getattr(r, flush)()
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_flushdb_of_another_db_does_not_touch(r, server, conn):
    r.set("x", "1")
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    other = server.client(db=4)
    other.set("x", "1")
    other.flushdb()
    other.close()
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_swapdb_touches_watched_keys_that_exist(r, conn):
    r.set("x", "30")
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.swapdb(0, 1)
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")


def test_swapdb_touches_watched_keys_that_do_not_exist(r, server, conn):
    c1 = server.client(db=1)
    c1.set("x", "30")
    c1.close()
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.swapdb(0, 1)
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")


def test_swapdb_does_not_touch_watched_stale_keys(r, conn):
    _stale(r)
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.swapdb(0, 1)
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_swapdb_missing_key_replaced_with_stale_key(r, server, conn):
    c1 = server.client(db=1)
    _stale(c1)
    c1.close()
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.swapdb(0, 1)
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_swapdb_stale_key_replaced_with_stale_key(r, server, conn):
    _stale(r)
    c1 = server.client(db=1)
    _stale(c1)
    c1.close()
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.swapdb(0, 1)
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n+PONG\r\n")


def test_swapdb_stale_key_replaced_with_live_key(r, server, conn):
    _stale(r)
    c1 = server.client(db=1)
    c1.set("x", "live")
    c1.close()
    conn.call("WATCH", "x", expect=b"+OK\r\n")
    r.swapdb(0, 1)
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PING", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*-1\r\n")


def test_watch_with_many_watchers(r, server):
    conns = [Conn(server.port) for _ in range(3)]
    try:
        for c in conns:
            c.call("WATCH", "shared", "own", expect=b"+OK\r\n")
        r.set("shared", "1")
        for c in conns:
            c.call("MULTI", expect=b"+OK\r\n")
            c.call("PING", expect=b"+QUEUED\r\n")
            c.call("EXEC", expect=b"*-1\r\n")
    finally:
        for c in conns:
            c.close()


def test_optimistic_locking_counter_is_exact(server, r):
    """Concurrent WATCH/MULTI/EXEC incrementers: no lost update."""
    r.set("counter", 0)
    per_thread, threads = 60, 4
    errors = []

    def worker():
        c = server.client()
        try:
            for _ in range(per_thread):
                for _attempt in range(10000):
                    with c.pipeline() as p:
                        try:
                            p.watch("counter")
                            v = int(p.get("counter"))
                            p.multi()
                            p.set("counter", v + 1)
                            p.execute()
                            break
                        except redis.WatchError:
                            continue
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            c.close()

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors
    assert not any(t.is_alive() for t in ts)
    assert int(r.get("counter")) == per_thread * threads


def test_subscribe_inside_multi_resp2_wire_quirk(server, r):
    # Redis counts one EXEC element per queued command, while SUBSCRIBE with
    # two channels writes two arrays: the reply is byte-for-byte Redis's.
    out = raw_command(server.port, b"MULTI\r\nSUBSCRIBE a b\r\nPING\r\nEXEC\r\nPING\r\n")
    assert out == (b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n"
                   b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
                   b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
                   b"*2\r\n$4\r\npong\r\n$0\r\n\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n")


# ------------------------------------------------------------------ AOF propagation
def _aof_commands(workdir: str) -> list[list[bytes]]:
    d = os.path.join(workdir, "appendonlydir")
    names = sorted(n for n in os.listdir(d) if n.endswith(".incr.aof"))
    data = b"".join(open(os.path.join(d, n), "rb").read() for n in names)
    cmds, pos = [], 0
    while pos < len(data):
        if data[pos:pos + 1] == b"#":          # annotation line
            pos = data.index(b"\n", pos) + 1
            continue
        assert data[pos:pos + 1] == b"*", data[pos:pos + 40]
        nl = data.index(b"\r\n", pos)
        n = int(data[pos + 1:nl])
        pos = nl + 2
        argv = []
        for _ in range(n):
            nl = data.index(b"\r\n", pos)
            ln = int(data[pos + 1:nl])
            argv.append(data[nl + 2:nl + 2 + ln])
            pos = nl + 2 + ln + 2
        cmds.append(argv)
    return cmds


def test_exec_propagates_to_aof_like_redis():
    workdir = tempfile.mkdtemp(prefix="pynode-tx-aof-")
    p = Proc(["--appendonly", "yes", "--aof-use-rdb-preamble", "no",
              "--appendfsync", "always"], workdir=workdir, redis_server=AGAINST_REDIS)
    try:
        p.start()
        c = p.client()
        c.execute_command("SELECT", 2)
        c.execute_command("MULTI")
        c.execute_command("SET", "single", "1")
        c.execute_command("GET", "single")
        assert c.execute_command("EXEC") == [b"OK", b"1"]
        c.execute_command("MULTI")
        c.execute_command("GET", "single")
        c.execute_command("EXEC")                      # read only: nothing written
        c.execute_command("MULTI")
        c.execute_command("SET", "m1", "1")
        c.execute_command("SELECT", "3")
        c.execute_command("SET", "m2", "2")
        c.execute_command("GET", "m2")
        c.execute_command("EXEC")
        c.execute_command("MULTI")
        c.execute_command("SET", "m3", "1", "bad")      # fails: nothing propagated
        c.execute_command("EXEC")
        c.close()
        got = _aof_commands(workdir)
        assert got == [
            [b"SELECT", b"2"],
            [b"SET", b"single", b"1"],               # one write: not wrapped
            [b"MULTI"],
            [b"SET", b"m1", b"1"],
            [b"SELECT", b"3"],
            [b"SET", b"m2", b"2"],
            [b"EXEC"],
        ], got
        # and it loads back
        p.stop()
        p.start()
        c2, c3 = p.client(db=2), p.client(db=3)
        assert c2.mget("single", "m1", "m3") == [b"1", b"1", None]
        assert c3.get("m2") == b"2"
        c2.close()
        c3.close()
    finally:
        p.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------ keyspace level (no I/O)
class _FakeClient:
    watch_touched = False


def _watch(db, key):
    from pynode.commands.transactions import WatchedKey
    c = _FakeClient()
    wk = WatchedKey(c, db, key)
    db.watched.setdefault(key, set()).add(wk)
    return c, wk


def _keyspace():
    from storage.keyspace import Keyspace
    ks = Keyspace(4)
    ks.now = 1_000_000
    return ks


def test_unit_stale_key_present_or_reclaimed():
    ks = _keyspace()
    db = ks.db(0)
    db.set(b"x", b"v")
    db.set_expire(b"x", ks.now - 1)              # stale but still stored
    c, wk = _watch(db, b"x")
    assert wk.expired
    assert db.get(b"x") is None                  # lazy expiry deletes: no change
    assert not c.watch_touched and not wk.expired
    db.set(b"x", b"new")                         # now a real change
    assert c.watch_touched


def test_unit_stale_key_overwritten_while_present():
    ks = _keyspace()
    db = ks.db(0)
    db.set(b"x", b"v")
    db.set_expire(b"x", ks.now - 1)
    c, wk = _watch(db, b"x")
    db.set(b"x", b"new")                         # overwritten without a lookup first
    assert c.watch_touched


def test_unit_flush_and_swap_rules():
    ks = _keyspace()
    d0, d1 = ks.db(0), ks.db(1)
    c_missing, _ = _watch(d0, b"missing")
    d0.set(b"live", b"1")
    c_live, _ = _watch(d0, b"live")
    d0.flush()
    assert c_live.watch_touched and not c_missing.watch_touched
    # SWAPDB: missing here, stale there -> remembered as stale, not touched
    d1.set(b"k", b"v")
    d1.set_expire(b"k", ks.now - 1)
    c_k, wk_k = _watch(d0, b"k")
    d0.swap(d1)
    assert not c_k.watch_touched and wk_k.expired
    # swapping back: stale replaced by missing -> deleted, no change
    d0.swap(d1)
    assert not c_k.watch_touched and not wk_k.expired
    # missing here, live there -> touched
    d1.set(b"k", b"live")
    d0.swap(d1)
    assert c_k.watch_touched


def test_client_pause_write_holds_exec_with_writes_only(server, r, conn):
    w = Conn(server.port)
    try:
        conn.call("MULTI", expect=b"+OK\r\n")
        conn.call("GET", "a", expect=b"+QUEUED\r\n")
        w.call("MULTI", expect=b"+OK\r\n")
        w.call("SET", "a", "1", expect=b"+QUEUED\r\n")      # queued before the pause
        r.execute_command("CLIENT", "PAUSE", 500, "WRITE")
        t0 = time.monotonic()
        conn.call("EXEC", expect=b"*1\r\n$-1\r\n")        # read-only: not paused
        assert time.monotonic() - t0 < 0.4
        t0 = time.monotonic()
        w.call("EXEC", expect=b"*1\r\n+OK\r\n")           # held until the pause ends
        assert time.monotonic() - t0 >= 0.2
        r.execute_command("CLIENT", "PAUSE", 500, "WRITE")
        w.call("MULTI", expect=b"+OK\r\n")
        t0 = time.monotonic()
        w.call("SET", "a", "2", expect=b"+QUEUED\r\n")      # a write is held even to queue
        assert time.monotonic() - t0 >= 0.2
        w.call("EXEC", expect=b"*1\r\n+OK\r\n")
    finally:
        r.execute_command("CLIENT", "UNPAUSE")
        w.close()
