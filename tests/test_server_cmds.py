"""Server commands (CLIENT, INFO, COMMAND, SLOWLOG, MONITOR, DEBUG, MEMORY, TIME,
LASTSAVE, BGREWRITEAOF, SAVE/BGSAVE, SHUTDOWN) against a pynode process, compared
with a real redis-server 7.0 where the reply shape matters."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest
import redis

from tests.helpers import Proc, enc, raw_command


@pytest.fixture(scope="module")
def dbg():
    p = Proc(args=["--enable-debug-command", "yes"]).start()
    yield p
    p.cleanup()


def fields(info_text: str) -> list[str]:
    return [ln.split(":", 1)[0] for ln in info_text.splitlines()
            if ln and not ln.startswith("#")]


def cli(port: int, *args: str) -> str:
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                         timeout=20)
    return out.stdout.decode()


def reply(port: int, *cmds) -> bytes:
    return raw_command(port, b"".join(enc(*c) for c in cmds), replies=len(cmds))


# ------------------------------------------------------------------ CLIENT
def test_client_id_name_info(r):
    cid = r.client_id()
    assert isinstance(cid, int) and cid > 0
    assert r.client_getname() is None
    assert r.client_setname("worker-1")
    assert r.execute_command("CLIENT", "GETNAME") == b"worker-1"
    with pytest.raises(redis.ResponseError, match="Client names cannot contain spaces"):
        r.client_setname("a b")
    info = r.execute_command("CLIENT", "INFO").decode()
    assert info.startswith("id=%d addr=" % cid)
    assert " name=worker-1 " in info and " cmd=client|info " in info
    assert info.endswith("\n")
    assert r.client_setname("")
    assert r.client_getname() is None


def test_client_list_line_format_matches_redis(server, real):
    line_names = []
    for p in (server, real):
        text = cli(p.port, "client", "list")
        keys = [kv.split("=", 1)[0] for kv in text.splitlines()[0].split(" ")]
        line_names.append(keys)
    assert line_names[0] == line_names[1]
    assert line_names[0][:3] == ["id", "addr", "laddr"]


def test_client_list_filters_and_errors(server, r):
    other = server.client()
    other.client_setname("other")
    oid = other.client_id()
    text = r.execute_command("CLIENT", "LIST", "ID", oid).decode()
    assert text.count("\n") == 1 and "name=other" in text
    assert r.execute_command("CLIENT", "LIST", "ID", 999999) == b""
    normal = r.execute_command("CLIENT", "LIST", "TYPE", "normal").decode()
    assert "name=other" in normal
    assert r.execute_command("CLIENT", "LIST", "TYPE", "pubsub") == b""
    p = other.pubsub()
    p.subscribe("ch")
    deadline = time.monotonic() + 5
    while b"sub=1" not in r.execute_command("CLIENT", "LIST", "TYPE", "pubsub"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    p.close()
    for args, msg in ((("TYPE", "foo"), "Unknown client type 'foo'"),
                      (("ID", "abc"), "Invalid client ID"),
                      (("ID", "0"), "Invalid client ID"),
                      (("foo",), "syntax error")):
        with pytest.raises(redis.ResponseError, match=msg):
            r.execute_command("CLIENT", "LIST", *args)
    other.close()


def test_client_kill_forms(server, r):
    victim = server.client()
    victim.ping()
    vid = victim.client_id()
    addr = [ln for ln in r.client_list() if int(ln["id"]) == vid][0]["addr"]
    assert r.execute_command("CLIENT", "KILL", addr) == b"OK"
    deadline = time.monotonic() + 5
    while any(int(ln["id"]) == vid for ln in r.client_list()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert victim.client_id() != vid      # redis-py reconnected: a new connection
    with pytest.raises(redis.ResponseError, match="No such client"):
        r.execute_command("CLIENT", "KILL", "1.2.3.4:5")
    v2 = server.client()
    v2.ping()
    assert r.execute_command("CLIENT", "KILL", "ID", v2.client_id()) == 1
    assert r.execute_command("CLIENT", "KILL", "ID", 999999) == 0
    # SKIPME yes (default) never kills the caller
    assert r.execute_command("CLIENT", "KILL", "ID", r.client_id()) == 0
    with pytest.raises(redis.ResponseError, match="client-id should be greater than 0"):
        r.execute_command("CLIENT", "KILL", "ID", "abc")
    with pytest.raises(redis.ResponseError, match="No such user 'nobody'"):
        r.execute_command("CLIENT", "KILL", "USER", "nobody")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("CLIENT", "KILL", "foo", "bar")


def test_client_kill_self_with_skipme_no(server):
    c = server.client()
    cid = c.client_id()
    data = raw_command(server.port, enc("CLIENT", "KILL", "ID", cid, "SKIPME", "no"))
    assert data == b":1\r\n"  # another connection's id: killed, counted
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(enc("CLIENT", "ID"))
    myid = int(s.recv(100)[1:-2])
    s.sendall(enc("CLIENT", "KILL", "ID", myid, "SKIPME", "no"))
    got = b""
    s.settimeout(5)
    while True:
        d = s.recv(100)
        if not d:
            break
        got += d
    s.close()
    assert got == b":1\r\n"  # the reply, then the connection is closed
    c.close()


def test_client_reply_off_skip(server):
    data = reply(server.port, ("CLIENT", "REPLY", "SKIP"), ("PING", "a"), ("PING", "b"),
                 ("CLIENT", "REPLY", "OFF"), ("PING", "c"), ("CLIENT", "REPLY", "ON"),
                 ("PING", "d"))
    assert data == b"$1\r\nb\r\n+OK\r\n$1\r\nd\r\n"
    with pytest.raises(redis.ResponseError, match="syntax error"):
        server.client().execute_command("CLIENT", "REPLY", "maybe")


def test_client_pause_write_and_unpause(server, r):
    other = server.client()
    r.set("k", "1")
    assert r.execute_command("CLIENT", "PAUSE", 10000, "WRITE") == b"OK"
    assert other.get("k") == b"1"          # reads go on
    done = []

    def writer():
        other.set("k", "2")
        done.append(time.monotonic())

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.3)
    assert not done                         # the write is held
    t0 = time.monotonic()
    assert r.execute_command("CLIENT", "UNPAUSE") == b"OK"
    t.join(5)
    assert done and done[0] - t0 < 2
    assert r.get("k") == b"2"
    other.close()


def test_client_pause_expires_by_itself(server, r):
    other = server.client()
    assert r.execute_command("CLIENT", "PAUSE", 300) == b"OK"   # ALL
    t0 = time.monotonic()
    other.ping()
    waited = time.monotonic() - t0
    assert 0.15 < waited < 3
    for args, msg in (((-1,), "timeout is negative"),
                      (("abc",), "timeout is not an integer or out of range"),
                      ((10, "foo"), "CLIENT PAUSE mode must be WRITE or ALL")):
        with pytest.raises(redis.ResponseError, match=msg):
            r.execute_command("CLIENT", "PAUSE", *args)
    other.close()


def test_client_misc_subcommands(r):
    assert r.execute_command("CLIENT", "NO-EVICT", "on") == b"OK"
    assert " flags=e " in r.execute_command("CLIENT", "INFO").decode()
    assert r.execute_command("CLIENT", "NO-EVICT", "off") == b"OK"
    assert " flags=N " in r.execute_command("CLIENT", "INFO").decode()
    assert r.execute_command("CLIENT", "UNBLOCK", 999999) == 0
    with pytest.raises(redis.ResponseError, match="TIMEOUT or ERROR"):
        r.execute_command("CLIENT", "UNBLOCK", 1, "foo")
    assert r.execute_command("CLIENT", "GETREDIR") == -1
    assert raw_command(r.connection_pool.connection_kwargs["port"],
                       enc("CLIENT", "TRACKINGINFO")) == \
        b"*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n" \
        b"$8\r\nprefixes\r\n*0\r\n"
    help_lines = r.execute_command("CLIENT", "HELP")
    assert help_lines[0].startswith(b"CLIENT <subcommand>") and help_lines[-1].strip() == \
        b"Prints this help."
    with pytest.raises(redis.ResponseError, match="unknown subcommand 'FOO'. Try CLIENT HELP"):
        r.execute_command("CLIENT", "FOO")


# ------------------------------------------------------------------ INFO
def test_info_sections_and_fields_match_redis(server, real):
    for args in ((), ("default",), ("all",), ("everything",), ("server", "cluster"), ("foo",)):
        ours = cli(server.port, "info", *args)
        theirs = cli(real.port, "info", *args)
        assert [ln for ln in ours.splitlines() if ln.startswith("#")] == \
            [ln for ln in theirs.splitlines() if ln.startswith("#")], args
    ours = [f for f in fields(cli(server.port, "info", "everything"))
            if not f.startswith(("cmdstat_", "errorstat_", "latency_", "db"))]
    theirs = [f for f in fields(cli(real.port, "info", "everything"))
              if not f.startswith(("cmdstat_", "errorstat_", "latency_", "db"))]
    assert ours == theirs


def test_info_values_change(server, r):
    before = r.info("everything")
    assert before["redis_version"] == "7.0.15"
    assert before["redis_mode"] == "standalone"
    assert before["tcp_port"] == server.port
    assert before["process_id"] == server.proc.pid
    assert before["role"] == "master" and len(before["master_replid"]) == 40
    assert before["cluster_enabled"] == 0
    assert before["aof_enabled"] == 0
    assert before["mem_allocator"] == "libc"
    r.set("a", "1")
    r.get("a")
    r.get("missing")
    with pytest.raises(redis.ResponseError):
        r.execute_command("NOSUCHCMD")
    after = r.info("everything")
    assert after["total_commands_processed"] > before["total_commands_processed"]
    assert after["keyspace_hits"] == before["keyspace_hits"] + 1
    assert after["keyspace_misses"] == before["keyspace_misses"] + 1
    assert after["errorstat_ERR"]["count"] >= 1
    assert after["db0"]["keys"] == 1 and after["db0"]["expires"] == 0
    assert after["cmdstat_set"]["calls"] >= 1
    assert "cmdstat_info" in after
    assert after["total_net_input_bytes"] > before["total_net_input_bytes"]
    assert after["connected_clients"] >= 1
    assert after["used_cpu_user"] > 0


def test_info_keyspace_expires_and_commandstats_subcommand(r):
    r.set("x", "1", ex=100)
    r.set("y", "1")
    r.client_list()
    info = r.info("everything")
    assert info["db0"]["keys"] == 2 and info["db0"]["expires"] == 1
    assert 0 < info["db0"]["avg_ttl"] <= 100000
    assert info["cmdstat_client|list"]["calls"] >= 1
    line = cli(r.connection_pool.connection_kwargs["port"], "info", "commandstats")
    assert "cmdstat_client|list:calls=" in line and ",usec_per_call=" in line


def test_info_used_memory_is_measured(server, r):
    before = r.info("memory")["used_memory"]
    p = r.pipeline(transaction=False)
    for i in range(50000):
        p.set("key:%08d" % i, "v" * 20)
    p.execute()
    after = r.info("memory")
    per_key = (after["used_memory"] - before) / 50000
    assert 40 < per_key < 2000
    assert after["used_memory_rss"] >= after["used_memory"] * 0.5
    assert after["used_memory_peak"] >= after["used_memory"]


def test_info_instantaneous_ops(server, r):
    stop = time.monotonic() + 1.5
    while time.monotonic() < stop:
        r.ping()
    assert r.info("stats")["instantaneous_ops_per_sec"] > 0


def test_info_resp3_is_verbatim(server):
    data = reply(server.port, ("HELLO", "3"), ("INFO", "cluster"))
    assert data.endswith(b"=34\r\ntxt:# Cluster\r\ncluster_enabled:0\r\n\r\n")


# ------------------------------------------------------------------ COMMAND
def _parse(data: bytes):
    import hiredis
    rd = hiredis.Reader()
    rd.feed(data)
    return rd.gets()


def test_command_info_shape_equals_redis(server, real):
    names = ["get", "set", "mset", "client", "config", "info", "command", "nosuch"]
    for proto in (2, 3):
        pre = (("HELLO", "3"),) if proto == 3 else ()
        for n in names:
            args = ("COMMAND", "INFO", n)
            ours = reply(server.port, *pre, args).split(b"modules\r\n*0\r\n")[-1]
            theirs = reply(real.port, *pre, args).split(b"modules\r\n*0\r\n")[-1]
            if n not in ("client", "config", "command"):
                assert ours == theirs, (proto, n)
                continue
            # a container: its subcommands come in Redis's hash order, so compare
            # the header, then each subcommand on its own
            if proto == 2:
                a, b = _parse(ours)[0], _parse(theirs)[0]
                assert a[:9] == b[:9]
                subs = sorted(x[0] for x in a[9])
                assert subs == sorted(x[0] for x in b[9])
                for sub in subs:
                    sargs = ("COMMAND", "INFO", sub)
                    assert reply(server.port, sargs) == reply(real.port, sargs)
            else:
                assert ours.split(b"*10\r\n$")[1] == theirs.split(b"*10\r\n$")[1]


def test_command_metadata_encoding_matches_redis_for_unimplemented(real):
    """The encoder gives Redis's exact bytes for commands not implemented yet too."""
    from pynode.command_meta import COMMANDS as META
    from pynode.commands.introspection import command_docs_reply, command_info_reply
    from pynode.resp import Map, encode
    for n in ("zunionstore", "georadius", "xreadgroup", "migrate", "eval", "sort"):
        theirs = reply(real.port, ("COMMAND", "INFO", n))
        assert theirs == encode([command_info_reply(META[n])], 2), n
        theirs = reply(real.port, ("COMMAND", "DOCS", n))
        assert theirs == encode(Map({n.encode(): command_docs_reply(META[n])}), 2), n


def call(port: int, *args):
    """One command on a fresh raw connection, parsed by hiredis (no redis-py callbacks)."""
    v = _parse(raw_command(port, enc(*args), replies=1))
    if isinstance(v, Exception):
        raise redis.ResponseError(str(v))
    return v


def test_command_docs_and_count_list(server, real):
    port = server.port
    assert reply(port, ("COMMAND", "DOCS", "get")) == reply(real.port, ("COMMAND", "DOCS", "get"))
    assert call(port, "COMMAND", "DOCS", "nosuch") == []
    n = call(port, "COMMAND", "COUNT")
    allcmds = call(port, "COMMAND")
    assert n == len(allcmds) and n > 20
    assert len(call(port, "COMMAND", "INFO")) == n
    lst = call(port, "COMMAND", "LIST")
    assert b"get" in lst and b"client|list" in lst
    assert sorted(call(port, "COMMAND", "LIST", "FILTERBY", "PATTERN", "client|*")) \
        == sorted(x for x in lst if x.startswith(b"client|"))
    assert call(port, "COMMAND", "LIST", "FILTERBY", "MODULE", "x") == []
    assert b"get" in call(port, "COMMAND", "LIST", "FILTERBY", "ACLCAT", "string")
    assert b"set" not in call(port, "COMMAND", "LIST", "FILTERBY", "ACLCAT", "read")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        call(port, "COMMAND", "LIST", "FILTERBY", "foo", "bar")
    with pytest.raises(redis.ResponseError, match="unknown subcommand 'foo'. Try COMMAND HELP"):
        call(port, "COMMAND", "foo")


def test_command_getkeys_like_redis(server, real):
    cases = [("GETKEYS", "mset", "a", "b", "c", "d"),
             ("GETKEYSANDFLAGS", "mset", "a", "b", "c", "d"),
             ("GETKEYSANDFLAGS", "set", "a", "b"),
             ("GETKEYSANDFLAGS", "set", "a", "b", "GET"),
             ("GETKEYS", "get", "a"),
             ("GETKEYS", "get", "a", "b"),
             ("GETKEYS", "foo", "a"),
             ("GETKEYS", "client", "list"),
             ("GETKEYS", "ping", "x"),
             ("GETKEYS", "get")]
    for case in cases:
        assert reply(server.port, ("COMMAND",) + case) == \
            reply(real.port, ("COMMAND",) + case), case


def test_command_getkeys_uses_key_specs_directly():
    """Key extraction from the real 7.0 key specs (no server needed)."""
    from pynode.command_meta import COMMANDS as META
    from pynode.keyspecs import keys_by_specs
    argv = [b"zunionstore", b"d", b"2", b"a", b"b", b"WEIGHTS", b"1", b"2"]
    assert [argv[i] for i, _ in keys_by_specs(META["zunionstore"], argv)] == [b"d", b"a", b"b"]
    argv = [b"xread", b"COUNT", b"2", b"STREAMS", b"s1", b"s2", b"0", b"0"]
    assert [argv[i] for i, _ in keys_by_specs(META["xread"], argv)] == [b"s1", b"s2"]
    argv = [b"eval", b"x", b"2", b"k1", b"k2", b"arg"]
    assert [argv[i] for i, _ in keys_by_specs(META["eval"], argv)] == [b"k1", b"k2"]


# ------------------------------------------------------------------ misc
def test_time_lastsave_save(r):
    sec, usec = r.execute_command("TIME")
    assert abs(int(sec) - time.time()) < 5 and 0 <= int(usec) < 1000000
    assert abs(r.lastsave().timestamp() - time.time()) < 3600
    assert r.execute_command("SAVE") in (True, b"OK")
    assert abs(r.lastsave().timestamp() - time.time()) < 5
    assert r.execute_command("BGSAVE") in (True, b"Background saving started")
    # one child at a time: later tests' BGREWRITEAOF would be "scheduled"
    deadline = time.monotonic() + 20
    while r.info("persistence")["rdb_bgsave_in_progress"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # (the RDB side is tested in tests/test_rdb_persist.py)


def test_slowlog(r):
    r.execute_command("SLOWLOG", "RESET")
    r.config_set("slowlog-log-slower-than", 0)
    try:
        r.set("slowkey", "v")
        entries = r.execute_command("SLOWLOG", "GET", -1)
        assert len(entries) >= 2
        assert r.execute_command("SLOWLOG", "LEN") == len(entries) + 1   # + SLOWLOG GET
        cmds = [e[3] for e in entries]
        assert [b"SET", b"slowkey", b"v"] in cmds
        e = entries[0]
        assert isinstance(e[0], int) and abs(e[1] - time.time()) < 60 and e[2] >= 0
        assert e[4].startswith(b"127.0.0.1:")
        assert len(r.execute_command("SLOWLOG", "GET", 1)) == 1
    finally:
        r.config_set("slowlog-log-slower-than", 10000)
    assert r.execute_command("SLOWLOG", "RESET") == b"OK"
    assert r.execute_command("SLOWLOG", "LEN") <= 1
    with pytest.raises(redis.ResponseError, match="count should be greater than or equal to -1"):
        r.execute_command("SLOWLOG", "GET", -5)


def test_monitor_receives_commands(server, r):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(enc("MONITOR"))
    assert s.recv(100) == b"+OK\r\n"
    r.set("monkey", "val")
    got = b""
    deadline = time.monotonic() + 5
    while b'"monkey"' not in got and time.monotonic() < deadline:
        got += s.recv(4096)
    s.close()
    assert b'"SET" "monkey" "val"' in got
    assert got.startswith(b"+")


def test_debug_refused_by_default(r):
    with pytest.raises(redis.ResponseError, match="DEBUG command not allowed"):
        r.execute_command("DEBUG", "SLEEP", "0")


def test_debug_commands(dbg):
    r = dbg.client()
    r.flushall()
    r.set("k", "v")
    r.set("n", "12345")
    out = r.execute_command("DEBUG", "OBJECT", "k")
    text = out.decode() if isinstance(out, bytes) else out
    assert text.startswith("Value at:0x") and "encoding:embstr" in text
    assert "serializedlength:2" in text and "lru_seconds_idle:" in text
    assert "encoding:int serializedlength:3" in r.execute_command("DEBUG", "OBJECT", "n").decode()
    with pytest.raises(redis.ResponseError, match="no such key"):
        r.execute_command("DEBUG", "OBJECT", "nosuch")
    t0 = time.monotonic()
    assert r.execute_command("DEBUG", "SLEEP", "0.3") == b"OK"
    assert time.monotonic() - t0 >= 0.29
    with pytest.raises(redis.ResponseError, match="unknown subcommand or wrong number of "
                                                  "arguments for 'FOO'. Try DEBUG HELP."):
        r.execute_command("DEBUG", "FOO")
    assert r.execute_command("DEBUG", "CHANGE-REPL-ID") == b"OK"
    r.close()


def test_debug_set_active_expire(dbg):
    r = dbg.client()
    r.flushall()
    assert r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0") == b"OK"
    try:
        r.set("e", "1", px=50)
        time.sleep(0.6)
        assert r.info("keyspace")["db0"]["keys"] == 1   # nobody expired it
        assert r.get("e") is None                       # lazy expiry still works
        r.set("e2", "1", px=50)
    finally:
        assert r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1") == b"OK"
    deadline = time.monotonic() + 5
    while r.info("keyspace").get("db0"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r.close()


def test_debug_reload_keeps_data(dbg):
    r = dbg.client()
    r.flushall()
    r.mset({"a": "1", "b": "2"})
    r.set("t", "x", ex=1000)
    r.select(3)
    r.set("in3", "y")
    r.select(0)
    assert r.execute_command("DEBUG", "RELOAD") == b"OK"
    assert r.mget("a", "b", "t") == [b"1", b"2", b"x"]
    assert 900 < r.ttl("t") <= 1000
    r.select(3)
    assert r.get("in3") == b"y"
    r.close()


def test_memory_commands(r):
    r.set("k", "v")
    n = r.memory_usage("k")
    assert 40 <= n <= 400
    assert r.memory_usage("nosuch") is None
    assert r.execute_command("MEMORY", "USAGE", "k", "SAMPLES", "0") == n
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("MEMORY", "USAGE", "k", "foo")
    stats = r.memory_stats()
    assert stats["keys.count"] == 1 and stats["total.allocated"] > 0
    assert "db.0" in stats
    assert isinstance(r.execute_command("MEMORY", "DOCTOR"), bytes)
    assert r.execute_command("MEMORY", "MALLOC-STATS") == \
        b"Stats not supported for the current allocator"
    assert r.execute_command("MEMORY", "PURGE") == b"OK"


def test_bgrewriteaof_with_aof_off_writes_a_base(server, r):
    r.set("persist-me", "1")
    assert reply(server.port, ("BGREWRITEAOF",)) == \
        b"+Background append only file rewriting started\r\n"
    deadline = time.monotonic() + 10
    while r.info("persistence")["aof_rewrites"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    d = os.path.join(server.dir, "appendonlydir")
    names = os.listdir(d)
    assert any(n.endswith(".base.aof") for n in names)
    assert any(n.endswith(".manifest") for n in names)
    assert r.info("persistence")["aof_enabled"] == 0


def test_redis_cli_views(server):
    out = cli(server.port, "info", "server")
    assert "redis_version:7.0.15" in out and "tcp_port:%d" % server.port in out
    assert cli(server.port, "client", "list").startswith("id=")
    assert cli(server.port, "command", "count").strip().isdigit()
    assert cli(server.port, "config", "get", "maxclients").split() == ["maxclients", "10000"]


def test_shutdown():
    p = Proc().start()
    try:
        c = p.client()
        with pytest.raises(redis.ResponseError, match="syntax error"):
            c.execute_command("SHUTDOWN", "SAVE", "NOSAVE")
        with pytest.raises(redis.ResponseError, match="No shutdown in progress"):
            c.execute_command("SHUTDOWN", "ABORT")
        with pytest.raises(redis.ResponseError, match="syntax error"):
            c.execute_command("SHUTDOWN", "FOO")
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(enc("SHUTDOWN", "NOSAVE"))
        assert s.recv(100) == b""       # no reply: the connection is closed
        s.close()
        assert p.wait_exit(10) == 0
    finally:
        p.cleanup()
