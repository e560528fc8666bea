"""Generic key commands against a real pynode process (redis-py)."""

from __future__ import annotations

import time

import pytest
import redis

from tests.helpers import Proc, raw_command

LLONG_MAX = 9223372036854775807


def err(fn, *args):
    with pytest.raises(redis.ResponseError) as ei:
        fn(*args)
    return str(ei.value)


def mset(c, mapping):
    for k, v in mapping.items():
        c.set(k, v)


def setx(c, key, value, px=None, ex=None):
    """SET then (P)EXPIRE: only the commands this module owns besides SET."""
    c.set(key, value)
    if px is not None:
        c.pexpire(key, px)
    if ex is not None:
        c.expire(key, ex)


def wait_gone(r, key, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not r.exists(key):
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def r1(server):
    c = server.client(db=1)
    yield c
    c.close()


# ------------------------------------------------------------------ DEL / UNLINK / EXISTS
def test_del_unlink_multiple(r):
    mset(r, {"a": 1, "b": 2, "c": 3})
    assert r.delete("a", "b", "nokey", "a") == 2
    assert r.exists("a", "b") == 0
    assert r.unlink("c", "nokey") == 1
    assert r.dbsize() == 0
    assert r.delete("nokey") == 0


def test_exists_counts_duplicates(r):
    r.set("a", "1")
    assert r.exists("a") == 1
    assert r.exists("a", "a", "nokey", "a") == 3
    assert r.exists("nokey") == 0


def test_touch(r):
    r.set("a", "1")
    r.set("b", "1")
    assert r.touch("a", "b", "c") == 2
    assert r.touch("zz") == 0


def test_type(r):
    r.set("s", "v")
    assert r.type("s") == b"string"
    assert r.type("nokey") == b"none"
    assert r.execute_command("TYPE", "s") == b"string"


# ------------------------------------------------------------------ RENAME
def test_rename(r):
    r.set("a", "va")
    assert r.rename("a", "b") is True
    assert r.get("b") == b"va"
    assert r.exists("a") == 0
    assert err(r.rename, "nokey", "x") == "no such key"
    assert err(r.renamenx, "nokey", "x") == "no such key"


def test_rename_to_itself(r):
    r.set("a", "va")
    assert r.execute_command("RENAME", "a", "a") is True
    assert r.execute_command("RENAMENX", "a", "a") == 0
    assert r.get("a") == b"va"


def test_rename_overwrites_and_keeps_ttl(r):
    r.set("src", "1")
    r.pexpire("src", 100000)
    r.set("dst", "2")
    r.expire("dst", 5000)
    r.rename("src", "dst")
    assert r.get("dst") == b"1"
    assert 90000 < r.pttl("dst") <= 100000
    # without a TTL on the source, the destination loses its TTL
    r.set("p", "x")
    setx(r, "q", "y", ex=100)
    r.rename("p", "q")
    assert r.ttl("q") == -1


def test_renamenx(r):
    r.set("a", "1")
    r.set("b", "2")
    assert r.renamenx("a", "b") is False
    assert r.get("a") == b"1" and r.get("b") == b"2"
    assert r.renamenx("a", "c") is True
    assert r.get("c") == b"1" and r.exists("a") == 0


# ------------------------------------------------------------------ COPY / MOVE
def test_copy(r, r1):
    r1.flushdb()
    r.set("a", "hello")
    assert r.copy("a", "b") is True
    assert r.get("b") == b"hello"
    assert r.copy("a", "b") is False
    r.set("a", "new")
    assert r.copy("a", "b", replace=True) is True
    assert r.get("b") == b"new"
    assert r.copy("nokey", "b") is False
    assert r.copy("a", "b", destination_db=1) is True
    assert r1.get("b") == b"new"
    assert r.execute_command("COPY", "a", "b", "DB", "1", "REPLACE") == 1
    r1.flushdb()


def test_copy_errors(r):
    r.set("a", "1")
    assert err(r.execute_command, "COPY", "a", "a") == \
        "source and destination objects are the same"
    assert err(r.execute_command, "COPY", "a", "a", "DB", "0") == \
        "source and destination objects are the same"
    assert err(r.execute_command, "COPY", "a", "b", "DB", "16") == "DB index is out of range"
    assert err(r.execute_command, "COPY", "a", "b", "DB", "-1") == "DB index is out of range"
    assert err(r.execute_command, "COPY", "a", "b", "DB", "x") == \
        "value is not an integer or out of range"
    assert err(r.execute_command, "COPY", "a", "b", "DB", "99999999999") == \
        "value is out of range, value must between -2147483648 and 2147483647"
    assert err(r.execute_command, "COPY", "a", "b", "foo") == "syntax error"
    assert err(r.execute_command, "COPY", "a", "b", "DB") == "syntax error"


def test_copy_keeps_expiry(r, r1):
    r1.flushdb()
    setx(r, "a", "1", px=100000)
    r.copy("a", "b")
    assert 90000 < r.pttl("b") <= 100000
    r.copy("a", "c", destination_db=1)
    assert 90000 < r1.pttl("c") <= 100000
    setx(r, "d", "old", ex=1000)
    r.set("e", "no-ttl")
    r.copy("e", "d", replace=True)
    assert r.ttl("d") == -1
    r1.flushdb()


def test_move(r, r1):
    r1.flushdb()
    setx(r, "a", "1", px=100000)
    assert r.move("a", 1) is True
    assert r.exists("a") == 0
    assert r1.get("a") == b"1"
    assert 90000 < r1.pttl("a") <= 100000
    assert r.move("nokey", 1) is False
    r.set("b", "0")
    r1.set("b", "1")
    assert r.move("b", 1) is False
    assert r.get("b") == b"0"
    assert err(r.move, "b", 0) == "source and destination objects are the same"
    assert err(r.move, "nokey", 0) == "source and destination objects are the same"
    assert err(r.move, "b", 16) == "DB index is out of range"
    assert err(r.move, "b", "x") == "value is not an integer or out of range"
    assert err(r.move, "b", 99999999999) == \
        "value is out of range, value must between -2147483648 and 2147483647"
    r1.flushdb()


# ------------------------------------------------------------------ KEYS / SCAN / RANDOMKEY
def test_keys(r):
    mset(r, {"foo": 1, "foobar": 2, "bar": 3, "f?o": 4})
    assert sorted(r.keys("*")) == [b"bar", b"f?o", b"foo", b"foobar"]
    assert sorted(r.keys("foo*")) == [b"foo", b"foobar"]
    assert sorted(r.keys("f?o")) == [b"f?o", b"foo"]
    assert r.keys(r"f\?o") == [b"f?o"]
    assert r.keys("nomatch*") == []


def test_keys_skips_expired(r):
    r.set("a", "1")
    setx(r, "b", "1", px=20)
    time.sleep(0.05)
    assert r.keys("*") == [b"a"]


def test_scan_full_iteration(r):
    keys = {("key:%d" % i).encode() for i in range(500)}
    mset(r, {k: "v" for k in keys})
    seen = set()
    cursor = 0
    rounds = 0
    while True:
        cursor, batch = r.scan(cursor, count=50)
        seen.update(batch)
        rounds += 1
        assert rounds < 10000
        if cursor == 0:
            break
    assert seen == keys
    assert set(r.scan_iter(match="key:1*")) == {k for k in keys if k.startswith(b"key:1")}
    assert set(r.scan_iter(_type="string")) == keys
    assert set(r.scan_iter(_type="STRING")) == keys
    assert list(r.scan_iter(_type="hash")) == []
    assert list(r.scan_iter(_type="nosuchtype")) == []


def test_scan_reply_shape_and_errors(r, server):
    r.set("k", "v")
    reply = raw_command(server.port, b"SCAN 0 COUNT 100000\r\n")
    assert reply == b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"
    reply = raw_command(server.port, b"SCAN 0 MATCH nomatch COUNT 100000\r\n")
    assert reply == b"*2\r\n$1\r\n0\r\n*0\r\n"
    assert err(r.execute_command, "SCAN", "x") == "invalid cursor"
    assert err(r.execute_command, "SCAN", " 1") == "invalid cursor"
    assert err(r.execute_command, "SCAN", "99999999999999999999999") == "invalid cursor"
    assert err(r.execute_command, "SCAN", "0", "COUNT", "0") == "syntax error"
    assert err(r.execute_command, "SCAN", "0", "COUNT", "x") == \
        "value is not an integer or out of range"
    assert err(r.execute_command, "SCAN", "0", "MATCH") == "syntax error"
    assert err(r.execute_command, "SCAN", "0", "FOO", "bar") == "syntax error"
    # huge / negative cursors are accepted like strtoul and end the scan
    assert r.execute_command("SCAN", "-1")[0] == 0


def test_randomkey(r):
    assert r.randomkey() is None
    mset(r, {"a": 1, "b": 2, "c": 3})
    for _ in range(20):
        assert r.randomkey() in (b"a", b"b", b"c")


def test_dbsize(r, r1):
    r1.flushdb()
    assert r.dbsize() == 0
    mset(r, {"a": 1, "b": 2})
    r1.set("x", 1)
    assert r.dbsize() == 2
    assert r1.dbsize() == 1
    r1.flushdb()


# ------------------------------------------------------------------ OBJECT
@pytest.mark.parametrize("value,enc", [
    (b"0", "int"), (b"123", "int"), (b"-1", "int"),
    (b"9223372036854775807", "int"), (b"-9223372036854775808", "int"),
    (b"9223372036854775808", "embstr"), (b"-0", "embstr"), (b"01", "embstr"),
    (b" 1", "embstr"), (b"1.5", "embstr"), (b"x" * 44, "embstr"), (b"x" * 45, "raw"),
    (b"", "embstr"),
])
def test_object_encoding_strings(r, value, enc):
    r.set("k", value)
    assert r.object("encoding", "k") == enc.encode()


def test_object_refcount(r):
    r.set("small", "100")
    r.set("big", "10000")
    r.set("str", "abc")
    assert r.object("refcount", "small") == 2147483647
    assert r.object("refcount", "big") == 1
    assert r.object("refcount", "str") == 1


def test_object_missing_key_and_idletime(r):
    assert r.object("encoding", "nokey") is None
    assert r.object("refcount", "nokey") is None
    assert r.object("idletime", "nokey") is None
    assert r.object("freq", "nokey") is None
    r.set("k", "v")
    assert r.object("idletime", "k") == 0
    assert err(r.object, "freq", "k") == (
        "An LFU maxmemory policy is not selected, access frequency not tracked. Please "
        "note that when switching between policies at runtime LRU and LFU data will take "
        "some time to adjust.")


def test_object_help_and_errors(r):
    lines = r.execute_command("OBJECT", "HELP")
    assert lines[0] == b"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-1] == b"    Prints this help."
    assert len(lines) == 15
    assert err(r.execute_command, "OBJECT", "FOO", "k") == \
        "unknown subcommand 'FOO'. Try OBJECT HELP."
    assert err(r.execute_command, "OBJECT", "ENCODING") == \
        "wrong number of arguments for 'object|encoding' command"


def test_object_freq_under_lfu():
    p = Proc(args=["--maxmemory-policy", "allkeys-lfu"]).start()
    try:
        c = p.client()
        c.set("k", "v")
        assert isinstance(c.object("freq", "k"), int)
        assert c.object("freq", "k") >= 0
        assert err(c.object, "idletime", "k") == (
            "An LFU maxmemory policy is selected, idle time not tracked. Please note that "
            "when switching between policies at runtime LRU and LFU data will take some "
            "time to adjust.")
        c.close()
    finally:
        p.cleanup()


# ------------------------------------------------------------------ EXPIRE family
def test_expire_and_ttl(r):
    r.set("a", "1")
    assert r.ttl("a") == -1
    assert r.pttl("a") == -1
    assert r.ttl("nokey") == -2
    assert r.pttl("nokey") == -2
    assert r.expire("a", 100) is True
    assert 99 <= r.ttl("a") <= 100
    assert 99000 < r.pttl("a") <= 100000
    assert r.pexpire("a", 50000) is True
    assert 49000 < r.pttl("a") <= 50000
    assert r.expire("nokey", 100) is False


def test_pexpire_expires(r):
    r.set("a", "1")
    assert r.pexpire("a", 50) is True
    assert wait_gone(r, "a")
    assert r.get("a") is None
    assert r.ttl("a") == -2


def test_active_expire(r):
    setx(r, "a", "1", px=30)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and r.dbsize() != 0:
        time.sleep(0.02)
    assert r.dbsize() == 0


def test_expireat_pexpireat_and_expiretime(r):
    r.set("a", "1")
    when = int(time.time()) + 1000
    assert r.expireat("a", when) is True
    assert r.expiretime("a") == when
    assert r.pexpiretime("a") == when * 1000
    assert r.pexpireat("a", when * 1000 + 123) is True
    assert r.pexpiretime("a") == when * 1000 + 123
    assert r.expiretime("a") == when  # rounded
    r.set("b", "1")
    assert r.expiretime("b") == -1
    assert r.pexpiretime("b") == -1
    assert r.expiretime("nokey") == -2
    assert r.pexpiretime("nokey") == -2


def test_past_or_zero_time_deletes(r):
    for cmd, arg in (("EXPIRE", 0), ("EXPIRE", -10), ("PEXPIRE", 0), ("EXPIREAT", 1),
                     ("PEXPIREAT", 1000), ("EXPIREAT", 0)):
        r.set("a", "1")
        assert r.execute_command(cmd, "a", arg) == 1, cmd
        assert r.exists("a") == 0, cmd


def test_expire_options(r):
    r.set("a", "1")
    assert r.expire("a", 100, xx=True) is False
    assert r.expire("a", 100, gt=True) is False  # no TTL counts as infinite
    assert r.ttl("a") == -1
    assert r.expire("a", 100, lt=True) is True
    assert r.expire("a", 200, nx=True) is False
    assert r.expire("a", 200, xx=True) is True
    assert 199 <= r.ttl("a") <= 200
    assert r.expire("a", 100, gt=True) is False
    assert r.expire("a", 300, gt=True) is True
    assert r.expire("a", 400, lt=True) is False
    assert r.expire("a", 50, lt=True) is True
    assert 49 <= r.ttl("a") <= 50
    assert r.execute_command("EXPIRE", "a", 60, "XX", "GT") == 1
    r.set("b", "1")
    assert r.expire("b", 10, nx=True) is True
    assert r.pexpire("b", 10, nx=True) is False


def test_expire_errors(r):
    r.set("a", "1")
    assert err(r.execute_command, "EXPIRE", "a", 10, "NX", "XX") == \
        "NX and XX, GT or LT options at the same time are not compatible"
    assert err(r.execute_command, "EXPIRE", "a", 10, "NX", "GT") == \
        "NX and XX, GT or LT options at the same time are not compatible"
    assert err(r.execute_command, "PEXPIRE", "a", 10, "GT", "LT") == \
        "GT and LT options at the same time are not compatible"
    assert err(r.execute_command, "EXPIRE", "a", 10, "foo") == "Unsupported option foo"
    assert err(r.execute_command, "EXPIRE", "a", "x") == \
        "value is not an integer or out of range"
    assert err(r.execute_command, "EXPIRE", "a", "99999999999999999") == \
        "invalid expire time in 'expire' command"
    assert err(r.execute_command, "EXPIREAT", "a", "99999999999999999") == \
        "invalid expire time in 'expireat' command"
    assert err(r.execute_command, "PEXPIRE", "a", str(LLONG_MAX - 1000)) == \
        "invalid expire time in 'pexpire' command"
    # no overflow when there is no base time
    assert r.execute_command("PEXPIREAT", "a", str(LLONG_MAX)) == 1
    assert r.pexpiretime("a") == LLONG_MAX
    # the key was not touched by the failed commands
    assert r.get("a") == b"1"


def test_persist(r):
    setx(r, "a", "1", ex=100)
    assert r.persist("a") is True
    assert r.ttl("a") == -1
    assert r.persist("a") is False
    assert r.persist("nokey") is False


def test_set_clears_ttl_and_expired_key_is_gone(r):
    setx(r, "a", "1", px=40)
    assert wait_gone(r, "a")
    assert r.exists("a") == 0
    assert r.type("a") == b"none"
    assert r.delete("a") == 0
    setx(r, "c", "1", px=20)
    time.sleep(0.05)
    assert err(r.rename, "c", "d") == "no such key"
    assert r.copy("c", "d") is False
    assert r.expire("c", 100) is False
    assert r.object("encoding", "c") is None


# ------------------------------------------------------------------ FLUSH / SWAPDB
def test_flushdb_and_flushall(r, r1):
    r.set("a", "1")
    r1.set("b", "1")
    assert r.flushdb() is True
    assert r.dbsize() == 0 and r1.dbsize() == 1
    r.set("a", "1")
    assert r.execute_command("FLUSHDB", "SYNC") is True
    r.set("a", "1")
    assert r.execute_command("FLUSHDB", "ASYNC") is True
    assert r.dbsize() == 0 and r1.dbsize() == 1
    r.set("a", "1")
    assert r.flushall() is True
    assert r.dbsize() == 0 and r1.dbsize() == 0
    assert r.execute_command("FLUSHALL", "async") is True
    assert r.execute_command("FLUSHALL", "SYNC") is True
    assert err(r.execute_command, "FLUSHALL", "foo") == "syntax error"
    assert err(r.execute_command, "FLUSHDB", "foo") == "syntax error"
    assert err(r.execute_command, "FLUSHALL", "SYNC", "ASYNC") == "syntax error"


def test_swapdb(r, r1):
    r1.flushdb()
    setx(r, "a", "db0", px=100000)
    r1.set("b", "db1")
    assert r.swapdb(0, 1) is True
    assert r.get("b") == b"db1" and r.exists("a") == 0
    assert r1.get("a") == b"db0"
    assert 90000 < r1.pttl("a") <= 100000
    assert r.swapdb(1, 0) is True
    assert r.get("a") == b"db0"
    assert r.swapdb(0, 0) is True
    assert r.get("a") == b"db0"
    assert err(r.swapdb, 0, 16) == "DB index is out of range"
    assert err(r.swapdb, -1, 0) == "DB index is out of range"
    assert err(r.swapdb, "x", 0) == "invalid first DB index"
    assert err(r.swapdb, 0, "x") == "invalid second DB index"
    assert err(r.swapdb, 0, 99999999999) == "invalid second DB index"
    r1.flushdb()


def test_wrong_arity(r):
    assert err(r.execute_command, "DEL") == "wrong number of arguments for 'del' command"
    assert err(r.execute_command, "RENAME", "a") == \
        "wrong number of arguments for 'rename' command"
    assert err(r.execute_command, "EXPIRE", "a") == \
        "wrong number of arguments for 'expire' command"


# ------------------------------------------------------------------ propagation (in process)
class _Recorder:
    """An in-process Server whose propagation is recorded."""

    def __init__(self):
        from pynode.client import Client
        from pynode.config import Config
        from pynode.server import Server
        cfg = Config()
        cfg.values["save"] = ""                  # no dump.rdb in the current directory
        self.srv = Server(cfg)
        self.c = Client(self.srv)
        self.log = []
        self.srv.aof = object()     # propagation only happens with a sink
        self.srv.propagate = lambda dbid, argv: self.log.append((dbid, list(argv)))

    def __call__(self, *args):
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        return self.srv.execute(self.c, argv)

    def take(self):
        out, self.log = self.log, []
        return out


def test_expire_propagates_as_pexpireat():
    t = _Recorder()
    t("SET", "k", "v")
    t.take()
    now = t.srv.ks.now
    assert t("EXPIRE", "k", 100) == b":1\r\n"
    [(db, argv)] = t.take()
    assert db == 0 and argv[:2] == [b"PEXPIREAT", b"k"] and len(argv) == 3
    assert int(argv[2]) == now + 100000 == t.srv.ks.db(0).get_expire(b"k")
    assert t("PEXPIRE", "k", 5000, "XX") == b":1\r\n"
    assert t.take() == [(0, [b"PEXPIREAT", b"k", b"%d" % (t.srv.ks.now + 5000)])]
    assert t("EXPIREAT", "k", 4000000000) == b":1\r\n"
    assert t.take() == [(0, [b"PEXPIREAT", b"k", b"4000000000000"])]
    assert t("PEXPIREAT", "k", 4000000000001) == b":1\r\n"
    assert t.take() == [(0, [b"PEXPIREAT", b"k", b"4000000000001"])]
    # a condition that fails, or a missing key: nothing is propagated
    assert t("EXPIRE", "k", 10, "NX") == b":0\r\n"
    assert t("EXPIRE", "nokey", 10) == b":0\r\n"
    assert t.take() == []
    # a past time deletes the key and propagates a DEL
    dirty = t.srv.dirty
    assert t("EXPIRE", "k", -1) == b":1\r\n"
    assert t.take() == [(0, [b"DEL", b"k"])]
    assert t.srv.dirty == dirty + 1


def test_writes_propagate_and_count_dirty():
    t = _Recorder()
    t("SET", "a", "1")
    t("SET", "b", "2")
    t.take()
    d = t.srv.dirty
    assert t("DEL", "a", "b", "c") == b":2\r\n"
    assert t.srv.dirty == d + 2
    assert t.take() == [(0, [b"DEL", b"a", b"b", b"c"])]
    assert t("DEL", "a") == b":0\r\n"
    assert t("RENAME", "zz", "a").startswith(b"-ERR no such key")
    assert t.take() == []
    t("SET", "a", "1")
    t.take()
    d = t.srv.dirty
    assert t("RENAME", "a", "a") == b"+OK\r\n"       # same key: no change
    assert t.srv.dirty == d and t.take() == []
    for cmd in (("RENAME", "a", "b"), ("COPY", "b", "c"), ("MOVE", "c", "3"),
                ("SWAPDB", "0", "3"), ("PERSIST", "x")):
        t(*cmd)
    assert [a[0] for _, a in t.take()] == [b"RENAME", b"COPY", b"MOVE", b"SWAPDB"]
    # FLUSHALL: dirty grows by the number of keys; always propagated
    n = sum(d.size() for d in t.srv.ks.dbs if d is not None)
    d = t.srv.dirty
    assert t("FLUSHALL") == b"+OK\r\n"
    assert t.srv.dirty == d + n
    assert t.take() == [(0, [b"FLUSHALL"])]
    assert t("FLUSHALL") == b"+OK\r\n"
    assert t("FLUSHDB", "ASYNC") == b"+OK\r\n"
    assert t.take() == [(0, [b"FLUSHALL"]), (0, [b"FLUSHDB", b"ASYNC"])]


def test_keyspace_hits_and_misses():
    t = _Recorder()
    t("SET", "a", "1")
    srv = t.srv
    h, m = srv.stats.keyspace_hits, srv.stats.keyspace_misses
    t("EXISTS", "a", "nokey")
    t("TYPE", "a")
    t("TTL", "zz")
    t("OBJECT", "ENCODING", "a")
    assert srv.stats.keyspace_hits - h == 3
    assert srv.stats.keyspace_misses - m == 2


def test_refcount_not_shared_with_lru_maxmemory():
    t = _Recorder()
    t("SET", "n", "5")
    assert t("OBJECT", "REFCOUNT", "n") == b":2147483647\r\n"
    t.srv.cfg.set("maxmemory-policy", ["allkeys-lru"])
    assert t("OBJECT", "REFCOUNT", "n") == b":2147483647\r\n"
    t.srv.cfg.set("maxmemory", ["100mb"])
    assert t("OBJECT", "REFCOUNT", "n") == b":1\r\n"
    t.srv.cfg.set("maxmemory-policy", ["volatile-lfu"])
    assert t("OBJECT", "FREQ", "n").startswith(b":")
    assert t("OBJECT", "IDLETIME", "n").startswith(b"-ERR An LFU maxmemory policy is selected")


def test_value_helpers():
    from storage import values
    d = {b"f": [1, 2]}
    c = values.dup(d)
    assert c == d and c is not d and c[b"f"] is not d[b"f"]
    b = b"abc"
    assert values.dup(b) is b

    class WithCopy:
        encoding = "listpack"

        def __deepcopy__(self, memo):
            return "copied"

    assert values.dup(WithCopy()) == "copied"
    assert values.encoding(WithCopy()) == "listpack"
    assert values.string_int(b"123") == 123
    assert values.string_int(b"-0") is None
    assert values.string_int(b"9223372036854775808") is None
    assert values.refcount(b"5") == 2147483647
    assert values.refcount(b"5", shared_ints=False) == 1


def test_resp3_nulls(r, server):
    reply = raw_command(server.port, b"HELLO 3\r\nOBJECT ENCODING nokey\r\nRANDOMKEY\r\n")
    assert reply.endswith(b"_\r\n_\r\n")


def test_watch_sees_key_commands(r, server):
    other = server.client()
    try:
        for change in (lambda: other.expire("w", 100), lambda: other.rename("w", "w2"),
                       lambda: other.delete("w"), lambda: other.flushdb()):
            other.delete("w2")
            r.set("w", "1")
            with r.pipeline() as p:
                p.watch("w")
                change()
                p.multi()
                p.set("w", "2")
                with pytest.raises(redis.WatchError):
                    p.execute()
    finally:
        other.close()


def test_scan_small_keyspace_in_one_call_as_redis(server):
    """SCAN 0 on a node with 3 keys gives the 3 keys and cursor 0, as
    redis-server's small hash table does (COUNT bounds keys, not slots)."""
    real = Proc(redis_server=True).start()
    try:
        for port in (server.port, real.port):
            c = redis.Redis(port=port)
            c.flushall()
            c.mset({"a": 1, "b": 2, "{x}c": 3})
            cursor, keys = c.scan(0)
            assert cursor == 0 and sorted(keys) == [b"a", b"b", b"{x}c"], port
            cursor, keys = c.scan(0, count=1)
            seen = set(keys)
            for _ in range(100):
                if cursor == 0:
                    break
                cursor, keys = c.scan(cursor, count=1)
                seen.update(keys)
            assert cursor == 0 and seen == {b"a", b"b", b"{x}c"}
            c.close()
    finally:
        real.cleanup()
